//! The local rate-limit filter (Envoy's `envoy.filters.http.local_ratelimit`) through the
//! binary: the budget is exact for the process with two workers and many connections,
//! buckets refill, descriptors from the route's `rate_limits` take their own buckets,
//! routes override or disable the filter, per-connection buckets, the `x-ratelimit-*`
//! headers, `filter_enabled` / `filter_enforced` at 0 and 100%, HTTP/1 and HTTP/2
//! clients, bad configs refused with the field, and the counters beside RBAC's on both
//! stats pages and across a reload. Nothing here measures time: a refill is waited for
//! with a bounded poll.

mod common;
mod h2client;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

const ON: &str = "filter_enabled: { default_value: { numerator: 100 } }
          filter_enforced: { default_value: { numerator: 100 } }";

/// A listener whose filter `rl` has `filter` (indented by 10), and routes: `/desc` with
/// an `x-user` descriptor, `/route` with its own bucket, `/off` without the filter,
/// `/up` to `upstream`, and `/` direct.
fn config(filter: &str, upstream: SocketAddr) -> String {
    format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
    http_filters:
      - name: rl
        local_ratelimit:
          {filter}
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: /desc }}
            direct_response: {{ status: 200, body: ok }}
            rate_limits:
              - actions: [{{ request_headers: {{ header_name: x-user, descriptor_key: user }} }}]
          - match: {{ prefix: /route }}
            direct_response: {{ status: 200, body: ok }}
            per_filter_config:
              rl:
                local_ratelimit:
                  stat_prefix: route_rl
                  token_bucket: {{ max_tokens: 1, fill_interval: 3600s }}
                  filter_enabled: {{ default_value: {{ numerator: 100 }} }}
                  filter_enforced: {{ default_value: {{ numerator: 100 }} }}
          - match: {{ prefix: /off }}
            direct_response: {{ status: 200, body: ok }}
            per_filter_config:
              rl: {{ disabled: true }}
          - match: {{ prefix: /up }}
            cluster: backend
          - match: {{ prefix: / }}
            direct_response: {{ status: 200, body: ok }}
clusters:
  - name: backend
    connect_timeout: 1s
    endpoints:
      - {{ address: 127.0.0.1, port: {} }}
",
        upstream.port()
    )
}

fn filter(extra: &str) -> String {
    format!("stat_prefix: lim\n          {ON}\n          {extra}")
}

fn counter(p: &Proxy, name: &str) -> u64 {
    p.stats()["counters"][name].as_u64().unwrap_or(0)
}

/// `n` keep-alive GETs of `path` on one connection; the statuses.
fn burst(addr: SocketAddr, path: &str, n: usize) -> Vec<u16> {
    let mut c = Conn::connect(addr);
    (0..n)
        .map(|_| {
            c.send(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n"));
            c.read_response().unwrap().status
        })
        .collect()
}

#[test]
fn the_budget_is_exact_for_the_process_with_two_workers() {
    let up = Upstream::echo();
    // One token an hour after the first 60: none comes back during the burst.
    let text = config(
        &filter("token_bucket: { max_tokens: 60, tokens_per_fill: 1, fill_interval: 3600s }"),
        up.addr,
    );
    let proxy = Proxy::start_with(&text, 2);
    // 16 clients, 4 connections each (64 connections, which SO_REUSEPORT spreads over
    // both workers), 5 requests per connection interleaved: 320 requests, all within
    // the first fill interval.
    let addr = proxy.listen;
    let threads: Vec<_> = (0..16)
        .map(|_| {
            std::thread::spawn(move || {
                let mut conns: Vec<Conn> = (0..4).map(|_| Conn::connect(addr)).collect();
                let mut statuses = Vec::new();
                for _ in 0..5 {
                    for c in conns.iter_mut() {
                        c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
                        statuses.push(c.read_response().unwrap().status);
                    }
                }
                statuses
            })
        })
        .collect();
    let statuses: Vec<u16> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((ok, limited), (60, 260), "exactly max_tokens admitted");
    assert_eq!(counter(&proxy, "lim.http_local_rate_limit.enabled"), 320);
    assert_eq!(counter(&proxy, "lim.http_local_rate_limit.ok"), 60);
    assert_eq!(
        counter(&proxy, "lim.http_local_rate_limit.rate_limited"),
        260
    );
    assert_eq!(counter(&proxy, "lim.http_local_rate_limit.enforced"), 260);
    assert_eq!(counter(&proxy, "lim.http_local_rate_limit.shadow_mode"), 0);
    let l = proxy.listener_stats("main");
    assert_eq!(flag_count(&l, "RL"), 260);
    // HTTP/2 clients draw on the same, spent, budget.
    let addr = proxy.listen;
    let replies = h2client::run(move || async move {
        let mut client = h2client::connect(addr).await;
        let mut out = Vec::new();
        for _ in 0..3 {
            let req = h2client::request("GET", &format!("http://{addr}/"))
                .body(())
                .unwrap();
            out.push(h2client::send(&mut client, req, b"").await);
        }
        out
    });
    for r in &replies {
        assert_eq!(r.status, 429);
        assert_eq!(r.body_str(), "local_rate_limited");
    }
}

#[test]
fn http2_clients_get_the_same_answers_and_headers() {
    let up = Upstream::echo();
    let text = config(
        &filter("token_bucket: { max_tokens: 3, tokens_per_fill: 3, fill_interval: 60s }\n          enable_x_ratelimit_headers: true\n          response_headers_to_add: [{ name: x-rl, value: 'yes' }]"),
        up.addr,
    );
    let proxy = Proxy::start_with(&text, 2);
    let addr = proxy.listen;
    let replies = h2client::run(move || async move {
        let mut out = Vec::new();
        // Two connections: the bucket is the process's, whichever worker serves them.
        for _ in 0..2 {
            let mut client = h2client::connect(addr).await;
            for _ in 0..2 {
                let req = h2client::request("GET", &format!("http://{addr}/"))
                    .body(())
                    .unwrap();
                out.push(h2client::send(&mut client, req, b"").await);
            }
        }
        out
    });
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![200, 200, 200, 429]);
    let remaining: Vec<&str> = replies
        .iter()
        .map(|r| r.header("x-ratelimit-remaining").unwrap())
        .collect();
    assert_eq!(remaining, vec!["2", "1", "0", "0"]);
    let last = &replies[3];
    assert_eq!(last.header("x-ratelimit-limit"), Some("3"));
    assert_eq!(last.header("x-ratelimit-reset"), Some("20"));
    assert_eq!(last.header("x-rl"), Some("yes"));
    assert_eq!(last.body_str(), "local_rate_limited");
    assert_eq!(replies[0].header("x-ratelimit-reset"), Some("0"));
    assert_eq!(replies[0].header("x-rl"), None, "only on limited responses");
}

#[test]
fn x_ratelimit_headers_on_http1() {
    let up = Upstream::echo();
    let text = config(
        &filter("token_bucket: { max_tokens: 3, tokens_per_fill: 3, fill_interval: 60s }\n          enable_x_ratelimit_headers: true\n          status: { code: 503 }"),
        up.addr,
    )
    .replace("status: { code: 503 }", "status: 503");
    let proxy = Proxy::start(&text);
    let mut c = Conn::connect(proxy.listen);
    let mut got = Vec::new();
    for _ in 0..4 {
        c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let r = c.read_response().unwrap();
        got.push((
            r.status,
            r.header("x-ratelimit-limit").map(str::to_string),
            r.header("x-ratelimit-remaining").map(str::to_string),
            r.header("x-ratelimit-reset").map(str::to_string),
        ));
    }
    let s = |x: &str| Some(x.to_string());
    assert_eq!(
        got,
        vec![
            (200, s("3"), s("2"), s("0")),
            (200, s("3"), s("1"), s("0")),
            (200, s("3"), s("0"), s("20")),
            (503, s("3"), s("0"), s("20")),
        ]
    );
}

#[test]
fn buckets_refill() {
    let up = Upstream::echo();
    let text = config(
        &filter("token_bucket: { max_tokens: 2, tokens_per_fill: 2, fill_interval: 1s }"),
        up.addr,
    );
    let proxy = Proxy::start(&text);
    let mut c = Conn::connect(proxy.listen);
    let mut get = || {
        c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        c.read_response().unwrap().status
    };
    // Spend the bucket (a refill may add one token while this runs: bounded).
    let mut spent = 0;
    while get() == 200 {
        spent += 1;
        assert!(spent < 10, "the bucket never ran dry");
    }
    // A token comes back within the fill interval's share.
    let back = wait_until(Duration::from_secs(5), || (get() == 200).then_some(()));
    assert!(back.is_some(), "no token came back");
}

#[test]
fn descriptors_route_overrides_and_disabled_routes() {
    let up = Upstream::echo();
    let text = config(
        &filter(
            "token_bucket: { max_tokens: 100, fill_interval: 3600s }
          descriptors:
            - entries: [{ key: user, value: alice }]
              token_bucket: { max_tokens: 2, fill_interval: 3600s }",
        ),
        up.addr,
    );
    let proxy = Proxy::start_with(&text, 2);
    let mut c = Conn::connect(proxy.listen);
    let mut get = |path: &str, user: &str| {
        c.send(format!(
            "GET {path} HTTP/1.1\r\nHost: a\r\nx-user: {user}\r\n\r\n"
        ));
        c.read_response().unwrap().status
    };
    let alice: Vec<u16> = (0..3).map(|_| get("/desc", "alice")).collect();
    assert_eq!(alice, vec![200, 200, 429], "alice's descriptor");
    assert_eq!(get("/desc", "bob"), 200, "bob has the default bucket");
    // Without the route's rate_limits no descriptor matches.
    assert_eq!(get("/", "alice"), 200);
    // The route's own config: its own bucket and stats.
    assert_eq!(get("/route", "x"), 200);
    assert_eq!(get("/route", "x"), 429);
    assert_eq!(
        counter(&proxy, "route_rl.http_local_rate_limit.rate_limited"),
        1
    );
    // Disabled on the route: never limited, never counted.
    let before = counter(&proxy, "lim.http_local_rate_limit.enabled");
    for _ in 0..5 {
        assert_eq!(get("/off", "alice"), 200);
    }
    assert_eq!(counter(&proxy, "lim.http_local_rate_limit.enabled"), before);
}

#[test]
fn per_connection_buckets() {
    let up = Upstream::echo();
    let text = config(
        &filter("token_bucket: { max_tokens: 2, fill_interval: 3600s }\n          local_rate_limit_per_downstream_connection: true"),
        up.addr,
    );
    let proxy = Proxy::start_with(&text, 2);
    for _ in 0..3 {
        assert_eq!(burst(proxy.listen, "/", 3), vec![200, 200, 429]);
    }
}

#[test]
fn fractions_at_zero_and_one_hundred() {
    let up = Upstream::echo();
    // filter_enabled unset (Envoy: 0%): the filter does nothing, not even count.
    let off = "stat_prefix: off\n          token_bucket: { max_tokens: 1, fill_interval: 3600s }\n          enable_x_ratelimit_headers: true";
    let proxy = Proxy::start(&config(off, up.addr));
    let mut c = Conn::connect(proxy.listen);
    for _ in 0..3 {
        c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-ratelimit-limit"), None);
    }
    assert_eq!(counter(&proxy, "off.http_local_rate_limit.enabled"), 0);
    drop(proxy);
    // Enabled at 100%, enforced at 0%: limited requests are counted and go upstream
    // with request_headers_to_add_when_not_enforced.
    let shadow = "stat_prefix: shadow
          token_bucket: { max_tokens: 1, fill_interval: 3600s }
          filter_enabled: { default_value: { numerator: 100 } }
          filter_enforced: { default_value: { numerator: 0 } }
          request_headers_to_add_when_not_enforced: [{ name: x-limited, value: 'true' }]";
    let proxy = Proxy::start(&config(shadow, up.addr));
    let mut c = Conn::connect(proxy.listen);
    for i in 0..3 {
        c.send("GET /up HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(c.read_response().unwrap().status, 200);
        let expect = if i == 0 { None } else { Some("true") };
        assert_eq!(up.last_request().header("x-limited"), expect);
    }
    assert_eq!(
        counter(&proxy, "shadow.http_local_rate_limit.rate_limited"),
        2
    );
    assert_eq!(counter(&proxy, "shadow.http_local_rate_limit.enforced"), 0);
}

#[test]
fn bad_configs_are_refused_with_the_field() {
    let dir = TempDir::new("rl");
    let path = dir.join("bad.yaml");
    let text = config(
        &filter("token_bucket: { max_tokens: 0, fill_interval: 1s }\n          vh_rate_limits: SOMETIMES"),
        "127.0.0.1:9".parse().unwrap(),
    )
    .replace(
        "rate_limits:\n              - actions: [{ request_headers: { header_name: x-user, descriptor_key: user } }]",
        "rate_limits:\n              - actions: [{ request_headers: { header_name: x-user, descriptor_key: '' } }]",
    )
    .replace("                  token_bucket: { max_tokens: 1, fill_interval: 3600s }\n", "")
    .replace("@ADMIN_PORT@", "9")
    .replace("@PORT@", "10");
    write_atomic(&path, &text);
    let out = run_cli(
        &["validate", "-c", &path.display().to_string()],
        Duration::from_secs(10),
    );
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{err}");
    for field in [
        "listeners[0].http_filters[0].local_ratelimit.token_bucket.max_tokens",
        "listeners[0].http_filters[0].local_ratelimit.vh_rate_limits",
        "routes[0].rate_limits[0].actions[0].request_headers.descriptor_key",
        "per_filter_config.rl.local_ratelimit.token_bucket",
    ] {
        assert!(err.contains(field), "missing {field} in:\n{err}");
    }
}

/// The rate limit's counters are the config's named counters, as RBAC's: both filters
/// of one chain count under Envoy's names on `/stats` and `/stats/prometheus`, and the
/// counts (and the spent bucket) survive a reload.
#[test]
fn counters_are_named_like_rbacs_on_both_stats_pages_and_kept_across_a_reload() {
    let up = Upstream::echo();
    let text = config(
        &filter("token_bucket: { max_tokens: 2, fill_interval: 3600s }"),
        up.addr,
    )
    .replace(
        "    http_filters:\n",
        "    http_filters:
      - name: authz
        rbac:
          rules:
            action: DENY
            policies:
              no-bob:
                permissions: [{ any: true }]
                principals: [{ header: { name: x-user, string_match: { exact: bob } } }]
",
    );
    let proxy = Proxy::start_with(&text, 2);
    let get = |user: &str| {
        let mut c = Conn::connect(proxy.listen);
        c.send(format!(
            "GET / HTTP/1.1\r\nHost: a\r\nx-user: {user}\r\n\r\n"
        ));
        c.read_response().unwrap().status
    };
    // RBAC runs first: bob's request never reaches the rate limiter.
    assert_eq!(get("bob"), 403);
    let alice: Vec<u16> = (0..3).map(|_| get("alice")).collect();
    assert_eq!(alice, vec![200, 200, 429]);
    // `extra`: alice's limited requests after the first three.
    let check = |extra: u64| {
        let want = [
            ("http.main.rbac.allowed", 3 + extra),
            ("http.main.rbac.denied", 1),
            ("lim.http_local_rate_limit.enabled", 3 + extra),
            ("lim.http_local_rate_limit.ok", 2),
            ("lim.http_local_rate_limit.rate_limited", 1 + extra),
            ("lim.http_local_rate_limit.enforced", 1 + extra),
            ("lim.http_local_rate_limit.shadow_mode", 0),
        ];
        let text = proxy.prometheus();
        for (name, n) in want {
            assert_eq!(counter(&proxy, name), n, "{name} on /stats");
            let line = format!("outrigger_filter_counter_total{{name=\"{name}\"}} {n}\n");
            assert!(text.contains(&line), "{line} not in\n{text}");
        }
    };
    check(0);
    let r = proxy.reload();
    assert_eq!(r.status, 200, "{}", r.body_str());
    check(0);
    // The same bucket, still spent, and the same counters.
    assert_eq!(get("alice"), 429);
    check(1);
}
