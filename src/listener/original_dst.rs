//! The original_dst listener filter and `use_original_dst` (Envoy's names): where a
//! captured connection was really going, and which listener takes it.
//!
//! Runs in the accept loop (`runtime/worker.rs`) before admission, right after
//! `accept`: an iptables REDIRECT (`outrigger iptables`) rewrote the connection's
//! destination to a capture port, and the kernel keeps the original one, which
//! `getsockopt(SO_ORIGINAL_DST)` (IPv4) or `IP6T_SO_ORIGINAL_DST` (IPv6) returns. That
//! address then stands for the connection's local address everywhere after: filter
//! chain matching (`destination_port`, `prefix_ranges`) and ORIGINAL_DST clusters.
//!
//! With `use_original_dst` the connection is then handed to the listener bound to that
//! address, an exact `address:port` first, else a wildcard (`0.0.0.0` or `::`) on that
//! port (Envoy's `getBalancedHandlerByAddress`); with none it stays where it is.
//! Istio's virtualOutbound (15001) and virtualInbound (15006) work this way.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use crate::config::Listener;

/// `SO_ORIGINAL_DST` (linux/netfilter_ipv4.h) and `IP6T_SO_ORIGINAL_DST`
/// (linux/netfilter_ipv6/ip6_tables.h): both 80, at `SOL_IP` and `SOL_IPV6`.
const SO_ORIGINAL_DST: libc::c_int = 80;

/// The connection's original destination, if netfilter redirected it; `None` for a
/// connection that was not redirected (the kernel answers ENOENT) or on any error.
/// `v6` is the socket's family.
pub fn read(fd: RawFd, v6: bool) -> Option<SocketAddr> {
    // SAFETY: sockaddr_storage is plain bytes, valid all-zero.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let level = if v6 { libc::SOL_IPV6 } else { libc::SOL_IP };
    // SAFETY: the buffer and its length describe `storage`, which outlives the call;
    // the kernel writes at most `len` bytes and sets `len` to what it wrote.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            SO_ORIGINAL_DST,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: reading the storage as bytes; `len` is clamped to its size.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&storage as *const libc::sockaddr_storage).cast::<u8>(),
            (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>()),
        )
    };
    parse_sockaddr(bytes)
}

/// A `sockaddr_in` or `sockaddr_in6` as the kernel wrote it (family in host order,
/// port and address in network order); `None` for anything short or unknown.
pub fn parse_sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(b.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    match i32::from(family) {
        libc::AF_INET => {
            let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        }
        libc::AF_INET6 => {
            let flow = u32::from_be_bytes(b.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(b.get(24..28)?.try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                flow,
                scope,
            )))
        }
        _ => None,
    }
}

/// The listener that takes a connection to `dst` accepted by listener `from`
/// (`use_original_dst`): the one bound exactly to `dst`, else a wildcard listener on
/// its port in the same family, else `from`.
pub fn handoff(listeners: &[Listener], from: usize, dst: SocketAddr) -> usize {
    let exact = listeners.iter().position(|l| l.addr == dst);
    let wildcard = || {
        listeners.iter().position(|l| {
            l.addr.port() == dst.port()
                && l.addr.ip().is_unspecified()
                && l.addr.is_ipv4() == dst.is_ipv4()
        })
    };
    exact.or_else(wildcard).unwrap_or(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddrs_parse_and_odd_lengths_do_not_panic() {
        let mut v4 = vec![0u8; 16];
        v4[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&8080u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[10, 1, 2, 3]);
        assert_eq!(parse_sockaddr(&v4), Some("10.1.2.3:8080".parse().unwrap()));
        let mut v6 = vec![0u8; 28];
        v6[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&443u16.to_be_bytes());
        v6[8..24].copy_from_slice(&"fd00::7".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(parse_sockaddr(&v6), Some("[fd00::7]:443".parse().unwrap()));
        for n in 0..v6.len() {
            assert_eq!(parse_sockaddr(&v6[..n]), None, "{n}");
            let _ = parse_sockaddr(&v4[..n.min(v4.len())]);
        }
        assert_eq!(parse_sockaddr(&[0xff; 28]), None);
    }

    #[test]
    fn a_redirected_connection_finds_the_exact_then_the_wildcard_listener() {
        let s = crate::config::parse_str(
            "listeners:
  - { name: capture, address: 0.0.0.0, port: 15001, use_original_dst: true, tcp_proxy: { cluster: c } }
  - { name: any_80, address: 0.0.0.0, port: 80, bind_to_port: false, tcp_proxy: { cluster: c } }
  - { name: vip_80, address: 10.0.0.1, port: 80, bind_to_port: false, tcp_proxy: { cluster: c } }
  - { name: v6_80, address: '::', port: 80, bind_to_port: false, tcp_proxy: { cluster: c } }
clusters:
  - { name: c, type: original_dst }
",
        )
        .unwrap();
        let l = &s.listeners;
        assert!(
            l[0].listener_filters.original_dst,
            "use_original_dst implies the filter"
        );
        let to = |a: &str| handoff(l, 0, a.parse().unwrap());
        assert_eq!(to("10.0.0.1:80"), 2);
        assert_eq!(to("10.0.0.2:80"), 1);
        assert_eq!(to("[fd00::1]:80"), 3);
        assert_eq!(to("10.0.0.1:81"), 0);
    }

    #[test]
    fn envoy_fields_translate() {
        let s = crate::config::parse_str(
            r#"{"static_resources": {
  "listeners": [{"name": "virtualOutbound", "use_original_dst": true,
    "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15001}},
    "listener_filters": [{"name": "envoy.filters.listener.original_dst",
      "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"}}],
    "filter_chains": [{"filters": [{"name": "t", "typed_config": {
      "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
      "stat_prefix": "p", "cluster": "PassthroughCluster"}}]}]},
   {"name": "0.0.0.0_80", "bind_to_port": false,
    "address": {"socket_address": {"address": "0.0.0.0", "port_value": 80}},
    "filter_chains": [{"filters": [{"name": "t", "typed_config": {
      "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
      "stat_prefix": "p", "cluster": "InboundPassthroughCluster"}}]}]}],
  "clusters": [{"name": "PassthroughCluster", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED"},
    {"name": "InboundPassthroughCluster", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED",
     "upstream_bind_config": {"source_address": {"address": "127.0.0.6", "port_value": 0}}}]}}"#,
        )
        .unwrap();
        let l = &s.listeners;
        assert!(l[0].use_original_dst && l[0].listener_filters.original_dst);
        assert!(!l[1].bind_to_port);
        assert_eq!(s.clusters[0].kind, crate::config::ClusterKind::OriginalDst);
        assert_eq!(s.clusters[1].source_address, Some([127, 0, 0, 6].into()));
        let bad = r#"{"static_resources": {"clusters": [{"name": "c", "type": "ORIGINAL_DST"}]}}"#;
        let e = crate::config::parse_str(bad).unwrap_err().to_string();
        assert!(e.contains("CLUSTER_PROVIDED"), "{e}");
    }
}
