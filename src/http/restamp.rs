//! What a retried try's request says differently from the first try's, on every
//! protocol path: its attempt number (`include_request_attempt_count`) and, where the
//! router wrote them, the timeout the upstream may expect. Envoy's router rewrites
//! both for each retry (`doRetry`: `setEnvoyAttemptCount`, `setTimeoutHeaders` with
//! the time elapsed since the request was complete): the expected timeout becomes
//! what is left of the route timeout when that is less than the per-try one, 1 ms once
//! nothing is left, and `grpc-timeout` follows it under `max_grpc_timeout`.

use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue};

use super::stamp::{decimal, grpc_timeout};

static ATTEMPT_COUNT: HeaderName = HeaderName::from_static("x-envoy-attempt-count");
static EXPECTED_TIMEOUT: HeaderName = HeaderName::from_static("x-envoy-expected-rq-timeout-ms");
static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The changes for one try (nothing for the first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restamp {
    pub attempt: Option<u32>,
    /// The expected timeout, rewritten only where the first try's request carried one.
    pub expected: Option<Duration>,
    /// `grpc-timeout` is the router's (`max_grpc_timeout`) and follows `expected`.
    pub grpc: bool,
}

impl Restamp {
    /// The expected timeout of a retried try: `base` (the per-try timeout, or the route
    /// timeout; zero: none) bounded by what is left before `deadline` (the route clock's
    /// end, once the request is complete), and 1 ms when nothing is.
    pub fn expected_now(base: Duration, deadline: Option<Instant>) -> Option<Duration> {
        if base.is_zero() {
            return None;
        }
        Some(match deadline {
            None => base,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if left >= Duration::from_millis(1) => base.min(left),
                _ => Duration::from_millis(1),
            },
        })
    }

    /// Rewrites an HTTP/1 request head at the start of `buf` (the values the first
    /// try's head was written with; a header it does not carry is not added).
    pub fn apply_h1(&self, buf: &mut Vec<u8>) {
        let mut num = [0u8; 20];
        if let Some(n) = self.attempt {
            replace_value(
                buf,
                b"\r\nx-envoy-attempt-count: ",
                decimal(&mut num, n.into()),
            );
        }
        if let Some(d) = self.expected {
            let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            replace_value(
                buf,
                b"\r\nx-envoy-expected-rq-timeout-ms: ",
                decimal(&mut num, ms),
            );
            if self.grpc {
                let mut g = [0u8; 21];
                replace_value(buf, b"\r\ngrpc-timeout: ", grpc_timeout(&mut g, d));
            }
        }
    }

    /// Rewrites an HTTP/2 request's header map (the attempt count is set in any case).
    pub fn apply_map(&self, map: &mut HeaderMap) {
        if let Some(n) = self.attempt {
            map.insert(&ATTEMPT_COUNT, HeaderValue::from(n));
        }
        let Some(d) = self.expected else {
            return;
        };
        if map.contains_key(&EXPECTED_TIMEOUT) {
            let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            map.insert(&EXPECTED_TIMEOUT, HeaderValue::from(ms));
        }
        if self.grpc {
            let mut g = [0u8; 21];
            if let Ok(v) = HeaderValue::from_str(grpc_timeout(&mut g, d)) {
                map.insert(&GRPC_TIMEOUT, v);
            }
        }
    }
}

/// Replaces the value of the field starting with `prefix` (`\r\nname: `) in the head at
/// the start of `buf` (the stamp writes these names in lower case, once). Only the head
/// is searched: body bytes that follow it in `buf` are never touched.
fn replace_value(buf: &mut Vec<u8>, prefix: &[u8], value: &str) {
    let head = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |end| end + 2);
    let Some(at) = buf
        .get(..head)
        .and_then(|h| h.windows(prefix.len()).position(|w| w == prefix))
    else {
        return;
    };
    let start = at + prefix.len();
    let Some(len) = buf
        .get(start..)
        .and_then(|rest| rest.iter().position(|b| *b == b'\r'))
    else {
        return;
    };
    buf.splice(start..start + len, value.bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retried_h1_head_gets_its_attempt_and_what_is_left_of_the_clock() {
        let mut head = b"GET / HTTP/1.1\r\nhost: a\r\nx-envoy-attempt-count: 1\r\nx-envoy-expected-rq-timeout-ms: 1000\r\ngrpc-timeout: 1000m\r\n\r\nbody".to_vec();
        Restamp {
            attempt: Some(12),
            expected: Some(Duration::from_millis(250)),
            grpc: true,
        }
        .apply_h1(&mut head);
        assert_eq!(
            head,
            b"GET / HTTP/1.1\r\nhost: a\r\nx-envoy-attempt-count: 12\r\nx-envoy-expected-rq-timeout-ms: 250\r\ngrpc-timeout: 250m\r\n\r\nbody"
        );
        // A header the first try did not carry is not added (nor found in the body); a
        // client's grpc-timeout is left alone unless the router wrote it.
        let mut plain =
            b"GET / HTTP/1.1\r\ngrpc-timeout: 9S\r\n\r\nx\r\nx-envoy-expected-rq-timeout-ms: 7\r\n"
                .to_vec();
        let before = plain.clone();
        Restamp {
            attempt: Some(2),
            expected: Some(Duration::from_millis(5)),
            grpc: false,
        }
        .apply_h1(&mut plain);
        assert_eq!(plain, before);
    }

    #[test]
    fn a_retried_h2_request_gets_the_same() {
        let mut map = HeaderMap::new();
        map.insert(&EXPECTED_TIMEOUT, HeaderValue::from_static("1000"));
        Restamp {
            attempt: Some(3),
            expected: Some(Duration::from_millis(40)),
            grpc: true,
        }
        .apply_map(&mut map);
        assert_eq!(map[&ATTEMPT_COUNT], "3");
        assert_eq!(map[&EXPECTED_TIMEOUT], "40");
        assert_eq!(map[&GRPC_TIMEOUT], "40m");
    }

    #[test]
    fn the_expected_timeout_is_bounded_by_what_is_left() {
        let s = Duration::from_secs(1);
        assert_eq!(Restamp::expected_now(Duration::ZERO, None), None);
        assert_eq!(Restamp::expected_now(s, None), Some(s));
        let far = Instant::now() + Duration::from_secs(60);
        assert_eq!(Restamp::expected_now(s, Some(far)), Some(s));
        let soon = Instant::now() + Duration::from_millis(300);
        let left = Restamp::expected_now(s, Some(soon)).unwrap();
        assert!(left <= Duration::from_millis(300) && left >= Duration::from_millis(1));
        let past = Instant::now();
        assert_eq!(
            Restamp::expected_now(s, Some(past)),
            Some(Duration::from_millis(1))
        );
    }
}
