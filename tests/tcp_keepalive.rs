//! TCP keepalive on upstream connections (Envoy's cluster
//! `upstream_connection_options.tcp_keepalive`, natively the cluster's `tcp_keepalive`):
//! the options are read back from the proxy's own upstream socket (found through
//! /proc, duplicated into the test with `pidfd_getfd`), for Outrigger and for Envoy 1.40
//! with the same bootstrap.

mod common;

use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use common::envoy::{envoy_or_skip, one_cluster_bootstrap, Envoy};
use common::*;

/// What a socket says of keepalive: SO_KEEPALIVE, TCP_KEEPCNT, TCP_KEEPIDLE (s),
/// TCP_KEEPINTVL (s).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Keepalive {
    on: bool,
    probes: u32,
    time: u64,
    interval: u64,
}

/// The socket inode of `pid`'s established TCP connection to 127.0.0.1:`port`.
fn inode_to(pid: u32, port: u16) -> Option<String> {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
    let want = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&want.as_str()) && f.get(3) == Some(&"01"))
            .then(|| f.get(9).map(|s| s.to_string()))
            .flatten()
    })
}

/// The keepalive options of `pid`'s connection to 127.0.0.1:`port`, read from a copy
/// of its socket.
fn keepalive_of(pid: u32, port: u16) -> Option<Keepalive> {
    let inode = inode_to(pid, port)?;
    let link = format!("socket:[{inode}]");
    let fd: i32 = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .find(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == link))?
        .file_name()
        .to_str()?
        .parse()
        .ok()?;
    // SAFETY: plain syscalls; each fd they return is owned here and closed on drop.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    assert!(
        pidfd >= 0,
        "pidfd_open: {}",
        std::io::Error::last_os_error()
    );
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    let pidfd_raw = std::os::fd::AsRawFd::as_raw_fd(&pidfd);
    let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd_raw, fd, 0) };
    assert!(
        copy >= 0,
        "pidfd_getfd: {}",
        std::io::Error::last_os_error()
    );
    let copy = unsafe { OwnedFd::from_raw_fd(copy as i32) };
    let borrowed: BorrowedFd<'_> = std::os::fd::AsFd::as_fd(&copy);
    let s = socket2::SockRef::from(&borrowed);
    Some(Keepalive {
        on: s.keepalive().ok()?,
        probes: s.keepalive_retries().ok()?,
        time: s.keepalive_time().ok()?.as_secs(),
        interval: s.keepalive_interval().ok()?.as_secs(),
    })
}

/// The keepalive of the proxy `pid`'s upstream connection after one request through
/// `listen` (the connection stays pooled).
fn upstream_keepalive(pid: u32, listen: SocketAddr, up: &Upstream) -> Keepalive {
    let r = exchange(listen, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.body_str());
    wait_until(Duration::from_secs(5), || keepalive_of(pid, up.addr.port()))
        .expect("the proxy's upstream connection")
}

fn bootstrap(up: SocketAddr, cluster_extra: &str) -> String {
    one_cluster_bootstrap(up, cluster_extra)
}

/// The kernel's defaults, for the fields a config leaves unset.
fn kernel(name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/tcp_keepalive_{name}"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn tcp_keepalive_is_set_on_upstream_connections_as_envoy_sets_it() {
    let Some(bin) = envoy_or_skip("tcp_keepalive_is_set_on_upstream_connections_as_envoy_sets_it")
    else {
        return;
    };
    let all = "    upstream_connection_options:\n      tcp_keepalive: { keepalive_probes: 4, keepalive_time: 77, keepalive_interval: 9 }\n";
    let time_only =
        "    upstream_connection_options:\n      tcp_keepalive: { keepalive_time: 33 }\n";
    let cases = [
        (
            "no keepalive",
            "",
            Keepalive {
                on: false,
                probes: kernel("probes") as u32,
                time: kernel("time"),
                interval: kernel("intvl"),
            },
        ),
        (
            "all three",
            all,
            Keepalive {
                on: true,
                probes: 4,
                time: 77,
                interval: 9,
            },
        ),
        (
            "keepalive_time only",
            time_only,
            Keepalive {
                on: true,
                probes: kernel("probes") as u32,
                time: 33,
                interval: kernel("intvl"),
            },
        ),
    ];
    let mut diffs = Vec::new();
    for (name, extra, want) in cases {
        let up = Upstream::echo();
        let envoy = Envoy::start(&bin, &bootstrap(up.addr, extra));
        let from_envoy = upstream_keepalive(envoy.pid(), envoy.listen, &up);
        drop(envoy);
        let up = Upstream::echo();
        let proxy = Proxy::start_with(&bootstrap(up.addr, extra), 1);
        let from_outrigger = upstream_keepalive(proxy.pid, proxy.listen, &up);
        drop(proxy);
        eprintln!("{name}: Envoy {from_envoy:?}, Outrigger {from_outrigger:?}");
        if from_envoy != want || from_outrigger != want {
            diffs.push(format!(
                "{name}: Envoy {from_envoy:?}, Outrigger {from_outrigger:?}, expected {want:?}"
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// Natively the cluster's `tcp_keepalive`, on the TCP proxy's upstream connections too;
/// a value the kernel would refuse is refused with its path.
#[test]
fn native_tcp_keepalive_on_http_and_tcp_proxy_connections() {
    let want = Keepalive {
        on: true,
        probes: 2,
        time: 45,
        interval: 6,
    };
    let keepalive =
        "    tcp_keepalive: { keepalive_probes: 2, keepalive_time: 45, keepalive_interval: 6 }\n";
    let up = Upstream::echo();
    let config = proxy_config(up.addr).replace(
        "    connect_timeout: 1s\n",
        &format!("    connect_timeout: 1s\n{keepalive}"),
    );
    let proxy = Proxy::start_with(&config, 1);
    assert_eq!(upstream_keepalive(proxy.pid, proxy.listen, &up), want);
    drop(proxy);

    // The TCP proxy: the bytes of one request go through, the connection stays open.
    let up = Upstream::echo();
    let tcp = format!(
        "{HEADER}listeners:
  - name: tcp
    address: 127.0.0.1
    port: @PORT@
    tcp_proxy: {{ cluster: backend }}
clusters:
  - name: backend
    connect_timeout: 1s
{keepalive}    endpoints:
      - address: 127.0.0.1
        port: {}
",
        up.addr.port()
    );
    let proxy = Proxy::start_with(&tcp, 1);
    let mut c = Conn::connect(proxy.listen);
    c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.read_response().expect("a response through the TCP proxy");
    assert_eq!(r.status, 200);
    let got = wait_until(Duration::from_secs(5), || {
        keepalive_of(proxy.pid, up.addr.port())
    });
    assert_eq!(got, Some(want));
    drop(c);
    drop(proxy);

    let (ok, said) = validate_config(&proxy_config(up.addr).replace(
        "    connect_timeout: 1s\n",
        "    connect_timeout: 1s\n    tcp_keepalive: { keepalive_probes: 0 }\n",
    ));
    assert!(!ok);
    assert!(
        said.contains("clusters[0].tcp_keepalive.keepalive_probes: must be between 1 and 127"),
        "{said}"
    );

    // From an Envoy bootstrap: the other connection options are refused by their path.
    let (ok, said) = validate_config(&bootstrap(
        up.addr,
        "    upstream_connection_options: { set_local_interface_name_on_upstream_connections: true }\n",
    ));
    assert!(!ok);
    assert!(
        said.contains("upstream_connection_options.set_local_interface_name_on_upstream_connections: not supported by Outrigger"),
        "{said}"
    );
}
