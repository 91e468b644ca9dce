//! The OTLP/HTTP exporter, configured by the standard variables: on when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, off with
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`; `OTEL_EXPORTER_OTLP_PROTOCOL`
//! `http/protobuf` (the default) or `http/json`; `OTEL_SERVICE_NAME` (default `agenthub`);
//! headers, timeout and the batch processor's `OTEL_BSP_*` as the SDK reads them.
//!
//! Spans are queued (at most [`MAX_QUEUE`], more are dropped) and sent by the SDK's own
//! thread, never on a call's path; an exporter that cannot reach its collector costs no
//! call anything, and [`Exporter::shutdown`] says once how many spans were lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor,
};
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// Spans waiting for the exporter at most (unless `OTEL_BSP_MAX_QUEUE_SIZE` says otherwise).
pub const MAX_QUEUE: usize = 2048;

#[derive(Debug, Default)]
struct Counts {
    ended: AtomicU64,
    handed: AtomicU64,
    failed: AtomicU64,
}

/// Counts what is handed to the exporter and what it failed to send.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    counts: Arc<Counts>,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        self.counts.handed.fetch_add(n, Relaxed);
        let result = self.inner.export(batch).await;
        if result.is_err() {
            self.counts.failed.fetch_add(n, Relaxed);
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

/// Counts the spans that ended (were queued, or dropped by a full queue).
#[derive(Debug)]
struct CountingProcessor {
    inner: BatchSpanProcessor,
    counts: Arc<Counts>,
}

impl SpanProcessor for CountingProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.counts.ended.fetch_add(1, Relaxed);
        self.inner.on_end(span);
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

/// Installs the process's subscriber: `log` (the caller's log layer, which should not show
/// spans) and, when the `OTEL_*` variables ask for traces, the exporter's layer. Returns the
/// exporter, to be [shut down](Exporter::shutdown) before the process exits; variables that
/// ask for something agenthub cannot do are one warning, and calls go on untraced.
pub fn install<L>(log: L) -> Option<Exporter>
where
    L: Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let (exporter, problem) = match Exporter::from_env() {
        Ok(exporter) => (exporter, None),
        Err(problem) => (None, Some(problem)),
    };
    let traces = exporter.as_ref().map(Exporter::layer);
    let _ = tracing_subscriber::registry().with(log).with(traces).try_init();
    if let Some(problem) = problem {
        tracing::warn!("{problem}");
    }
    exporter
}

/// The installed exporter: give its [`Self::layer`] to the subscriber, and call
/// [`Self::shutdown`] before the process exits.
#[derive(Debug)]
pub struct Exporter {
    provider: SdkTracerProvider,
    counts: Arc<Counts>,
    endpoint: String,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl Exporter {
    /// The exporter the `OTEL_*` variables ask for: `Ok(None)` when tracing is off, an
    /// error (to be shown once; calls go on untraced) when it cannot be made as asked.
    pub fn from_env() -> Result<Option<Self>, String> {
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return Ok(None);
        }
        let Some(endpoint) =
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        else {
            return Ok(None);
        };
        let protocol = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        {
            None => Protocol::HttpBinary,
            Some(p) if p == "http/protobuf" => Protocol::HttpBinary,
            Some(p) if p == "http/json" => Protocol::HttpJson,
            Some(other) => {
                return Err(format!(
                    "traces are off: OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported (agenthub exports \
                     http/protobuf or http/json; point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's HTTP port, \
                     4318 by default)"
                ));
            }
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(protocol)
            .build()
            .map_err(|e| format!("traces are off: cannot make the OTLP exporter for {endpoint}: {e}"))?;
        let counts = Arc::new(Counts::default());
        let mut batch = BatchConfigBuilder::default();
        if var("OTEL_BSP_MAX_QUEUE_SIZE").is_none() {
            batch = batch.with_max_queue_size(MAX_QUEUE);
        }
        if var("OTEL_BSP_SCHEDULE_DELAY").is_none() {
            batch = batch.with_scheduled_delay(Duration::from_secs(1));
        }
        let processor =
            BatchSpanProcessor::builder(CountingExporter { inner: exporter, counts: Arc::clone(&counts) })
                .with_batch_config(batch.build())
                .build();
        let mut resource = Resource::builder();
        if var("OTEL_SERVICE_NAME").is_none()
            && !var("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="))
        {
            resource = resource.with_service_name("agenthub");
        }
        let provider = SdkTracerProvider::builder()
            .with_span_processor(CountingProcessor { inner: processor, counts: Arc::clone(&counts) })
            .with_resource(
                resource.with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))).build(),
            )
            .build();
        Ok(Some(Self { provider, counts, endpoint }))
    }

    /// The layer that turns agenthub's spans (targets `agenthub*`) into OpenTelemetry spans;
    /// events and other crates' spans are not exported.
    pub fn layer<S>(&self) -> Box<dyn Layer<S> + Send + Sync>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let tracer = self.provider.tracer("agenthub");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_target(false)
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                meta.is_span() && meta.target().starts_with("agenthub")
            }))
            .boxed()
    }

    /// Sends what is queued (waiting at most `timeout`) and stops. Returns a warning when
    /// spans were lost: dropped by a full queue, or not delivered.
    pub fn shutdown(self, timeout: Duration) -> Option<String> {
        let _ = self.provider.shutdown_with_timeout(timeout);
        let ended = self.counts.ended.load(Relaxed);
        let handed = self.counts.handed.load(Relaxed);
        let failed = self.counts.failed.load(Relaxed);
        let lost = ended.saturating_sub(handed) + failed;
        (lost > 0).then(|| {
            format!(
                "traces: {lost} of {ended} span(s) were not delivered to {} (is the collector running?)",
                self.endpoint
            )
        })
    }
}
