//! Logs and traces for Parley's binaries, set up in one place.
//!
//! **Logs** go to stderr (stdout carries the contract's lines): readable lines by default, one
//! JSON object per line with `--log-format json`, `RUST_LOG` respected.
//!
//! **Traces** are exported over OTLP only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; otherwise no exporter exists and spans cost
//! what a `tracing` span costs. The standard `OTEL_EXPORTER_OTLP_*` variables apply, among them
//! `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc`, usually port 4317, or `http/protobuf`, port 4318; the
//! default is `http/protobuf`) and `OTEL_BSP_SCHEDULE_DELAY`. The W3C trace context is the
//! propagation format ([`parley-p2p`] carries it in protocol metadata).
//!
//! **Architecture invariant:** this crate decides where records go, never what they say; no
//! message text, password or key is ever handed to it (the types that hold them redact their
//! `Debug`, and the code records ids, names and sizes only).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io::IsTerminal;

use opentelemetry::{KeyValue, trace::TracerProvider as _};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    runtime,
    trace::{SdkTracerProvider, span_processor_with_async_runtime::BatchSpanProcessor},
};
use tracing_subscriber::{
    EnvFilter, Layer, Registry, layer::SubscriberExt, util::SubscriberInitExt,
};

/// How log records are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable lines, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line, for collectors.
    Json,
}

/// Who is reporting: the OpenTelemetry service name and, for a peer, its user.
#[derive(Debug, Clone, Copy)]
pub struct Service<'a> {
    /// `service.name`: `parley-peer` or `parley-rendezvous`.
    pub name: &'a str,
    /// `parley.user`, for a peer.
    pub user: Option<&'a str>,
}

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] flushes what is buffered.
#[must_use = "shut telemetry down at exit, or buffered spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// True when the environment asks for trace export.
#[must_use]
pub fn export_requested() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()))
}

/// Installs logging only (commands that do not run a node).
pub fn init_logs(format: LogFormat, default_filter: &str) {
    install(format, default_filter, None);
}

/// Installs logging and, when [`export_requested`], OTLP trace export for `service`. Must run
/// inside a Tokio runtime (the exporter's batches are sent from it).
///
/// A failure to build the exporter is reported on stderr and leaves logging working: telemetry
/// never stops the program.
pub fn init(format: LogFormat, default_filter: &str, service: Service<'_>) -> Telemetry {
    let provider = if export_requested() {
        match tracer_provider(service) {
            Ok(provider) => Some(provider),
            Err(e) => {
                eprintln!("warning: trace export is off: {e}");
                None
            }
        }
    } else {
        None
    };
    install(format, default_filter, provider.as_ref());
    Telemetry { provider }
}

fn tracer_provider(service: Service<'_>) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .build()
        .map_err(|e| format!("the OTLP exporter could not be built ({e})"))?;
    let mut resource = Resource::builder().with_service_name(service.name.to_owned());
    if let Some(user) = service.user {
        resource = resource.with_attribute(KeyValue::new("parley.user", user.to_owned()));
    }
    let processor = BatchSpanProcessor::builder(exporter, runtime::Tokio).build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource.build())
        .build())
}

fn install(format: LogFormat, default_filter: &str, provider: Option<&SdkTracerProvider>) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Text => Box::new(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        ),
        LogFormat::Json => Box::new(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .json()
                .with_current_span(true)
                .with_span_list(false),
        ),
    };
    let traces = provider.map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("parley")));
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .with(filter)
        .init();
}

impl Telemetry {
    /// Flushes buffered spans and stops the exporter (bounded by the exporter's timeout).
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            // The SDK's shutdown blocks until the batch task has flushed: keep it off the
            // async workers.
            let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = flushed {
                eprintln!("warning: could not flush traces at exit: {e}");
            }
        }
    }
}
