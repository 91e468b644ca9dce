//! OpenTelemetry for agenthub. The runtime and the MCP server describe calls with `tracing`
//! spans named and attributed after OpenTelemetry's `GenAI` and MCP conventions (`otel.name`,
//! `gen_ai.*`, `mcp.*`); this crate carries W3C trace context in and out of those spans
//! ([`trace_headers`] for an agent's `TRACEPARENT`, [`set_remote_parent`] for a trace an MCP
//! client started), and with the `export` feature ([`export`]) installs the OTLP/HTTP
//! exporter that the standard `OTEL_*` variables configure.
//!
//! Invariants:
//! - without an exporter installed every function here is a no-op: no header is made, no
//!   parent set, nothing allocated beyond a check;
//! - headers from outside (an MCP client's `_meta`) are parsed to the W3C format or ignored,
//!   never trusted further (lengths, hex, the invalid all-zero ids).

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

#[cfg(feature = "export")]
pub mod export;

/// W3C trace context of a span, as an agent process gets it (`TRACEPARENT`, `TRACESTATE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHeaders {
    /// `00-<trace id>-<span id>-<flags>`.
    pub traceparent: String,
    /// Vendor state, when there is any.
    pub tracestate: Option<String>,
}

/// The trace context `span` is exported with, when an exporter is installed and the span
/// is recorded; `None` otherwise.
pub fn trace_headers(span: &tracing::Span) -> Option<TraceHeaders> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let otel = context.span();
    let span_context = otel.span_context();
    if !span_context.is_valid() {
        return None;
    }
    let state = span_context.trace_state().header();
    Some(TraceHeaders {
        traceparent: format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8() & TraceFlags::SAMPLED.to_u8()
        ),
        tracestate: (!state.is_empty()).then_some(state),
    })
}

/// Makes the span context `traceparent` (and `tracestate`) names the remote parent of
/// `span`, which must not have been entered yet. Returns whether it did: a header that is
/// not W3C trace context, or no exporter installed, leaves `span` a root.
pub fn set_remote_parent(span: &tracing::Span, traceparent: &str, tracestate: Option<&str>) -> bool {
    if span.is_disabled() {
        return false;
    }
    let Some(parent) = parse_traceparent(traceparent, tracestate) else { return false };
    span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent)).is_ok()
}

/// The span context of a W3C `traceparent` header: `vv-<32 hex>-<16 hex>-<2 hex>` (later
/// versions may append fields; version `ff` and all-zero ids are invalid).
pub fn parse_traceparent(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
    let header = traceparent.trim();
    if header.len() < 55 || header.len() > 512 || !header.is_ascii() {
        return None;
    }
    let mut parts = header.split('-');
    let (version, trace_id, span_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !lower_hex(version, 2)
        || version == "ff"
        || !lower_hex(trace_id, 32)
        || !lower_hex(span_id, 16)
        || !lower_hex(flags, 2)
    {
        return None;
    }
    // Version 00 has exactly four fields; a later one may have more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok().filter(|id| *id != TraceId::INVALID)?;
    let span_id = SpanId::from_hex(span_id).ok().filter(|id| *id != SpanId::INVALID)?;
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & TraceFlags::SAMPLED.to_u8());
    let state =
        tracestate.filter(|s| s.len() <= 512).and_then(|s| s.parse::<TraceState>().ok()).unwrap_or_default();
    Some(SpanContext::new(trace_id, span_id, flags, true, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w3c_traceparent_headers_parse_and_bad_ones_do_not() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = parse_traceparent(good, Some("vendor=1")).expect("valid");
        assert_eq!(parsed.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.span_id().to_string(), "00f067aa0ba902b7");
        assert!(parsed.is_sampled() && parsed.is_remote());
        assert_eq!(parsed.trace_state().header(), "vendor=1");
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad, None).is_none(), "{bad:?} parsed");
        }
        // A later version may carry more fields.
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x", None).is_some()
        );
    }

    #[test]
    fn without_an_exporter_nothing_is_made() {
        let span = tracing::info_span!("invoke_agent");
        assert_eq!(trace_headers(&span), None);
        assert!(!set_remote_parent(&span, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None));
    }
}
