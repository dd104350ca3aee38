//! The same Envoy bootstrap with `circuit_breakers` on its cluster, handed to Envoy 1.40
//! and to Outrigger: case by case, what the client got (status, `x-envoy-overloaded`,
//! body), how many requests the upstream saw, and the overflow counters and gauges
//! must be the same. Each case gets its own upstream for each proxy.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::envoy::{envoy_or_skip, Envoy};
use common::*;

/// One route to the upstream; `thresholds` is the cluster's one threshold entry,
/// `route_policy` goes under the route's `route:`.
fn bootstrap(up: SocketAddr, thresholds: &str, route_policy: &str) -> String {
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: @ADMIN_PORT@ }} }}
static_resources:
  listeners:
  - name: main
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT@ }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: main
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                route:
                  cluster: up
                  timeout: 20s
{route_policy}          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
    circuit_breakers:
      thresholds:
      - {thresholds}
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}
"#,
        port = up.port()
    )
}

/// Holds every request until `release` is set, then answers 200.
fn held(release: Arc<AtomicBool>) -> Handler {
    Arc::new(move |ctx, _, s| {
        while !release.load(Ordering::SeqCst) && !ctx.stop.load(Ordering::Relaxed) {
            ctx.sleep(Duration::from_millis(5));
        }
        std::io::Write::write_all(s, b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nheld")?;
        Ok(false)
    })
}

/// What the client got for the request that mattered.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    overloaded: Option<String>,
    body: String,
    tries: usize,
    /// Envoy's counters and gauges by their names under `cluster.up.`.
    stats: Vec<(&'static str, u64)>,
}

const STATS: [&str; 4] = [
    "upstream_rq_active_overflow",
    "upstream_rq_pending_overflow",
    "upstream_rq_retry_overflow",
    "circuit_breakers.default.rq_open",
];

/// Envoy's `cluster.up.<name>` from its admin `/stats`.
fn envoy_stat(admin: SocketAddr, name: &str) -> u64 {
    common::envoy::stat(admin, &format!("cluster.up.{name}")).unwrap_or(0)
}

/// The same from Outrigger's `/stats`: Envoy's `upstream_*` counters without the
/// prefix, the gauges of each priority under `circuit_breakers` and
/// `circuit_breakers_high`.
fn our_stat(p: &Proxy, name: &str) -> u64 {
    let c = p.cluster_stats("up");
    let v = if let Some(g) = name.strip_prefix("circuit_breakers.default.") {
        &c["circuit_breakers"][g]
    } else if let Some(g) = name.strip_prefix("circuit_breakers.high.") {
        &c["circuit_breakers_high"][g]
    } else {
        &c[name.trim_start_matches("upstream_")]
    };
    v.as_u64().unwrap_or(0)
}

fn get_once(addr: SocketAddr) -> Response {
    let mut c = Conn::connect(addr);
    c.set_timeout(Duration::from_secs(20));
    c.send("GET /x HTTP/1.1\r\nHost: svc\r\nconnection: close\r\n\r\n");
    c.read_response().expect("a response")
}

/// Holds `hold` requests at the upstream, then sends one more and reads its answer;
/// the stats are read while the others are still held.
fn run(addr: SocketAddr, up: &Upstream, hold: usize, stat: impl Fn(&str) -> u64) -> Seen {
    let mut held: Vec<Conn> = (0..hold)
        .map(|_| {
            let mut c = Conn::connect(addr);
            c.set_timeout(Duration::from_secs(20));
            c.send("GET /held HTTP/1.1\r\nHost: svc\r\nconnection: close\r\n\r\n");
            c
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || (up.heads() == hold)
            .then_some(()))
        .is_some(),
        "the upstream saw {} of {hold} held requests",
        up.heads()
    );
    let r = get_once(addr);
    let seen = Seen {
        status: r.status,
        overloaded: r.header("x-envoy-overloaded").map(str::to_string),
        body: r.body_str(),
        tries: up.heads(),
        stats: STATS.iter().map(|n| (*n, stat(n))).collect(),
    };
    drop(held.drain(..));
    seen
}

struct Case {
    name: &'static str,
    thresholds: &'static str,
    route: &'static str,
    /// Requests held at the upstream before the one that matters.
    hold: usize,
    /// The upstream for the request that matters (after the held ones).
    answer: fn() -> Handler,
}

#[test]
fn envoy_and_outrigger_break_circuits_alike() {
    let Some(bin) = envoy_or_skip("envoy_and_outrigger_break_circuits_alike") else {
        return;
    };
    let retry = "                  retry_policy: { retry_on: 5xx, num_retries: 3, retry_back_off: { base_interval: 0.001s } }\n";
    let cases = [
        Case {
            name: "max_requests: the request over it overflows",
            thresholds: "{ max_requests: 2 }",
            route: "",
            hold: 2,
            answer: echo,
        },
        Case {
            name: "max_pending_requests: 0 refuses a request that needs a connection",
            thresholds: "{ max_pending_requests: 0 }",
            route: "",
            hold: 0,
            answer: echo,
        },
        Case {
            name: "max_retries: 0 stops the retry; the upstream's 503 goes to the client",
            thresholds: "{ max_retries: 0 }",
            route: retry,
            hold: 0,
            answer: || status_oops(503),
        },
        Case {
            name: "a retry budget of nothing stops the retry",
            thresholds:
                "{ retry_budget: { budget_percent: { value: 0 }, min_retry_concurrency: 0 } }",
            route: retry,
            hold: 0,
            answer: || status_oops(503),
        },
    ];
    let mut diffs = Vec::new();
    for c in &cases {
        let upstream = |release: &Arc<AtomicBool>| {
            let hold = held(release.clone());
            let answer = (c.answer)();
            let n = c.hold;
            let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let h: Handler = Arc::new(move |ctx, req, s| {
                if seen.fetch_add(1, Ordering::SeqCst) < n {
                    hold(ctx, req, s)
                } else {
                    answer(ctx, req, s)
                }
            });
            Upstream::start(h)
        };
        let release = Arc::new(AtomicBool::new(false));
        let envoy_up = upstream(&release);
        let envoy = Envoy::start(&bin, &bootstrap(envoy_up.addr, c.thresholds, c.route));
        let admin = envoy.admin;
        let from_envoy = run(envoy.listen, &envoy_up, c.hold, |n| envoy_stat(admin, n));
        release.store(true, Ordering::SeqCst);
        drop(envoy);
        let release = Arc::new(AtomicBool::new(false));
        let ours_up = upstream(&release);
        let proxy = Proxy::start_with(&bootstrap(ours_up.addr, c.thresholds, c.route), 2);
        let from_outrigger = run(proxy.listen, &ours_up, c.hold, |n| our_stat(&proxy, n));
        release.store(true, Ordering::SeqCst);
        if from_envoy != from_outrigger {
            diffs.push(format!(
                "{}:\n  Envoy:     {from_envoy:?}\n  Outrigger: {from_outrigger:?}",
                c.name
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// Threshold fields Outrigger does not implement are refused with their Envoy path.
#[test]
fn unsupported_circuit_breaker_fields_are_refused_by_path() {
    let dir = TempDir::new("cb-envoy-refused");
    let up: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let at = "static_resources.clusters[0].circuit_breakers";
    for (i, (t, want)) in [
        // Envoy refuses it too ("Unsupported field in per_host_thresholds").
        (
            "{ max_requests: 2 }\n      per_host_thresholds: [{ max_connections: 1, max_requests: 1 }]".to_string(),
            format!("{at}.per_host_thresholds[0].max_requests: not supported in per_host_thresholds"),
        ),
    ]
    .iter()
    .enumerate()
    {
        let path = dir.join(&format!("b{i}.yaml"));
        let text = bootstrap(up, t, "")
            .replace("@ADMIN_PORT@", "9901")
            .replace("@PORT@", "10000");
        write_atomic(&path, &text);
        let out = run_cli(
            &["validate", "-c", &path.display().to_string()],
            Duration::from_secs(20),
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "case {i} accepted");
        assert!(
            text.contains(want.as_str()),
            "case {i}: want `{want}` in:\n{text}"
        );
    }
}

/// What one proxy did with two requests at `max_connections: 1`.
#[derive(Debug, PartialEq)]
struct Waited {
    statuses: Vec<u16>,
    upstream_connections: usize,
    cx_overflow_counted: bool,
}

/// At `max_connections: 1` a second request waits for the one connection instead of
/// failing, and goes on it once the first is answered (one worker each, so both
/// requests meet the same pool). The same with the limit per host
/// (`per_host_thresholds`, the cluster's own limit left at its default).
#[test]
fn envoy_and_outrigger_wait_for_a_connection_alike() {
    let Some(bin) = envoy_or_skip("envoy_and_outrigger_wait_for_a_connection_alike") else {
        return;
    };
    let keep_alive_held = |release: Arc<AtomicBool>| -> Handler {
        Arc::new(move |ctx, _, s| {
            while !release.load(Ordering::SeqCst) && !ctx.stop.load(Ordering::Relaxed) {
                ctx.sleep(Duration::from_millis(5));
            }
            std::io::Write::write_all(s, b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nheld")?;
            Ok(true)
        })
    };
    let run =
        |addr: SocketAddr, up: &Upstream, release: &AtomicBool, overflow: &dyn Fn() -> u64| {
            let send = |path: &str| {
                let mut c = Conn::connect(addr);
                c.set_timeout(Duration::from_secs(20));
                c.send(format!(
                    "GET {path} HTTP/1.1\r\nHost: svc\r\nconnection: close\r\n\r\n"
                ));
                c
            };
            let mut first = send("/first");
            assert!(
                wait_until(Duration::from_secs(10), || (up.heads() == 1).then_some(())).is_some(),
                "the first request did not reach the upstream"
            );
            let mut second = send("/second");
            let counted =
                wait_until(Duration::from_secs(10), || (overflow() > 0).then_some(())).is_some();
            release.store(true, Ordering::SeqCst);
            let statuses = [&mut first, &mut second]
                .iter_mut()
                .map(|c| c.read_response().map_or(0, |r| r.status))
                .collect();
            Waited {
                statuses,
                upstream_connections: up.connections(),
                cx_overflow_counted: counted,
            }
        };
    for t in [
        "{ max_connections: 1 }",
        "{ max_requests: 1024 }\n      per_host_thresholds: [{ max_connections: 1 }]",
    ] {
        let release = Arc::new(AtomicBool::new(false));
        let envoy_up = Upstream::start(keep_alive_held(release.clone()));
        let envoy = Envoy::start(&bin, &bootstrap(envoy_up.addr, t, ""));
        let admin = envoy.admin;
        let from_envoy = run(envoy.listen, &envoy_up, &release, &|| {
            envoy_stat(admin, "upstream_cx_overflow")
        });
        drop(envoy);
        let release = Arc::new(AtomicBool::new(false));
        let ours_up = Upstream::start(keep_alive_held(release.clone()));
        let proxy = Proxy::start(&bootstrap(ours_up.addr, t, ""));
        let from_outrigger = run(proxy.listen, &ours_up, &release, &|| {
            proxy.cluster_stats("up")["cx_overflow"]
                .as_u64()
                .unwrap_or(0)
        });
        assert_eq!(from_envoy, from_outrigger, "{t}: Envoy, then Outrigger");
        assert_eq!(from_outrigger.statuses, vec![200, 200], "{t}");
        assert_eq!(from_outrigger.upstream_connections, 1, "{t}");
    }
}

/// What one proxy did with four keep-alive requests over two endpoints at
/// `max_connection_pools: 1`.
#[derive(Debug, PartialEq)]
struct Pools {
    /// (status, body) per request.
    answers: Vec<(u16, String)>,
    /// Requests each upstream saw, in the order the first got the first request.
    seen: Vec<usize>,
    stats: Vec<(&'static str, u64)>,
}

/// `max_connection_pools: 1` with two endpoints, round robin, one worker: the first
/// request makes the pool of its endpoint (its connection stays pooled, so the pool
/// stays), the next one needs the other endpoint's pool and gets Envoy's 503 "no
/// healthy upstream" (UH), counted as `upstream_cx_pool_overflow`; and so on. The
/// gauges `cx_pool_open` and `remaining_cx_pools` are compared too.
#[test]
fn envoy_and_outrigger_limit_connection_pools_alike() {
    let Some(bin) = envoy_or_skip("envoy_and_outrigger_limit_connection_pools_alike") else {
        return;
    };
    const POOL_STATS: [&str; 4] = [
        "upstream_cx_pool_overflow",
        "upstream_rq_5xx",
        "circuit_breakers.default.cx_pool_open",
        "circuit_breakers.default.remaining_cx_pools",
    ];
    let run = |addr: SocketAddr, ups: &[Upstream; 2], stat: &dyn Fn(&str) -> u64| -> Pools {
        let mut c = Conn::connect(addr);
        c.set_timeout(Duration::from_secs(10));
        let answers = (0..4)
            .map(|_| {
                c.send("GET /x HTTP/1.1\r\nHost: svc\r\n\r\n");
                let r = c.read_response().expect("a response");
                (r.status, r.body_str())
            })
            .collect();
        let mut seen: Vec<usize> = ups.iter().map(Upstream::heads).collect();
        seen.sort_unstable_by(|a, b| b.cmp(a));
        Pools {
            answers,
            seen,
            stats: POOL_STATS.iter().map(|n| (*n, stat(n))).collect(),
        }
    };
    let two = || {
        [
            Upstream::start(fixed("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")),
            Upstream::start(fixed("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")),
        ]
    };
    let text = |ups: &[Upstream; 2]| {
        let second = format!(
            "        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}\n",
            ups[1].addr.port()
        );
        bootstrap(
            ups[0].addr,
            "{ max_connection_pools: 1, track_remaining: true }",
            "",
        ) + &second
    };
    let ups = two();
    let envoy = Envoy::start(&bin, &text(&ups));
    let admin = envoy.admin;
    let from_envoy = run(envoy.listen, &ups, &|n| envoy_stat(admin, n));
    drop(envoy);
    let ups = two();
    let proxy = Proxy::start(&text(&ups));
    let ours = run(proxy.listen, &ups, &|n| match n {
        "upstream_rq_5xx" => proxy.cluster_stats("up")["rq_class"][4]
            .as_u64()
            .unwrap_or(0),
        _ => our_stat(&proxy, n),
    });
    assert_eq!(ours, from_envoy, "outrigger, then envoy");
    assert_eq!(
        ours.answers[1],
        (503, "no healthy upstream".to_string()),
        "{ours:?}"
    );
}

/// Two DEFAULT entries: the first applies, as in Envoy (its `find_if`); the gauges
/// with `track_remaining`, `remaining_cx_pools` at its unlimited default included.
#[test]
fn the_first_entry_of_a_priority_applies_as_in_envoy() {
    let Some(bin) = envoy_or_skip("the_first_entry_of_a_priority_applies_as_in_envoy") else {
        return;
    };
    const GAUGES: [&str; 4] = [
        "remaining_cx",
        "remaining_rq",
        "remaining_pending",
        "remaining_cx_pools",
    ];
    let up = Upstream::start(fixed("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"));
    let text = bootstrap(
        up.addr,
        "{ max_connections: 5, max_requests: 6, track_remaining: true }\n      - { max_connections: 7, max_requests: 8, max_pending_requests: 9, track_remaining: true }",
        "",
    );
    let envoy = Envoy::start(&bin, &text);
    let from_envoy: Vec<u64> = GAUGES
        .iter()
        .map(|g| envoy_stat(envoy.admin, &format!("circuit_breakers.default.{g}")))
        .collect();
    drop(envoy);
    let proxy = Proxy::start(&text);
    let cb = &proxy.cluster_stats("up")["circuit_breakers"];
    let ours: Vec<u64> = GAUGES
        .iter()
        .map(|g| cb[*g].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(ours, from_envoy, "outrigger, then envoy: {GAUGES:?}");
    assert_eq!(ours[..3], [5, 6, 1024], "{ours:?}");
}

/// The bootstrap above with a second route first: `/hi` at `priority: HIGH`, with the
/// same `route_policy`.
fn with_high_route(up: SocketAddr, thresholds: &str, route_policy: &str) -> String {
    let high = format!(
        "              - match: {{ prefix: /hi }}\n                route:\n                  cluster: up\n                  timeout: 20s\n                  priority: HIGH\n{route_policy}              - match: {{ prefix: / }}\n"
    );
    bootstrap(up, thresholds, route_policy).replacen(
        "              - match: { prefix: / }\n",
        &high,
        1,
    )
}

/// What one proxy did with a priority case.
#[derive(Debug, PartialEq)]
struct ByPriority {
    /// (path, status, x-envoy-overloaded) for each request after the held one.
    answers: Vec<(&'static str, u16, Option<String>)>,
    /// Requests the upstream saw, the held one included.
    tries: usize,
    /// Connections the upstream saw (only where the case counts them).
    connections: Option<usize>,
    stats: Vec<(&'static str, u64)>,
}

const OVERFLOWS: [&str; 5] = [
    "upstream_rq_active_overflow",
    "upstream_rq_retry_overflow",
    "upstream_rq_retry",
    "circuit_breakers.default.rq_open",
    "circuit_breakers.high.rq_open",
];
const CONNECTIONS: [&str; 2] = [
    "circuit_breakers.default.remaining_cx",
    "circuit_breakers.high.remaining_cx",
];

/// A route's `priority: HIGH` takes the cluster's HIGH thresholds and its own
/// connection pools, as in Envoy: a limit reached at one priority leaves the other's
/// requests alone, retries count against their priority's `max_retries`, and a
/// keep-alive connection of one priority is never used by the other (the upstream sees
/// a connection per priority). Each case: optionally one request held at the upstream
/// (`/held` or `/hi/held`), then requests one after another on one client connection.
/// Connections are counted only where no request overflows `max_requests`: Envoy 1.40
/// checks that limit once the request has a connection, so a refused request with no
/// idle one opens a connection first (and pools it), which Outrigger does not.
#[test]
fn envoy_and_outrigger_keep_priorities_apart() {
    let Some(bin) = envoy_or_skip("envoy_and_outrigger_keep_priorities_apart") else {
        return;
    };
    let retry = "                  retry_policy: { retry_on: 5xx, num_retries: 2, retry_back_off: { base_interval: 0.001s } }\n";
    let both = |d: &str, h: &str| {
        format!("{{ track_remaining: true{d} }}\n      - {{ priority: HIGH, track_remaining: true{h} }}")
    };
    // (name, thresholds, route policy, held path, requests, the upstream answers 503,
    // connections counted)
    type Case = (
        &'static str,
        String,
        &'static str,
        Option<&'static str>,
        &'static [&'static str],
        bool,
        bool,
    );
    let cases: [Case; 4] = [
        (
            "DEFAULT's max_requests reached: a HIGH request still goes",
            both(", max_requests: 1", ""),
            "",
            Some("/held"),
            &["/hi/x", "/x"],
            false,
            false,
        ),
        (
            "HIGH's max_requests reached: a DEFAULT request still goes",
            both("", ", max_requests: 1"),
            "",
            Some("/hi/held"),
            &["/x", "/hi/x"],
            false,
            false,
        ),
        (
            "each priority has its own pools: two upstream connections",
            both("", ""),
            "",
            None,
            &["/x", "/hi/x", "/x", "/hi/x"],
            false,
            true,
        ),
        (
            "HIGH's max_retries: 0 stops HIGH's retries only",
            both("", ", max_retries: 0"),
            retry,
            None,
            &["/hi/x", "/x"],
            true,
            true,
        ),
    ];
    let run = |addr: SocketAddr,
               up: &Upstream,
               release: &AtomicBool,
               held: Option<&str>,
               paths: &[&'static str],
               counted: bool,
               stat: &dyn Fn(&str) -> u64| {
        let held = held.map(|p| {
            let mut c = Conn::connect(addr);
            c.set_timeout(Duration::from_secs(20));
            c.send(format!("GET {p} HTTP/1.1\r\nHost: svc\r\n\r\n"));
            assert!(
                wait_until(Duration::from_secs(10), || (up.heads() == 1).then_some(())).is_some(),
                "the held request did not reach the upstream"
            );
            c
        });
        let mut c = Conn::connect(addr);
        c.set_timeout(Duration::from_secs(20));
        let answers = paths
            .iter()
            .map(|p| {
                c.send(format!("GET {p} HTTP/1.1\r\nHost: svc\r\n\r\n"));
                let r = c.read_response().unwrap_or_else(|e| panic!("{p}: {e}"));
                (
                    *p,
                    r.status,
                    r.header("x-envoy-overloaded").map(str::to_string),
                )
            })
            .collect();
        let names = OVERFLOWS
            .iter()
            .chain(CONNECTIONS.iter().filter(|_| counted));
        let seen = ByPriority {
            answers,
            tries: up.heads(),
            connections: counted.then(|| up.connections()),
            stats: names.map(|n| (*n, stat(n))).collect(),
        };
        release.store(true, Ordering::SeqCst);
        drop(held);
        seen
    };
    let upstream = |release: &Arc<AtomicBool>, fail: bool| {
        let release = release.clone();
        let answer = if fail { status_oops(503) } else { echo() };
        let h: Handler = Arc::new(move |ctx, req, s| {
            if req.target.ends_with("/held") {
                while !release.load(Ordering::SeqCst) && !ctx.stop.load(Ordering::Relaxed) {
                    ctx.sleep(Duration::from_millis(5));
                }
                std::io::Write::write_all(s, b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nheld")?;
                return Ok(true);
            }
            answer(ctx, req, s)
        });
        Upstream::start(h)
    };
    let mut diffs = Vec::new();
    for (name, thresholds, route, held, paths, fail, counted) in &cases {
        let release = Arc::new(AtomicBool::new(false));
        let envoy_up = upstream(&release, *fail);
        let envoy = Envoy::start(&bin, &with_high_route(envoy_up.addr, thresholds, route));
        let admin = envoy.admin;
        let from_envoy = run(
            envoy.listen,
            &envoy_up,
            &release,
            *held,
            paths,
            *counted,
            &|n| envoy_stat(admin, n),
        );
        drop(envoy);
        let release = Arc::new(AtomicBool::new(false));
        let ours_up = upstream(&release, *fail);
        let proxy = Proxy::start_with(&with_high_route(ours_up.addr, thresholds, route), 2);
        let ours = run(
            proxy.listen,
            &ours_up,
            &release,
            *held,
            paths,
            *counted,
            &|n| our_stat(&proxy, n),
        );
        if from_envoy != ours {
            diffs.push(format!(
                "{name}:\n  Envoy:     {from_envoy:?}\n  Outrigger: {ours:?}"
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
