//! proxy-wasm parity with Envoy 1.40 (its PyPI build runs modules on V8): one Envoy
//! bootstrap with a wasm filter runs under Envoy and under Outrigger (wasmtime), with
//! the same module bytes (`wasm_modules`), and the same requests go to both: the add-
//! header filter's request and response headers, the deny filter's local response, and
//! a trapping filter under each failure policy (the trapping request's 503, then
//! `FAIL_CLOSED`'s 503s and `FAIL_OPEN`'s pass-through), and a request paused for
//! an HTTP call (`proxy_http_call`) allowed, denied, timed out; HTTP/2 trailers edited
//! by the trailer callbacks. Also checks that the
//! loadtest's `wasm` scenario carries the add-header module. Skips, saying why, when
//! Envoy is not installed.

mod common;
mod h2client;
mod wasm_modules;

use std::net::SocketAddr;
use std::path::Path;

use common::bodies;
use common::envoy::*;
use common::*;

const WASM: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

fn bootstrap(upstream: SocketAddr, module: &Path, policy: &str) -> String {
    format!(
        r#"{head}          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                route: {{ cluster: backend }}
          http_filters:
          - name: plugin
            typed_config:
              "@type": {WASM}
              config:
                name: test_plugin
                root_id: test_root
                {policy}
                vm_config:
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: {module} }} }}
          - name: envoy.filters.http.router
            typed_config:
              "@type": {ROUTER_TYPE}
  clusters:
  - name: backend
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
"#,
        head = hcm_head("", "web"),
        module = module.display(),
        port = upstream.port(),
    )
}

fn get(addr: SocketAddr, headers: &str) -> Response {
    let mut c = Conn::connect(addr);
    c.send(format!(
        "GET /p?q=1 HTTP/1.1\r\nHost: a\r\n{headers}Connection: close\r\n\r\n"
    ));
    c.read_response().expect("a response")
}

/// What a client and the upstream saw of one request.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    /// The body of an answer the proxy made itself (empty for a proxied one).
    body: String,
    response_header: Option<String>,
    denied_header: Option<String>,
    upstream_request: Option<String>,
    upstream_path: Option<String>,
}

fn seen(addr: SocketAddr, up: &Upstream, headers: &str) -> Seen {
    let before = up.request_count();
    let r = get(addr, headers);
    let last = (up.request_count() > before).then(|| up.last_request());
    Seen {
        status: r.status,
        // A proxied answer's body is the echo (request ids, header order); compare
        // the proxies' own answers only.
        body: if last.is_some() {
            String::new()
        } else {
            r.body_str()
        },
        response_header: r.header("x-wasm-response").map(str::to_string),
        denied_header: r.header("x-wasm-denied").map(str::to_string),
        upstream_request: last
            .as_ref()
            .and_then(|l| l.header("x-wasm-request").map(str::to_string)),
        upstream_path: last
            .as_ref()
            .and_then(|l| l.header("x-wasm-path").map(str::to_string)),
    }
}

/// Runs `requests` (extra header lines) through Envoy and Outrigger on `module` with
/// `policy`; the answers must match, and are returned.
fn both(bin: &std::path::PathBuf, module: &Path, policy: &str, requests: &[&str]) -> Vec<Seen> {
    let up = Upstream::echo();
    let text = bootstrap(up.addr, module, policy);
    let envoy = Envoy::start(bin, &text);
    let from_envoy: Vec<Seen> = requests
        .iter()
        .map(|h| seen(envoy.listen, &up, h))
        .collect();
    drop(envoy);
    let proxy = Proxy::start(&text);
    let from_us: Vec<Seen> = requests
        .iter()
        .map(|h| seen(proxy.listen, &up, h))
        .collect();
    assert_eq!(
        from_us, from_envoy,
        "Outrigger (left) and Envoy (right) differ"
    );
    from_us
}

#[test]
fn wasm_filters_behave_as_in_envoy() {
    let Some(bin) = envoy_or_skip("wasm_filters_behave_as_in_envoy") else {
        return;
    };
    let dir = TempDir::new("wasm-parity");
    let add = wasm_modules::write(dir.path(), "add", &wasm_modules::add_headers());
    let s = both(&bin, &add, "", &["", ""]);
    assert_eq!(s[0].upstream_request.as_deref(), Some("on"));
    assert_eq!(s[0].upstream_path.as_deref(), Some("/p?q=1"));
    assert_eq!(s[0].response_header.as_deref(), Some("on"));

    let deny = wasm_modules::write(dir.path(), "deny", &wasm_modules::deny());
    let s = both(&bin, &deny, "", &["x-deny: 1\r\n", ""]);
    assert_eq!((s[0].status, s[0].body.as_str()), (403, "denied by wasm"));
    assert_eq!(s[1].status, 200);

    let trap = wasm_modules::write(dir.path(), "trap", &wasm_modules::trap());
    let requests = ["", "x-trap: 1\r\n", "", ""];
    let s = both(&bin, &trap, "", &requests);
    assert_eq!(
        s.iter().map(|s| s.status).collect::<Vec<_>>(),
        [200, 503, 503, 503]
    );
    let s = both(&bin, &trap, "failure_policy: FAIL_OPEN", &requests);
    assert_eq!(
        s.iter().map(|s| s.status).collect::<Vec<_>>(),
        [200, 503, 200, 200]
    );
    // The deprecated `fail_open`: the trapping request passes too.
    let s = both(&bin, &trap, "fail_open: true", &requests);
    assert_eq!(
        s.iter().map(|s| s.status).collect::<Vec<_>>(),
        [200, 200, 200, 200]
    );
}

/// `bootstrap` with more clusters, by name and upstream.
fn bootstrap_clusters(upstream: SocketAddr, module: &Path, more: &[(&str, SocketAddr)]) -> String {
    let mut text = bootstrap(upstream, module, "");
    for (name, addr) in more {
        text.push_str(&format!(
            r#"  - name: {name}
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
"#,
            port = addr.port()
        ));
    }
    text
}

/// A request paused on its head while the plugin calls an authorization cluster
/// (`proxy_http_call`), then continued with a header from the answer, or denied by
/// the answer's status with its body, or failed by the call's timeout, or refused
/// for an unknown cluster: the same answers from Envoy and Outrigger.
#[test]
fn an_http_call_from_a_paused_request_behaves_as_in_envoy() {
    let Some(bin) = envoy_or_skip("an_http_call_from_a_paused_request_behaves_as_in_envoy") else {
        return;
    };
    let dir = TempDir::new("wasm-parity-call");
    let m = wasm_modules::write(dir.path(), "auth", &wasm_modules::http_auth(300));
    let up = Upstream::echo();
    let allow = Upstream::start(fixed(
        "HTTP/1.1 200 OK\r\nx-auth-user: alice\r\ncontent-length: 0\r\n\r\n",
    ));
    let deny = Upstream::start(fixed(
        "HTTP/1.1 401 No\r\ncontent-length: 9\r\n\r\nnot you!\n",
    ));
    let slow = Upstream::start(delayed(std::time::Duration::from_secs(3)));
    let more = [
        ("allow", allow.addr),
        ("deny", deny.addr),
        ("slow", slow.addr),
    ];
    let text = bootstrap_clusters(up.addr, &m, &more);
    let clusters = ["allow", "deny", "allow", "slow", "nope"];
    let run = |addr: SocketAddr| -> Vec<(u16, String, Option<String>)> {
        clusters
            .iter()
            .map(|c| {
                let before = up.request_count();
                let r = get(addr, &format!("x-cluster: {c}\r\n"));
                let last = (up.request_count() > before).then(|| up.last_request());
                let user = last
                    .as_ref()
                    .and_then(|l| l.header("x-auth-user").map(str::to_string));
                let body = if last.is_some() {
                    String::new()
                } else {
                    r.body_str()
                };
                (r.status, body, user)
            })
            .collect()
    };
    let envoy = Envoy::start(&bin, &text);
    let from_envoy = run(envoy.listen);
    drop(envoy);
    let calls = allow.request_count();
    let proxy = Proxy::start(&text);
    let from_us = run(proxy.listen);
    assert_eq!(
        from_us, from_envoy,
        "Outrigger (left) and Envoy (right) differ"
    );
    let alice = Some("alice".to_string());
    assert_eq!(from_us[0], (200, String::new(), alice));
    assert_eq!(from_us[1], (403, "not you!\n".to_string(), None));
    assert_eq!(
        from_us[3],
        (403, "upstream request timeout".to_string(), None)
    );
    assert_eq!(from_us[4], (500, "bad call".to_string(), None));
    // The calls Outrigger made reached the auth service as Envoy's did.
    assert_eq!(allow.request_count(), calls * 2);
    let call = allow.last_request();
    assert_eq!(
        (call.method.as_str(), call.target.as_str()),
        ("GET", "/check")
    );
    assert_eq!(call.header("host"), Some("auth"));
}

#[test]
fn the_loadtest_scenario_runs_the_add_header_module() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("loadtest/configs/envoy-wasm-filter.yaml"),
    )
    .unwrap();
    let b64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("inline_bytes: "))
        .expect("inline_bytes in the scenario's filter");
    let module = wat::parse_str(wasm_modules::add_headers()).unwrap();
    assert_eq!(
        b64,
        base64(&module),
        "regenerate the scenario's inline_bytes"
    );
}

/// Standard base64 with padding (the proto3 JSON form of `bytes`).
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Envoy fields the host does not implement are refused by their path.
#[test]
fn unsupported_envoy_fields_are_refused_by_path() {
    let dir = TempDir::new("wasm-envoy-refused");
    let m = wasm_modules::write(dir.path(), "add", &wasm_modules::add_headers());
    let base = bootstrap("127.0.0.1:9".parse().unwrap(), &m, "")
        .replace("@ADMIN_PORT@", "9")
        .replace("@PORT@", "10");
    let local = format!("code: {{ local: {{ filename: {} }} }}", m.display());
    let cases = [
        (
            base.replace(
                &local,
                "code: { remote: { http_uri: { uri: \"http://x/m.wasm\", cluster: backend, timeout: 1s }, sha256: ab } }",
            ),
            "vm_config.code.remote",
        ),
        (
            base.replace("envoy.wasm.runtime.v8", "envoy.wasm.runtime.null"),
            "vm_config.runtime",
        ),
        (
            base.replace(
                "runtime: envoy.wasm.runtime.v8",
                "runtime: envoy.wasm.runtime.v8\n                  allow_precompiled: true",
            ),
            "vm_config.allow_precompiled",
        ),
    ];
    for (i, (text, field)) in cases.iter().enumerate() {
        let path = dir.join(&format!("c{i}.yaml"));
        write_atomic(&path, text);
        let out = run_cli(
            &["validate", "-c", &path.display().to_string()],
            std::time::Duration::from_secs(20),
        );
        let err = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{field}: accepted");
        assert!(err.contains(field), "{field}: {err}");
    }
}

/// What a client and the upstream saw of a request whose bodies a filter edits.
#[derive(Debug, PartialEq)]
struct BodySeen {
    status: u16,
    body: String,
    length: Option<String>,
    chunked: bool,
    /// The request-body size the module's last request-body callback was given.
    seen_size: Option<String>,
    /// The request body the upstream got (its framing differs: see the test).
    up: Option<String>,
}

/// POSTs `body` (chunked in two pieces, or with a Content-Length) with `x-body: op`.
fn post_body(addr: SocketAddr, up: &Upstream, op: &str, body: &str, chunked: bool) -> BodySeen {
    let before = up.request_count();
    let mut c = Conn::connect(addr);
    let req = if chunked {
        bodies::chunked_post("/b", body)
    } else {
        bodies::length_post("/b", body)
    };
    let head = format!("x-body: {op}\r\nConnection: close\r\n");
    c.send(req.replacen("Host: a\r\n", &format!("Host: a\r\n{head}"), 1));
    let r = c.read_response().expect("a response");
    let last = (up.request_count() > before).then(|| up.last_request());
    BodySeen {
        status: r.status,
        body: r.body_str(),
        length: r.header("content-length").map(str::to_string),
        chunked: r.chunked,
        seen_size: r.header("x-seen-request-body").map(str::to_string),
        up: last.map(|l| String::from_utf8_lossy(&l.body).into_owned()),
    }
}

/// Request and response bodies edited by `proxy_set_buffer_bytes` (replace, prepend,
/// append), buffered with `Pause` until the end of stream, on chunked bodies and on
/// Content-Length ones whose length the module removed: the same bodies, response
/// framing and callback sizes from Envoy and Outrigger, and a trap's 503.
///
/// Left out, as known differences (docs/configuration.md, `wasm`): a body edited to
/// another length while its Content-Length stays. Envoy 1.40 then sends the old
/// Content-Length with the new body (the upstream reads `[new ` of a replaced
/// `hello`; the client reads 11 bytes of a 19-byte body, the rest left on the
/// connection); Outrigger sends the request body with its new length, as every held
/// body, and the response chunked. Also the request's framing: Envoy keeps a chunked
/// or length-less request chunked, Outrigger's held body goes with a Content-Length.
#[test]
fn body_callbacks_behave_as_in_envoy() {
    let Some(bin) = envoy_or_skip("body_callbacks_behave_as_in_envoy") else {
        return;
    };
    let dir = TempDir::new("wasm-parity-body");
    let m = wasm_modules::write(dir.path(), "body", &wasm_modules::body_edit());
    let length = Upstream::start(fixed(
        "HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world",
    ));
    let chunked = Upstream::start(chunked_response(&["hello ", "world"], &[]));
    let cases: &[(&str, bool, bool)] = &[
        // (op, chunked request, chunked response)
        ("", false, false),
        ("rd", false, false),
        ("pd", false, false),
        ("wd", false, false),
        ("r", true, false),
        ("a", true, false),
        ("Rd", false, false),
        ("Pd", false, false),
        ("Wd", false, false),
        ("R", false, true),
        ("A", false, true),
        ("t", false, false),
    ];
    let run = |which: &str| -> Vec<BodySeen> {
        let mut out = Vec::new();
        for (up, resp_chunked) in [(&length, false), (&chunked, true)] {
            let text = bootstrap(up.addr, &m, "");
            let proxy: Box<dyn std::any::Any> = if which == "envoy" {
                Box::new(Envoy::start(&bin, &text))
            } else {
                Box::new(Proxy::start(&text))
            };
            let addr = proxy
                .downcast_ref::<Envoy>()
                .map(|e| e.listen)
                .or_else(|| proxy.downcast_ref::<Proxy>().map(|p| p.listen))
                .unwrap();
            for (op, req_chunked, rc) in cases {
                if *rc == resp_chunked {
                    out.push(post_body(addr, up, op, "hello", *req_chunked));
                }
            }
        }
        out
    };
    let from_envoy = run("envoy");
    let from_us = run("outrigger");
    assert_eq!(
        from_us, from_envoy,
        "Outrigger (left) and Envoy (right) differ"
    );
    let bodies: Vec<(&str, Option<&str>)> = from_us
        .iter()
        .map(|s| (s.body.as_str(), s.up.as_deref()))
        .collect();
    assert_eq!(bodies[1], ("hello world", Some("[new request body]")));
    assert_eq!(bodies[3], ("hello world", Some("hellohello")));
    assert_eq!(bodies[4], ("hello world", Some("[new request body]")));
    assert_eq!(bodies[6], ("[new response body]", Some("hello")));
    assert_eq!(bodies[7], ("<<hello world", Some("hello")));
    assert_eq!(bodies[8], ("hello worldhello world", Some("hello")));
    assert_eq!(bodies[11], ("hello world>>", Some("hello")));
    assert!(from_us[6].chunked && from_us[6].length.is_none());
    assert_eq!(from_us[9].status, 503);
}

/// A response head paused by `proxy_on_response_headers` and resumed by a tick
/// (`proxy_continue_stream` with the tick's header edit) or answered by it
/// (`proxy_send_local_response`): the same from Envoy and Outrigger.
#[test]
fn a_paused_response_head_behaves_as_in_envoy() {
    let Some(bin) = envoy_or_skip("a_paused_response_head_behaves_as_in_envoy") else {
        return;
    };
    let dir = TempDir::new("wasm-parity-pause");
    let m = wasm_modules::write(dir.path(), "pause", &wasm_modules::response_pause());
    let up = Upstream::start(fixed(
        "HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world",
    ));
    let text = bootstrap(up.addr, &m, "");
    let run = |addr: SocketAddr| -> Vec<(u16, String, Option<String>, Option<String>)> {
        ["x-hold: go\r\n", "x-hold: deny\r\n", "", "x-hold: go\r\n"]
            .iter()
            .map(|h| {
                let r = get(addr, h);
                let header = |n: &str| r.header(n).map(str::to_string);
                (
                    r.status,
                    r.body_str(),
                    header("x-before"),
                    header("x-resumed"),
                )
            })
            .collect()
    };
    let from_us = same_in_both(&bin, &text, run);
    let yes = Some("yes".to_string());
    assert_eq!(from_us[0], (200, "hello world".into(), yes.clone(), yes));
    assert_eq!((from_us[1].0, from_us[1].1.as_str()), (403, "held back"));
}

/// A request head, a response head and a request body paused for good end at the
/// stream idle timeout (1 s here) as in Envoy.
#[test]
fn a_pause_nothing_resumes_times_out_as_in_envoy() {
    let Some(bin) = envoy_or_skip("a_pause_nothing_resumes_times_out_as_in_envoy") else {
        return;
    };
    let dir = TempDir::new("wasm-parity-pause-timeout");
    let pause = wasm_modules::write(dir.path(), "pause", &wasm_modules::response_pause());
    let body = wasm_modules::write(dir.path(), "body", &wasm_modules::body_edit());
    let up = Upstream::start(fixed(
        "HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world",
    ));
    let idle = |m: &Path| {
        bootstrap(up.addr, m, "").replacen(
            "stat_prefix: web\n",
            "stat_prefix: web\n          stream_idle_timeout: 1s\n",
            1,
        )
    };
    let run = |addr: SocketAddr, which: &str| -> Vec<(u16, String)> {
        if which == "pause" {
            ["x-hold: queue\r\n", "x-hold: never\r\n"]
                .iter()
                .map(|h| {
                    let r = get(addr, h);
                    (r.status, r.body_str())
                })
                .collect()
        } else {
            let s = post_body(addr, &up, "h", "hello", false);
            vec![(s.status, s.body)]
        }
    };
    for (which, m) in [("pause", &pause), ("body", &body)] {
        let text = idle(m);
        let envoy = Envoy::start(&bin, &text);
        let from_envoy = run(envoy.listen, which);
        drop(envoy);
        let proxy = Proxy::start(&text);
        let from_us = run(proxy.listen, which);
        assert_eq!(
            from_us, from_envoy,
            "{which}: Outrigger (left) and Envoy (right) differ"
        );
        assert!(from_us.iter().all(|(s, _)| *s == 504), "{from_us:?}");
    }
}

/// Trailer callbacks against Envoy 1.40: an HTTP/2 client's request trailers reach an
/// HTTP/2 upstream as the module edited them, and the upstream's response trailers
/// reach the client edited (one added, one replaced).
#[test]
fn trailer_callbacks_behave_as_in_envoy() {
    let Some(bin) = envoy_or_skip("trailer_callbacks_behave_as_in_envoy") else {
        return;
    };
    let dir = TempDir::new("wasm-parity-trailers");
    let m = wasm_modules::write(dir.path(), "trailers", &wasm_modules::trailers());
    let up = h2client::h2_trailer_echo();
    let text = bootstrap(up, &m, "").replace(
        "    connect_timeout: 1s\n",
        &format!("    connect_timeout: 1s\n{BACKEND_H2}"),
    );
    let run = |addr: SocketAddr| -> String {
        let uri = format!("http://{addr}/t");
        let r = h2client::post_with_trailers(addr, uri, b"hello", &[("x-t1", "one")]);
        let mut t: Vec<String> = r
            .trailers
            .iter()
            .flatten()
            .map(|(n, v)| format!("{n}={}", v.to_str().unwrap_or("?")))
            .collect();
        t.sort();
        format!(
            "{} upstream got {:?} | client trailers {t:?}",
            r.status,
            r.header("x-req-trailers")
        )
    };
    let from_us = same_in_both(&bin, &text, run);
    assert!(from_us.contains("x-wasm-trailer=resp"), "{from_us}");
}

/// Runs `run` against Envoy, then against Outrigger, with the same bootstrap, and
/// checks that both saw the same; returns what Outrigger's run saw.
fn same_in_both<T: PartialEq + std::fmt::Debug>(
    bin: &std::path::PathBuf,
    text: &str,
    run: impl Fn(SocketAddr) -> T,
) -> T {
    let envoy = Envoy::start(bin, text);
    let from_envoy = run(envoy.listen);
    drop(envoy);
    let proxy = Proxy::start(text);
    let from_us = run(proxy.listen);
    assert_eq!(
        from_us, from_envoy,
        "Outrigger (left) and Envoy (right) differ"
    );
    from_us
}
