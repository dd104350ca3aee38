//! Access logs: the default (Envoy-like) format, every operator of a custom format,
//! response flags, prompt flushing by the background thread, stdout, several workers.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;

fn config(up: SocketAddr, access_log: &str) -> String {
    format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
{access_log}route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ path: /direct }}
            direct_response: {{ status: 200, body: \"direct\" }}
          - match: {{ prefix: /empty }}
            cluster: empty
          - match: {{ prefix: /up }}
            cluster: backend
clusters:
  - name: backend
    endpoints:
      - address: 127.0.0.1
        port: {}
  - name: empty
    endpoints: []
",
        up.port()
    )
}

fn file_log(format: Option<&str>) -> String {
    let mut s = "    access_log:\n      path: @DIR@/access.log\n".to_string();
    if let Some(f) = format {
        s.push_str(&format!("      format: '{f}'\n"));
    }
    s
}

fn log_path(proxy: &Proxy) -> PathBuf {
    proxy.dir.join("access.log")
}

fn wait_line(proxy: &Proxy, needle: &str) -> String {
    let p = log_path(proxy);
    wait_for_line(&p, Duration::from_secs(5), |l| l.contains(needle)).unwrap_or_else(|| {
        panic!(
            "no access-log line containing {needle:?}:\n{}",
            read_lossy(&p)
        )
    })
}

fn is_timestamp(s: &str) -> bool {
    // 2026-11-24T04:05:06.789Z
    let b = s.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            23 => c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn default_format_has_method_path_status_flags_bytes_and_upstream() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr, &file_log(None)));
    let raw = "GET /up/default?x=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let r = exchange(proxy.listen, raw);
    assert_eq!(r.status, 200);
    let line = wait_line(&proxy, "/up/default");
    // Envoy's default: [START_TIME] "METHOD PATH PROTOCOL" CODE FLAGS RX TX DURATION
    // SERVICE_TIME "XFF" "USER_AGENT" "REQUEST_ID" "AUTHORITY" "UPSTREAM"
    let (ts, rest) = line
        .strip_prefix('[')
        .and_then(|l| l.split_once("] "))
        .unwrap_or_else(|| panic!("{line}"));
    assert!(is_timestamp(ts), "bad timestamp {ts:?} in {line}");
    let expected_tail = format!("\"{}\"", up.addr);
    let fields: Vec<&str> = rest.split(' ').collect();
    assert_eq!(
        fields[0..3],
        ["\"GET", "/up/default?x=1", "HTTP/1.1\""],
        "{line}"
    );
    assert_eq!(fields[3], "200", "{line}");
    assert_eq!(fields[4], "-", "{line}");
    // Envoy counts body bytes of an HTTP stream.
    assert_eq!(fields[5], "0", "bytes received: {line}");
    assert_eq!(fields[6], r.body_len.to_string(), "bytes sent: {line}");
    assert!(fields[7].parse::<u64>().is_ok(), "duration: {line}");
    // x-envoy-upstream-service-time: only when the connection manager adds it.
    assert!(
        fields[8] == "-" || fields[8].parse::<u64>().is_ok(),
        "upstream service time: {line}"
    );
    assert_eq!(fields[12], "\"t\"", "authority: {line}");
    assert_eq!(fields[13], expected_tail, "{line}");
    assert_eq!(fields.len(), 14, "{line}");
}

const ALL: &str = "%START_TIME%|%REQ(:METHOD)%|%REQ(:PATH)%|%PROTOCOL%|%RESPONSE_CODE%|%RESPONSE_FLAGS%|%BYTES_RECEIVED%|%BYTES_SENT%|%DURATION%|%UPSTREAM_HOST%|%DOWNSTREAM_REMOTE_ADDRESS%|%REQ(:AUTHORITY)%|%REQ(USER-AGENT)%|%LISTENER_NAME%|%UPSTREAM_CLUSTER%|100%%";

fn fields(line: &str) -> Vec<String> {
    line.split('|').map(str::to_string).collect()
}

#[test]
fn custom_format_fields() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr, &file_log(Some(ALL))));
    let mut c = Conn::connect(proxy.listen);
    let local = c.stream.local_addr().unwrap();
    let head = "POST /up/custom HTTP/1.1\r\nHost: api.example:8080\r\nUser-Agent: tester/1.0\r\nContent-Length: 11\r\n\r\n";
    c.send(head);
    c.send("hello world");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    let f = fields(&wait_line(&proxy, "|/up/custom|"));
    assert!(is_timestamp(&f[0]), "{f:?}");
    assert_eq!(f[1], "POST");
    assert_eq!(f[2], "/up/custom");
    assert_eq!(f[3], "HTTP/1.1");
    assert_eq!(f[4], "200");
    assert_eq!(f[5], "-");
    // Envoy counts body bytes of an HTTP stream.
    assert_eq!(f[6], "11", "bytes received");
    assert_eq!(f[7], r.body_len.to_string(), "bytes sent");
    assert!(f[8].parse::<u64>().unwrap() < 5000);
    assert_eq!(f[9], up.addr.to_string());
    assert_eq!(f[10], local.to_string());
    assert_eq!(f[11], "api.example:8080");
    assert_eq!(f[12], "tester/1.0");
    assert_eq!(f[13], "main");
    assert_eq!(f[14], "backend");
    assert_eq!(f[15], "100%");

    // The next request on the same connection does not inherit fields of the first.
    c.send("GET /direct HTTP/1.0\r\nHost: other\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    let f = fields(&wait_line(&proxy, "|/direct|"));
    assert_eq!(f[1], "GET");
    assert_eq!(f[3], "HTTP/1.0");
    assert_eq!(f[9], "-", "no upstream for a direct response");
    assert_eq!(f[11], "other");
    assert_eq!(f[12], "-", "user agent leaked from the previous request");
    assert_eq!(f[14], "-", "cluster leaked from the previous request");
}

#[test]
fn flags_for_local_replies_and_rejections() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr, &file_log(Some(ALL))));
    assert_eq!(get(proxy.listen, "t", "/nowhere").status, 404);
    let f = fields(&wait_line(&proxy, "|/nowhere|"));
    assert_eq!(
        (f[4].as_str(), f[5].as_str(), f[9].as_str()),
        ("404", "NR", "-")
    );

    assert_eq!(get(proxy.listen, "t", "/direct").status, 200);
    let f = fields(&wait_line(&proxy, "|/direct|"));
    assert_eq!((f[4].as_str(), f[5].as_str()), ("200", "-"));

    let r = exchange(proxy.listen, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert_eq!(r.status, 400);
    let line = wait_line(&proxy, "|400|");
    assert_eq!(fields(&line)[5], "DPE", "{line}");
}

#[test]
fn upstream_cluster_is_logged_when_the_cluster_has_no_endpoints() {
    // The route chose cluster `empty`; %UPSTREAM_CLUSTER% should say so even though no
    // endpoint could be picked (that is what an operator needs to debug a UH).
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr, &file_log(Some(ALL))));
    assert_eq!(get(proxy.listen, "t", "/empty").status, 503);
    let f = fields(&wait_line(&proxy, "|/empty|"));
    assert_eq!(
        (f[4].as_str(), f[5].as_str(), f[9].as_str()),
        ("503", "UH", "-")
    );
    assert_eq!(f[14], "empty", "{f:?}");
}

#[test]
fn lines_are_flushed_promptly() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(
        up.addr,
        &file_log(Some("%REQ(:PATH)% %RESPONSE_CODE%")),
    ));
    let p = log_path(&proxy);
    let mut worst = Duration::ZERO;
    for i in 0..5 {
        let path = format!("/up/flush/{i}");
        assert_eq!(get(proxy.listen, "t", &path).status, 200);
        let start = Instant::now();
        let want = format!("{path} 200");
        let found = wait_for_line(&p, Duration::from_secs(3), |l| l == want);
        assert!(
            found.is_some(),
            "line {want:?} not flushed:\n{}",
            read_lossy(&p)
        );
        worst = worst.max(start.elapsed());
    }
    eprintln!("slowest access-log flush: {worst:?}");
    assert!(
        worst < Duration::from_secs(1),
        "a line took {worst:?} to reach the file"
    );
}

#[test]
fn stdout_access_log() {
    let up = Upstream::echo();
    let log = "    access_log:\n      path: stdout\n      format: 'STDOUT %REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%'\n";
    let proxy = Proxy::start(&config(up.addr, log));
    assert_eq!(get(proxy.listen, "t", "/up/out").status, 200);
    let found = wait_until(Duration::from_secs(5), || {
        proxy
            .stdout()
            .lines()
            .any(|l| l == "STDOUT /up/out 200 -")
            .then_some(())
    });
    assert!(found.is_some(), "stdout:\n{}", proxy.stdout());
}

#[test]
fn every_request_is_logged_with_several_workers() {
    let up = Upstream::echo();
    let proxy = Proxy::start_with(
        &config(up.addr, &file_log(Some("%REQ(:PATH)% %RESPONSE_CODE%"))),
        2,
    );
    let n = 60;
    for i in 0..n {
        let r = get(proxy.listen, "t", &format!("/up/many/{i}"));
        assert_eq!(r.status, 200);
    }
    let p = log_path(&proxy);
    let all = wait_until(Duration::from_secs(5), || {
        let text = read_lossy(&p);
        (text.lines().filter(|l| l.starts_with("/up/many/")).count() >= n).then_some(text)
    })
    .unwrap_or_else(|| panic!("missing lines:\n{}", read_lossy(&p)));
    for i in 0..n {
        let want = format!("/up/many/{i} 200");
        assert_eq!(
            all.lines().filter(|l| *l == want).count(),
            1,
            "{want} logged not exactly once"
        );
    }
    let l = proxy.listener_stats("main");
    assert_eq!(l["access_log_dropped"], 0, "{l}");
}

#[test]
fn only_listeners_with_an_access_log_write_lines() {
    let up = Upstream::echo();
    let yaml = config(up.addr, &file_log(Some("%LISTENER_NAME% %REQ(:PATH)%"))).replace(
        "route_tables:",
        "  - name: quiet
    address: 127.0.0.1
    port: @PORT2@
    route_table: main
route_tables:",
    );
    let proxy = Proxy::start(&yaml);
    assert_eq!(get(proxy.listen2, "t", "/direct").status, 200);
    assert_eq!(get(proxy.listen, "t", "/up/loud").status, 200);
    wait_line(&proxy, "main /up/loud");
    let text = read_lossy(&log_path(&proxy));
    assert!(!text.contains("quiet"), "{text}");
}

#[test]
fn lines_from_connections_accepted_before_a_reload_are_written() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(
        up.addr,
        &file_log(Some("%REQ(:PATH)% %RESPONSE_CODE%")),
    ));
    let p = log_path(&proxy);
    let mut old = Conn::connect(proxy.listen);
    old.send("GET /up/before HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(old.read_response().unwrap().status, 200);
    wait_line(&proxy, "/up/before 200");

    // Reload the same file: the connection above moves to the new config (its chain is
    // unchanged), and its requests must still be logged.
    assert_eq!(proxy.reload().status, 200);
    let ready = wait_until(Duration::from_secs(5), || {
        (proxy.admin_get("/ready").status == 200).then_some(())
    });
    assert!(ready.is_some());
    old.send("GET /up/old-connection HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(old.read_response().unwrap().status, 200);
    assert_eq!(get(proxy.listen, "t", "/up/new-connection").status, 200);
    wait_line(&proxy, "/up/new-connection 200");
    let found = wait_for_line(&p, Duration::from_secs(3), |l| {
        l == "/up/old-connection 200"
    });
    if found.is_none() {
        // Also not after the connection closes.
        drop(old);
        let late = wait_for_line(&p, Duration::from_secs(2), |l| {
            l == "/up/old-connection 200"
        });
        panic!(
            "a request on a connection accepted before the reload was not logged \
             (still missing after the connection closed: {}):\n{}",
            late.is_none(),
            read_lossy(&p)
        );
    }
}

#[test]
fn lines_are_written_before_exit() {
    let up = Upstream::echo();
    let mut proxy = Proxy::start(&config(
        up.addr,
        &file_log(Some("%REQ(:PATH)% %RESPONSE_CODE%")),
    ));
    for i in 0..20 {
        assert_eq!(get(proxy.listen, "t", &format!("/up/last/{i}")).status, 200);
    }
    // Right away, before the periodic flush.
    let status = proxy.terminate(Duration::from_secs(5)).expect("exit");
    assert_eq!(status.code(), Some(0));
    let text = read_lossy(&log_path(&proxy));
    assert_eq!(
        text.lines().filter(|l| l.starts_with("/up/last/")).count(),
        20,
        "{text}"
    );
}

#[test]
fn the_attempt_count_counts_the_retries() {
    // Two 503s, then a 200: the request took three tries.
    let up = Upstream::start(fail_first(2, status_oops(503)));
    let cfg = config(
        up.addr,
        &file_log(Some("%REQ(:PATH)% %RESPONSE_CODE% %UPSTREAM_REQUEST_ATTEMPT_COUNT%")),
    )
    .replace(
        "            cluster: backend\n",
        "            cluster: backend\n            retry_policy:\n              retry_on: 5xx\n              num_retries: 2\n",
    );
    let proxy = Proxy::start(&cfg);
    assert_eq!(get(proxy.listen, "t", "/up/retried").status, 200);
    assert_eq!(wait_line(&proxy, "/up/retried"), "/up/retried 200 3");
    assert_eq!(get(proxy.listen, "t", "/up/once").status, 200);
    assert_eq!(wait_line(&proxy, "/up/once"), "/up/once 200 1");
}
