//! Virtual-host lookup by Host, built once per route table.
//!
//! Envoy's order (`RouteMatcher::findVirtualHost`): an exact domain; else the longest
//! `*suffix` wildcard shorter than the host; else the longest `prefix*` wildcard shorter
//! than the host; else `*`. Exact domains sit in one hash map; wildcards in one hash map
//! per length, tried longest first, so a lookup costs one hash per distinct wildcard
//! length instead of a scan over every domain. Hosts are compared ASCII
//! case-insensitively: the part of the host a map is probed with is lower-cased into a
//! stack buffer, so nothing allocates.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::config::DomainMatch;

/// The longest domain a route table may list (a DNS name is at most 253 bytes; a port
/// adds up to 6). A longer host can still match a wildcard.
pub const MAX_DOMAIN_LEN: usize = 320;

/// A word-at-a-time multiply-rotate hash (as rustc's FxHash): the keys are the
/// config's own domains and a lookup only probes them, so a hostile Host cannot degrade
/// the map; SipHash would cost more than the rest of the lookup.
#[derive(Default)]
pub struct WordHash(u64);

const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl WordHash {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
    }
}

impl Hasher for WordHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            if let Some(head) = b.get_mut(..rest.len()) {
                head.copy_from_slice(rest);
            }
            self.add(u64::from_le_bytes(b));
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

type Map = HashMap<Box<[u8]>, usize, BuildHasherDefault<WordHash>>;

/// Domain -> virtual host index.
#[derive(Debug, Default, PartialEq)]
pub struct DomainIndex {
    exact: Map,
    /// (wildcard length without the `*`, map), longest first.
    suffixes: Vec<(usize, Map)>,
    prefixes: Vec<(usize, Map)>,
    any: Option<usize>,
}

fn insert_by_len(list: &mut Vec<(usize, Map)>, key: &str, vh: usize) {
    let len = key.len();
    let pos = match list.iter().position(|(l, _)| *l <= len) {
        Some(i) if list.get(i).is_some_and(|(l, _)| *l == len) => i,
        Some(i) => {
            list.insert(i, (len, Map::default()));
            i
        }
        None => {
            list.push((len, Map::default()));
            list.len() - 1
        }
    };
    if let Some((_, m)) = list.get_mut(pos) {
        m.entry(key.as_bytes().into()).or_insert(vh);
    }
}

impl DomainIndex {
    /// Indexes `(virtual host index, domain)` pairs; the config builder has already
    /// refused duplicates (a repeated domain keeps its first virtual host).
    pub fn build<'a>(domains: impl IntoIterator<Item = (usize, &'a DomainMatch)>) -> DomainIndex {
        let mut ix = DomainIndex::default();
        for (vh, d) in domains {
            match d {
                DomainMatch::Exact(e) => {
                    ix.exact.entry(e.as_bytes().into()).or_insert(vh);
                }
                DomainMatch::Suffix(s) => insert_by_len(&mut ix.suffixes, s, vh),
                DomainMatch::Prefix(p) => insert_by_len(&mut ix.prefixes, p, vh),
                DomainMatch::Any => {
                    ix.any.get_or_insert(vh);
                }
            }
        }
        ix
    }

    /// The virtual host for `host` (as it came, any case).
    pub fn find(&self, host: &[u8]) -> Option<usize> {
        // Only `*`: no need to look at the host (Envoy's fast path).
        if self.exact.is_empty() && self.suffixes.is_empty() && self.prefixes.is_empty() {
            return self.any;
        }
        let mut buf = [0u8; MAX_DOMAIN_LEN];
        if let Some(v) = lower(host, &mut buf).and_then(|k| self.exact.get(k)) {
            return Some(*v);
        }
        // `>=`: a wildcard's `*` matches at least one character.
        for (len, map) in &self.suffixes {
            if *len >= host.len() {
                continue;
            }
            let tail = host.get(host.len() - len..).unwrap_or_default();
            if let Some(v) = lower(tail, &mut buf).and_then(|k| map.get(k)) {
                return Some(*v);
            }
        }
        for (len, map) in &self.prefixes {
            if *len >= host.len() {
                continue;
            }
            let head = host.get(..*len).unwrap_or_default();
            if let Some(v) = lower(head, &mut buf).and_then(|k| map.get(k)) {
                return Some(*v);
            }
        }
        self.any
    }
}

/// `s` lower-cased into `buf`; `None` if it is longer than any domain can be.
fn lower<'b>(s: &[u8], buf: &'b mut [u8; MAX_DOMAIN_LEN]) -> Option<&'b [u8]> {
    let out = buf.get_mut(..s.len())?;
    for (o, b) in out.iter_mut().zip(s) {
        *o = b.to_ascii_lowercase();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_order() {
        let ds = [
            (0, DomainMatch::Exact("api.example.com".into())),
            (1, DomainMatch::Suffix(".example.com".into())),
            (2, DomainMatch::Suffix("-bar.example.com".into())),
            (3, DomainMatch::Prefix("internal.".into())),
            (4, DomainMatch::Any),
            (5, DomainMatch::Exact("a.example:8080".into())),
        ];
        let ix = DomainIndex::build(ds.iter().map(|(v, d)| (*v, d)));
        assert_eq!(ix.find(b"API.example.COM"), Some(0));
        assert_eq!(ix.find(b"x.example.com"), Some(1));
        assert_eq!(ix.find(b"foo-bar.example.com"), Some(2));
        // The wildcard needs at least one character in front.
        assert_eq!(ix.find(b".example.com"), Some(4));
        assert_eq!(ix.find(b"internal.svc"), Some(3));
        assert_eq!(ix.find(b"internal."), Some(4));
        assert_eq!(ix.find(b"a.example:8080"), Some(5));
        assert_eq!(ix.find(b"a.example"), Some(4));
        let long = vec![b'a'; 1000];
        assert_eq!(ix.find(&long), Some(4));
        let mut long_suffix = long.clone();
        long_suffix.extend_from_slice(b".EXAMPLE.com");
        assert_eq!(ix.find(&long_suffix), Some(1));
    }
}
