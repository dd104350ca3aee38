//! The checked retry policy of a route (Envoy's `RetryPolicy`), and the `retry_on`
//! condition names shared by the config and the `x-envoy-retry-on` /
//! `x-envoy-retry-grpc-on` request headers. Built by `config::build::retry`; read by
//! `upstream::request::retry` when a try fails or answers.

use std::time::Duration;

use super::match_model::HeaderMatch;

/// `retry_on` conditions as bits (Envoy's `RetryPolicy::RETRY_ON_*`).
pub mod on {
    pub const FIVE_XX: u32 = 1 << 0;
    pub const GATEWAY_ERROR: u32 = 1 << 1;
    pub const CONNECT_FAILURE: u32 = 1 << 2;
    pub const RETRIABLE_4XX: u32 = 1 << 3;
    pub const REFUSED_STREAM: u32 = 1 << 4;
    pub const RETRIABLE_STATUS_CODES: u32 = 1 << 5;
    pub const RETRIABLE_HEADERS: u32 = 1 << 6;
    pub const RESET: u32 = 1 << 7;
    pub const GRPC_CANCELLED: u32 = 1 << 8;
    pub const GRPC_DEADLINE_EXCEEDED: u32 = 1 << 9;
    pub const GRPC_RESOURCE_EXHAUSTED: u32 = 1 << 10;
    pub const GRPC_UNAVAILABLE: u32 = 1 << 11;
    pub const GRPC_INTERNAL: u32 = 1 << 12;
    /// Every gRPC condition: a response is only looked at for `grpc-status` with one.
    pub const GRPC: u32 = GRPC_CANCELLED
        | GRPC_DEADLINE_EXCEEDED
        | GRPC_RESOURCE_EXHAUSTED
        | GRPC_UNAVAILABLE
        | GRPC_INTERNAL;
}

/// The request headers the router consumes: Envoy's `RetryStateImpl::create` removes
/// them from every request it forwards, whether or not a retry state results, so the
/// upstream never sees them.
pub const CONSUMED: [&str; 11] = [
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-retriable-header-names",
    "x-envoy-retriable-status-codes",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    // Read by the router (the timeout), or consumed as Envoy's router consumes them
    // (the alternative stat name and timeout response are not implemented).
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-timeout-alt-response",
    // Each try's duration bound (`upstream::request::bound`), honoured from any client.
    "x-envoy-upstream-stream-duration-ms",
];

/// The HTTP conditions by name (`x-envoy-retry-on`, and `retry_on` in the config).
const HTTP_NAMES: &[(&str, u32)] = &[
    ("5xx", on::FIVE_XX),
    ("gateway-error", on::GATEWAY_ERROR),
    ("connect-failure", on::CONNECT_FAILURE),
    ("retriable-4xx", on::RETRIABLE_4XX),
    ("refused-stream", on::REFUSED_STREAM),
    ("retriable-status-codes", on::RETRIABLE_STATUS_CODES),
    ("retriable-headers", on::RETRIABLE_HEADERS),
    ("reset", on::RESET),
];

/// The gRPC conditions by name (`x-envoy-retry-grpc-on`, and `retry_on` in the config).
const GRPC_NAMES: &[(&str, u32)] = &[
    ("cancelled", on::GRPC_CANCELLED),
    ("deadline-exceeded", on::GRPC_DEADLINE_EXCEEDED),
    ("resource-exhausted", on::GRPC_RESOURCE_EXHAUSTED),
    ("unavailable", on::GRPC_UNAVAILABLE),
    ("internal", on::GRPC_INTERNAL),
];

/// Parses a comma-separated list of condition names against `names`: the bits, and
/// the first name that is not one (Envoy ignores unknown names in the headers and
/// refuses them in the config).
fn parse<'a>(list: &'a str, names: &[(&str, u32)]) -> (u32, Option<&'a str>) {
    let mut bits = 0;
    let mut unknown = None;
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match names.iter().find(|(n, _)| *n == name) {
            Some((_, b)) => bits |= b,
            None => unknown = unknown.or(Some(name)),
        }
    }
    (bits, unknown)
}

/// `x-envoy-retry-on`: HTTP conditions only.
pub fn parse_retry_on(list: &str) -> (u32, Option<&str>) {
    parse(list, HTTP_NAMES)
}

/// `x-envoy-retry-grpc-on`: gRPC conditions only.
pub fn parse_retry_grpc_on(list: &str) -> (u32, Option<&str>) {
    parse(list, GRPC_NAMES)
}

/// A route's `retry_on`, where both kinds of names are allowed.
pub fn parse_config_retry_on(list: &str) -> (u32, Option<&str>) {
    let mut bits = 0;
    let mut unknown = None;
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let (b, u) = parse(name, HTTP_NAMES);
        let (g, v) = parse(name, GRPC_NAMES);
        bits |= b | g;
        if u.is_some() && v.is_some() {
            unknown = unknown.or(Some(name));
        }
    }
    (bits, unknown)
}

/// Envoy's `RetryPolicy` on a route or virtual host (the route's wins, no merge).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// `on::*` bits.
    pub retry_on: u32,
    /// Envoy's default is 1 when a policy exists.
    pub num_retries: u32,
    /// Zero: none. Bounds each try until its response head.
    pub per_try_timeout: Duration,
    /// Zero: none. Bounds the time without a byte from the upstream, per try, until
    /// the response head.
    pub per_try_idle_timeout: Duration,
    /// Back-off: 25 ms by default.
    pub base_interval: Duration,
    /// 10 times `base_interval` by default.
    pub max_interval: Duration,
    pub retriable_status_codes: Vec<u16>,
    /// Response headers that make a response retriable (`retriable-headers`).
    pub retriable_headers: Vec<HeaderMatch>,
    /// Request headers one of which a request must match to be retried at all
    /// (Envoy's `retriable_request_headers`; empty: every request).
    pub retriable_request_headers: Vec<HeaderMatch>,
    /// `envoy.retry_host_predicates.previous_hosts`: a retry avoids endpoints tried before.
    pub previous_hosts: bool,
    /// How many times host selection is redone to satisfy the predicate (Envoy's
    /// `host_selection_retry_max_attempts`, default 1); the last pick is used anyway.
    pub host_selection_max_attempts: u32,
}

/// The policy a request gets when only its `x-envoy-retry-on` / `x-envoy-retry-grpc-on`
/// headers ask for retries (the route has none): Envoy's defaults.
pub static HEADER_ONLY: RetryPolicy = RetryPolicy {
    retry_on: 0,
    num_retries: 1,
    per_try_timeout: Duration::ZERO,
    per_try_idle_timeout: Duration::ZERO,
    base_interval: Duration::from_millis(25),
    max_interval: Duration::from_millis(250),
    retriable_status_codes: Vec::new(),
    retriable_headers: Vec::new(),
    retriable_request_headers: Vec::new(),
    previous_hosts: false,
    host_selection_max_attempts: 1,
};

/// How a forwarded request may be retried: the route's (or virtual host's) policy and
/// the virtual host's attempt-count settings. Cheap to hold when empty.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Retries {
    pub policy: Option<Box<RetryPolicy>>,
    /// Envoy's `include_request_attempt_count`: `x-envoy-attempt-count` on upstream requests.
    pub attempt_count_request: bool,
    /// Envoy's `include_attempt_count_in_response`.
    pub attempt_count_response: bool,
    /// Envoy's `per_request_buffer_limit_bytes` (the route's, else its virtual host's):
    /// how much of a request body is kept for a retry, within the listener's limit.
    pub per_request_buffer_limit: Option<u32>,
    /// Envoy's `hedge_policy.hedge_on_per_try_timeout` (the route's, else its virtual
    /// host's): a try its per-try timeout cuts keeps going while a retry starts next
    /// to it, and the first good response wins (`upstream::request::hedge`).
    pub hedge_on_per_try_timeout: bool,
}

/// Envoy's default `per_connection_buffer_limit_bytes` (1 MiB), which Outrigger does not
/// make configurable: the most of a request body a retry can replay.
pub const LISTENER_BUFFER_LIMIT: usize = 1 << 20;

impl Retries {
    /// Whether a request may be retried at all under the policy's
    /// `retriable_request_headers`: with none, every request; else one that `matches`
    /// one of them (Envoy zeroes `retry_on` for any other, its own headers' included).
    pub fn retries_request(&self, matches: impl Fn(&HeaderMatch) -> bool) -> bool {
        self.policy.as_deref().is_none_or(|p| {
            p.retriable_request_headers.is_empty()
                || p.retriable_request_headers.iter().any(matches)
        })
    }

    /// How many bytes of a request body are kept for a retry: Envoy's
    /// `retry_shadow_buffer_limit_`, the smaller of the route's limit and the
    /// listener's. A body that outgrows it is not retried.
    pub fn buffer_limit(&self) -> usize {
        self.per_request_buffer_limit
            .map_or(LISTENER_BUFFER_LIMIT, |l| {
                usize::try_from(l)
                    .unwrap_or(usize::MAX)
                    .min(LISTENER_BUFFER_LIMIT)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_names_parse_as_envoy_does() {
        assert_eq!(parse_retry_on("5xx,reset"), (on::FIVE_XX | on::RESET, None));
        assert_eq!(parse_retry_on(" 5xx , bogus"), (on::FIVE_XX, Some("bogus")));
        assert_eq!(
            parse_retry_on("unavailable").0,
            0,
            "gRPC names are not HTTP ones"
        );
        assert_eq!(
            parse_retry_grpc_on("unavailable,cancelled").0,
            on::GRPC_UNAVAILABLE | on::GRPC_CANCELLED
        );
        assert_eq!(
            parse_config_retry_on("gateway-error,deadline-exceeded"),
            (on::GATEWAY_ERROR | on::GRPC_DEADLINE_EXCEEDED, None)
        );
        assert_eq!(parse_config_retry_on("5xx,nope").1, Some("nope"));
    }
}
