//! External processing (Envoy's `envoy.filters.http.ext_proc`): for each request the
//! filter opens one bidirectional gRPC stream (`envoy.service.ext_proc.v3.
//! ExternalProcessor/Process`) to a processor cluster, over the worker's per-core
//! HTTP/2 connection to it (`upstream/grpc_stream.rs`), and sends it the parts of the
//! request and response its processing mode names: the request headers, the request
//! body (buffered whole, or streamed chunk by chunk), the response headers, the
//! response body (buffered whole: `response.rs`, or streamed piece by piece as it goes
//! to the client: `stream.rs`) and the
//! trailers of either (`trailers.rs`). The processor answers each with header (or
//! trailer) mutations, a body mutation, or an immediate response that the client gets
//! instead.
//!
//! Configured natively as a listener's `http_filters` entry `ext_proc: {cluster,
//! failure_mode_allow, message_timeout, processing_mode, ...}` (`config.rs`) and per
//! route (`per_filter_config`) with `disabled: true` or `ext_proc: {processing_mode}`
//! (Envoy's `ExtProcPerRoute.overrides.processing_mode`); from a bootstrap, Envoy's
//! `ExternalProcessor` and `ExtProcPerRoute` (`config/envoy/ext_proc.rs`).
//!
//! The hooks (`run.rs`) and the header mutation rules (`mutate.rs`) follow Envoy's
//! filter; where they differ is said in docs/envoy-api.md.

pub mod config;
pub mod mutate;
pub mod response;
pub mod run;
pub mod stream;
pub mod trailers;
mod turn;

use std::time::Duration;

/// Envoy's `ProcessingMode.HeaderSendMode` after `DEFAULT` is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMode {
    Send,
    Skip,
}

/// Envoy's `ProcessingMode.BodySendMode`, the ones built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    None,
    /// Each chunk is sent as it arrives; the processor answers each.
    Streamed,
    /// The whole body is sent in one message at its end.
    Buffered,
}

/// What the filter sends the processor (Envoy's `ProcessingMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    pub request_headers: HeaderMode,
    pub response_headers: HeaderMode,
    /// `DEFAULT` is `SKIP` for trailers. `SEND`: an HTTP/2 request's trailers, and an
    /// HTTP/2 upstream response's, go to the processor, which may mutate them.
    pub request_trailers: HeaderMode,
    pub response_trailers: HeaderMode,
    pub request_body: BodyMode,
    /// `BUFFERED`: the response is held until the processor answered for its whole
    /// body, sent in one message. `STREAMED`: each piece goes to the processor, and on
    /// to the client as the processor made it, as the body streams.
    pub response_body: BodyMode,
}

impl Mode {
    /// Envoy's defaults: both header messages, no bodies, no trailers.
    pub const DEFAULT: Mode = Mode {
        request_headers: HeaderMode::Send,
        response_headers: HeaderMode::Send,
        request_trailers: HeaderMode::Skip,
        response_trailers: HeaderMode::Skip,
        request_body: BodyMode::None,
        response_body: BodyMode::None,
    };
}

/// The counters of one filter, indices into the snapshot's named counters, named as
/// Envoy names them: `http.<stat_prefix>.ext_proc.<filter stat_prefix><name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub streams_started: usize,
    pub stream_msgs_sent: usize,
    pub stream_msgs_received: usize,
    pub spurious_msgs_received: usize,
    pub streams_closed: usize,
    pub streams_failed: usize,
    pub failure_mode_allowed: usize,
    pub message_timeouts: usize,
    pub rejected_header_mutations: usize,
    pub override_message_timeout_received: usize,
    pub override_message_timeout_ignored: usize,
    pub clear_route_cache_ignored: usize,
    pub clear_route_cache_disabled: usize,
    pub clear_route_cache_upstream_ignored: usize,
    pub send_immediate_resp_upstream_ignored: usize,
    pub http_not_ok_resp_received: usize,
}

/// Envoy's counter names, in `Counters`' order.
pub const COUNTER_NAMES: [&str; 16] = [
    "streams_started",
    "stream_msgs_sent",
    "stream_msgs_received",
    "spurious_msgs_received",
    "streams_closed",
    "streams_failed",
    "failure_mode_allowed",
    "message_timeouts",
    "rejected_header_mutations",
    "override_message_timeout_received",
    "override_message_timeout_ignored",
    "clear_route_cache_ignored",
    "clear_route_cache_disabled",
    "clear_route_cache_upstream_ignored",
    "send_immediate_resp_upstream_ignored",
    "http_not_ok_resp_received",
];

impl Counters {
    pub fn from_indices(i: [usize; 16]) -> Counters {
        let [a, b, c, d, e, f, g, h, j, k, l, m, n, o, p, q] = i;
        Counters {
            streams_started: a,
            stream_msgs_sent: b,
            stream_msgs_received: c,
            spurious_msgs_received: d,
            streams_closed: e,
            streams_failed: f,
            failure_mode_allowed: g,
            message_timeouts: h,
            rejected_header_mutations: j,
            override_message_timeout_received: k,
            override_message_timeout_ignored: l,
            clear_route_cache_ignored: m,
            clear_route_cache_disabled: n,
            clear_route_cache_upstream_ignored: o,
            send_immediate_resp_upstream_ignored: p,
            http_not_ok_resp_received: q,
        }
    }
}

/// The checked filter config.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtProcFilter {
    /// Index of the processor's cluster in the snapshot (an HTTP/2 cluster).
    pub cluster: usize,
    /// The `:authority` of the gRPC stream (Envoy's `envoy_grpc.authority`, else the
    /// cluster name).
    pub authority: String,
    /// The grpc_service's `timeout`, sent as `grpc-timeout` (none: no header).
    pub grpc_timeout: Option<Duration>,
    pub failure_mode_allow: bool,
    /// How long the filter waits for each answer (Envoy's default: 200 ms).
    pub message_timeout: Duration,
    pub mode: Mode,
    /// The processor may change the mode in its answer to the request headers.
    pub allow_mode_override: bool,
    pub counters: Counters,
}

/// A route's override (Envoy's `ExtProcPerRoute.overrides`; `disabled` is the chain's
/// `FilterOverride::Disabled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtProcOverride {
    pub mode: Option<Mode>,
}

/// Largest body buffered for the processor (Envoy's default buffer limit,
/// `per_connection_buffer_limit_bytes`); a larger request body is a `413`, a larger
/// response body a `500` (Envoy's answers when its buffer overflows).
pub const MAX_BUFFERED_BODY: usize = 1 << 20;
