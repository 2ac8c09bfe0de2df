//! The W3C trace context in protocol metadata, so one message is one trace across peers and
//! the rendezvous. With no exporter installed the global propagator does nothing: `meta` stays
//! empty and extraction yields an empty context.

use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::protocol::{MAX_META_ENTRIES, Meta};

struct Writer<'a>(&'a mut Meta);

impl Injector for Writer<'_> {
    fn set(&mut self, key: &str, value: String) {
        // Stay within what the receiving decoder accepts.
        if self.0.len() < MAX_META_ENTRIES && key.len() <= 256 && value.len() <= 256 {
            self.0.insert(key.to_owned(), value);
        }
    }
}

struct Reader<'a>(&'a Meta);

impl Extractor for Reader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The current span's trace context, as protocol metadata.
#[must_use]
pub fn current() -> Meta {
    let mut meta = Meta::new();
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut Writer(&mut meta))
    });
    meta
}

/// Makes `span` a child of the trace context carried in `meta` (a no-op without one).
pub fn adopt(span: &tracing::Span, meta: &Meta) {
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Reader(meta)));
    // Fails only when no OpenTelemetry layer is installed: then there is nothing to join.
    let _ = span.set_parent(cx);
}
