//! The local rate limit's cost per request: the listener's filter chain on one request
//! head (`filter::on_request_head`), with and without the filter, and the shared
//! bucket under two threads taking leases at once.
//!
//! `cargo bench --bench local_ratelimit` (add `-- --quick` for a fast smoke run).
//! Figures: docs/rate-limit.md.

mod support;

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outrigger::config::{parse_str, Forwarding};
use outrigger::http::filter::local_ratelimit::bucket::{now_ns, Lease, SharedBucket, Spec};
use outrigger::http::filter::{self, ConnState, HttpFilter, RequestCtx, StreamEdits};
use outrigger::http::router::Request;
use outrigger::observe::stats::Counter;

const ON: &str = "filter_enabled: { default_value: { numerator: 100 } }
          filter_enforced: { default_value: { numerator: 100 } }";

/// The chain of a listener with `filter`, and the config's named counters (one per
/// name, as a worker keeps them).
fn chain(filter: &str) -> (Vec<HttpFilter>, Vec<Rc<Counter>>) {
    let filters = if filter.is_empty() {
        String::new()
    } else {
        format!("    http_filters:\n      - name: rl\n        local_ratelimit:\n          stat_prefix: b\n          {ON}\n          {filter}\n")
    };
    let text = format!(
        "listeners:
  - name: main
    address: 127.0.0.1
    port: 1
    route_table: main
{filters}route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            direct_response: {{ status: 200 }}
"
    );
    let snap = parse_str(&text).expect("bench config");
    let hcm = snap.listeners[0].filter_chains[0]
        .hcm()
        .expect("an HTTP chain");
    let counters = snap.counters.iter().map(|_| Rc::default()).collect();
    (hcm.http_filters.clone(), counters)
}

fn main() {
    let headers = [httparse::Header {
        name: "x-user",
        value: b"alice",
    }];
    let state = ConnState::default();
    let req = Request {
        method: "GET",
        authority: b"bench",
        path: "/",
        scheme: "http",
        headers: &headers,
    };
    let forwarding = Forwarding {
        use_remote_address: true,
        xff_num_trusted_hops: 0,
        skip_xff_append: false,
        ..Forwarding::SIDECAR
    };
    let cases = [
        ("no filter (the chain alone)", String::new()),
        (
            "not limiting (a huge budget)",
            "token_bucket: { max_tokens: 4000000000, tokens_per_fill: 4000000000, fill_interval: 1s }".to_string(),
        ),
        (
            "not limiting, x-ratelimit headers",
            "token_bucket: { max_tokens: 4000000000, tokens_per_fill: 4000000000, fill_interval: 1s }\n          enable_x_ratelimit_headers: true".to_string(),
        ),
        (
            "limiting (empty bucket, 429)",
            "token_bucket: { max_tokens: 1, tokens_per_fill: 1, fill_interval: 3600s }".to_string(),
        ),
        (
            "per connection, not limiting",
            "token_bucket: { max_tokens: 4000000000, tokens_per_fill: 4000000000, fill_interval: 1s }\n          local_rate_limit_per_downstream_connection: true".to_string(),
        ),
    ];
    for (name, f) in &cases {
        let (c, counters) = chain(f);
        let ctx = RequestCtx {
            req: &req,
            conn: outrigger::rbac::Conn {
                peer: [10, 0, 0, 1].into(),
                local: ([127, 0, 0, 1], 80).into(),
                tls: None,
            },
            forwarding: &forwarding,
            counters: &counters,
            state: &state,
            grpc: None,
            peer_port: 40000,
            protocol: "HTTP/1.1",
            upstream: None,
            body: false,
            stream_idle_timeout: std::time::Duration::ZERO,
        };
        support::bench(&format!("on_request_head: {name}"), || {
            let mut e = StreamEdits::default();
            futures_lite::future::block_on(filter::on_request_head(&c, None, &mut e, &ctx))
        });
    }

    // Two threads on one bucket that never runs dry: the cost of sharing it.
    let spec = Spec {
        max_tokens: 4_000_000_000,
        tokens_per_fill: 4_000_000_000,
        fill_interval: Duration::from_secs(1),
    };
    let bucket = Arc::new(SharedBucket::new(spec));
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let (b, stop) = (bucket.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut lease = Lease::default();
            while !stop.load(Ordering::Relaxed) {
                std::hint::black_box(lease.acquire(&b, now_ns()));
            }
        })
    };
    let mut lease = Lease::default();
    support::bench(
        "lease acquire, another core taking from the same bucket",
        || lease.acquire(&bucket, now_ns()),
    );
    stop.store(true, Ordering::Relaxed);
    other.join().unwrap();
    let mut lease = Lease::default();
    support::bench("lease acquire, alone", || lease.acquire(&bucket, now_ns()));
}
