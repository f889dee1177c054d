//! OTLP trace export (`otlp_endpoint`): bro's spans go over OTLP/gRPC to the receiver that
//! restate-server exports its own spans to, and W3C `traceparent` headers carry the trace
//! across the hops (API → Restate ingress → restate-server → SDK endpoint), so a create is one
//! trace from its API request to the browser's launch.
//!
//! Off (no endpoint) costs nothing: no layer is installed, and every helper here returns at
//! once on one atomic load. On, export never blocks the daemon: spans go into a bounded queue
//! that a background thread sends in batches, each export is bounded by a timeout, spans past
//! the queue's bound are dropped (counted in `bro_trace_spans_dropped_total`, warned of at
//! most once a minute), and an unreachable receiver is logged once (again once it answers),
//! not per batch.
//!
//! A caller's `traceparent` chooses the trace a request's spans join and nothing more: every
//! span is sampled (the caller's flags cannot turn bro's spans off) and its `tracestate` is
//! dropped (it would be copied into every span and header).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, TraceContextExt as _, TraceFlags, TraceState, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData,
    SpanExporter, SpanProcessor,
};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether spans are exported: set once, when the daemon installs the exporter.
static ON: AtomicBool = AtomicBool::new(false);

/// How long one export may take before it is given up (its spans dropped).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most spans waiting for export; past it new ones are dropped.
const MAX_QUEUE: usize = 4096;
/// Most spans in one export.
const MAX_BATCH: usize = 512;
/// How long a span may wait before its batch is sent.
const BATCH_DELAY: Duration = Duration::from_millis(500);
/// How long the daemon waits, as it exits, for the last spans to be sent.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);
/// Least time between two warnings of spans dropped on a full queue.
const DROP_WARN_EVERY: Duration = Duration::from_secs(60);

/// Whether spans are exported (`otlp_endpoint` is set).
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// The exporter, flushed and stopped by [`Export::shutdown`] as the daemon exits.
pub struct Export {
    provider: SdkTracerProvider,
    queue: Arc<Queue>,
}

impl Export {
    /// Sends the spans still queued, waiting at most [`FLUSH_TIMEOUT`]; blocking, so call it
    /// off the async workers (`spawn_blocking`), which the gRPC client needs to make progress.
    pub fn shutdown(self) {
        ON.store(false, Ordering::Relaxed);
        if let Err(err) = self.provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
            tracing::warn!(%err, "traces: the last spans were not all sent");
        }
        self.queue.warn_of_drops(true);
    }
}

/// Builds the exporter to `endpoint` (checked by `config::check_otlp_endpoint`) and the
/// tracer bro's spans go to. Call inside the tokio runtime: the gRPC client is made there. It
/// connects lazily, so an unreachable receiver is no error here.
pub(super) fn start(endpoint: &str, node: &str) -> Result<(SdkTracer, Export), String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("otlp_endpoint {endpoint}: {e}"))?;
    let queue = Arc::new(Queue::new(MAX_QUEUE));
    let exporter = LogOnce {
        inner: exporter,
        endpoint: endpoint.to_string(),
        failing: AtomicBool::new(false),
        queue: Some(queue.clone()),
    };
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(MAX_QUEUE)
        .with_max_export_batch_size(MAX_BATCH)
        .with_scheduled_delay(BATCH_DELAY)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Bounded {
            inner: BatchSpanProcessor::builder(exporter)
                .with_batch_config(batch)
                .build(),
            queue: queue.clone(),
        })
        // Not the default ParentBased: a caller's "not sampled" flag would turn bro's spans off.
        .with_sampler(Sampler::AlwaysOn)
        .with_resource(resource(node))
        .build();
    let tracer = provider.tracer("bro");
    ON.store(true, Ordering::Relaxed);
    Ok((tracer, Export { provider, queue }))
}

/// Who the spans are from: service `bro`, its version, and this daemon (node name and pid:
/// nodes of separate clusters may all be named `local`). Built from these alone, not from
/// `OTEL_*` variables a daemon may happen to inherit.
fn resource(node: &str) -> Resource {
    Resource::builder_empty()
        .with_service_name("bro")
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new(
                "service.instance.id",
                format!("{node}/{}", std::process::id()),
            ),
            KeyValue::new("bro.node", node.to_string()),
        ])
        .build()
}

/// The export queue's own count of the spans in it, so that spans past its bound are dropped
/// here, where they can be counted: the SDK's batch processor drops them too, but keeps its
/// count to itself.
#[derive(Debug)]
struct Queue {
    /// Most spans waiting; the batch processor's queue holds as many, so it never drops.
    max: usize,
    /// Spans handed to the batch processor and not yet handed to the exporter (waiting in
    /// its queue or in the batch it builds): never fewer than its queue holds.
    pending: AtomicUsize,
    /// Spans dropped on a full queue, in all.
    dropped: AtomicU64,
    /// How many of `dropped` were warned of, and when last.
    warned: Mutex<(u64, Option<Instant>)>,
}

impl Queue {
    fn new(max: usize) -> Self {
        Queue {
            max,
            pending: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            warned: Mutex::new((0, None)),
        }
    }

    /// Takes one span in, or counts it dropped (false) when the queue is full.
    fn admit(&self) -> bool {
        if self.pending.fetch_add(1, Ordering::AcqRel) < self.max {
            return true;
        }
        self.pending.fetch_sub(1, Ordering::AcqRel);
        self.dropped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::prometheus::TRACE_SPANS_DROPPED).increment(1);
        false
    }

    /// `n` spans left the queue for the exporter.
    fn taken(&self, n: usize) {
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p.saturating_sub(n))
            });
    }

    /// Warns of the spans dropped since the last warning, at most once per
    /// [`DROP_WARN_EVERY`] unless `now` (the daemon exits). Called from the exporter's
    /// thread, not where spans end: logging from inside the span layer's callback would
    /// re-enter it.
    fn warn_of_drops(&self, now: bool) {
        let dropped = self.dropped.load(Ordering::Relaxed);
        let Ok(mut warned) = self.warned.lock() else {
            return;
        };
        let (told, at) = *warned;
        let due = now || at.is_none_or(|at| at.elapsed() >= DROP_WARN_EVERY);
        if dropped > told && due {
            *warned = (dropped, Some(Instant::now()));
            tracing::warn!(
                dropped = dropped - told,
                total = dropped,
                "traces: the export queue was full; spans were dropped (a slow receiver?)"
            );
        }
    }
}

/// The batch processor behind [`Queue`]'s bound: a span past it is counted and dropped.
#[derive(Debug)]
struct Bounded<P> {
    inner: P,
    queue: Arc<Queue>,
}

impl<P: SpanProcessor> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.queue.admit() {
            self.inner.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter, logging a failure once per outage instead of once per batch, and the
/// [`Queue`]'s drops at most once a minute.
#[derive(Debug)]
struct LogOnce<E> {
    inner: E,
    endpoint: String,
    failing: AtomicBool,
    queue: Option<Arc<Queue>>,
}

impl<E: SpanExporter> SpanExporter for LogOnce<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if let Some(queue) = &self.queue {
            queue.taken(batch.len());
            queue.warn_of_drops(false);
        }
        let result = self.inner.export(batch).await;
        match &result {
            Err(err) if !self.failing.swap(true, Ordering::Relaxed) => tracing::warn!(
                endpoint = %self.endpoint, %err,
                "traces: the OTLP receiver did not take spans; dropping them until it does"
            ),
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!(endpoint = %self.endpoint, "traces: the OTLP receiver takes spans again");
            }
            _ => {}
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Adds the current span's `traceparent` to an outgoing request's headers (none when off).
pub fn inject(headers: &mut http::HeaderMap) {
    if !on() {
        return;
    }
    TraceContextPropagator::new().inject_context(&Span::current().context(), &mut Headers(headers));
}

/// A span for a request the daemon serves, continuing the trace of its `traceparent` header
/// (a new trace without one); `Span::none()` when off, so nothing is built then.
pub fn continue_from(headers: &http::HeaderMap, make: impl FnOnce() -> Span) -> Span {
    match remote_parent(headers) {
        Some(parent) => child_of(parent, make),
        None => Span::none(),
    }
}

/// The trace a request's `traceparent` header places it in (an empty context without a
/// valid one), or `None` when off. Only the trace and parent span ids are taken: the span
/// is sampled whatever the caller's flags say, and its `tracestate` is dropped.
pub fn remote_parent(headers: &http::HeaderMap) -> Option<Context> {
    if !on() {
        return None;
    }
    Some(sanitized(
        &TraceContextPropagator::new().extract(&HeadersRef(headers)),
    ))
}

/// `cx`'s remote span as a sampled parent with no `tracestate`; an empty context when it
/// has no valid span.
fn sanitized(cx: &Context) -> Context {
    let remote = cx.span().span_context().clone();
    if !remote.is_valid() {
        return Context::new();
    }
    Context::new().with_remote_span_context(SpanContext::new(
        remote.trace_id(),
        remote.span_id(),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ))
}

/// `make`'s span, a child of `parent` (from [`remote_parent`]).
pub fn child_of(parent: Context, make: impl FnOnce() -> Span) -> Span {
    let span = make();
    // Set before the span is first entered, when its parent can still change.
    let _ = span.set_parent(parent);
    span
}

/// A span of its own when exporting (`make`), else `Span::none()`: for work worth a span in
/// a trace but not a prefix on every log line of a daemon that exports nothing.
pub fn span(make: impl FnOnce() -> Span) -> Span {
    if on() { make() } else { Span::none() }
}

/// Outgoing headers, written by the propagator.
struct Headers<'a>(&'a mut http::HeaderMap);

impl Injector for Headers<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Incoming headers, read by the propagator (which checks what it reads).
struct HeadersRef<'a>(&'a http::HeaderMap);

impl Extractor for HeadersRef<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;

    use super::*;

    #[test]
    fn a_traceparent_round_trips_through_headers() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        );
        let cx = TraceContextPropagator::new().extract(&HeadersRef(&headers));
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        let mut out = http::HeaderMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut Headers(&mut out));
        assert_eq!(out.get("traceparent"), headers.get("traceparent"));
    }

    /// A caller picks the trace and parent, not whether bro samples, nor a `tracestate`
    /// copied into every span and header.
    #[test]
    fn a_callers_flags_and_tracestate_are_not_kept() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
            ),
        );
        let state = format!("a={}", "x".repeat(200));
        headers.insert("tracestate", http::HeaderValue::from_str(&state).unwrap());
        let extracted = TraceContextPropagator::new().extract(&HeadersRef(&headers));
        assert!(!extracted.span().span_context().is_sampled());
        let cx = sanitized(&extracted);
        let parent = cx.span().span_context().clone();
        assert_eq!(
            parent.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(parent.span_id().to_string(), "b7ad6b7169203331");
        assert!(parent.is_sampled() && parent.is_remote());
        assert_eq!(parent.trace_state().header(), "");
        assert!(!sanitized(&Context::new()).has_active_span());
    }

    /// A hostile or broken header is no parent: the span starts a trace of its own.
    #[test]
    fn a_bad_traceparent_is_ignored() {
        for bad in [
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "zz-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c",
        ] {
            let mut headers = http::HeaderMap::new();
            headers.insert("traceparent", http::HeaderValue::from_static(bad));
            let cx = TraceContextPropagator::new().extract(&HeadersRef(&headers));
            assert!(!cx.span().span_context().is_valid(), "{bad}");
        }
    }

    /// An exporter answering with the results it is given, one per export.
    #[derive(Debug)]
    struct Scripted(std::sync::Mutex<Vec<OTelSdkResult>>);

    impl SpanExporter for Scripted {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().remove(0)
        }
    }

    /// Log lines written by a test subscriber.
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Lines {
        /// Captures this thread's log lines until the guard drops.
        fn capture() -> (Lines, tracing::subscriber::DefaultGuard) {
            let lines = Lines::default();
            let sink = lines.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || sink.clone())
                .with_ansi(false)
                .finish();
            (lines, tracing::subscriber::set_default(subscriber))
        }

        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A receiver down for three batches, back for two, down again: two warnings and one
    /// "again", not one line per batch.
    #[tokio::test]
    async fn a_failing_receiver_is_logged_once_per_outage() {
        use opentelemetry_sdk::error::OTelSdkError;
        let down = || Err(OTelSdkError::InternalFailure("connection refused".into()));
        let exporter = LogOnce {
            inner: Scripted(std::sync::Mutex::new(vec![
                down(),
                down(),
                down(),
                Ok(()),
                Ok(()),
                down(),
            ])),
            endpoint: "http://127.0.0.1:1".into(),
            failing: AtomicBool::new(false),
            queue: None,
        };
        let (lines, _default) = Lines::capture();
        for _ in 0..6 {
            let _ = exporter.export(Vec::new()).await;
        }
        let text = lines.text();
        assert_eq!(text.matches("did not take spans").count(), 2, "{text}");
        assert_eq!(text.matches("takes spans again").count(), 1, "{text}");
    }

    /// A processor keeping the spans it is given (a queue nobody drains).
    #[derive(Debug, Default)]
    struct Keep(Arc<Mutex<Vec<SpanData>>>);

    impl SpanProcessor for Keep {
        fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

        fn on_end(&self, span: SpanData) {
            self.0.lock().unwrap().push(span);
        }

        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }

        fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    /// The value of `bro_trace_spans_dropped_total` in the recorder's text.
    fn dropped_metric() -> f64 {
        crate::prometheus::render_recorded()
            .lines()
            .find(|l| l.starts_with("bro_trace_spans_dropped_total{"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    }

    /// A queue of 3 that nobody drains takes 3 spans and counts the next 2 dropped; once a
    /// batch goes to the exporter there is room again, and the drops are warned of once,
    /// not per batch.
    #[tokio::test]
    async fn spans_past_a_full_queue_are_counted_and_warned_of_once() {
        use opentelemetry::trace::{Span as _, Tracer as _};
        crate::prometheus::install("local");
        let before = dropped_metric();
        let queue = Arc::new(Queue::new(3));
        let kept = Keep::default();
        let spans = kept.0.clone();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Bounded {
                inner: kept,
                queue: queue.clone(),
            })
            .build();
        let tracer = provider.tracer("t");
        for _ in 0..5 {
            tracer.start("s").end();
        }
        assert_eq!(spans.lock().unwrap().len(), 3);
        assert_eq!(queue.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(dropped_metric() - before, 2.0);

        let exporter = LogOnce {
            inner: Scripted(Mutex::new(vec![Ok(()), Ok(())])),
            endpoint: "http://127.0.0.1:1".into(),
            failing: AtomicBool::new(false),
            queue: Some(queue.clone()),
        };
        let (lines, _default) = Lines::capture();
        let batch = std::mem::take(&mut *spans.lock().unwrap());
        let _ = exporter.export(batch).await;
        assert_eq!(queue.pending.load(Ordering::Relaxed), 0);
        for _ in 0..4 {
            tracer.start("s").end();
        }
        assert_eq!(spans.lock().unwrap().len(), 3);
        assert_eq!(queue.dropped.load(Ordering::Relaxed), 3);
        let _ = exporter.export(Vec::new()).await;
        let text = lines.text();
        assert_eq!(text.matches("spans were dropped").count(), 1, "{text}");
        assert!(text.contains("dropped=2"), "{text}");
        // As the daemon exits, the drops not yet told are.
        queue.warn_of_drops(true);
        let text = lines.text();
        assert_eq!(text.matches("spans were dropped").count(), 2, "{text}");
        assert!(text.contains("dropped=1 total=3"), "{text}");
    }

    #[test]
    fn off_builds_no_span_and_injects_nothing() {
        assert!(!on());
        let mut headers = http::HeaderMap::new();
        inject(&mut headers);
        assert!(headers.is_empty());
        assert!(span(|| tracing::error_span!("x")).is_none());
        assert!(continue_from(&headers, || tracing::error_span!("x")).is_none());
        assert!(remote_parent(&headers).is_none());
    }
}
