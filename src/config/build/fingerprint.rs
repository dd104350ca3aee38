//! A filter chain's fingerprint: a hash of the chain as configured (its name, match,
//! terminal filter's settings, network filters and TLS settings), taken from the raw
//! config before anything is resolved. Part of `config::build`.
//!
//! A worker compares fingerprints to tell whether an update changed a chain: an equal
//! fingerprint on the same listener (name and address) means the same chain, so its
//! connections carry on and move to the new config between requests; another one
//! means the chain changed, and its connections are drained (`runtime/chain_drain.rs`).
//! The raw config is hashed rather than the built `FilterChain`, because the built
//! chain holds indices into the rest of the snapshot (route tables, clusters, counters)
//! and a cluster's warming state: an update that adds a cluster or a route table would
//! otherwise look like a change to every chain that names one.
//!
//! Left out on purpose: the TLS material, that is the certificates and CA bundles (their
//! files, their contents, the SDS files they came from), and everything an SDS secret
//! carries (its SAN matchers too). A rotation is not a chain change: new handshakes use
//! the new certificate, and the connections already open keep their sessions (as under
//! Envoy's SDS). What the chain itself says of TLS is kept: ALPN, whether a client
//! certificate is required, `tls_params`, and SAN matchers written in the chain.

use std::fmt::Write as _;
use std::hash::Hasher;

use super::raw_terminal::RawTerminal;
use crate::config::raw::RawFilterChainMatch;
use crate::tls::config::RawDownstreamTls;

/// Feeds what `Debug` prints to the hasher, without building the string.
struct Feed(std::collections::hash_map::DefaultHasher);

impl std::fmt::Write for Feed {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

/// The fingerprint of one chain. Equal configs give equal values within one process
/// (the hasher's keys are fixed); nothing outside the process sees them.
pub(super) fn chain(
    name: &str,
    matcher: Option<&RawFilterChainMatch>,
    terminal: &RawTerminal<'_>,
    tls: Option<&RawDownstreamTls>,
) -> u64 {
    let mut f = Feed(Default::default());
    // Writing to `Feed` cannot fail; each part is told apart by its label.
    let _ = write!(f, "name={name:?};match={matcher:?};terminal={terminal:?};");
    if let Some(t) = tls {
        let sans = t
            .validation_context
            .as_ref()
            .filter(|_| t.sds_files.is_empty())
            .map(|v| &v.match_subject_alt_names);
        let _ = write!(
            f,
            "tls={:?},{:?},{:?},{:?}",
            t.alpn_protocols, t.require_client_certificate, t.tls_params, sans
        );
    }
    f.0.finish()
}

#[cfg(test)]
mod tests {
    use crate::config::build::parse_native;

    fn fingerprints(yaml: &str) -> Vec<u64> {
        let s = parse_native(yaml).unwrap();
        s.listeners[0]
            .chains()
            .map(|(_, c)| c.fingerprint)
            .collect()
    }

    const BASE: &str = "
listeners:
- name: l
  address: 127.0.0.1
  port: 10000
  filter_chains:
  - name: a
    filter_chain_match: { destination_port: 10000 }
    tcp_proxy: { cluster: z }
  - name: b
    route_table: r
    idle_timeout: 5s
route_tables:
- name: r
  virtual_hosts:
  - name: all
    domains: ['*']
    routes:
    - match: { prefix: / }
      cluster: z
clusters:
- name: z
  endpoints: [{ address: 127.0.0.1, port: 9000 }]
";

    #[test]
    fn equal_config_equal_fingerprint_and_a_change_is_seen() {
        let one = fingerprints(BASE);
        assert_eq!(one, fingerprints(BASE));
        assert_ne!(one[0], one[1]);
        let changed = fingerprints(&BASE.replace("idle_timeout: 5s", "idle_timeout: 6s"));
        assert_eq!(changed[0], one[0]);
        assert_ne!(changed[1], one[1]);
    }

    #[test]
    fn another_cluster_or_route_leaves_chains_alone() {
        let one = fingerprints(BASE);
        // A cluster ahead of `z` moves its index; the TCP proxy's built chain changes,
        // its configuration does not.
        let more = BASE.replace(
            "clusters:\n",
            "clusters:\n- name: a\n  endpoints: [{ address: 127.0.0.1, port: 9001 }]\n",
        );
        let routed = more.replace("prefix: / }", "prefix: /x }");
        assert_eq!(fingerprints(&routed), one);
    }
}
