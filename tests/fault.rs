//! The fault-injection filter through the real binary, configured natively: aborts at
//! 100% and 0%, delays (seen as the `DI` flag in the access log and the counter, never
//! timed), header-driven faults and their capped percentages, the gRPC form of an abort,
//! `upstream_cluster` scoping, per-route settings and `max_active_faults`, over HTTP/1
//! and HTTP/2 clients; the response rate limit (a body that arrives whole, and not
//! sooner than the limit lets it: a lower bound only).

mod common;
mod h2client;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

/// One listener with a `fault` filter (header-driven at the filter, fixed on some
/// routes), an access log of `flags path`, and two clusters.
fn config(up: SocketAddr, filter_extra: &str) -> String {
    format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
    access_log:
      path: @DIR@/access.log
      format: '%RESPONSE_FLAGS% %REQ(:PATH)% %RESPONSE_CODE%'
    http_filters:
      - name: faults
        fault:
          delay: {{ header_delay: {{}}, percentage: {{ numerator: 100 }} }}
          abort: {{ header_abort: {{}}, percentage: {{ numerator: 100 }} }}
{filter_extra}route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: /always }}
            cluster: backend
            per_filter_config:
              faults: {{ fault: {{ abort: {{ http_status: 503, percentage: {{ numerator: 100 }} }} }} }}
          - match: {{ prefix: /never }}
            cluster: backend
            per_filter_config:
              faults: {{ fault: {{ abort: {{ http_status: 503, percentage: {{ numerator: 0 }} }} }} }}
          - match: {{ prefix: /grpc }}
            cluster: backend
            per_filter_config:
              faults: {{ fault: {{ abort: {{ grpc_status: 8, percentage: {{ numerator: 100 }} }} }} }}
          - match: {{ prefix: /scoped }}
            cluster: other
            per_filter_config:
              faults: {{ fault: {{ upstream_cluster: backend,
                                  abort: {{ http_status: 500, percentage: {{ numerator: 100 }} }} }} }}
          - match: {{ prefix: /delayed }}
            cluster: backend
            per_filter_config:
              faults: {{ fault: {{ delay: {{ fixed_delay: 20ms, percentage: {{ numerator: 100 }} }} }} }}
          - match: {{ prefix: /slow }}
            cluster: backend
            per_filter_config:
              faults: {{ fault: {{ response_rate_limit: {{ fixed_limit: {{ limit_kbps: 1 }},
                                                       percentage: {{ numerator: 100 }} }} }} }}
          - match: {{ prefix: /to-backend }}
            weighted_clusters: {{ clusters: [{{ name: other, weight: 0 }}, {{ name: backend, weight: 3 }}] }}
          - match: {{ prefix: /to-other }}
            weighted_clusters: {{ clusters: [{{ name: other, weight: 3 }}, {{ name: backend, weight: 0 }}] }}
          - match: {{ prefix: /by-header }}
            cluster_header: x-cluster
          - match: {{ prefix: /off }}
            cluster: backend
            per_filter_config:
              faults: {{ disabled: true }}
          - match: {{ prefix: / }}
            cluster: backend
clusters:
  - name: backend
    connect_timeout: 1s
    endpoints: [{{ address: 127.0.0.1, port: {port} }}]
  - name: other
    connect_timeout: 1s
    endpoints: [{{ address: 127.0.0.1, port: {port} }}]
",
        port = up.port()
    )
}

fn h1(proxy: &Proxy, path: &str, extra: &str) -> Response {
    exchange(
        proxy.listen,
        &format!("GET {path} HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n{extra}\r\n"),
    )
}

fn counter(proxy: &Proxy, name: &str) -> u64 {
    proxy.stats()["counters"][format!("http.main.fault.{name}")]
        .as_u64()
        .unwrap_or(0)
}

/// The access log once it has `n` lines.
fn log_lines(proxy: &Proxy, n: usize) -> Vec<String> {
    let path = proxy.dir.join("access.log");
    wait_until(Duration::from_secs(10), || {
        let lines: Vec<String> = read_lossy(&path).lines().map(String::from).collect();
        (lines.len() >= n).then_some(lines)
    })
    .unwrap_or_else(|| panic!("access log:\n{}", read_lossy(&path)))
}

#[test]
fn aborts_and_delays_over_http1() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr, ""));
    let r = h1(&proxy, "/always", "");
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (503, "fault filter abort")
    );
    assert_eq!(h1(&proxy, "/never", "").status, 200);
    // Header-driven: the status from the header, the percentage capped by it.
    assert_eq!(
        h1(&proxy, "/x", "x-envoy-fault-abort-request: 429\r\n").status,
        429
    );
    let capped =
        "x-envoy-fault-abort-request: 429\r\nx-envoy-fault-abort-request-percentage: 0\r\n";
    assert_eq!(h1(&proxy, "/x", capped).status, 200);
    assert_eq!(
        h1(&proxy, "/x", "x-envoy-fault-abort-request: 99\r\n").status,
        200
    );
    // Delays: the request goes on, flagged DI; a header delay of 0 is none.
    assert_eq!(h1(&proxy, "/delayed", "").status, 200);
    assert_eq!(
        h1(&proxy, "/x", "x-envoy-fault-delay-request: 15\r\n").status,
        200
    );
    assert_eq!(
        h1(&proxy, "/x", "x-envoy-fault-delay-request: 0\r\n").status,
        200
    );
    // Delay, then abort.
    let both = "x-envoy-fault-delay-request: 5\r\nx-envoy-fault-abort-request: 502\r\n";
    assert_eq!(h1(&proxy, "/both", both).status, 502);
    // The route turns the filter off.
    assert_eq!(
        h1(&proxy, "/off", "x-envoy-fault-abort-request: 500\r\n").status,
        200
    );
    let log = log_lines(&proxy, 10);
    assert_eq!(
        log,
        [
            "FI /always 503",
            "- /never 200",
            "FI /x 429",
            "- /x 200",
            "- /x 200",
            "DI /delayed 200",
            "DI /x 200",
            "- /x 200",
            "DI,FI /both 502",
            "- /off 200",
        ]
    );
    assert_eq!(counter(&proxy, "aborts_injected"), 3);
    assert_eq!(counter(&proxy, "delays_injected"), 3);
    assert_eq!(counter(&proxy, "active_faults"), 0, "every fault ended");
    let l = proxy.listener_stats("main");
    assert_eq!((flag_count(&l, "FI"), flag_count(&l, "DI")), (3, 3));
}

#[test]
fn upstream_cluster_scopes_the_fault() {
    let up = Upstream::echo();
    // The `/scoped` route goes to `other`; the filter-level fault names `backend`.
    let extra = "          upstream_cluster: backend\n";
    let proxy = Proxy::start(&config(up.addr, extra));
    assert_eq!(
        h1(&proxy, "/scoped", "").status,
        200,
        "route's cluster is other"
    );
    let abort = "x-envoy-fault-abort-request: 500\r\n";
    assert_eq!(h1(&proxy, "/x", abort).status, 500, "route goes to backend");
    // Weighted clusters: the cluster picked for the request (Envoy's route entry).
    assert_eq!(h1(&proxy, "/to-backend", abort).status, 500);
    assert_eq!(h1(&proxy, "/to-other", abort).status, 200);
    // `cluster_header`: the header's value, whether or not that cluster exists.
    let to = |c: &str| format!("{abort}x-cluster: {c}\r\n");
    assert_eq!(h1(&proxy, "/by-header", &to("backend")).status, 500);
    assert_eq!(h1(&proxy, "/by-header", &to("other")).status, 200);
    assert_eq!(h1(&proxy, "/by-header", abort).status, 503, "no header: NC");
}

#[test]
fn grpc_requests_get_the_grpc_form_over_http2() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr, ""));
    let listen = proxy.listen;
    let replies = h2client::run(move || async move {
        let mut c = h2client::connect(listen).await;
        let mut out = Vec::new();
        for (path, extra) in [
            ("/grpc", None),
            ("/always", None),
            ("/x", Some(("x-envoy-fault-abort-grpc-request", "14"))),
        ] {
            let mut b = h2client::request("POST", &format!("http://svc{path}"))
                .header("content-type", "application/grpc");
            if let Some((n, v)) = extra {
                b = b.header(n, v);
            }
            out.push(h2client::send(&mut c, b.body(()).unwrap(), b"").await);
        }
        // Not gRPC: a gRPC abort is a plain 200 with Envoy's text.
        let b = h2client::request("GET", "http://svc/grpc");
        out.push(h2client::send(&mut c, b.body(()).unwrap(), b"").await);
        out
    });
    let status = |r: &h2client::Reply| {
        (
            r.status,
            r.header("grpc-status").map(String::from),
            r.header("grpc-message").map(String::from),
        )
    };
    let msg = Some("fault filter abort".to_string());
    assert_eq!(status(&replies[0]), (200, Some("8".into()), msg.clone()));
    // An HTTP status is mapped as for any local reply (503: UNAVAILABLE).
    assert_eq!(status(&replies[1]), (200, Some("14".into()), msg.clone()));
    assert_eq!(status(&replies[2]), (200, Some("14".into()), msg));
    assert_eq!(replies[3].status, 200);
    assert_eq!(replies[3].header("grpc-status"), None);
    assert_eq!(replies[3].body_str(), "fault filter abort");
    // The same gRPC abort over HTTP/1.
    let r = h1(&proxy, "/grpc", "content-type: application/grpc\r\n");
    assert_eq!((r.status, r.header("grpc-status")), (200, Some("8")));
}

#[test]
fn max_active_faults_overflow_lets_requests_through() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr, "          max_active_faults: 1\n"));
    // One request held by a long delay over HTTP/2 makes the one active fault...
    let listen = proxy.listen;
    let held = std::thread::spawn(move || {
        h2client::run(move || async move {
            let mut c = h2client::connect(listen).await;
            let b = h2client::request("GET", "http://svc/held")
                .header("x-envoy-fault-delay-request", "2000");
            h2client::send(&mut c, b.body(()).unwrap(), b"")
                .await
                .status
        })
    });
    let active = wait_until(Duration::from_secs(10), || {
        (counter(&proxy, "active_faults") == 1).then_some(())
    });
    assert!(
        active.is_some(),
        "the delayed request holds an active fault"
    );
    // ...so another fault overflows: the request is proxied untouched.
    assert_eq!(
        h1(&proxy, "/x", "x-envoy-fault-abort-request: 503\r\n").status,
        200
    );
    assert_eq!(counter(&proxy, "faults_overflow"), 1);
    assert_eq!(held.join().unwrap(), 200);
    // Once it is let go, faults are injected again.
    assert_eq!(counter(&proxy, "active_faults"), 0);
    assert_eq!(
        h1(&proxy, "/x", "x-envoy-fault-abort-request: 503\r\n").status,
        503
    );
}

/// 2 KiB at 1 KiB/s: the bucket holds at most one second's worth, so the second KiB
/// waits a second at least, whatever else happens.
const SLOW_BODY: usize = 2048;

fn big_upstream() -> Upstream {
    let mut raw = format!("HTTP/1.1 200 OK\r\ncontent-length: {SLOW_BODY}\r\n\r\n").into_bytes();
    raw.extend_from_slice(pattern(0, SLOW_BODY));
    Upstream::start(fixed(raw))
}

#[test]
fn the_response_rate_limit_paces_the_body_and_holds_a_fault() {
    let up = big_upstream();
    let extra =
        "          response_rate_limit: { header_limit: {}, percentage: { numerator: 100 } }\n";
    let proxy = Proxy::start(&config(up.addr, extra));
    // The route's fixed limit, over HTTP/1.
    let t = std::time::Instant::now();
    let r = h1(&proxy, "/slow", "");
    let took = t.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), SLOW_BODY);
    assert!(matches_pattern(&r.body, 0), "the body arrives whole");
    assert!(
        took >= Duration::from_secs(1),
        "2 KiB at 1 KiB/s took {took:?}"
    );
    // The filter's header limit: no header (or 0), no limit; `1` over HTTP/2.
    assert_eq!(h1(&proxy, "/x", "").body.len(), SLOW_BODY);
    let zero = h1(&proxy, "/x", "x-envoy-fault-throughput-response: 0\r\n");
    assert_eq!(zero.body.len(), SLOW_BODY);
    assert_eq!(counter(&proxy, "response_rl_injected"), 1);
    let listen = proxy.listen;
    let t = std::time::Instant::now();
    let (status, body) = h2client::run(move || async move {
        let mut c = h2client::connect(listen).await;
        let b = h2client::request("GET", "http://svc/x")
            .header("x-envoy-fault-throughput-response", "1");
        let r = h2client::send(&mut c, b.body(()).unwrap(), b"").await;
        (r.status, r.body)
    });
    let took = t.elapsed();
    assert_eq!((status, body.len()), (200, SLOW_BODY));
    assert!(matches_pattern(&body, 0));
    assert!(
        took >= Duration::from_secs(1),
        "over HTTP/2 it took {took:?}"
    );
    assert_eq!(counter(&proxy, "response_rl_injected"), 2);
    // Each stream held its one active fault to its end.
    let idle = wait_until(Duration::from_secs(10), || {
        (counter(&proxy, "active_faults") == 0).then_some(())
    });
    assert!(idle.is_some(), "active faults released");
}
