//! The retry decisions of one request (`retry.rs`): conditions, request headers,
//! back-off, budgets and the circuit breakers' retry slot.

use super::*;
use crate::config::circuit::Breakers;
use crate::config::retry_model::on;

fn policy(retry_on: u32, n: u32) -> Retries {
    Retries {
        policy: Some(Box::new(RetryPolicy {
            retry_on,
            num_retries: n,
            ..HEADER_ONLY.clone()
        })),
        ..Default::default()
    }
}

fn many() -> Arc<Breakers> {
    Arc::new(Breakers::new(crate::config::circuit::Thresholds {
        max_retries: 100,
        ..Default::default()
    }))
}

/// Hedging: the route's policy, overridden by exactly `true` or `false` in the
/// request header; a hedge needs some retry condition, retries left and a copy.
#[test]
fn hedging_follows_the_route_and_the_header_and_needs_a_condition() {
    let stats = ClusterStats::default();
    let b = many();
    let mut p = policy(on::FIVE_XX, 1);
    p.hedge_on_per_try_timeout = true;
    let on = RetryState::new(&p, &map(&[]), true).unwrap();
    assert!(on.hedging());
    assert!(!on.on_hedge(false, &stats, &b), "no copy of the request");
    assert!(on.on_hedge(true, &stats, &b));
    assert!(!on.on_hedge(true, &stats, &b), "one retry only");
    assert!(on.could_not());
    let off = RetryState::new(
        &p,
        &map(&[("x-envoy-hedge-on-per-try-timeout", "false")]),
        true,
    );
    assert!(!off.unwrap().hedging());
    let odd = RetryState::new(
        &p,
        &map(&[("x-envoy-hedge-on-per-try-timeout", "yes")]),
        true,
    );
    assert!(
        odd.unwrap().hedging(),
        "neither true nor false: the route's"
    );
    let plain = policy(on::FIVE_XX, 1);
    let asked = RetryState::new(
        &plain,
        &map(&[("x-envoy-hedge-on-per-try-timeout", "true")]),
        true,
    );
    assert!(asked.unwrap().hedging());
    let mut none = policy(0, 1);
    none.hedge_on_per_try_timeout = true;
    let bare = RetryState::new(&none, &map(&[]), true).unwrap();
    assert!(
        !bare.on_hedge(true, &stats, &b),
        "no retry condition: Envoy has no retry state"
    );
}

#[test]
fn a_retry_needs_a_breaker_slot_held_until_the_next_decision() {
    let stats = ClusterStats::default();
    let b = Arc::new(Breakers::new(crate::config::circuit::Thresholds {
        max_retries: 1,
        ..Default::default()
    }));
    let p = policy(on::FIVE_XX, 5);
    let first = RetryState::new(&p, &map(&[]), true).unwrap();
    let second = RetryState::new(&p, &map(&[]), true).unwrap();
    assert!(first.on_response(503, &map(&[]), true, &stats, &b));
    assert!(
        !second.on_response(503, &map(&[]), true, &stats, &b),
        "the only slot is held by the first request's retry"
    );
    assert!(second.overflowed());
    assert_eq!(stats.rq_retry_overflow.get(), 1);
    assert!(!first.on_response(200, &map(&[]), true, &stats, &b));
    assert!(
        second.on_response(503, &map(&[]), true, &stats, &b),
        "given back"
    );
    drop(second);
    assert!(
        first.on_response(503, &map(&[]), true, &stats, &b),
        "and on drop"
    );
}

fn map(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
    let mut m = http::HeaderMap::new();
    for (n, v) in pairs {
        m.append(*n, http::HeaderValue::from_static(v));
    }
    m
}

#[test]
fn consumed_headers_are_found_in_either_form() {
    let h = |n: &'static str| httparse::Header {
        name: n,
        value: b"5xx",
    };
    assert!(carries_consumed(&[h("Host"), h("X-Envoy-Retry-On")]));
    assert!(!carries_consumed(&[h("x-envoy-attempt-count"), h("x")]));
    assert!(!carries_consumed(&[]));
    // An HTTP/2 head's names are lower case (`h2::request::Carried`).
    assert!(consumed("x-envoy-max-retries"));
    assert!(!consumed("x-envoy-foo"));
}

#[test]
fn no_policy_and_no_header_is_no_state() {
    let b = many();
    let r = Retries::default();
    assert!(RetryState::new(&r, &map(&[]), true).is_none());
    let s = RetryState::new(&r, &map(&[("x-envoy-retry-on", "5xx")]), true).expect("headers ask");
    let stats = ClusterStats::default();
    assert!(s.on_response(503, &map(&[]), true, &stats, &b));
    assert!(
        !s.on_response(503, &map(&[]), true, &stats, &b),
        "one retry by default"
    );
    assert!(s.limit_exceeded());
    assert_eq!(stats.rq_retry.get(), 0, "counted when the retry starts");
    assert_eq!(stats.rq_retry_limit_exceeded.get(), 1);
    assert_eq!(stats.rq_retry_success.get(), 0);
}

#[test]
fn conditions_follow_envoy() {
    let b = many();
    let stats = ClusterStats::default();
    let gw = policy(on::GATEWAY_ERROR, 5);
    let s = RetryState::new(&gw, &map(&[]), true).unwrap();
    assert!(!s.on_response(500, &map(&[]), true, &stats, &b));
    assert!(s.on_response(502, &map(&[]), true, &stats, &b));
    assert!(!s.on_response(200, &map(&[]), true, &stats, &b));
    assert_eq!(stats.rq_retry_success.get(), 1, "200 after a retry");
    assert!(
        s.on_failure(Failure::ConnectionTermination, false, true, &stats, &b),
        "a reset is a gateway error"
    );
    assert!(!s.on_failure(Failure::RouteTimeout, false, true, &stats, &b));
    assert!(
        !s.on_response(503, &map(&[]), false, &stats, &b),
        "not resendable"
    );

    let cf = policy(on::CONNECT_FAILURE, 5);
    let s = RetryState::new(&cf, &map(&[]), true).unwrap();
    assert!(s.on_failure(Failure::ConnectFailure, false, true, &stats, &b));
    assert!(!s.on_failure(Failure::ConnectionTermination, false, true, &stats, &b));
    assert!(!s.on_response(503, &map(&[]), true, &stats, &b));

    let refused = policy(on::REFUSED_STREAM, 5);
    let s = RetryState::new(&refused, &map(&[]), true).unwrap();
    assert!(s.on_failure(Failure::ConnectionTermination, true, true, &stats, &b));
    assert!(
        !s.on_failure(Failure::ConnectionTermination, false, true, &stats, &b),
        "an ordinary reset is not a refused stream"
    );
    assert!(!s.on_failure(Failure::ConnectionTermination, true, false, &stats, &b));

    let grpc = policy(on::GRPC_UNAVAILABLE, 5);
    let s = RetryState::new(&grpc, &map(&[]), true).unwrap();
    assert!(s.on_response(200, &map(&[("grpc-status", "14")]), true, &stats, &b));
    assert!(!s.on_response(200, &map(&[("grpc-status", "13")]), true, &stats, &b));

    let five = policy(on::FIVE_XX, 5);
    let s = RetryState::new(&five, &map(&[]), true).unwrap();
    assert!(!s.on_response(
        503,
        &map(&[("x-envoy-ratelimited", "true")]),
        true,
        &stats,
        &b
    ));

    let mut codes = policy(on::RETRIABLE_STATUS_CODES, 5);
    codes.policy.as_mut().unwrap().retriable_status_codes = vec![418];
    let s = RetryState::new(
        &codes,
        &map(&[("x-envoy-retriable-status-codes", "429")]),
        true,
    )
    .unwrap();
    assert!(s.on_response(418, &map(&[]), true, &stats, &b));
    assert!(s.on_response(429, &map(&[]), true, &stats, &b));
    assert!(!s.on_response(500, &map(&[]), true, &stats, &b));

    // Names from `x-envoy-retriable-header-names` join the route's matchers: each is
    // retriable when present in the response, whatever its value.
    let named = policy(on::RETRIABLE_HEADERS, 5);
    let s = RetryState::new(
        &named,
        &map(&[(
            "x-envoy-retriable-header-names",
            " X-Upstream-Retry , ,x-other",
        )]),
        true,
    )
    .unwrap();
    assert!(s.on_response(200, &map(&[("x-upstream-retry", "")]), true, &stats, &b));
    assert!(s.on_response(200, &map(&[("x-other", "no")]), true, &stats, &b));
    assert!(!s.on_response(200, &map(&[("x-third", "1")]), true, &stats, &b));
    let five = policy(on::FIVE_XX, 5);
    let s = RetryState::new(
        &five,
        &map(&[("x-envoy-retriable-header-names", "x-upstream-retry")]),
        true,
    )
    .unwrap();
    assert!(
        !s.on_response(200, &map(&[("x-upstream-retry", "1")]), true, &stats, &b),
        "the names count only under retriable-headers"
    );
}

#[test]
fn retriable_request_headers_limit_which_requests_are_retried() {
    let b = many();
    let stats = ClusterStats::default();
    let mut p = policy(on::FIVE_XX, 2);
    assert!(p.retries_request(|_| false), "no matchers: every request");
    p.policy.as_mut().unwrap().retriable_request_headers = vec![HeaderMatch {
        name: ":method".into(),
        kind: crate::config::HeaderMatchKind::Present(true),
        invert: false,
        treat_missing_as_empty: false,
    }];
    let s = RetryState::new(&p, &map(&[]), p.retries_request(|_| false)).unwrap();
    assert!(!s.on_response(503, &map(&[]), true, &stats, &b));
    let asks = map(&[("x-envoy-retry-on", "reset")]);
    let s = RetryState::new(&p, &asks, p.retries_request(|_| false)).unwrap();
    assert!(
        !s.on_failure(Failure::ConnectionTermination, false, true, &stats, &b),
        "the request's own conditions are dropped too, as in Envoy"
    );
    let matched = p.retries_request(|m| m.name == ":method");
    let s = RetryState::new(&p, &map(&[]), matched).unwrap();
    assert!(s.on_response(503, &map(&[]), true, &stats, &b));
}

#[test]
fn max_retries_header_wins_only_with_a_condition() {
    let b = many();
    let one = policy(on::FIVE_XX, 1);
    let s = RetryState::new(&one, &map(&[("x-envoy-max-retries", "3")]), true).unwrap();
    assert_eq!(s.remaining.get(), 3);
    let none = Retries {
        attempt_count_response: true,
        ..Default::default()
    };
    let s = RetryState::new(&none, &map(&[("x-envoy-max-retries", "3")]), true).unwrap();
    assert_eq!(s.remaining.get(), 1);
    assert!(!s.on_response(503, &map(&[]), true, &ClusterStats::default(), &b));
}

#[test]
fn backoff_is_jittered_below_a_doubling_ceiling() {
    let stats = ClusterStats::default();
    let p = policy(on::FIVE_XX, 10);
    let s = RetryState::new(&p, &map(&[]), true).unwrap();
    let ceilings: Vec<u64> = (0..6)
        .map(|_| {
            let c = s.next_interval.get();
            assert!(s.backoff() < Duration::from_millis(c));
            s.started(&stats);
            c
        })
        .collect();
    assert_eq!(ceilings, [25, 50, 100, 200, 250, 250]);
    assert_eq!(jitter(25, 24), 24);
    assert_eq!(jitter(25, 25), 0);
    assert_eq!(stats.rq_retry_backoff_exponential.get(), 6);
}

#[test]
fn previous_hosts_avoids_tried_endpoints_up_to_the_attempts() {
    let mut p = policy(on::FIVE_XX, 3);
    let pol = p.policy.as_mut().unwrap();
    pol.previous_hosts = true;
    pol.host_selection_max_attempts = 3;
    let s = RetryState::new(&p, &map(&[]), true).unwrap();
    s.tried(0);
    let mut seq = [0, 0, 1].into_iter();
    assert_eq!(s.select(|_| seq.next()), Some(1));
    let mut same = std::iter::repeat(0);
    assert_eq!(
        s.select(|_| same.next()),
        Some(0),
        "the last pick goes anyway"
    );
}
