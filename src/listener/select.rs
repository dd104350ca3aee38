//! Filter chain selection: which of a listener's chains takes a new connection.
//!
//! Built once per listener and config (the worker builds it when it applies a snapshot;
//! `config::build` builds it too, to refuse bad listeners). Selection follows Envoy's
//! `FilterChainManagerImpl`: the criteria form a tree, walked in Envoy's order
//! (destination port, destination IP, server name, transport protocol, application
//! protocol, source IP, source port). At each level the most specific entry that fits
//! the connection is taken (an exact port, the longest prefix, an exact name) and the
//! walk never comes back up: if nothing below it fits, the connection gets the default
//! chain, even if a less specific entry would have fitted. A chain with several values
//! in a field sits under each of them.
//!
//! A lookup walks a few short vectors, compares the detected protocol strings and does
//! not allocate.

use std::net::{IpAddr, SocketAddr};

use crate::config::{CidrRange, FilterChainMatch, Listener};

/// The transport protocol of a plain TCP connection (Envoy sets it when no listener
/// filter detected another).
pub const RAW_BUFFER: &str = "raw_buffer";

/// What is known about a connection when its chain is chosen.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo<'a> {
    /// The connection's local address: destination port and IP.
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// From a tls_inspector (SNI), lower case; empty without one.
    pub server_name: &'a str,
    pub transport_protocol: &'a str,
    /// From the http_inspector (one) or the tls_inspector (the client's ALPN list, in
    /// its order); empty without one.
    pub application_protocols: &'a [&'a str],
}

/// One level of the tree: entries keyed by one criterion's value.
type Level<K, V> = Vec<(K, V)>;

type SourcePorts = Level<u16, usize>;
type SourceIps = Level<Option<CidrRange>, SourcePorts>;
type AppProtocols = Level<String, SourceIps>;
type Transports = Level<String, AppProtocols>;
type ServerNames = Level<String, Transports>;
type DestinationIps = Level<Option<CidrRange>, ServerNames>;

/// A listener's chains, arranged for lookup.
#[derive(Debug, Default)]
pub struct ChainSelector {
    /// By destination port; port 0 holds the chains without one.
    ports: Level<u16, DestinationIps>,
    /// The default chain's index (`Listener::chain`), if there is one.
    default: Option<usize>,
    /// Some chain matches on application protocols, so the http_inspector's answer is
    /// needed before choosing.
    uses_application_protocols: bool,
}

/// The entry for `key`, added if missing.
fn entry<K: PartialEq, V: Default>(level: &mut Level<K, V>, key: K) -> &mut V {
    let i = match level.iter().position(|(k, _)| *k == key) {
        Some(i) => i,
        None => {
            level.push((key, V::default()));
            level.len() - 1
        }
    };
    &mut level[i].1
}

/// The entry with the longest prefix containing `ip`; the catch-all (`None`) last.
fn longest<V>(level: &Level<Option<CidrRange>, V>, ip: IpAddr) -> Option<&V> {
    let mut best: Option<(u8, &V)> = None;
    for (range, v) in level {
        if let Some(r) = range {
            if r.contains(ip) && best.is_none_or(|(len, _)| r.prefix_len > len) {
                best = Some((r.prefix_len, v));
            }
        }
    }
    best.map(|(_, v)| v)
        .or_else(|| level.iter().find(|(r, _)| r.is_none()).map(|(_, v)| v))
}

fn exact<'l, K: PartialEq<Q>, Q: ?Sized, V>(level: &'l Level<K, V>, key: &Q) -> Option<&'l V> {
    level.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// `None` for an empty list: "any", one catch-all entry.
fn or_any<T: Clone>(values: &[T]) -> Vec<Option<T>> {
    if values.is_empty() {
        vec![None]
    } else {
        values.iter().cloned().map(Some).collect()
    }
}

impl ChainSelector {
    /// Arranges a listener's chains. Refuses, as Envoy does, two chains with the same
    /// match, two whose matches overlap (both would sit at the same leaf), and partial
    /// wildcards in server names.
    pub fn build(l: &Listener) -> Result<ChainSelector, String> {
        let mut s = ChainSelector {
            default: l
                .default_filter_chain
                .as_ref()
                .map(|_| l.filter_chains.len()),
            ..ChainSelector::default()
        };
        for (i, c) in l.filter_chains.iter().enumerate() {
            if let Some(same) = l.filter_chains[..i].iter().find(|o| o.matcher == c.matcher) {
                return Err(format!(
                    "filter chain `{}` has the same matching rules as `{}`",
                    c.name, same.name
                ));
            }
            s.add(&c.matcher, i)
                .map_err(|m| format!("filter chain `{}`: {m}", c.name))?;
        }
        Ok(s)
    }

    fn add(&mut self, m: &FilterChainMatch, chain: usize) -> Result<(), String> {
        let mut names = Vec::new();
        for n in &m.server_names {
            let n = n.to_ascii_lowercase();
            match n.strip_prefix('*') {
                // `*.example.com` is kept as `.example.com`, which lookups try as a suffix.
                Some(rest) if rest.starts_with('.') && !rest.contains('*') => {
                    names.push(rest.to_string())
                }
                _ if n.contains('*') => {
                    return Err(format!(
                        "server name `{n}`: partial wildcards are not supported"
                    ))
                }
                _ => names.push(n),
            }
        }
        self.uses_application_protocols |= !m.application_protocols.is_empty();
        let dst_ips = entry(&mut self.ports, m.destination_port.unwrap_or(0));
        for dst in or_any(&m.prefix_ranges) {
            let by_name = entry(dst_ips, dst);
            for name in or_any(&names) {
                let by_transport = entry(by_name, name.unwrap_or_default());
                let by_app = entry(
                    by_transport,
                    m.transport_protocol.clone().unwrap_or_default(),
                );
                for app in or_any(&m.application_protocols) {
                    let by_src = entry(by_app, app.unwrap_or_default());
                    for src in or_any(&m.source_prefix_ranges) {
                        let by_port = entry(by_src, src);
                        for port in or_any(&m.source_ports) {
                            let port = port.unwrap_or(0);
                            if by_port.iter().any(|(p, _)| *p == port) {
                                return Err(
                                    "its matching rules overlap with another chain's".into()
                                );
                            }
                            by_port.push((port, chain));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the http_inspector's answer can change the choice.
    pub fn uses_application_protocols(&self) -> bool {
        self.uses_application_protocols
    }

    /// The chosen chain's index (`Listener::chain`): the best match, else the default.
    pub fn select(&self, c: &ConnInfo<'_>) -> Option<usize> {
        // An exact port that matches nothing falls to the default, not to port 0.
        let dst = exact(&self.ports, &c.local.port()).or_else(|| exact(&self.ports, &0));
        dst.and_then(|d| self.below_port(d, c)).or(self.default)
    }

    fn below_port(&self, dst_ips: &DestinationIps, c: &ConnInfo<'_>) -> Option<usize> {
        let by_name = longest(dst_ips, c.local.ip())?;
        let by_transport = server_name(by_name, c.server_name)?;
        let by_app =
            exact(by_transport, c.transport_protocol).or_else(|| exact(by_transport, ""))?;
        // Envoy: the first of the connection's protocols that some chain names.
        let by_src = c
            .application_protocols
            .iter()
            .find_map(|p| exact(by_app, *p))
            .or_else(|| exact(by_app, ""))?;
        let by_port = longest(by_src, c.peer.ip())?;
        exact(by_port, &c.peer.port())
            .or_else(|| exact(by_port, &0))
            .copied()
    }
}

/// Exact name, then wildcard suffixes from the longest (`.example.com`, then `.com`),
/// then the chains without server names.
fn server_name<'l>(level: &'l ServerNames, name: &str) -> Option<&'l Transports> {
    if let Some(t) = exact(level, name) {
        return Some(t);
    }
    let mut rest = name;
    // Skip the first label: `*.example.com` does not match `example.com`.
    while let Some(dot) = rest.get(1..).and_then(|r| r.find('.')) {
        let Some(suffix) = rest.get(dot + 1..) else {
            break;
        };
        if suffix.len() > 1 {
            if let Some(t) = exact(level, suffix) {
                return Some(t);
            }
        }
        rest = suffix;
    }
    exact(level, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FilterChain, NetworkTerminal, TcpProxy};
    use std::time::Duration;

    fn chain(name: &str, m: FilterChainMatch) -> FilterChain {
        FilterChain {
            name: name.into(),
            matcher: m,
            network_filters: vec![],
            terminal: NetworkTerminal::Tcp(TcpProxy {
                clusters: vec![(Some(0), 1)],
                idle_timeout: Duration::from_secs(1),
                access_log: None,
                istio_stats: None,
            }),
            tls: None,
            fingerprint: 0,
        }
    }

    fn listener(chains: Vec<FilterChain>, default: bool) -> Listener {
        Listener {
            name: "l".into(),
            addr: "127.0.0.1:80".parse().unwrap(),
            backlog: 1,
            max_connections: None,
            listener_filters: Default::default(),
            filter_chains: chains,
            default_filter_chain: default.then(|| chain("default", FilterChainMatch::default())),
            use_original_dst: false,
            bind_to_port: true,
        }
    }

    fn cidr(s: &str) -> CidrRange {
        let (a, l) = s.split_once('/').unwrap();
        CidrRange::new(a.parse().unwrap(), l.parse().unwrap()).unwrap()
    }

    fn conn<'a>(local: &str, peer: &str, app: &'a [&'a str]) -> ConnInfo<'a> {
        ConnInfo {
            local: local.parse().unwrap(),
            peer: peer.parse().unwrap(),
            server_name: "",
            transport_protocol: RAW_BUFFER,
            application_protocols: app,
        }
    }

    #[test]
    fn most_specific_source_range_wins() {
        let s = ChainSelector::build(&listener(
            vec![
                chain(
                    "wide",
                    FilterChainMatch {
                        source_prefix_ranges: vec![cidr("127.0.0.0/8")],
                        ..Default::default()
                    },
                ),
                chain(
                    "narrow",
                    FilterChainMatch {
                        source_prefix_ranges: vec![cidr("127.0.0.2/32")],
                        ..Default::default()
                    },
                ),
            ],
            false,
        ))
        .unwrap();
        let l = "127.0.0.1:80";
        assert_eq!(s.select(&conn(l, "127.0.0.1:5000", &[])), Some(0));
        assert_eq!(s.select(&conn(l, "127.0.0.2:5000", &[])), Some(1));
        assert_eq!(s.select(&conn(l, "10.0.0.1:5000", &[])), None);
    }

    #[test]
    fn application_protocol_then_catch_all_then_default() {
        let m = |apps: &[&str]| FilterChainMatch {
            application_protocols: apps.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        };
        let s = ChainSelector::build(&listener(
            vec![
                chain("h2", m(&["h2c"])),
                chain("h1", m(&["http/1.1", "http/1.0"])),
            ],
            true,
        ))
        .unwrap();
        assert!(s.uses_application_protocols());
        let (l, p) = ("127.0.0.1:80", "127.0.0.1:1");
        assert_eq!(s.select(&conn(l, p, &["h2c"])), Some(0));
        assert_eq!(s.select(&conn(l, p, &["http/1.0"])), Some(1));
        assert_eq!(s.select(&conn(l, p, &[])), Some(2), "the default");
    }

    #[test]
    fn exact_port_without_a_match_falls_to_the_default_not_to_port_zero() {
        let s = ChainSelector::build(&listener(
            vec![
                chain(
                    "port",
                    FilterChainMatch {
                        destination_port: Some(80),
                        source_ports: vec![1],
                        ..Default::default()
                    },
                ),
                chain("any", FilterChainMatch::default()),
            ],
            false,
        ))
        .unwrap();
        assert_eq!(s.select(&conn("127.0.0.1:80", "127.0.0.1:1", &[])), Some(0));
        assert_eq!(s.select(&conn("127.0.0.1:80", "127.0.0.1:2", &[])), None);
        assert_eq!(s.select(&conn("127.0.0.1:81", "127.0.0.1:2", &[])), Some(1));
    }

    #[test]
    fn no_backtracking_past_a_more_specific_destination() {
        // The /32 destination entry wins; nothing under it fits the source, so the
        // connection gets no chain although the catch-all chain would have fitted.
        let s = ChainSelector::build(&listener(
            vec![
                chain(
                    "dst",
                    FilterChainMatch {
                        prefix_ranges: vec![cidr("127.0.0.1/32")],
                        source_ports: vec![7],
                        ..Default::default()
                    },
                ),
                chain("any", FilterChainMatch::default()),
            ],
            false,
        ))
        .unwrap();
        assert_eq!(s.select(&conn("127.0.0.1:80", "127.0.0.1:1", &[])), None);
        assert_eq!(s.select(&conn("127.0.0.9:80", "127.0.0.1:1", &[])), Some(1));
    }

    #[test]
    fn server_names_and_transport_protocol() {
        let s = ChainSelector::build(&listener(
            vec![
                chain(
                    "sni",
                    FilterChainMatch {
                        server_names: vec!["*.Example.com".into()],
                        ..Default::default()
                    },
                ),
                chain(
                    "tls",
                    FilterChainMatch {
                        transport_protocol: Some("tls".into()),
                        ..Default::default()
                    },
                ),
                chain(
                    "raw",
                    FilterChainMatch {
                        transport_protocol: Some("raw_buffer".into()),
                        ..Default::default()
                    },
                ),
            ],
            false,
        ))
        .unwrap();
        let mut c = conn("127.0.0.1:80", "127.0.0.1:1", &[]);
        assert_eq!(s.select(&c), Some(2), "no SNI, raw_buffer");
        c.server_name = "a.b.example.com";
        assert_eq!(s.select(&c), Some(0));
        c.server_name = "example.com";
        assert_eq!(s.select(&c), Some(2));
    }

    #[test]
    fn refuses_duplicates_overlaps_and_partial_wildcards() {
        let apps = |a: &[&str]| FilterChainMatch {
            application_protocols: a.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let e = ChainSelector::build(&listener(
            vec![chain("a", apps(&["h2c"])), chain("b", apps(&["h2c"]))],
            false,
        ))
        .unwrap_err();
        assert!(e.contains("`b` has the same matching rules as `a`"), "{e}");
        let e = ChainSelector::build(&listener(
            vec![
                chain("a", apps(&["h2c", "http/1.1"])),
                chain("b", apps(&["http/1.1"])),
            ],
            false,
        ))
        .unwrap_err();
        assert!(e.contains("overlap"), "{e}");
        let e = ChainSelector::build(&listener(
            vec![chain(
                "a",
                FilterChainMatch {
                    server_names: vec!["a*.example.com".into()],
                    ..Default::default()
                },
            )],
            false,
        ))
        .unwrap_err();
        assert!(e.contains("partial wildcards"), "{e}");
    }
}
