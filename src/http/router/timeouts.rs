//! A proxied request's timeouts from its route, its connection manager and its
//! `grpc-timeout`, as Envoy 1.40 decides them, for every protocol path:
//!
//! - The route (global) timeout, Envoy's router (`finalTimeout`): the route's `timeout`;
//!   for a gRPC request on a route with `max_grpc_timeout`, the `grpc-timeout` instead
//!   (less `grpc_timeout_offset` when that leaves more than zero; no header: zero),
//!   capped at `max_grpc_timeout` (zero: no cap; a zero timeout is then the cap). A
//!   route with `max_stream_duration` set has no route timeout at all (Envoy's "new"
//!   timeouts replace it). `x-envoy-upstream-rq-timeout-ms` is applied by the caller.
//! - The stream's duration limit, Envoy's connection manager
//!   (`refreshDurationTimeout`), counted from the stream's start: a gRPC request with a
//!   `grpc-timeout` on a route with `grpc_timeout_header_max` gets the header (capped,
//!   zero: no cap; then less `grpc_timeout_header_offset`, down to zero); otherwise the
//!   route's `max_stream_duration.max_stream_duration` (zero: none), or else the
//!   listener's `max_stream_duration` (zero: none).
//! - The `grpc-timeout` that goes upstream: with `max_grpc_timeout` (old timeouts) the
//!   router writes its expected timeout there; with `max_stream_duration` (new ones) the
//!   connection manager writes the duration limit (before time spent is taken off). A
//!   gRPC request without either keeps its header, and its `grpc-timeout` bounds
//!   nothing in the proxy (Envoy's default).
//!
//! When the duration limit runs out the stream gets `408` while the request is still
//! arriving, else `504`, `downstream duration timeout`, details `max_duration_timeout`,
//! no response flag, and DEADLINE_EXCEEDED in the gRPC form; a reset (or a closed
//! HTTP/1.1 connection) once the response head went out (`upstream::request::clock`).

use std::time::Duration;

use crate::config::StreamTimeouts;

/// A `grpc-timeout` value (1 to 8 digits and a unit: H M S m u n) as a duration.
pub fn parse_grpc_timeout(v: &[u8]) -> Option<Duration> {
    if !(2..=9).contains(&v.len()) {
        return None;
    }
    let (num, unit) = v.split_last().map(|(u, n)| (n, *u))?;
    if !num.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(num).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n.saturating_mul(3600)),
        b'M' => Duration::from_secs(n.saturating_mul(60)),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// What a request's route, connection manager and `grpc-timeout` decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decided {
    /// The route timeout (zero: none), before `x-envoy-upstream-rq-timeout-ms`.
    pub route: Duration,
    /// The stream's duration limit from its start (`None`: none).
    pub duration: Option<Duration>,
    /// The connection manager rewrites `grpc-timeout` to this.
    stream_header: Option<Duration>,
    /// The router rewrites `grpc-timeout` to its expected timeout.
    router_header: bool,
}

impl Decided {
    /// The router writes `grpc-timeout` (`max_grpc_timeout`): a retry rewrites it.
    pub fn router_writes_grpc_timeout(&self) -> bool {
        self.router_header
    }

    /// The `grpc-timeout` the upstream request gets in place of the client's, given the
    /// timeout the router expects (`x-envoy-expected-rq-timeout-ms`'s value; zero: none).
    pub fn grpc_timeout(&self, expected: Duration) -> Option<Duration> {
        if self.router_header {
            return (!expected.is_zero()).then_some(expected);
        }
        self.stream_header
    }
}

/// Decides the timeouts of a request on a route with `timeout` and `s`, on a connection
/// manager whose `max_stream_duration` is `listener_max` (zero: none). `grpc`: the
/// request is gRPC; `header`: its `grpc-timeout`, parsed (read on any request, as
/// Envoy's connection manager reads it).
pub fn decide(
    timeout: Duration,
    s: &StreamTimeouts,
    listener_max: Duration,
    grpc: bool,
    header: Option<Duration>,
) -> Decided {
    // The connection manager reads the header of any request; the router and the
    // rewrite only a gRPC one's.
    let (route, router_header) = match (s.max_stream_duration, s.max_grpc_timeout) {
        (Some(_), _) => (Duration::ZERO, false),
        (None, Some(max)) if grpc => {
            let mut g = header.unwrap_or(Duration::ZERO);
            if let Some(off) = s.grpc_timeout_offset.filter(|off| *off < g) {
                g -= off;
            }
            if !max.is_zero() && (g.is_zero() || g > max) {
                g = max;
            }
            (g, true)
        }
        (None, _) => (timeout, false),
    };
    let m = s.max_stream_duration;
    let header_max = m.and_then(|m| m.grpc_timeout_header_max);
    let duration = match (header, header_max) {
        (Some(mut t), Some(max)) => {
            if !max.is_zero() && t > max {
                t = max;
            }
            if let Some(off) = m.and_then(|m| m.grpc_timeout_header_offset) {
                if !t.is_zero() {
                    t = t.saturating_sub(off);
                }
            }
            Some(t)
        }
        _ => match m.and_then(|m| m.max_stream_duration) {
            Some(d) => (!d.is_zero()).then_some(d),
            None => (!listener_max.is_zero()).then_some(listener_max),
        },
    };
    Decided {
        route,
        duration,
        stream_header: duration.filter(|_| grpc && m.is_some()),
        router_header,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MaxStreamDuration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn grpc_timeout_units() {
        let t = |v: &str| parse_grpc_timeout(v.as_bytes());
        assert_eq!(t("200m"), Some(ms(200)));
        assert_eq!(t("1S"), Some(Duration::from_secs(1)));
        assert_eq!(t("2M"), Some(Duration::from_secs(120)));
        assert_eq!(t("123456789S"), None);
        assert_eq!(t("S"), None);
        assert_eq!(t("5x"), None);
        assert_eq!(t("+5m"), None);
        assert_eq!(t("é"), None);
    }

    #[test]
    fn without_grpc_settings_the_header_bounds_nothing() {
        let d = decide(
            ms(15000),
            &StreamTimeouts::default(),
            ms(0),
            true,
            Some(ms(200)),
        );
        assert_eq!((d.route, d.duration), (ms(15000), None));
        assert_eq!(d.grpc_timeout(ms(15000)), None);
        let d = decide(ms(0), &StreamTimeouts::default(), ms(500), false, None);
        assert_eq!((d.route, d.duration), (ms(0), Some(ms(500))));
    }

    #[test]
    fn max_grpc_timeout_replaces_the_route_timeout() {
        let s = StreamTimeouts {
            max_grpc_timeout: Some(ms(600)),
            grpc_timeout_offset: Some(ms(100)),
            ..Default::default()
        };
        // 250 - 100, under the cap; written upstream as the expected timeout.
        let d = decide(ms(15000), &s, ms(0), true, Some(ms(250)));
        assert_eq!(d.route, ms(150));
        assert_eq!(d.grpc_timeout(ms(150)), Some(ms(150)));
        // No header: the cap. An offset larger than the header is not taken off.
        assert_eq!(decide(ms(15000), &s, ms(0), true, None).route, ms(600));
        assert_eq!(
            decide(ms(15000), &s, ms(0), true, Some(ms(50))).route,
            ms(50)
        );
        assert_eq!(
            decide(ms(15000), &s, ms(0), true, Some(ms(5000))).route,
            ms(600)
        );
        // Not gRPC: the route's.
        assert_eq!(
            decide(ms(15000), &s, ms(0), false, Some(ms(250))).route,
            ms(15000)
        );
        // A zero cap and no header: no timeout.
        let s = StreamTimeouts {
            max_grpc_timeout: Some(ms(0)),
            ..Default::default()
        };
        assert_eq!(decide(ms(15000), &s, ms(0), true, None).route, ms(0));
    }

    #[test]
    fn max_stream_duration_replaces_the_route_timeout_and_uses_the_header() {
        let s = StreamTimeouts {
            max_stream_duration: Some(MaxStreamDuration {
                max_stream_duration: Some(ms(300)),
                grpc_timeout_header_max: Some(ms(800)),
                grpc_timeout_header_offset: Some(ms(100)),
            }),
            // Ignored under the new timeouts.
            max_grpc_timeout: Some(ms(50)),
            ..Default::default()
        };
        let d = decide(ms(15000), &s, ms(500), false, None);
        assert_eq!((d.route, d.duration), (ms(0), Some(ms(300))));
        // gRPC with a header: capped at 800, less 100, and written upstream.
        let d = decide(ms(15000), &s, ms(500), true, Some(ms(2000)));
        assert_eq!((d.route, d.duration), (ms(0), Some(ms(700))));
        assert_eq!(d.grpc_timeout(ms(0)), Some(ms(700)));
        // gRPC without a header: the route's duration, written upstream too.
        let d = decide(ms(15000), &s, ms(500), true, None);
        assert_eq!(
            (d.duration, d.grpc_timeout(ms(0))),
            (Some(ms(300)), Some(ms(300)))
        );
        // An offset past the header leaves zero (the limit is reached at once).
        let d = decide(ms(15000), &s, ms(500), true, Some(ms(50)));
        assert_eq!(d.duration, Some(ms(0)));
    }

    #[test]
    fn a_route_zero_turns_the_listener_limit_off() {
        let s = StreamTimeouts {
            max_stream_duration: Some(MaxStreamDuration {
                max_stream_duration: Some(ms(0)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let d = decide(ms(15000), &s, ms(500), true, Some(ms(100)));
        assert_eq!(
            (d.route, d.duration, d.grpc_timeout(ms(0))),
            (ms(0), None, None)
        );
        let unset = StreamTimeouts {
            max_stream_duration: Some(MaxStreamDuration::default()),
            ..Default::default()
        };
        assert_eq!(
            decide(ms(15000), &unset, ms(500), false, None).duration,
            Some(ms(500))
        );
    }
}
