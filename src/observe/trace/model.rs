//! A connection manager's tracing config as the workers use it (built by
//! `config::build::tracing`): what is sampled, which tags, where spans go. Below both
//! the request path (`mod.rs`) and the span record (`span.rs`), which read it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::context::Propagation;

/// A connection manager's tracing (Envoy's HCM `tracing` with the OpenTelemetry
/// provider).
#[derive(Debug, Clone, PartialEq)]
pub struct Tracing {
    /// Server spans for inbound traffic, client spans for outbound (Envoy: the
    /// listener's `traffic_direction`).
    pub kind: SpanKind,
    /// Sampling, in hundredths of a percent (0..=10000), as Envoy's fractional
    /// percents: `random_sampling`, `client_sampling`, `overall_sampling`.
    pub random_sampling: u32,
    pub client_sampling: u32,
    pub overall_sampling: u32,
    pub propagation: Propagation,
    /// Tags added to every span (Envoy's `custom_tags`).
    pub custom_tags: Vec<CustomTag>,
    /// `http.url`'s path is cut to this many bytes (Envoy's `max_path_tag_length`).
    pub max_path_tag_length: usize,
    /// The node's id and zone, tagged on every span (Envoy's `node_id`, `zone`).
    pub node_id: String,
    pub zone: String,
    pub collector: Arc<Collector>,
}

/// Where and how finished spans are exported.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Collector {
    /// The collector's address (resolved when the config is built).
    pub addr: SocketAddr,
    /// The `Host` of the export requests.
    pub authority: String,
    /// OTLP/HTTP's path (`/v1/traces`); unused over gRPC.
    pub path: String,
    /// OTLP over HTTP/1.1 (protobuf) or over gRPC (HTTP/2).
    pub grpc: bool,
    /// The resource's `service.name`.
    pub service_name: String,
    /// A batch is sent when it holds this many spans...
    pub batch_spans: usize,
    /// ... or this long after its first span.
    pub flush_interval: Duration,
    /// Each worker's queue to the exporter holds this many spans; a span that finds it
    /// full is dropped and counted.
    pub queue_spans: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Server,
    Client,
}

impl SpanKind {
    /// Envoy's operation name, the span's name without a route decorator.
    pub fn operation(self) -> &'static str {
        match self {
            SpanKind::Server => "ingress",
            SpanKind::Client => "egress",
        }
    }
}

/// Envoy's `custom_tags`: a literal, or a request header's value (with a default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomTag {
    Literal {
        tag: String,
        value: String,
    },
    RequestHeader {
        tag: String,
        name: String,
        default: Option<String>,
    },
}

impl CustomTag {
    /// The tag's key.
    pub fn tag(&self) -> &str {
        match self {
            CustomTag::Literal { tag, .. } | CustomTag::RequestHeader { tag, .. } => tag,
        }
    }
}
