//! The TCP proxy listener: bytes both ways, half-close, weighted clusters, connect
//! failures, the idle timeout, stats and the access log, one descriptor per socket; and
//! the `--tcp` one-line mode.

mod common;
mod sockets;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use sockets::{descriptors_of, tcp_inode};

/// An upstream that, per connection, reads until the client half-closes, then answers
/// `echo:` + everything it read and closes. Serves until `count` connections are done.
fn echo_after_eof(count: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming().take(count) {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut got = Vec::new();
                if s.read_to_end(&mut got).is_ok() {
                    let _ = s.write_all(b"echo:");
                    let _ = s.write_all(&got);
                }
            });
        }
    });
    addr
}

/// An upstream that writes `tag` to every connection and closes it.
fn tagger(tag: u8, count: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for mut s in l.incoming().take(count).flatten() {
            let _ = s.write_all(&[tag]);
        }
    });
    addr
}

fn tcp_config(clusters: &str, tcp_proxy: &str, listener_extra: &str) -> String {
    format!(
        "{HEADER}listeners:
  - name: tcp
    address: 127.0.0.1
    port: @PORT@
    tcp_proxy: {tcp_proxy}
{listener_extra}    access_log:
      path: @DIR@/access.log
      format: \"%PROTOCOL% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %UPSTREAM_CLUSTER% %UPSTREAM_HOST%\"
clusters:
{clusters}"
    )
}

fn cluster(name: &str, addr: SocketAddr) -> String {
    format!(
        "  - name: {name}
    connect_timeout: 1s
    endpoints:
      - {{ address: 127.0.0.1, port: {} }}
",
        addr.port()
    )
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn access_log_lines(p: &Proxy, n: usize) -> Vec<String> {
    let path = p.dir.join("access.log");
    wait_until(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(&path).ok()?;
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        (lines.len() >= n).then_some(lines)
    })
    .unwrap_or_else(|| panic!("expected {n} access-log lines in {}", path.display()))
}

#[test]
fn bytes_flow_both_ways_with_half_close() {
    let up = echo_after_eof(1);
    let p = Proxy::start(&tcp_config(&cluster("echo", up), "{ cluster: echo }", ""));
    let mut s = connect(p.listen);
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    s.write_all(&payload).unwrap();
    // Half-close: the upstream answers only after it sees our end of stream.
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(&got[..5], b"echo:");
    assert_eq!(
        &got[5..],
        &payload[..],
        "the upstream got exactly what we sent"
    );
    let lines = access_log_lines(&p, 1);
    assert_eq!(
        lines[0],
        format!("TCP - {} {} echo {up}", payload.len(), payload.len() + 5)
    );
    let l = p.listener_stats("tcp");
    assert_eq!(l["bytes_received"], payload.len() as u64);
    assert_eq!(l["bytes_sent"], payload.len() as u64 + 5);
    assert_eq!(l["cx_total"], 1);
    assert_eq!(p.cluster_stats("echo")["cx_total"], 1);
}

#[test]
fn weighted_clusters_split_connections() {
    let a = tagger(b'a', 400);
    let b = tagger(b'b', 400);
    let clusters = cluster("a", a) + &cluster("b", b);
    let p = Proxy::start(&tcp_config(
        &clusters,
        "{ weighted_clusters: [{ name: a, weight: 3 }, { name: b, weight: 1 }] }",
        "",
    ));
    let mut counts = [0usize; 2];
    for _ in 0..200 {
        let mut s = connect(p.listen);
        let mut tag = [0u8; 1];
        s.read_exact(&mut tag).unwrap();
        counts[usize::from(tag[0] == b'b')] += 1;
    }
    assert!(
        (130..=170).contains(&counts[0]),
        "3:1 split expected, got {counts:?}"
    );
}

#[test]
fn connect_failure_closes_the_client_and_is_counted() {
    let p = Proxy::start(&tcp_config(
        &cluster("gone", refused_addr()),
        "{ cluster: gone }",
        "",
    ));
    let mut s = connect(p.listen);
    let mut buf = [0u8; 16];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "closed without data");
    let lines = access_log_lines(&p, 1);
    assert!(lines[0].starts_with("TCP UF 0 0 gone "), "{}", lines[0]);
    assert_eq!(p.cluster_stats("gone")["cx_connect_fail"], 1);
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    // An upstream that accepts and then says nothing.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let up = l.local_addr().unwrap();
    let held = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 1];
        // Returns when the proxy closes its side.
        let _ = (&s).read(&mut buf);
    });
    let p = Proxy::start(&tcp_config(
        &cluster("quiet", up),
        "{ cluster: quiet }",
        "    idle_timeout: 300ms\n",
    ));
    let start = Instant::now();
    let mut s = connect(p.listen);
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed too early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "idle timeout not applied: {waited:?}"
    );
    held.join().unwrap();
    let lines = access_log_lines(&p, 1);
    assert!(lines[0].starts_with("TCP DRT 0 0 quiet"), "{}", lines[0]);
}

#[test]
fn one_line_tcp_mode_proxies_bytes() {
    let up = echo_after_eof(1);
    let upstream = up.to_string();
    let p = Proxy::start_args(&[
        "run",
        "--listen",
        "127.0.0.1:@PORT@",
        "--upstream",
        &upstream,
        "--admin",
        "127.0.0.1:@ADMIN_PORT@",
        "--tcp",
        "--concurrency",
        "1",
    ]);
    let mut s = connect(p.listen);
    s.write_all(b"ping").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"echo:ping");
}

#[test]
fn a_listener_needs_exactly_one_of_route_table_and_tcp_proxy() {
    let dir = TempDir::new("tcp-validate");
    let path = dir.join("bad.yaml");
    std::fs::write(
        &path,
        "listeners:
  - name: both
    address: 127.0.0.1
    port: 1
    route_table: t
    tcp_proxy: { cluster: c }
  - name: nope
    address: 127.0.0.1
    port: 2
    tcp_proxy: { cluster: missing }
route_tables:
  - { name: t, virtual_hosts: [] }
clusters:
  - { name: c, endpoints: [] }
",
    )
    .unwrap();
    let o = run_cli(
        &["validate", "-c", path.to_str().unwrap()],
        Duration::from_secs(20),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("line 2: listeners[0]: set exactly one of `route_table` and `tcp_proxy`"),
        "{err}"
    );
    assert!(
        err.contains("listeners[1].tcp_proxy.cluster: no cluster named `missing`"),
        "{err}"
    );
}

/// An upstream that echoes every byte as it arrives and half-closes after the client
/// does. Serves one connection.
fn echo_now() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = s.read(&mut buf) {
            if s.write_all(&buf[..n]).is_err() {
                return;
            }
        }
        let _ = s.shutdown(Shutdown::Write);
    });
    addr
}

#[test]
fn a_tunnel_holds_each_socket_on_one_descriptor() {
    // Both directions run over halves of one stream per side, not over a dup()'d second
    // descriptor (which a TLS session on the stream could not share).
    let up = echo_now();
    let p = Proxy::start(&tcp_config(&cluster("echo", up), "{ cluster: echo }", ""));
    let mut s = connect(p.listen);
    // A byte echoed through proves both directions are copying.
    s.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    s.read_exact(&mut one).unwrap();
    let down = tcp_inode(Some(p.listen), s.local_addr().unwrap()).expect("downstream socket");
    let upstream = tcp_inode(None, up).expect("upstream socket");
    assert_eq!(descriptors_of(p.pid, &down), 1, "downstream socket");
    assert_eq!(descriptors_of(p.pid, &upstream), 1, "upstream socket");
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
}
