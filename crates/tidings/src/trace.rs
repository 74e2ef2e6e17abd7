//! W3C Trace Context for events: every published event carries a `traceparent`, so that one
//! business flow is one trace across services, brokers and languages.
//!
//! - An event published outside any handler, without a `traceparent` of its own, starts a
//!   trace: a random trace id and span id, sampled.
//! - An event published while handling another continues the handled event's trace: same
//!   trace id, a new span id for this hop (its parent is the handled event's span).
//! - A `traceparent` the event already has (set by its producer, or taken from an HTTP
//!   request by `tidings serve`) is kept as it is.
//!
//! The `tidings.publish` and `tidings.handle` spans record the trace id, so that the logs of
//! every service on the flow can be joined on it. With the `otel` feature and an
//! OpenTelemetry layer installed, they are real spans of the trace: a handling span's parent
//! is the event's `traceparent`, and an event published without one carries its publishing
//! span's.
//!
//! ```
//! use tidings::trace::TraceParent;
//!
//! let root = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
//! let hop = root.child();
//! assert_eq!(hop.trace_id(), root.trace_id());
//! assert_ne!(hop.to_string(), root.to_string());
//! assert!(TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
//! ```

use std::fmt;

/// A parsed `traceparent` (version `00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: u128,
    span_id: u64,
    flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` header value. Versions above `00` are read for their first
    /// four fields, as the specification asks; `ff`, all-zero ids, uppercase hex or a wrong
    /// length give `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let mut fields = text.split('-');
        let version = fields.next()?;
        let trace_id = fields.next()?;
        let span_id = fields.next()?;
        let flags = fields.next()?;
        let lower_hex = |s: &str, n: usize| {
            s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        if !lower_hex(version, 2) || version == "ff" {
            return None;
        }
        if version == "00" && fields.next().is_some() {
            return None;
        }
        if !lower_hex(trace_id, 32) || !lower_hex(span_id, 16) || !lower_hex(flags, 2) {
            return None;
        }
        let parsed = Self {
            trace_id: u128::from_str_radix(trace_id, 16).ok()?,
            span_id: u64::from_str_radix(span_id, 16).ok()?,
            flags: u8::from_str_radix(flags, 16).ok()?,
        };
        (parsed.trace_id != 0 && parsed.span_id != 0).then_some(parsed)
    }

    /// The start of a new trace, sampled.
    pub fn root() -> Self {
        Self {
            trace_id: nonzero_u128(),
            span_id: nonzero_u64(),
            flags: 0x01,
        }
    }

    /// The next hop of this trace: the same trace id and flags, a new span id.
    pub fn child(&self) -> Self {
        Self {
            span_id: nonzero_u64(),
            ..*self
        }
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// Whether the producer sampled the trace (flag `01`).
    pub fn sampled(&self) -> bool {
        self.flags & 0x01 == 1
    }
}

impl TraceParent {
    /// The `traceparent` header: `00-{trace id}-{span id}-{flags}`, in lower-case hex.
    /// Written once per event published, so the hex is encoded into the string directly,
    /// at a fraction of what `{:032x}` through a formatter costs.
    pub(crate) fn header(&self) -> String {
        let mut text = *b"00-00000000000000000000000000000000-0000000000000000-00";
        let (trace, rest) = text[3..].split_at_mut(32);
        let (span, flags) = rest[1..].split_at_mut(16);
        hex::encode_to_slice(self.trace_id.to_be_bytes(), trace).expect("32 hex digits");
        hex::encode_to_slice(self.span_id.to_be_bytes(), span).expect("16 hex digits");
        hex::encode_to_slice([self.flags], &mut flags[1..]).expect("2 hex digits");
        String::from_utf8(text.to_vec()).expect("hex digits are ASCII")
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header())
    }
}

fn nonzero_u128() -> u128 {
    loop {
        let id = fastrand::u128(..);
        if id != 0 {
            return id;
        }
    }
}

fn nonzero_u64() -> u64 {
    loop {
        let id = fastrand::u64(..);
        if id != 0 {
            return id;
        }
    }
}

/// The `traceparent` an event gets when published: its own if it has a valid one, else the
/// publishing span's (when OpenTelemetry records spans), else the next hop of `inherited`
/// (the handled event's), else a new trace.
pub(crate) fn for_publish(
    own: Option<&str>,
    span: Option<TraceParent>,
    inherited: Option<&str>,
) -> TraceParent {
    if let Some(own) = own.and_then(TraceParent::parse) {
        return own;
    }
    if let Some(span) = span {
        return span;
    }
    match inherited.and_then(TraceParent::parse) {
        Some(parent) => parent.child(),
        None => TraceParent::root(),
    }
}

/// The bridge to OpenTelemetry, through the `tracing` spans tidings opens.
#[cfg(feature = "otel")]
pub(crate) mod otel {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::TraceParent;

    /// Makes `span` a child of the remote span `parent` names.
    pub(crate) fn adopt(span: &tracing::Span, parent: &TraceParent) {
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id.to_be_bytes()),
            SpanId::from_bytes(parent.span_id.to_be_bytes()),
            TraceFlags::new(parent.flags),
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }

    /// The trace context of `span`, when an OpenTelemetry layer records it.
    pub(crate) fn of(span: &tracing::Span) -> Option<TraceParent> {
        let context = span.context();
        let otel_span = context.span();
        let span_context = otel_span.span_context();
        span_context.is_valid().then(|| TraceParent {
            trace_id: u128::from_be_bytes(span_context.trace_id().to_bytes()),
            span_id: u64::from_be_bytes(span_context.span_id().to_bytes()),
            flags: span_context.trace_flags().to_u8(),
        })
    }
}

/// The trace context of `span` when OpenTelemetry records it; `None` without the `otel`
/// feature.
pub(crate) fn of_span(span: &tracing::Span) -> Option<TraceParent> {
    #[cfg(feature = "otel")]
    {
        otel::of(span)
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = span;
        None
    }
}

/// Makes `span` a child of `parent` when OpenTelemetry records spans.
pub(crate) fn adopt(span: &tracing::Span, parent: Option<&str>) {
    #[cfg(feature = "otel")]
    if let Some(parent) = parent.and_then(TraceParent::parse) {
        otel::adopt(span, &parent);
    }
    #[cfg(not(feature = "otel"))]
    let _ = (span, parent);
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specifications_example_round_trips() {
        let parsed = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(parsed.to_string(), EXAMPLE);
        assert_eq!(parsed.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(parsed.sampled());
    }

    #[test]
    fn ids_are_written_zero_padded_to_their_full_width() {
        let small = TraceParent {
            trace_id: 0xab,
            span_id: 1,
            flags: 0,
        };
        assert_eq!(
            small.to_string(),
            "00-000000000000000000000000000000ab-0000000000000001-00"
        );
        let large = TraceParent {
            trace_id: u128::MAX,
            span_id: u64::MAX,
            flags: 0xff,
        };
        assert_eq!(
            large.to_string(),
            "00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-ff"
        );
    }

    #[test]
    fn invalid_values_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad:?}");
        }
        // A later version is read for the fields it shares with 00.
        assert!(TraceParent::parse(&format!("01{}-more", &EXAMPLE[2..])).is_some());
    }

    #[test]
    fn a_published_event_keeps_its_own_continues_the_handled_one_or_starts_a_trace() {
        assert_eq!(for_publish(Some(EXAMPLE), None, None).to_string(), EXAMPLE);
        let hop = for_publish(None, None, Some(EXAMPLE));
        assert_eq!(hop.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(hop.to_string(), EXAMPLE);
        let root = for_publish(Some("garbage"), None, None);
        assert_ne!(root.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(TraceParent::parse(&root.to_string()).is_some());
    }
}
