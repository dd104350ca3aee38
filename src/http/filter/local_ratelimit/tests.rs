//! The filter's decisions, config by config (the black-box tests are in
//! `tests/local_ratelimit.rs`).

use std::rc::Rc;

use super::*;
use crate::http::filter::ConnState;
use crate::observe::stats::Counter;

/// Counter indices for every limiter here: `stats::NAMES`' order.
const COUNTERS: [usize; 5] = [0, 1, 2, 3, 4];

fn limiter(yaml: &str, p: &str) -> Limiter {
    let raw: RawLocalRateLimit = serde_yaml::from_str(yaml).unwrap();
    let mut errors = Vec::new();
    let l = raw.build(
        p,
        false,
        stats::Counters::from_indices(COUNTERS),
        &mut errors,
        &mut descriptors::NoMatchers,
    );
    assert!(errors.is_empty(), "{errors:?}");
    l.unwrap()
}

fn errors_of(yaml: &str, per_route: bool) -> Vec<String> {
    let raw: RawLocalRateLimit = serde_yaml::from_str(yaml).unwrap();
    let mut errors = Vec::new();
    let counters = stats::Counters::from_indices(COUNTERS);
    assert!(raw
        .build(
            "f",
            per_route,
            counters,
            &mut errors,
            &mut descriptors::NoMatchers
        )
        .is_none());
    errors.into_iter().map(|(f, _)| f).collect()
}

struct Run {
    status: Status,
    stamp: Option<RateLimitHeaders>,
    request_edited: bool,
    response_edited: bool,
}

fn run(
    l: &Limiter,
    headers: &[httparse::Header<'_>],
    route: Option<&RouteRateLimits>,
    conn: &ConnState,
) -> Run {
    let counters: Vec<Rc<Counter>> = COUNTERS.iter().map(|_| Rc::default()).collect();
    run_counted(l, headers, route, conn, &counters)
}

/// `run`, counting in `counters` (indexed by `COUNTERS`).
fn run_counted(
    l: &Limiter,
    headers: &[httparse::Header<'_>],
    route: Option<&RouteRateLimits>,
    conn: &ConnState,
    counters: &[Rc<Counter>],
) -> Run {
    let req = crate::http::router::Request {
        method: "GET",
        authority: b"h",
        path: "/",
        scheme: "http",
        headers,
    };
    let forwarding = crate::config::Forwarding {
        use_remote_address: true,
        xff_num_trusted_hops: 0,
        skip_xff_append: false,
        ..crate::config::Forwarding::SIDECAR
    };
    let ctx = RequestCtx {
        req: &req,
        conn: crate::rbac::Conn {
            peer: [10, 0, 0, 1].into(),
            local: ([127, 0, 0, 1], 80).into(),
            tls: None,
        },
        forwarding: &forwarding,
        counters,
        state: conn,
        grpc: None,
        peer_port: 0,
        protocol: "HTTP/1.1",
        upstream: None,
        body: false,
        stream_idle_timeout: std::time::Duration::ZERO,
    };
    let (mut req, mut resp) = (Edits::none(), Edits::none());
    let status = l.on_request_head(
        &ctx,
        route,
        crate::http::router::EntryCluster::None,
        &mut req,
        &mut resp,
    );
    Run {
        status,
        stamp: resp.stamp.ratelimit,
        request_edited: !req.is_empty(),
        response_edited: !resp.is_empty() && resp.stamp.ratelimit.is_none() || {
            let mut r = resp;
            r.stamp.ratelimit = None;
            !r.is_empty()
        },
    }
}

const ENFORCED: &str = "filter_enabled: {default_value: {numerator: 100}}\nfilter_enforced: {default_value: {numerator: 100}}\n";

#[test]
fn the_default_bucket_limits_and_answers_as_envoy() {
    let l = limiter(
        &format!("stat_prefix: t1\ntoken_bucket: {{max_tokens: 3, tokens_per_fill: 3, fill_interval: 60s}}\nenable_x_ratelimit_headers: true\nresponse_headers_to_add: [{{name: x-rl, value: 'yes'}}]\n{ENFORCED}"),
        "t1",
    );
    let conn = ConnState::default();
    let runs: Vec<Run> = (0..5).map(|_| run(&l, &[], None, &conn)).collect();
    let remaining: Vec<u64> = runs.iter().map(|r| r.stamp.unwrap().remaining).collect();
    assert_eq!(remaining, vec![2, 1, 0, 0, 0]);
    assert_eq!(runs[0].stamp.unwrap().reset, 0);
    assert_eq!(runs[2].stamp.unwrap().reset, 20);
    assert_eq!(runs[2].status, Status::Continue);
    assert!(!runs[2].response_edited);
    let limited = &runs[3];
    assert_eq!(
        limited.status,
        Status::Respond(LocalReply {
            status: 429,
            body: std::borrow::Cow::Borrowed(BODY),
            flag: ResponseFlag::RateLimited
        })
    );
    assert!(
        limited.response_edited,
        "response_headers_to_add on the 429"
    );
}

#[test]
fn unset_fractions_disable_or_only_count() {
    // filter_enabled unset: nothing happens at all (no headers either).
    let off = limiter(
        "stat_prefix: t2\ntoken_bucket: {max_tokens: 1, fill_interval: 60s}\nenable_x_ratelimit_headers: true\n",
        "t2",
    );
    let conn = ConnState::default();
    for _ in 0..3 {
        let r = run(&off, &[], None, &conn);
        assert_eq!(r.status, Status::Continue);
        assert!(r.stamp.is_none());
    }
    // Enabled, not enforced: limited requests go on, with the not-enforced headers.
    let shadow = limiter(
        "stat_prefix: t3\ntoken_bucket: {max_tokens: 1, fill_interval: 60s}\nfilter_enabled: {default_value: {numerator: 100}}\nrequest_headers_to_add_when_not_enforced: [{name: x-limited, value: '1'}]\n",
        "t3",
    );
    let counters: Vec<Rc<Counter>> = COUNTERS.iter().map(|_| Rc::default()).collect();
    let first = run_counted(&shadow, &[], None, &conn, &counters);
    assert!(!first.request_edited);
    let second = run_counted(&shadow, &[], None, &conn, &counters);
    assert_eq!(second.status, Status::Continue);
    assert!(second.request_edited);
    // Counted in the request's counters at the config's indices (`stats::NAMES`' order).
    let counts: Vec<u64> = counters.iter().map(|c| c.get()).collect();
    assert_eq!(counts, vec![2, 0, 1, 1, 0], "{:?}", stats::NAMES);
}

#[test]
fn descriptors_take_their_own_bucket_and_the_default_one() {
    let l = limiter(
        &format!(
            "stat_prefix: t4\ntoken_bucket: {{max_tokens: 100, fill_interval: 60s}}\nenable_x_ratelimit_headers: true\n{ENFORCED}\
             descriptors:\n  - entries: [{{key: user, value: alice}}]\n    token_bucket: {{max_tokens: 2, fill_interval: 60s}}\n"
        ),
        "t4",
    );
    let raw: Vec<descriptors::RawRateLimit> = serde_yaml::from_str(
        "- actions: [{request_headers: {header_name: x-user, descriptor_key: user}}]",
    )
    .unwrap();
    let mut errors = Vec::new();
    let route = RouteRateLimits {
        route: descriptors::build(&raw, "r", &mut errors, &mut descriptors::NoMatchers),
        vhost: vec![],
    };
    let conn = ConnState::default();
    let alice = [httparse::Header {
        name: "X-User",
        value: b"alice",
    }];
    let bob = [httparse::Header {
        name: "x-user",
        value: b"bob",
    }];
    let statuses: Vec<bool> = (0..3)
        .map(|_| run(&l, &alice, Some(&route), &conn).status == Status::Continue)
        .collect();
    assert_eq!(statuses, vec![true, true, false]);
    // The descriptor's bucket is what the headers describe.
    assert_eq!(run(&l, &alice, Some(&route), &conn).stamp.unwrap().limit, 2);
    // Another user falls back to the default bucket (which alice's requests drew on).
    let b = run(&l, &bob, Some(&route), &conn);
    assert_eq!(b.status, Status::Continue);
    assert_eq!(b.stamp.unwrap().limit, 100);
    assert_eq!(b.stamp.unwrap().remaining, 100 - 3);
    // Without the route's policies, no descriptor applies.
    assert_eq!(run(&l, &alice, None, &conn).stamp.unwrap().limit, 100);
}

#[test]
fn per_connection_buckets_belong_to_their_connection() {
    let l = limiter(
        &format!("stat_prefix: t5\ntoken_bucket: {{max_tokens: 1, fill_interval: 60s}}\nlocal_rate_limit_per_downstream_connection: true\n{ENFORCED}"),
        "t5",
    );
    let (a, b) = (ConnState::default(), ConnState::default());
    assert_eq!(run(&l, &[], None, &a).status, Status::Continue);
    assert_ne!(run(&l, &[], None, &a).status, Status::Continue);
    assert_eq!(run(&l, &[], None, &b).status, Status::Continue);
}

#[test]
fn a_rebuilt_config_keeps_its_bucket() {
    let yaml = "stat_prefix: t6\ntoken_bucket: {max_tokens: 5, fill_interval: 60s}\n";
    let a = limiter(yaml, "listeners[0].http_filters[0]");
    let b = limiter(yaml, "listeners[0].http_filters[0]");
    assert_eq!(a, b, "same place, same bucket: the same Arc");
    let c = limiter(yaml, "listeners[1].http_filters[0]");
    assert_ne!(a, c);
}

#[test]
fn bad_configs_name_the_field() {
    assert_eq!(
        errors_of("stat_prefix: ''\ntoken_bucket: {max_tokens: 0, tokens_per_fill: 0, fill_interval: 0s}\nstatus: 700\nvh_rate_limits: SOMETIMES\n", false),
        vec![
            "f.stat_prefix",
            "f.token_bucket.max_tokens",
            "f.token_bucket.tokens_per_fill",
            "f.token_bucket.fill_interval",
            "f.status",
            "f.vh_rate_limits",
        ]
    );
    assert_eq!(errors_of("stat_prefix: r\n", true), vec!["f.token_bucket"]);
    assert_eq!(
        errors_of(
            "stat_prefix: d\ndescriptors:\n  - entries: [{key: a, value: ''}]\n    token_bucket: {max_tokens: 1, fill_interval: 1s}\n  - entries: [{key: a, value: ''}]\n    token_bucket: {max_tokens: 1, fill_interval: 1s}\n",
            false
        ),
        vec![
            "f.descriptors[0].entries[0].value",
            "f.descriptors[1].entries[0].value",
            "f.descriptors[1]",
        ]
    );
}
