//! proxy-wasm HTTP filters (`wasm:`, Envoy's `envoy.filters.http.wasm`) through the
//! binary, with modules the tests write in WebAssembly text (`wasm_modules`): header
//! edits both ways, a local response, traps and a loop contained by the failure policy
//! and the fuel limit (the worker keeps serving), shared data, and bad modules refused
//! at load with the reason (at start, and on reload with the running config kept).

mod common;
mod h2client;
mod wasm_modules;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;

/// One listener with the wasm filter `extra` (YAML lines under `wasm:`) in front of
/// `upstream`.
fn config(upstream: SocketAddr, module: &Path, extra: &str) -> String {
    format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
    http_filters:
      - name: plugin
        wasm:
          name: test_plugin
          root_id: test_root
          code: {{ filename: {} }}
{extra}route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            cluster: backend
clusters:
  - name: backend
    connect_timeout: 1s
    endpoints:
      - {{ address: 127.0.0.1, port: {} }}
",
        module.display(),
        upstream.port()
    )
}

fn get(proxy: &Proxy, path: &str, headers: &str) -> Response {
    let mut c = Conn::connect(proxy.listen);
    c.send(format!(
        "GET {path} HTTP/1.1\r\nHost: a\r\n{headers}Connection: close\r\n\r\n"
    ));
    c.read_response().expect("a response")
}

fn h2_get(
    addr: SocketAddr,
    path: &str,
    header: Option<(&'static str, &'static str)>,
) -> h2client::Reply {
    let uri = format!("http://{addr}{path}");
    h2client::run(move || async move {
        let mut c = h2client::connect(addr).await;
        let mut b = h2client::request("GET", &uri);
        if let Some((n, v)) = header {
            b = b.header(n, v);
        }
        h2client::send(&mut c, b.body(()).unwrap(), b"").await
    })
}

#[test]
fn a_filter_adds_request_and_response_headers_on_both_client_protocols() {
    let up = Upstream::echo();
    let dir = TempDir::new("wasm-add");
    let m = wasm_modules::write(dir.path(), "add", &wasm_modules::add_headers());
    let proxy = Proxy::start_with(&config(up.addr, &m, ""), 2);
    for i in 0..4 {
        let r = get(&proxy, &format!("/x?{i}"), "");
        assert_eq!(r.status, 200, "{}", r.body_str());
        assert_eq!(r.header("x-wasm-response"), Some("on"));
        let req = up.last_request();
        assert_eq!(req.header("x-wasm-request"), Some("on"));
        assert_eq!(req.header("x-wasm-path"), Some(format!("/x?{i}").as_str()));
    }
    // HTTP/2 client, HTTP/1 upstream.
    let r = h2_get(proxy.listen, "/h2", None);
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(r.header("x-wasm-response"), Some("on"));
    assert_eq!(up.last_request().header("x-wasm-request"), Some("on"));
}

#[test]
fn a_filter_denies_with_a_local_response() {
    let up = Upstream::echo();
    let dir = TempDir::new("wasm-deny");
    let m = wasm_modules::write(dir.path(), "deny", &wasm_modules::deny());
    let proxy = Proxy::start(&config(up.addr, &m, ""));
    let r = get(&proxy, "/", "x-deny: 1\r\n");
    assert_eq!(r.status, 403);
    assert_eq!(r.body_str(), "denied by wasm");
    assert_eq!(r.header("x-wasm-denied"), Some("yes"));
    assert_eq!(up.request_count(), 0, "a denied request went upstream");
    let r = get(&proxy, "/", "");
    assert_eq!(r.status, 200);
    assert_eq!(up.request_count(), 1);
    let r = h2_get(proxy.listen, "/", Some(("x-deny", "1")));
    assert_eq!((r.status, r.body_str().as_str()), (403, "denied by wasm"));
}

#[test]
fn a_trap_fails_the_request_and_the_worker_keeps_serving() {
    let up = Upstream::echo();
    let dir = TempDir::new("wasm-trap");
    let m = wasm_modules::write(dir.path(), "trap", &wasm_modules::trap());

    // fail_closed (Envoy's default): the trapping request gets a 503, and so does every
    // later request of the failed VM; the worker itself keeps serving.
    let proxy = Proxy::start(&config(up.addr, &m, ""));
    assert_eq!(get(&proxy, "/", "").status, 200);
    assert_eq!(get(&proxy, "/", "x-trap: 1\r\n").status, 503);
    assert_eq!(get(&proxy, "/", "").status, 503);
    assert_eq!(proxy.admin_get("/ready").status, 200);
    drop(proxy);

    // fail_reload: a request a second after the failure gets a new VM (Envoy's reload
    // back-off); until then the failed VM answers 503.
    let proxy = Proxy::start(&config(
        up.addr,
        &m,
        "          failure_policy: fail_reload\n",
    ));
    assert_eq!(get(&proxy, "/", "x-trap: 1\r\n").status, 503);
    reloads(&proxy);
    drop(proxy);

    // fail_open: the trapping request still gets its 503 (as in Envoy); the failed
    // filter is skipped for the later ones, which reach the upstream.
    let seen = up.request_count();
    let proxy = Proxy::start(&config(
        up.addr,
        &m,
        "          failure_policy: fail_open\n",
    ));
    assert_eq!(get(&proxy, "/", "x-trap: 1\r\n").status, 503);
    assert_eq!(get(&proxy, "/", "x-trap: 1\r\n").status, 200);
    assert_eq!(get(&proxy, "/", "").status, 200);
    assert_eq!(up.request_count(), seen + 2);
}

#[test]
fn an_endless_loop_is_stopped_by_the_fuel_limit() {
    let up = Upstream::echo();
    let dir = TempDir::new("wasm-loop");
    let m = wasm_modules::write(dir.path(), "loop", &wasm_modules::infinite_loop());
    let extra = "          max_fuel_per_call: 5000000\n          failure_policy: fail_reload\n";
    let proxy = Proxy::start(&config(up.addr, &m, extra));
    assert_eq!(get(&proxy, "/", "x-loop: 1\r\n").status, 503);
    assert!(
        proxy.stderr().contains("ran out of fuel"),
        "{}",
        proxy.stderr()
    );
    reloads(&proxy);
    assert_eq!(get(&proxy, "/", "x-loop: 1\r\n").status, 503);
    reloads(&proxy);
}

/// A failed VM with `fail_reload` serves again within a few seconds.
fn reloads(proxy: &Proxy) {
    let ok = wait_until(Duration::from_secs(5), || {
        (get(proxy, "/", "").status == 200).then_some(())
    });
    assert!(ok.is_some(), "the VM was not reloaded");
    assert_eq!(get(proxy, "/", "").status, 200);
}

#[test]
fn shared_data_is_kept_across_requests_and_workers() {
    let up = Upstream::echo();
    let dir = TempDir::new("wasm-shared");
    let m = wasm_modules::write(dir.path(), "shared", &wasm_modules::shared_data());
    let proxy = Proxy::start_with(&config(up.addr, &m, ""), 2);
    assert_eq!(get(&proxy, "/", "").status, 200);
    assert_eq!(up.last_request().header("x-shared"), None);
    assert_eq!(get(&proxy, "/", "x-put: v1\r\n").status, 200);
    // Every later request, on whichever worker its connection lands.
    for _ in 0..6 {
        assert_eq!(get(&proxy, "/", "").status, 200);
        assert_eq!(up.last_request().header("x-shared"), Some("v1"));
    }
}

#[test]
fn bad_modules_are_refused_with_the_reason() {
    let up = Upstream::echo();
    let dir = TempDir::new("wasm-bad");
    let good = wasm_modules::write(dir.path(), "good", &wasm_modules::add_headers());
    let proxy = Proxy::start(&config(up.addr, &good, ""));
    assert_eq!(get(&proxy, "/", "").status, 200);
    for (i, (what, wat, names)) in wasm_modules::bad_modules().into_iter().enumerate() {
        let m = wasm_modules::write(dir.path(), &format!("bad{i}"), &wat);
        // At start (`validate`).
        let path = dir.join(&format!("bad{i}.yaml"));
        let text = config(up.addr, &m, "")
            .replace("@ADMIN_PORT@", "9")
            .replace("@PORT@", "10");
        write_atomic(&path, &text);
        let out = run_cli(
            &["validate", "-c", &path.display().to_string()],
            Duration::from_secs(20),
        );
        let err = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{what}: accepted");
        assert!(
            err.contains("listeners[0].http_filters[0].wasm.code") && err.contains(names),
            "{what}: {err}"
        );
        // On reload: refused, and the running config keeps serving.
        proxy.write_config(&config(up.addr, &m, ""));
        let r = proxy.reload();
        assert_ne!(r.status, 200, "{what}: reload accepted");
        assert!(r.body_str().contains(names), "{what}: {}", r.body_str());
        let r = get(&proxy, "/", "");
        assert_eq!(
            (r.status, r.header("x-wasm-response")),
            (200, Some("on")),
            "{what}"
        );
    }
    // A missing file and an unknown failure policy name their fields.
    let path = dir.join("missing.yaml");
    let text = config(
        up.addr,
        &dir.join("nope.wasm"),
        "          failure_policy: sometimes\n",
    )
    .replace("@ADMIN_PORT@", "9")
    .replace("@PORT@", "10");
    write_atomic(&path, &text);
    let out = run_cli(
        &["validate", "-c", &path.display().to_string()],
        Duration::from_secs(20),
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("wasm.failure_policy"), "{err}");
}

/// `config` with more clusters, by name and upstream.
fn config_clusters(
    upstream: SocketAddr,
    module: &Path,
    extra: &str,
    more: &[(&str, SocketAddr)],
) -> String {
    let mut c = config(upstream, module, extra);
    for (name, addr) in more {
        c.push_str(&format!(
            "  - name: {name}\n    connect_timeout: 1s\n    endpoints:\n      - {{ address: 127.0.0.1, port: {} }}\n",
            addr.port()
        ));
    }
    c
}

fn get_via(proxy: &Proxy, cluster: &str) -> Response {
    get(proxy, "/r", &format!("x-cluster: {cluster}\r\n"))
}

#[test]
fn a_paused_request_waits_for_its_http_call_and_goes_on_or_is_denied() {
    let up = Upstream::echo();
    let allow = Upstream::start(fixed(
        "HTTP/1.1 200 OK\r\nx-auth-user: alice\r\ncontent-length: 0\r\n\r\n",
    ));
    let deny = Upstream::start(fixed(
        "HTTP/1.1 401 No\r\ncontent-length: 9\r\n\r\nnot you!\n",
    ));
    let slow = Upstream::start(delayed(Duration::from_secs(5)));
    let boom = Upstream::start(status_oops(500));
    let dir = TempDir::new("wasm-call");
    let m = wasm_modules::write(dir.path(), "auth", &wasm_modules::http_auth(300));
    let clusters = [
        ("allow", allow.addr),
        ("deny", deny.addr),
        ("slow", slow.addr),
        ("boom", boom.addr),
        ("down", refused_addr()),
    ];
    let text = config_clusters(
        up.addr,
        &m,
        "          failure_policy: fail_reload\n",
        &clusters,
    );
    let proxy = Proxy::start(&text);

    // Allowed: the call's answer header reaches the upstream request; the pooled
    // connection to the auth service is reused.
    for _ in 0..3 {
        let r = get_via(&proxy, "allow");
        assert_eq!(r.status, 200, "{}", r.body_str());
        assert_eq!(up.last_request().header("x-auth-user"), Some("alice"));
    }
    assert_eq!(allow.request_count(), 3);
    let call = allow.last_request();
    assert_eq!(
        (call.method.as_str(), call.target.as_str()),
        ("GET", "/check")
    );
    assert_eq!(call.header("host"), Some("auth"));
    // HTTP/2 client.
    let r = h2_get(proxy.listen, "/h2", Some(("x-cluster", "allow")));
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(up.last_request().header("x-auth-user"), Some("alice"));

    // Denied by the call's status: the plugin's 403 with the call's body.
    let seen = up.request_count();
    let r = get_via(&proxy, "deny");
    assert_eq!((r.status, r.body_str().as_str()), (403, "not you!\n"));
    // The call timed out (300 ms): Envoy's async client answers 504 with its
    // router's body, which this plugin passes on in its 403.
    let r = get_via(&proxy, "slow");
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (403, "upstream request timeout")
    );
    // The call failed (connection refused): on_http_call_response with no headers.
    let r = get_via(&proxy, "down");
    assert_eq!((r.status, r.body_str().as_str()), (503, "call failed"));
    // An unknown cluster: proxy_http_call answers BadArgument.
    let r = get_via(&proxy, "nope");
    assert_eq!((r.status, r.body_str().as_str()), (500, "bad call"));
    assert_eq!(up.request_count(), seen, "a denied request went upstream");

    // A trap in on_http_call_response fails the paused request (503) and the VM; the
    // worker keeps serving, and fail_reload brings a new VM.
    assert_eq!(get_via(&proxy, "boom").status, 503);
    assert_eq!(proxy.admin_get("/ready").status, 200);
    let ok = wait_until(Duration::from_secs(5), || {
        (get_via(&proxy, "allow").status == 200).then_some(())
    });
    assert!(ok.is_some(), "the VM was not reloaded");
}

#[test]
fn ticks_run_on_the_root_context_and_can_continue_a_paused_request() {
    let up = Upstream::echo();
    let dir = TempDir::new("wasm-tick");
    let m = wasm_modules::write(dir.path(), "tick", &wasm_modules::ticker());
    let proxy = Proxy::start(&config(up.addr, &m, ""));
    // The worker's VM started with the config; its ticks count.
    assert_eq!(get(&proxy, "/", "").status, 200);
    let ticked = wait_until(Duration::from_secs(5), || {
        assert_eq!(get(&proxy, "/", "").status, 200);
        (up.last_request().header("x-ticked") == Some("yes")).then_some(())
    });
    assert!(ticked.is_some(), "no ticks");
    // Paused on the request head, continued by the next tick: the edit made before
    // the pause applies.
    for _ in 0..3 {
        let r = get(&proxy, "/w", "x-wait-tick: 1\r\n");
        assert_eq!(r.status, 200, "{}", r.body_str());
        let req = up.last_request();
        assert_eq!(
            (req.target.as_str(), req.header("x-waited")),
            ("/w", Some("yes"))
        );
    }
}

/// POSTs `body` over HTTP/1.1 with `x-body: op` (chunked in two pieces, or with a
/// Content-Length).
fn post(proxy: &Proxy, op: &str, body: &str, chunked: bool) -> Response {
    let mut c = Conn::connect(proxy.listen);
    let req = if chunked {
        common::bodies::chunked_post("/b", body)
    } else {
        common::bodies::length_post("/b", body)
    };
    let head = format!("Host: a\r\nx-body: {op}\r\nConnection: close\r\n");
    c.send(req.replacen("Host: a\r\n", &head, 1));
    c.read_response().expect("a response")
}

#[test]
fn body_callbacks_edit_the_request_and_response_bodies() {
    let up = Upstream::start(fixed(
        "HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world",
    ));
    let dir = TempDir::new("wasm-body");
    let m = wasm_modules::write(dir.path(), "body", &wasm_modules::body_edit());
    let proxy = Proxy::start(&config(up.addr, &m, ""));
    let upstream_body = || String::from_utf8_lossy(&up.last_request().body).into_owned();
    // Request bodies, paused until their end and edited there.
    for (op, chunked, sent) in [
        ("r", false, "[new request body]"),
        ("p", false, "<<hello"),
        ("a", false, "hello>>"),
        ("w", false, "hellohello"),
        ("r", true, "[new request body]"),
        ("a", true, "hello>>"),
        ("", false, "hello"),
    ] {
        let r = post(&proxy, op, "hello", chunked);
        assert_eq!(r.status, 200, "{op}: {}", r.body_str());
        assert_eq!(upstream_body(), sent, "{op} chunked {chunked}");
        let len = up
            .last_request()
            .header("content-length")
            .map(str::to_string);
        assert_eq!(len, Some(sent.len().to_string()), "{op}");
        assert_eq!(r.body_str(), "hello world");
    }
    // Response bodies (HTTP/1 both ways: held whole), without their Content-Length
    // once edited.
    for (op, got) in [
        ("R", "[new response body]"),
        ("P", "<<hello world"),
        ("A", "hello world>>"),
        ("W", "hello worldhello world"),
        ("Rd", "[new response body]"),
    ] {
        let r = post(&proxy, op, "hello", false);
        assert_eq!((r.status, r.body_str().as_str()), (200, got), "{op}");
        assert_eq!(upstream_body(), "hello", "{op}");
    }
    // An HTTP/2 client: the request body is edited as on HTTP/1, and so is the
    // response body, held whole on this path too (without its length once edited).
    let h2_post = |proxy: &Proxy, op: &'static str| {
        let addr = proxy.listen;
        let uri = format!("http://{addr}/b");
        h2client::run(move || async move {
            let mut c = h2client::connect(addr).await;
            let b = h2client::request("POST", &uri).header("x-body", op);
            h2client::send(&mut c, b.body(()).unwrap(), b"hello").await
        })
    };
    for (op, sent, got) in [
        ("a", "hello>>", "hello world"),
        ("A", "hello", "hello world>>"),
        ("R", "hello", "[new response body]"),
    ] {
        let r = h2_post(&proxy, op);
        assert_eq!((r.status, r.body_str().as_str()), (200, got), "h2 {op}");
        assert_eq!(upstream_body(), sent, "h2 {op}");
        if op != "a" {
            assert_eq!(r.header("content-length"), None, "h2 {op}");
        }
    }
    // An HTTP/2 upstream, to an HTTP/1 and to an HTTP/2 client.
    let h2_up = h2client::h2_upstream_with(&[], "hello world", &[]);
    let to_h2 = config(h2_up, &m, "").replace(
        "    connect_timeout: 1s\n",
        "    protocol: http2\n    connect_timeout: 1s\n",
    );
    let proxy = Proxy::start(&to_h2);
    let r = post(&proxy, "A", "hello", false);
    assert_eq!((r.status, r.body_str().as_str()), (200, "hello world>>"));
    let r = h2_post(&proxy, "P");
    assert_eq!((r.status, r.body_str().as_str()), (200, "<<hello world"));
}

#[test]
fn a_trap_in_a_body_callback_fails_the_request_and_the_worker_keeps_serving() {
    let up = Upstream::start(fixed(
        "HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world",
    ));
    let dir = TempDir::new("wasm-body-trap");
    let m = wasm_modules::write(dir.path(), "body", &wasm_modules::body_edit());
    for op in ["t", "T"] {
        let proxy = Proxy::start(&config(
            up.addr,
            &m,
            "          failure_policy: fail_open\n",
        ));
        let seen = up.request_count();
        assert_eq!(post(&proxy, op, "hello", false).status, 503, "{op}");
        // The request trap stops the request before it goes upstream.
        let went = up.request_count() - seen;
        assert_eq!(went, usize::from(op == "T"), "{op}");
        assert_eq!(proxy.admin_get("/ready").status, 200);
        // fail_open: the failed filter is skipped from then on.
        let r = post(&proxy, "a", "hello", false);
        assert_eq!((r.status, r.body_str().as_str()), (200, "hello world"));
        assert_eq!(up.last_request().body, b"hello");
    }
}

#[test]
fn a_paused_response_head_waits_for_the_tick_that_resumes_or_answers_it() {
    let up = Upstream::start(fixed(
        "HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world",
    ));
    let dir = TempDir::new("wasm-response-pause");
    let m = wasm_modules::write(dir.path(), "pause", &wasm_modules::response_pause());
    let proxy = Proxy::start(&config(up.addr, &m, ""));
    for _ in 0..2 {
        let r = get(&proxy, "/", "x-hold: go\r\n");
        assert_eq!((r.status, r.body_str().as_str()), (200, "hello world"));
        // The edit made before the pause and the one made by the tick that resumed it.
        assert_eq!(r.header("x-before"), Some("yes"));
        assert_eq!(r.header("x-resumed"), Some("yes"));
        let r = get(&proxy, "/", "x-hold: deny\r\n");
        assert_eq!((r.status, r.body_str().as_str()), (403, "held back"));
        let r = get(&proxy, "/", "");
        assert_eq!((r.status, r.header("x-before")), (200, None));
    }
    // HTTP/2 client, HTTP/1 upstream.
    let r = h2_get(proxy.listen, "/", Some(("x-hold", "go")));
    assert_eq!((r.status, r.body_str().as_str()), (200, "hello world"));
    assert_eq!(r.header("x-resumed"), Some("yes"));
    let r = h2_get(proxy.listen, "/", Some(("x-hold", "deny")));
    assert_eq!((r.status, r.body_str().as_str()), (403, "held back"));
}

#[test]
fn a_pause_nothing_resumes_ends_at_the_stream_idle_timeout() {
    let up = Upstream::start(fixed(
        "HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world",
    ));
    let dir = TempDir::new("wasm-pause-timeout");
    let idle = "    route_table: main\n    stream_idle_timeout: 1s\n";
    let pause = wasm_modules::write(dir.path(), "pause", &wasm_modules::response_pause());
    let proxy =
        Proxy::start(&config(up.addr, &pause, "").replacen("    route_table: main\n", idle, 1));
    // The request head, then the response head, paused for good: Envoy's stream idle
    // timer's answer; the worker keeps serving.
    let seen = up.request_count();
    let r = get(&proxy, "/", "x-hold: queue\r\n");
    assert_eq!((r.status, r.body_str().as_str()), (504, "stream timeout"));
    assert_eq!(up.request_count(), seen, "a paused request went upstream");
    let r = get(&proxy, "/", "x-hold: never\r\n");
    assert_eq!((r.status, r.body_str().as_str()), (504, "stream timeout"));
    let r = get(&proxy, "/", "x-hold: go\r\n");
    assert_eq!((r.status, r.header("x-resumed")), (200, Some("yes")));
    drop(proxy);
    // The request body paused at its end.
    let body = wasm_modules::write(dir.path(), "body", &wasm_modules::body_edit());
    let proxy =
        Proxy::start(&config(up.addr, &body, "").replacen("    route_table: main\n", idle, 1));
    let seen = up.request_count();
    let r = post(&proxy, "h", "hello", false);
    assert_eq!((r.status, r.body_str().as_str()), (504, "stream timeout"));
    assert_eq!(up.request_count(), seen);
    assert_eq!(post(&proxy, "a", "hello", false).status, 200);
}

#[test]
fn ticks_start_when_the_config_is_loaded_not_with_the_first_request() {
    let up = Upstream::echo();
    let dir = TempDir::new("wasm-tick-load");
    let m = wasm_modules::write(dir.path(), "tick", &wasm_modules::tick_logger());
    let proxy = Proxy::start_with(&config(up.addr, &m, ""), 2);
    // No request is made: each worker's VM started with the config, as Envoy's.
    let ticked = wait_until(Duration::from_secs(5), || {
        (proxy.stderr().matches("ticked before any request").count() >= 2).then_some(())
    });
    assert!(ticked.is_some(), "{}", proxy.stderr());
    assert_eq!(up.request_count(), 0);
}

/// Trailer callbacks (`proxy_on_request_trailers`, `proxy_on_response_trailers`): an
/// HTTP/2 client's request trailers reach the HTTP/2 upstream as the module edited
/// them, and the upstream's response trailers reach an HTTP/2 client edited too; an
/// HTTP/1 client gets the body without them (Envoy's HTTP/1 codec drops trailers).
#[test]
fn trailer_callbacks_edit_http2_trailers() {
    let up = h2client::h2_trailer_echo();
    let dir = TempDir::new("wasm-trailers");
    let m = wasm_modules::write(dir.path(), "trailers", &wasm_modules::trailers());
    // HTTP/1 clients get no trailers, as from Envoy without `enable_trailers` (the
    // native default passes them: `proxy_headers.http1_trailers`).
    let text = config(up, &m, "")
        .replace(
            "    connect_timeout: 1s\n",
            "    protocol: http2\n    connect_timeout: 1s\n",
        )
        .replace(
            "    route_table: main\n",
            "    route_table: main\n    proxy_headers: { http1_trailers: false }\n",
        );
    let proxy = Proxy::start(&text);
    let r =
        h2client::post_with_trailers(proxy.listen, proxy.url("/t"), b"hello", &[("x-t1", "one")]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("x-req-trailers"),
        Some("x-t1=one,x-wasm-trailer=req")
    );
    let t = r.trailers.expect("the response trailers");
    assert_eq!(t.get("x-wasm-trailer").unwrap(), "resp", "{t:?}");
    assert_eq!(t.get("x-trail").unwrap(), "wasm", "{t:?}");
    let mut c = Conn::connect(proxy.listen);
    c.send("GET /t1 HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n");
    let r = c.read_response().expect("a response");
    assert_eq!((r.status, r.body_str().as_str()), (200, "body"));
    assert!(r.trailers.is_empty(), "{:?}", r.trailers);
}
