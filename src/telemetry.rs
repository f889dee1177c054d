//! Tracing setup: the CLI logs warnings to stderr (more with `-v`); the daemon logs info.
//! `RUST_LOG` overrides both. Also the spans that put a session's id on every line logged for
//! it, and the filter that keeps a Restate replay from logging a handler's lines again. With
//! `otlp_endpoint` set, the daemon also exports its spans ([`otlp`]).

pub mod otlp;

use std::fmt::{Debug, Display};
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Record};
use tracing::{Event, Id, Metadata, Span, Subscriber};
use tracing_subscriber::filter::{FilterExt, Targets};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Installs the global subscriber writing to stderr at `default` level unless `RUST_LOG` says
/// otherwise; lines logged while Restate replays a handler are dropped ([`ReplayAware`]).
pub fn init(default: &str) {
    let _ = tracing_subscriber::registry()
        .with(log_lines(default))
        .try_init();
}

/// The daemon's [`init`], plus, with `otlp_endpoint` set, the layer exporting bro's spans
/// (and the Restate SDK's) to it. Call inside the tokio runtime. The exporter comes back to
/// be flushed on exit; an exporter that cannot be built is an error (the endpoint was
/// checked, so this is rare).
pub fn init_daemon(
    default: &str,
    otlp_endpoint: Option<&str>,
    node: &str,
) -> Result<Option<otlp::Export>, String> {
    let Some(endpoint) = otlp_endpoint else {
        init(default);
        return Ok(None);
    };
    let (tracer, export) = otlp::start(endpoint, node)?;
    // Spans of bro and of the SDK (its span around each attempt of a handler), not of the
    // HTTP and gRPC libraries (the exporter's own calls among them). A replay's log lines are
    // left out of the spans' events as they are of the log.
    let spans = Targets::new()
        .with_target("bro", LevelFilter::INFO)
        .with_target("restate_sdk", LevelFilter::INFO);
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(spans.and(ReplayAware));
    if let Err(err) = tracing_subscriber::registry()
        .with(log_lines(default))
        .with(otel)
        .try_init()
    {
        // Another subscriber is installed (this process set up tracing already): nothing
        // would reach the exporter, so say so rather than claim traces are on.
        export.shutdown();
        return Err(format!(
            "otlp_endpoint: cannot install the span exporter: {err}"
        ));
    }
    Ok(Some(export))
}

/// The log's layer: lines on stderr at `default` level unless `RUST_LOG` says otherwise,
/// none of a replay's.
fn log_lines<S: Subscriber + for<'a> LookupSpan<'a>>(default: &str) -> impl Layer<S> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(filter.and(ReplayAware))
}

/// The field the Restate SDK sets on the current span as a handler starts and stops
/// replaying its journal.
const REPLAYING: &str = "restate.sdk.is_replaying";

/// The span of one session's work: every line logged inside it carries `session_id`.
///
/// At error level, so the id is on every line whatever `RUST_LOG` keeps. It declares the
/// SDK's replay field because the SDK records it on whichever span is current, which inside a
/// handler is this one (see [`ReplayAware`]).
pub fn session_span(id: &dyn Display) -> Span {
    tracing::error_span!("session", session_id = %id, restate.sdk.is_replaying = tracing::field::Empty)
}

/// [`session_span`] for a warm browser, which has no session yet: its lines carry `warm_id`.
pub fn warm_span(id: &dyn Display) -> Span {
    tracing::error_span!("warm", warm_id = %id, restate.sdk.is_replaying = tracing::field::Empty)
}

/// Drops events logged while a Restate handler replays its journal, so a retried invocation
/// does not log again what its first attempts logged.
///
/// The SDK records its replay flag on `Span::current()`: on its root span
/// (`restate_sdk_endpoint_handle`) as an attempt starts replaying, and, once the handler's body
/// runs inside a [`session_span`], on that span when the replay ends. Its own
/// `ReplayAwareFilter` reads the root only, which then keeps a stale `true` and drops every
/// new line. Here there is one flag per invocation, kept on the root span: a record of the
/// field on any span inside it sets that flag, and every event inside it reads that flag.
pub struct ReplayAware;

/// The name of the span the SDK opens around one attempt of an invocation.
const ATTEMPT_SPAN: &str = "restate_sdk_endpoint_handle";

/// Whether an attempt is replaying, kept in its root span's extensions.
struct Replaying(bool);

/// Reads the replay field from a span's values, if they set it.
struct ReplayVisitor(Option<bool>);

impl Visit for ReplayVisitor {
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == REPLAYING {
            self.0 = Some(value);
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn Debug) {}
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Filter<S> for ReplayAware {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn callsite_enabled(&self, _meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        // Decided per event, never per callsite: the level is left to the other filter.
        tracing::subscriber::Interest::sometimes()
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }

    fn event_enabled(&self, event: &Event<'_>, cx: &Context<'_, S>) -> bool {
        let Some(scope) = cx.event_scope(event) else {
            return true;
        };
        for span in scope {
            if span.name() == ATTEMPT_SPAN {
                return !span.extensions().get::<Replaying>().is_some_and(|r| r.0);
            }
        }
        true
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, cx: Context<'_, S>) {
        let mut visitor = ReplayVisitor(None);
        attrs.record(&mut visitor);
        if let Some(replaying) = visitor.0 {
            self.set(id, replaying, &cx);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, cx: Context<'_, S>) {
        let mut visitor = ReplayVisitor(None);
        values.record(&mut visitor);
        if let Some(replaying) = visitor.0 {
            self.set(id, replaying, &cx);
        }
    }
}

impl ReplayAware {
    /// Sets the flag of the attempt span `id` is in (or is).
    fn set<S: Subscriber + for<'a> LookupSpan<'a>>(
        &self,
        id: &Id,
        replaying: bool,
        cx: &Context<'_, S>,
    ) {
        let Some(span) = cx.span(id) else {
            return;
        };
        if let Some(attempt) = span.scope().find(|s| s.name() == ATTEMPT_SPAN) {
            attempt.extensions_mut().replace(Replaying(replaying));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Log lines written by the subscriber under test.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    /// The daemon's layer stack, writing into `lines`.
    fn subscriber(lines: &Lines) -> impl Subscriber + Send + Sync {
        let lines = lines.clone();
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(move || lines.clone())
            .with_target(false)
            .with_ansi(false);
        tracing_subscriber::registry()
            .with(fmt.with_filter(EnvFilter::new("info").and(ReplayAware)))
    }

    /// One attempt of a handler the way the SDK runs it: its root span (replaying when the
    /// journal has entries), the session span around the body, and the flag recorded on the
    /// current span when the journal's end is reached.
    fn attempt(journaled: bool) {
        let root = tracing::info_span!(
            "restate_sdk_endpoint_handle",
            "rpc.system" = "restate",
            "rpc.service" = "Session",
            "rpc.method" = "create",
            "restate.sdk.is_replaying" = false
        );
        let _root = root.enter();
        if journaled {
            Span::current().record(REPLAYING, true);
        }
        let session = session_span(&"0b1f7a5e-0000-4000-8000-000000000001");
        let _session = session.enter();
        tracing::info!("before the launch");
        if journaled {
            Span::current().record(REPLAYING, false);
        }
        tracing::info!("after the launch");
    }

    #[test]
    fn a_replay_does_not_log_again_what_the_first_attempt_logged() {
        let lines = Lines::default();
        tracing::subscriber::with_default(subscriber(&lines), || {
            attempt(false);
            attempt(true);
        });
        let text = lines.text();
        assert_eq!(text.matches("before the launch").count(), 1, "{text}");
        assert_eq!(text.matches("after the launch").count(), 2, "{text}");
        assert_eq!(
            text.lines()
                .filter(|l| l.contains("session_id=0b1f7a5e-0000-4000-8000-000000000001"))
                .count(),
            3,
            "{text}"
        );
    }

    /// Why bro has its own filter: the SDK's reads its root span only, which keeps saying
    /// "replaying" once the flag went to the session span, and drops the new lines.
    #[test]
    fn the_sdks_filter_alone_would_drop_the_lines_after_a_replay() {
        let lines = Lines::default();
        let sink = lines.clone();
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(move || sink.clone())
            .with_ansi(false);
        let sdk = tracing_subscriber::registry().with(
            fmt.with_filter(EnvFilter::new("info"))
                .with_filter(restate_sdk::filter::ReplayAwareFilter),
        );
        tracing::subscriber::with_default(sdk, || attempt(true));
        assert!(
            !lines.text().contains("after the launch"),
            "{}",
            lines.text()
        );
    }

    /// The SDK's span of an attempt that starts by replaying its journal.
    fn replaying_attempt() -> Span {
        let root = tracing::info_span!(
            "restate_sdk_endpoint_handle",
            "restate.sdk.is_replaying" = false
        );
        root.record(REPLAYING, true);
        root
    }

    /// A retried attempt that fails after its replay: the SDK's warning, logged in its root
    /// span after the body, is new and kept.
    #[test]
    fn a_line_after_the_body_of_a_replayed_attempt_is_kept() {
        let lines = Lines::default();
        tracing::subscriber::with_default(subscriber(&lines), || {
            let _root = replaying_attempt().entered();
            {
                let _session = session_span(&"s1").entered();
                tracing::info!("replayed");
                Span::current().record(REPLAYING, false);
                tracing::info!("new in the body");
            }
            tracing::warn!("Error while processing handler");
        });
        let text = lines.text();
        assert!(!text.contains("replayed"), "{text}");
        assert!(text.contains("new in the body"), "{text}");
        assert!(text.contains("Error while processing handler"), "{text}");
    }

    /// A handler that opens a span per browser: the replay ends inside the second, and the
    /// third's lines are new.
    #[test]
    fn spans_opened_after_a_replay_ended_log() {
        let lines = Lines::default();
        tracing::subscriber::with_default(subscriber(&lines), || {
            let _root = replaying_attempt().entered();
            for (i, ends_here) in [(1, false), (2, true), (3, false)] {
                let _warm = warm_span(&i).entered();
                tracing::info!("browser {i} before");
                if ends_here {
                    Span::current().record(REPLAYING, false);
                }
                tracing::info!("browser {i} after");
            }
        });
        let text = lines.text();
        for gone in ["browser 1 before", "browser 1 after", "browser 2 before"] {
            assert!(!text.contains(gone), "{gone}: {text}");
        }
        for kept in ["browser 2 after", "browser 3 before", "browser 3 after"] {
            assert!(text.contains(kept), "{kept}: {text}");
        }
    }

    /// The filter decides per event and leaves the level to `RUST_LOG`: debug and trace
    /// callsites of the libraries stay off.
    #[test]
    fn the_level_stays_the_env_filters() {
        let lines = Lines::default();
        assert_eq!(
            subscriber(&lines).max_level_hint(),
            Some(tracing::level_filters::LevelFilter::INFO)
        );
    }

    #[test]
    fn lines_outside_a_handler_are_kept() {
        let lines = Lines::default();
        tracing::subscriber::with_default(subscriber(&lines), || {
            tracing::info!("plain");
            let _warm = warm_span(&"w1").entered();
            tracing::warn!("warm line");
        });
        let text = lines.text();
        assert!(text.contains("plain"), "{text}");
        assert!(
            text.contains("warm_id=w1") && text.contains("warm line"),
            "{text}"
        );
    }
}
