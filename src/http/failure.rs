//! Why the proxy answers a request itself, in one place for every protocol path: each
//! failure maps to its status, its Envoy response flag and its body text (Envoy's own
//! wording, so dashboards and clients that match on them behave the same).
//!
//! The renderers (HTTP/1 local replies, HTTP/2 responses, gRPC trailers-only) take the
//! three from here; no path spells a status or a text of its own.

use super::flags::ResponseFlag;

/// A locally answered failure.
// `ConnectFailure` keeps Envoy's name for UF although it ends like the enum.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No route matched: 404 NR.
    NoRoute,
    /// The cluster has no endpoint: 503 UH.
    NoHealthyUpstream,
    /// The upstream connection could not be made: 503 UF.
    ConnectFailure,
    /// The route timeout expired before a response head: 504 UT.
    RouteTimeout,
    /// A try's `per_try_timeout` (or `per_try_idle_timeout`) expired before its response
    /// head and it was not retried: 504 UT, as the route timeout.
    PerTryTimeout,
    /// The upstream closed or reset before a response head: 503 UC.
    ConnectionTermination,
    /// The upstream sent something that is not a valid response: 502 UPE.
    ProtocolError,
    /// The stream moved no byte for `stream_idle_timeout`: 408 while the request is still
    /// arriving, 504 once it is complete (flag SI, as Envoy).
    StreamIdle { request_complete: bool },
    /// The stream reached its duration limit (`max_stream_duration`, or a `grpc-timeout`
    /// the route honours) before a response head: 408 while the request is still
    /// arriving, 504 once it is complete; no flag, DEADLINE_EXCEEDED in the gRPC form
    /// (Envoy's connection manager).
    MaxDuration { request_complete: bool },
    /// A try ran for its cluster's `max_stream_duration` (or the request's
    /// `x-envoy-upstream-stream-duration-ms`) and was not retried: 408 while the request
    /// is still arriving, 504 once it is complete, flag UMSDR (Envoy's router).
    UpstreamMaxDuration { request_complete: bool },
    /// The request head did not arrive within `request_headers_timeout`: 408.
    RequestHeadersTimeout,
    /// An upgrade (WebSocket, ...) the route does not allow: 403.
    UpgradeRejected,
    /// A circuit breaker of the cluster is open (`max_requests`,
    /// `max_pending_requests`): 503 UO with `x-envoy-overloaded: true`.
    Overflow,
    /// The route's `cluster_header` named no cluster: NC, no body (Envoy's
    /// `cluster_not_found`), with the route's `cluster_not_found_response_code` (503).
    ClusterNotFound { status: u16 },
    /// The request body outgrew the retry buffer (`per_request_buffer_limit_bytes`)
    /// while a retry waited, after the upstream went away mid-body: 507, no flag
    /// (Envoy's router: `exceeded request buffer limit while retrying upstream`).
    RetryBufferOverflow,
}

impl Failure {
    pub fn status(self) -> u16 {
        match self {
            Failure::NoRoute => 404,
            Failure::NoHealthyUpstream | Failure::ConnectFailure | Failure::Overflow => 503,
            Failure::ClusterNotFound { status } => status,
            Failure::ConnectionTermination => 503,
            Failure::RouteTimeout | Failure::PerTryTimeout => 504,
            Failure::ProtocolError => 502,
            Failure::StreamIdle {
                request_complete: true,
            }
            | Failure::MaxDuration {
                request_complete: true,
            }
            | Failure::UpstreamMaxDuration {
                request_complete: true,
            } => 504,
            Failure::StreamIdle {
                request_complete: false,
            }
            | Failure::MaxDuration {
                request_complete: false,
            }
            | Failure::UpstreamMaxDuration {
                request_complete: false,
            }
            | Failure::RequestHeadersTimeout => 408,
            Failure::UpgradeRejected => 403,
            Failure::RetryBufferOverflow => 507,
        }
    }

    pub fn flag(self) -> ResponseFlag {
        match self {
            Failure::NoRoute => ResponseFlag::NoRoute,
            Failure::NoHealthyUpstream => ResponseFlag::NoHealthyUpstream,
            Failure::ConnectFailure => ResponseFlag::UpstreamConnectFailure,
            Failure::RouteTimeout | Failure::PerTryTimeout => ResponseFlag::UpstreamTimeout,
            Failure::ConnectionTermination => ResponseFlag::UpstreamConnectionTermination,
            Failure::ProtocolError => ResponseFlag::UpstreamProtocolError,
            Failure::StreamIdle { .. } => ResponseFlag::StreamIdleTimeout,
            Failure::ClusterNotFound { .. } => ResponseFlag::NoClusterFound,
            Failure::Overflow => ResponseFlag::UpstreamOverflow,
            Failure::UpstreamMaxDuration { .. } => ResponseFlag::UpstreamMaxStreamDurationReached,
            // Envoy sets no flag for these; they are counted by status.
            Failure::RequestHeadersTimeout
            | Failure::MaxDuration { .. }
            | Failure::UpgradeRejected
            | Failure::RetryBufferOverflow => ResponseFlag::None,
        }
    }

    /// The response body (`text/plain`), Envoy's wording.
    pub fn body(self) -> &'static str {
        match self {
            Failure::NoRoute | Failure::UpgradeRejected | Failure::ClusterNotFound { .. } => "",
            Failure::NoHealthyUpstream => "no healthy upstream",
            Failure::ConnectFailure => {
                "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure"
            }
            Failure::RouteTimeout | Failure::PerTryTimeout => "upstream request timeout",
            Failure::ConnectionTermination => {
                "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
            }
            Failure::ProtocolError => {
                "upstream connect error or disconnect/reset before headers. reset reason: protocol error"
            }
            Failure::Overflow => {
                "upstream connect error or disconnect/reset before headers. reset reason: overflow"
            }
            Failure::StreamIdle { .. } => "stream timeout",
            Failure::RequestHeadersTimeout => "request header timeout",
            Failure::MaxDuration { .. } => "downstream duration timeout",
            Failure::UpstreamMaxDuration { .. } => "upstream max stream duration reached",
            Failure::RetryBufferOverflow => "exceeded request buffer limit while retrying upstream",
        }
    }

    /// Envoy's `%RESPONSE_CODE_DETAILS%` where the flag does not say it (`None`: the
    /// flag's detail).
    pub fn details(self) -> Option<&'static str> {
        match self {
            Failure::RetryBufferOverflow => Some("request_payload_exceeded_retry_buffer_limit"),
            Failure::MaxDuration { .. } => Some("max_duration_timeout"),
            Failure::UpstreamMaxDuration { .. } => Some("upstream_max_stream_duration_reached"),
            _ => None,
        }
    }

    /// The `grpc-status` of the reply's gRPC form when the reason fixes it (else it
    /// comes from the HTTP status, `http::grpc_local`).
    pub fn grpc_status(self) -> Option<u8> {
        match self {
            Failure::MaxDuration { .. } => Some(4),
            _ => None,
        }
    }

    /// `body`, or `retried_body` when retries were made.
    pub fn reply_body(self, retried: bool) -> &'static str {
        if retried {
            self.retried_body()
        } else {
            self.body()
        }
    }

    /// The body after retries were made: Envoy says the reset reason is the latest one.
    pub fn retried_body(self) -> &'static str {
        match self {
            Failure::ConnectFailure => {
                "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure"
            }
            Failure::ConnectionTermination => {
                "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: connection termination"
            }
            Failure::ProtocolError => {
                "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: protocol error"
            }
            Failure::Overflow => {
                "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: overflow"
            }
            f => f.body(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_failures_are_5xx_with_a_text() {
        for f in [
            Failure::NoHealthyUpstream,
            Failure::ConnectFailure,
            Failure::RouteTimeout,
            Failure::ConnectionTermination,
            Failure::ProtocolError,
        ] {
            assert_ne!(f.flag(), ResponseFlag::None);
            assert!(f.status() >= 500);
            assert!(!f.body().is_empty());
        }
        assert_eq!(
            Failure::StreamIdle {
                request_complete: false
            }
            .status(),
            408
        );
    }
}
