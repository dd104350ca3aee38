//! Network filter chains per listener: the http_inspector listener filter, chain
//! selection by application protocol, source address and the default chain, the
//! no-match close and its stat, a server-first protocol behind the inspector, forced
//! codecs, and the config checks.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use common::*;

/// A server-first TCP upstream: greets every connection at once, then echoes each read
/// back with an `echo:` prefix until the client closes.
fn greeter() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming().take(64) {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                if s.write_all(b"220 greetings\r\n").is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = s.read(&mut buf) {
                    let _ = s.write_all(b"echo:");
                    let _ = s.write_all(&buf[..n]);
                }
            });
        }
    });
    addr
}

/// `listeners` (indented list items), two route tables answering `one` and `two`, and a
/// cluster `tcp` on `tcp_upstream`.
fn config(listeners: &str, tcp_upstream: SocketAddr) -> String {
    format!(
        "{HEADER}listeners:
{listeners}route_tables:
  - name: one
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            direct_response: {{ status: 200, body: \"one\" }}
  - name: two
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            direct_response: {{ status: 200, body: \"two\" }}
clusters:
  - name: tcp
    connect_timeout: 1s
    endpoints:
      - {{ address: 127.0.0.1, port: {} }}
",
        tcp_upstream.port()
    )
}

/// The body of one HTTP/1 GET (`version`) on a fresh connection.
fn get_body(proxy: SocketAddr, version: &str) -> String {
    let mut c = Conn::connect(proxy);
    c.send(format!("GET / {version}\r\nHost: x\r\n\r\n"));
    let r = c.read_response().expect("a response");
    assert_eq!(r.status, 200);
    r.body_str()
}

fn curl_h2c(url: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-i",
            "--max-time",
            "20",
            url,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("curl must be installed");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Reads until `want` has arrived (or the stream ends or times out); returns all read.
fn read_until(s: &mut TcpStream, want: &[u8]) -> Vec<u8> {
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(want.len()).any(|w| w == want) {
        match s.read(&mut buf) {
            Ok(n @ 1..) => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    got
}

/// Reads until the proxy closes the connection; returns what arrived before.
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(n @ 1..) => got.extend_from_slice(&buf[..n]),
            Ok(_) => return got,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the proxy did not close the connection: {e}"),
        }
    }
}

const INSPECTED: &str = "  - name: mixed
    address: 127.0.0.1
    port: @PORT@
    listener_filters: [http_inspector]
    filter_chains:
      - name: h2
        filter_chain_match: { application_protocols: [h2c] }
        route_table: two
      - name: h1
        filter_chain_match: { application_protocols: [http/1.1, http/1.0] }
        route_table: one
    default_filter_chain:
      name: other
      tcp_proxy: { cluster: tcp }
";

#[test]
fn application_protocol_picks_the_http1_http2_or_tcp_chain() {
    let p = Proxy::start(&config(INSPECTED, greeter()));
    assert_eq!(get_body(p.listen, "HTTP/1.1"), "one");
    assert_eq!(get_body(p.listen, "HTTP/1.0"), "one");
    let text = curl_h2c(&p.url("/"));
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(text.ends_with("two"), "h2c goes to the h2 chain: {text}");
    // Bytes that are not HTTP end the inspection at once (no wait for the listener
    // filters timeout, which would close the connection) and reach the default chain.
    let mut s = TcpStream::connect(p.listen).unwrap();
    s.write_all(b"SSH-2.0-client\r\n").unwrap();
    let got = read_until(&mut s, b"echo:SSH-2.0-client\r\n");
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("220 greetings\r\n"), "{got:?}");
    assert!(got.ends_with("echo:SSH-2.0-client\r\n"), "{got:?}");
    drop(s);
    let l = p.listener_stats("mixed");
    assert_eq!(l["pre_cx_timeout"], 0, "{l}");
    assert_eq!(l["no_filter_chain_match"], 0, "{l}");
}

#[test]
fn a_server_first_protocol_behind_the_inspector_gets_its_greeting() {
    let listener = INSPECTED.replace(
        "    listener_filters: [http_inspector]\n",
        "    listener_filters: [http_inspector]
    listener_filters_timeout: 200ms
    continue_on_listener_filters_timeout: true
",
    );
    let p = Proxy::start(&config(&listener, greeter()));
    // The client sends nothing: once the inspector gives up, the connection goes on
    // without an application protocol, to the chain that needs none.
    let mut s = TcpStream::connect(p.listen).unwrap();
    let got = read_until(&mut s, b"\r\n");
    assert_eq!(String::from_utf8_lossy(&got), "220 greetings\r\n");
    s.write_all(b"hi\n").unwrap();
    assert!(read_until(&mut s, b"echo:hi\n").ends_with(b"echo:hi\n"));
    drop(s);
    assert_eq!(p.listener_stats("mixed")["pre_cx_timeout"], 1);
    // HTTP clients are still inspected.
    assert_eq!(get_body(p.listen, "HTTP/1.1"), "one");
}

#[test]
fn listener_filters_timeout_closes_by_default_as_envoy_does() {
    let listener = INSPECTED.replace(
        "    listener_filters: [http_inspector]\n",
        "    listener_filters: [http_inspector]\n    listener_filters_timeout: 200ms\n",
    );
    let p = Proxy::start(&config(&listener, greeter()));
    let mut s = TcpStream::connect(p.listen).unwrap();
    assert_eq!(
        read_to_close(&mut s),
        b"",
        "closed without reaching a chain"
    );
    assert_eq!(p.listener_stats("mixed")["pre_cx_timeout"], 1);
}

/// Binds the client side to `from` before connecting.
fn connect_from(from: &str, to: SocketAddr) -> Conn {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{from}:0").parse().unwrap();
    s.bind(&from.into()).unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap();
    let stream: TcpStream = s.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    Conn::from_stream(stream)
}

fn body_from(from: &str, to: SocketAddr) -> String {
    let mut c = connect_from(from, to);
    c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.read_response().expect("a response");
    assert_eq!(r.status, 200);
    r.body_str()
}

#[test]
fn the_most_specific_source_prefix_range_wins() {
    let listener = "  - name: by-source
    address: 127.0.0.1
    port: @PORT@
    filter_chains:
      - name: loopback
        filter_chain_match: { source_prefix_ranges: [127.0.0.0/8] }
        route_table: one
      - name: two
        filter_chain_match: { source_prefix_ranges: [127.0.0.2/32] }
        route_table: two
";
    let p = Proxy::start(&config(listener, greeter()));
    assert_eq!(body_from("127.0.0.1", p.listen), "one");
    assert_eq!(body_from("127.0.0.2", p.listen), "two");
    assert_eq!(body_from("127.0.0.3", p.listen), "one");
}

const UNMATCHED: &str = "  - name: picky
    address: 127.0.0.1
    port: @PORT@
    filter_chains:
      - name: elsewhere
        filter_chain_match: { source_prefix_ranges: [10.0.0.0/8] }
        route_table: one
";

#[test]
fn the_default_chain_takes_what_no_chain_matches() {
    let listener = format!(
        "{UNMATCHED}    default_filter_chain:
      name: fallback
      route_table: two
"
    );
    let p = Proxy::start(&config(&listener, greeter()));
    assert_eq!(get_body(p.listen, "HTTP/1.1"), "two");
    assert_eq!(p.listener_stats("picky")["no_filter_chain_match"], 0);
}

#[test]
fn no_matching_chain_closes_at_once_and_counts() {
    let p = Proxy::start(&config(UNMATCHED, greeter()));
    for _ in 0..2 {
        let mut s = TcpStream::connect(p.listen).unwrap();
        // Closed without reading anything: the request may or may not be written.
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(read_to_close(&mut s), b"", "no response, just a close");
    }
    let l = p.listener_stats("picky");
    assert_eq!(l["no_filter_chain_match"], 2, "{l}");
    // As in Envoy, a connection no chain takes is not a downstream connection.
    assert_eq!(l["cx_total"], 0, "{l}");
    assert_eq!(l["cx_active"], 0, "{l}");
    assert_eq!(l["rq_total"], 0, "{l}");
    assert_eq!(
        metric(
            &p.prometheus(),
            "outrigger_no_filter_chain_match_total{listener=\"picky\"}"
        ),
        Some(2.0)
    );
}

#[test]
fn forced_codecs_refuse_the_other_protocol() {
    let listeners = "  - name: h1-only
    address: 127.0.0.1
    port: @PORT@
    default_filter_chain:
      name: h1
      codec: http1
      route_table: one
  - name: h2-only
    address: 127.0.0.1
    port: @PORT2@
    default_filter_chain:
      name: h2
      codec: http2
      route_table: two
";
    let p = Proxy::start(&config(listeners, greeter()));
    // An HTTP/2 preface is a malformed HTTP/1 request (Envoy: the HTTP/1 codec
    // rejects the method): 400 and close.
    let mut c = Conn::connect(p.listen);
    c.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    let r = c.read_response().expect("a response");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.says_close());
    let text = curl_h2c(&p.url("/"));
    assert!(!text.contains("HTTP/2 200"), "{text}");
    assert_eq!(get_body(p.listen, "HTTP/1.1"), "one");
    // HTTP/1 bytes are a bad connection preface: the connection closes before the
    // proxy sends anything (Envoy 1.40 does the same; not even a SETTINGS frame).
    let mut s = TcpStream::connect(p.listen2).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_to_close(&mut s), b"");
    let text = curl_h2c(&format!("http://{}/", p.listen2));
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(text.ends_with("two"), "{text}");
}

// ---- Config checks, through `outrigger validate`. ----

fn validate(text: &str) -> (bool, String) {
    validate_config(text)
}

fn refused(listener: &str, wants: &[&str]) {
    let (ok, err) = validate(&config(listener, "127.0.0.1:9".parse().unwrap()));
    assert!(!ok, "accepted:\n{listener}");
    for want in wants {
        assert!(err.contains(want), "expected `{want}` in:\n{err}");
    }
}

const BASE: &str = "  - name: l
    address: 127.0.0.1
    port: 10000
";

#[test]
fn config_refuses_bad_filter_chains_naming_the_field() {
    // The single-chain fields and filter chains do not mix.
    refused(
        &format!(
            "{BASE}    route_table: one
    idle_timeout: 5s
    default_filter_chain: {{ name: d, route_table: one }}
"
        ),
        &[
            "listeners[0].route_table: `route_table` belongs in a filter chain",
            "listeners[0].idle_timeout: `idle_timeout` belongs in a filter chain",
        ],
    );
    // Two chains with the same match (Envoy: "the same matching rules").
    refused(
        &format!(
            "{BASE}    filter_chains:
      - {{ name: a, route_table: one, filter_chain_match: {{ source_ports: [1] }} }}
      - {{ name: b, route_table: two, filter_chain_match: {{ source_ports: [1] }} }}
"
        ),
        &["filter chain `b` has the same matching rules as `a`"],
    );
    // Overlapping matches.
    refused(
        &format!(
            "{BASE}    filter_chains:
      - {{ name: a, route_table: one, filter_chain_match: {{ source_ports: [1, 2] }} }}
      - {{ name: b, route_table: two, filter_chain_match: {{ source_ports: [2] }} }}
"
        ),
        &["filter chain `b`: its matching rules overlap"],
    );
    // Bad ranges, port 0, unknown listener filters, duplicate chain names.
    refused(
        &format!(
            "{BASE}    listener_filters: [tls_sniffer]
    filter_chains:
      - name: a
        route_table: one
        filter_chain_match:
          prefix_ranges: [10.0.0.0/33]
          source_prefix_ranges: [not-an-address]
          destination_port: 0
      - {{ name: a, route_table: two }}
"
        ),
        &[
            "listeners[0].listener_filters[0]: unknown listener filter `tls_sniffer`",
            "filter_chain_match.prefix_ranges[0]: `10.0.0.0/33`",
            "filter_chain_match.source_prefix_ranges[0]: `not-an-address`",
            "filter_chain_match.destination_port: must be a port between 1 and 65535",
            "listeners[0].filter_chains[1].name: duplicate name `a`",
        ],
    );
    // Application protocols need the listener filter that detects them.
    refused(
        &format!(
            "{BASE}    filter_chains:
      - {{ name: a, route_table: one, filter_chain_match: {{ application_protocols: [h2c] }} }}
"
        ),
        &["filter_chain_match.application_protocols: needs a listener filter"],
    );
    // HTTP settings on a TCP proxy chain.
    refused(
        &format!(
            "{BASE}    default_filter_chain: {{ name: d, tcp_proxy: {{ cluster: tcp }}, codec: http2 }}
"
        ),
        &["listeners[0].default_filter_chain.codec: `codec` needs an HTTP connection manager"],
    );
}

#[test]
fn config_accepts_any_application_protocol_string() {
    // Envoy matches application protocols as plain strings: one no inspector reports
    // today is not an error.
    let listener = format!(
        "{BASE}    listener_filters: [http_inspector]
    filter_chains:
      - {{ name: a, route_table: one, filter_chain_match: {{ application_protocols: [spdy/3.1] }} }}
      - {{ name: b, route_table: two }}
"
    );
    let (ok, err) = validate(&config(&listener, "127.0.0.1:9".parse().unwrap()));
    assert!(ok, "{err}");
}
