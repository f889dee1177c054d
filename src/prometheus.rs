//! bro's Prometheus metrics: the names, the process-wide recorder behind the `metrics` facade,
//! and the text format of what `GET /metrics` adds at scrape time.
//!
//! Events (a create, a release, CDP and proxy bytes) are recorded where they happen with the
//! `metrics` macros (`metrics::counter!(prometheus::CREATES, "outcome" => "live")`), so any
//! module records with one line and no plumbing; the daemon installs the recorder once
//! ([`install`]) and the API renders it. What is read at scrape time (sessions by status,
//! per-browser memory and CPU, the pool) is written by [`Exposition`] from fresh figures, so a
//! gone session leaves no stale series behind. Restate handlers are replayed: record their
//! events only inside `ctx.run` closures, never in handler code.

use std::fmt::Write as _;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Creates answered by the API, by `outcome` ([`CREATE_OUTCOMES`]).
pub const CREATES: &str = "bro_session_creates_total";
/// Seconds a create took that ended live, by `kind` (`cold`, `warm`).
pub const CREATE_SECONDS: &str = "bro_session_create_seconds";
/// Seconds a create waited for a slot of the node's pool.
pub const QUEUE_WAIT_SECONDS: &str = "bro_queue_wait_seconds";
/// Releases asked of the API, by `outcome` ([`RELEASE_OUTCOMES`]).
pub const RELEASES: &str = "bro_session_releases_total";
/// Sessions ended (any cause: release, timeout, browser exit), by final `status`.
pub const ENDS: &str = "bro_session_ends_total";
/// CDP websockets spliced now.
pub const CDP_CONNECTIONS: &str = "bro_cdp_connections";
/// CDP bytes spliced, by `direction` (`to_browser`, `to_client`).
pub const CDP_BYTES: &str = "bro_cdp_bytes_total";
/// Bytes through the sessions' hops to their upstream proxies, by `direction` (`tx`, `rx`).
pub const PROXY_BYTES: &str = "bro_proxy_bytes_total";
/// Spans dropped, not exported, because the OTLP export queue was full (`otlp_endpoint`).
pub const TRACE_SPANS_DROPPED: &str = "bro_trace_spans_dropped_total";

/// Every `outcome` of [`CREATES`].
pub const CREATE_OUTCOMES: [&str; 9] = [
    "live",
    "existing",
    "ended",
    "failed",
    "refused",
    "at_capacity",
    "bad_request",
    "unavailable",
    "error",
];
/// Every `outcome` of [`RELEASES`].
pub const RELEASE_OUTCOMES: [&str; 4] = ["released", "ended", "not_found", "error"];

/// Buckets of the latency histograms, in seconds: a warm create takes tens of ms, a cold one
/// hundreds, a queued one up to the queue timeout.
const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder, every series labelled `node=<node>`; the first call
/// wins (one daemon per process): the `node` label stays the first call's for the process's
/// life. Series of known labels start at 0, so a rate or a `0 → 1`
/// is visible from the first scrape.
pub fn install(node: &str) -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new().add_global_label("node", node);
        // Only an empty bucket list is refused (and BUCKETS is not empty); without buckets the
        // histograms would render as summaries.
        let builder = match builder.set_buckets(&BUCKETS) {
            Ok(builder) => builder,
            Err(_) => PrometheusBuilder::new().add_global_label("node", node),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was installed already: /metrics stays empty");
        }
        describe();
        handle
    })
}

/// The recorded series in the text format; empty before [`install`].
pub fn render_recorded() -> String {
    match HANDLE.get() {
        Some(handle) => {
            // Folds the histograms' samples in (the exporter keeps them until then).
            handle.run_upkeep();
            handle.render()
        }
        None => String::new(),
    }
}

/// Keeps the histograms' pending samples bounded between scrapes (a daemon nobody scrapes).
pub fn upkeep() {
    if let Some(handle) = HANDLE.get() {
        handle.run_upkeep();
    }
}

fn describe() {
    metrics::describe_counter!(
        CREATES,
        "Session creates answered by the API (quick actions' own sessions too), by outcome"
    );
    metrics::describe_histogram!(
        CREATE_SECONDS,
        metrics::Unit::Seconds,
        "Seconds from a create's slot to its live session (queue wait excluded), by kind (cold launch or warm pool)"
    );
    metrics::describe_histogram!(
        QUEUE_WAIT_SECONDS,
        metrics::Unit::Seconds,
        "Seconds creates waited for a session slot (until granted or refused)"
    );
    metrics::describe_counter!(
        RELEASES,
        "Session releases asked of the API (quick actions' own too), by outcome"
    );
    metrics::describe_counter!(
        ENDS,
        "Sessions ended by this daemon's handlers (release, timeout, browser exit), by status"
    );
    metrics::describe_gauge!(CDP_CONNECTIONS, "CDP websockets this daemon splices now");
    metrics::describe_counter!(
        CDP_BYTES,
        metrics::Unit::Bytes,
        "CDP bytes spliced by this daemon, by direction"
    );
    metrics::describe_counter!(
        PROXY_BYTES,
        metrics::Unit::Bytes,
        "Bytes between this node's browsers and their upstream proxies (tx: sent, rx: received)"
    );
    metrics::describe_counter!(
        TRACE_SPANS_DROPPED,
        "Spans dropped, not exported, because the OTLP export queue was full (a slow or stuck receiver)"
    );
    metrics::counter!(TRACE_SPANS_DROPPED).absolute(0);
    for outcome in CREATE_OUTCOMES {
        metrics::counter!(CREATES, "outcome" => outcome).absolute(0);
    }
    for outcome in RELEASE_OUTCOMES {
        metrics::counter!(RELEASES, "outcome" => outcome).absolute(0);
    }
    for status in ["released", "failed"] {
        metrics::counter!(ENDS, "status" => status).absolute(0);
    }
    for direction in ["to_browser", "to_client"] {
        metrics::counter!(CDP_BYTES, "direction" => direction).absolute(0);
    }
    for direction in ["tx", "rx"] {
        metrics::counter!(PROXY_BYTES, "direction" => direction).absolute(0);
    }
    metrics::gauge!(CDP_CONNECTIONS).set(0.0);
}

/// The kind of a metric family, as its `# TYPE` line says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

/// Families written at scrape time, in the text format (version 0.0.4): one `# HELP` and
/// `# TYPE` per family, its samples after them, label values escaped.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts family `name`; its samples follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        let help = help.replace('\\', r"\\").replace('\n', r"\n");
        let _ = write!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    /// One sample of the family last started.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// The text written so far.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A label value as the text format wants it: `\`, `"` and line feeds escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// A sample value: integers without a fraction, and the format's spellings of the rest.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// The largest restate-server metrics text re-exported (it is ~200 KB on a fresh server).
pub const MAX_RESTATE_TEXT: usize = 4 << 20;

/// restate-server's own metrics text, kept to what cannot clash with bro's and regrouped so
/// each family has one `# HELP`, one `# TYPE` and its samples together: restate-server 1.7
/// writes some families once per RocksDB database, each time with its `# TYPE`, which strict
/// parsers refuse. Only `restate_*` families and samples ending in a number are kept, so one
/// odd line cannot make Prometheus refuse the whole scrape.
pub fn restate_lines(text: &str) -> String {
    #[derive(Default)]
    struct Family<'a> {
        help: Option<&'a str>,
        kind: Option<&'a str>,
        samples: Vec<&'a str>,
    }
    let mut order: Vec<&str> = Vec::new();
    let mut families: std::collections::HashMap<&str, Family<'_>> = Default::default();
    let mut current: Option<&str> = None;
    for line in text.lines() {
        let (name, slot) = if let Some(rest) = line.strip_prefix("# HELP ") {
            (rest.split(' ').next().unwrap_or_default(), 0)
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            (rest.split(' ').next().unwrap_or_default(), 1)
        } else if line.starts_with("restate_") && is_sample(line) {
            let own = line.split(['{', ' ']).next().unwrap_or_default();
            // A histogram's or summary's `_bucket`/`_sum`/`_count`/`_created` belong to the
            // family typed before them; another family sharing its prefix does not.
            let family = current
                .filter(|c| own == *c || family_part(own, c))
                .unwrap_or(own);
            (family, 2)
        } else {
            continue;
        };
        if !name.starts_with("restate_") {
            // A `# HELP`/`# TYPE` of a family not kept: no sample after it is the last one's.
            current = None;
            continue;
        }
        let family = families.entry(name).or_insert_with(|| {
            order.push(name);
            Family::default()
        });
        match slot {
            0 => {
                family.help.get_or_insert(line);
                current = Some(name);
            }
            1 => {
                family.kind.get_or_insert(line);
                current = Some(name);
            }
            _ => family.samples.push(line),
        }
    }
    let mut out = String::with_capacity(text.len());
    for name in order {
        let Some(family) = families.get(name) else {
            continue;
        };
        let lines = family
            .help
            .iter()
            .chain(&family.kind)
            .chain(&family.samples);
        for line in lines {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// True when the sample name `own` is one of family `family`'s parts.
fn family_part(own: &str, family: &str) -> bool {
    own.strip_prefix(family)
        .is_some_and(|rest| ["_bucket", "_sum", "_count", "_created"].contains(&rest))
}

/// True when `line` looks like a sample: one line, a name (and labels), then a number (the
/// value, or the timestamp after it).
fn is_sample(line: &str) -> bool {
    let plain = line.bytes().all(|b| b != b'\r' && b != 0);
    let number = line
        .rsplit_once(' ')
        .is_some_and(|(_, last)| last.parse::<f64>().is_ok());
    plain && number
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The node every test installs the recorder with (the first install wins).
    pub(crate) const TEST_NODE: &str = "local";

    #[test]
    fn families_are_written_with_help_type_and_escaped_labels() {
        let mut e = Exposition::default();
        e.family("bro_sessions", Kind::Gauge, "Sessions by status");
        e.sample("bro_sessions", &[("node", "n1"), ("status", "live")], 2.0);
        e.sample(
            "bro_sessions",
            &[("node", "a\"b\\c\nd"), ("status", "x")],
            0.5,
        );
        e.family("bro_up", Kind::Counter, "Up\nline");
        e.sample("bro_up", &[], 1.0);
        insta::assert_snapshot!(e.finish(), @r#"
        # HELP bro_sessions Sessions by status
        # TYPE bro_sessions gauge
        bro_sessions{node="n1",status="live"} 2
        bro_sessions{node="a\"b\\c\nd",status="x"} 0.5
        # HELP bro_up Up\nline
        # TYPE bro_up counter
        bro_up 1
        "#);
    }

    #[test]
    fn numbers_use_the_formats_spellings() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(1e20), "100000000000000000000");
    }

    #[test]
    fn only_restates_own_families_are_re_exported_one_block_each() {
        let text = "# HELP restate_a_total A\n# TYPE restate_a_total counter\n\
                    restate_a_total{db=\"x\"} 4\n\n\
                    # HELP bro_sessions forged\n# TYPE bro_sessions gauge\n\
                    bro_sessions{status=\"live\"} 99\n# EOF\n\
                    # TYPE restate_h histogram\nrestate_h_bucket{le=\"+Inf\"} 1\nrestate_h_sum 2\n\
                    restate_h_count 1\n\
                    # HELP restate_a_total A\n# TYPE restate_a_total counter\n\
                    restate_a_total{db=\"y\"} 5\r\nrestate_c +Inf 1700000000\nrestate_cut";
        insta::assert_snapshot!(restate_lines(text), @r#"
        # HELP restate_a_total A
        # TYPE restate_a_total counter
        restate_a_total{db="x"} 4
        restate_a_total{db="y"} 5
        # TYPE restate_h histogram
        restate_h_bucket{le="+Inf"} 1
        restate_h_sum 2
        restate_h_count 1
        restate_c +Inf 1700000000
        "#);
    }

    #[test]
    fn a_sample_sharing_a_familys_prefix_is_its_own_family() {
        let text = "# TYPE restate_h histogram\nrestate_h_bucket{le=\"+Inf\"} 1\n\
                    restate_h_other 3\nrestate_h_count 1\n\
                    # TYPE restate_x gauge\n# TYPE other_y gauge\nrestate_x_sum 7\n";
        insta::assert_snapshot!(restate_lines(text), @r#"
        # TYPE restate_h histogram
        restate_h_bucket{le="+Inf"} 1
        restate_h_count 1
        restate_h_other 3
        # TYPE restate_x gauge
        restate_x_sum 7
        "#);
    }

    #[test]
    fn recorded_series_carry_the_node_and_start_at_zero() {
        install(TEST_NODE);
        metrics::counter!(CREATES, "outcome" => "live").increment(1);
        metrics::histogram!(CREATE_SECONDS, "kind" => "cold").record(0.3);
        let text = render_recorded();
        assert!(
            text.contains("# TYPE bro_session_creates_total counter"),
            "{text}"
        );
        assert!(
            text.contains("bro_session_releases_total{node=\"local\",outcome=\"not_found\"} 0"),
            "{text}"
        );
        assert!(
            text.contains(
                "bro_session_create_seconds_bucket{node=\"local\",kind=\"cold\",le=\"0.5\"}"
            ),
            "{text}"
        );
        assert!(
            text.contains("bro_cdp_connections{node=\"local\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE bro_trace_spans_dropped_total counter"),
            "{text}"
        );
    }
}
