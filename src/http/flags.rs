//! Envoy-style response flags: why a response was produced locally or cut short.

/// A response flag, as Envoy spells it in access logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ResponseFlag {
    /// No flag: the upstream answered normally.
    None = 0,
    /// NR: no route matched.
    NoRoute,
    /// UH: the cluster has no healthy endpoint.
    NoHealthyUpstream,
    /// UF: the upstream connection failed.
    UpstreamConnectFailure,
    /// UT: the route timeout expired.
    UpstreamTimeout,
    /// UC: the upstream closed or reset the connection.
    UpstreamConnectionTermination,
    /// UPE: the upstream sent a malformed response.
    UpstreamProtocolError,
    /// DPE: the downstream sent a malformed request.
    DownstreamProtocolError,
    /// DC: the downstream connection went away mid-request.
    DownstreamConnectionTermination,
    /// DRT: the idle timeout expired: a client stopped sending a body, or a tunnel (TCP
    /// proxy, upgrade, CONNECT) moved no byte either way for that long.
    DownstreamIdleTimeout,
    /// SI: a stream moved no byte in either direction for `stream_idle_timeout`.
    StreamIdleTimeout,
    /// NC: the route's cluster does not exist (`cluster_header` named none, or an
    /// unvalidated route table names one that is not configured).
    NoClusterFound,
    /// URX: a retriable response went to the client because the retries ran out.
    UpstreamRetryLimitExceeded,
    /// RL: the local rate-limit filter refused the request.
    RateLimited,
    /// DI: the fault filter delayed the request.
    DelayInjected,
    /// FI: the fault filter aborted the request.
    FaultInjected,
    /// UO: a circuit breaker of the cluster was open (the request, or its retry).
    UpstreamOverflow,
    /// UAEX: the external authorization service denied the request, or failed and
    /// `failure_mode_allow` is off.
    UnauthorizedExternalService,
    /// UMSDR: a try ran past the cluster's `max_stream_duration`.
    UpstreamMaxStreamDurationReached,
}

pub const FLAG_COUNT: usize = 19;

impl ResponseFlag {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseFlag::None => "-",
            ResponseFlag::NoRoute => "NR",
            ResponseFlag::NoHealthyUpstream => "UH",
            ResponseFlag::UpstreamConnectFailure => "UF",
            ResponseFlag::UpstreamTimeout => "UT",
            ResponseFlag::UpstreamConnectionTermination => "UC",
            ResponseFlag::UpstreamProtocolError => "UPE",
            ResponseFlag::DownstreamProtocolError => "DPE",
            ResponseFlag::DownstreamConnectionTermination => "DC",
            ResponseFlag::DownstreamIdleTimeout => "DRT",
            ResponseFlag::StreamIdleTimeout => "SI",
            ResponseFlag::NoClusterFound => "NC",
            ResponseFlag::UpstreamRetryLimitExceeded => "URX",
            ResponseFlag::RateLimited => "RL",
            ResponseFlag::DelayInjected => "DI",
            ResponseFlag::FaultInjected => "FI",
            ResponseFlag::UpstreamOverflow => "UO",
            ResponseFlag::UnauthorizedExternalService => "UAEX",
            ResponseFlag::UpstreamMaxStreamDurationReached => "UMSDR",
        }
    }

    pub fn all() -> [ResponseFlag; FLAG_COUNT] {
        use ResponseFlag::*;
        [
            None,
            NoRoute,
            NoHealthyUpstream,
            UpstreamConnectFailure,
            UpstreamTimeout,
            UpstreamConnectionTermination,
            UpstreamProtocolError,
            DownstreamProtocolError,
            DownstreamConnectionTermination,
            DownstreamIdleTimeout,
            StreamIdleTimeout,
            NoClusterFound,
            UpstreamRetryLimitExceeded,
            RateLimited,
            DelayInjected,
            FaultInjected,
            UpstreamOverflow,
            UnauthorizedExternalService,
            UpstreamMaxStreamDurationReached,
        ]
    }
}
