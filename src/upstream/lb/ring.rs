//! Envoy's ring hash (ketama) table for one cluster on one core, built from the
//! eligible endpoints when health changes, never per pick. The same endpoints give the
//! same ring on every core and in Envoy: each endpoint's entries are the xxHash64 of
//! `"<ip:port>_<i>"`, as Envoy's `RingHashLoadBalancer::Ring` makes them.

use std::io::Write;

use xxhash_rust::xxh64::xxh64;

/// The sorted ring: `(hash, endpoint index)`.
pub(crate) struct Ring {
    entries: Vec<(u64, u32)>,
}

impl Ring {
    /// `hosts` are `(endpoint index, address text, weight)` in the cluster's order (the
    /// order Envoy walks its healthy hosts in, which decides how fractional shares of
    /// the ring round).
    pub fn build(hosts: &[(usize, &str, u32)], min_ring_size: u64, max_ring_size: u64) -> Ring {
        let sum: u64 = hosts.iter().map(|h| u64::from(h.2)).sum();
        if hosts.is_empty() || sum == 0 {
            return Ring {
                entries: Vec::new(),
            };
        }
        // Envoy's normalized weights, in the same floating-point steps.
        let normalized: Vec<f64> = hosts
            .iter()
            .map(|h| f64::from(h.2) * 1.0 / sum as f64)
            .collect();
        let min_normalized = normalized.iter().copied().fold(1.0, f64::min);
        // Enough entries that the lightest endpoint gets a whole number of them, capped.
        let scale = ((min_normalized * min_ring_size as f64).ceil() / min_normalized)
            .min(max_ring_size as f64);
        let ring_size = scale.ceil() as usize;
        let mut entries = Vec::with_capacity(ring_size);
        let mut key = Vec::with_capacity(64);
        let (mut current, mut target) = (0.0f64, 0.0f64);
        for ((index, addr, _), w) in hosts.iter().zip(&normalized) {
            target += scale * w;
            let mut i: u64 = 0;
            while current < target {
                key.clear();
                key.extend_from_slice(addr.as_bytes());
                let _ = write!(key, "_{i}");
                entries.push((xxh64(&key, 0), *index as u32));
                i += 1;
                current += 1.0;
            }
        }
        // Equal hashes keep their build order (Envoy's sort leaves that unspecified).
        entries.sort_by_key(|e| e.0);
        Ring { entries }
    }

    /// The endpoint for `hash`: the first entry at or after it, wrapping to the start
    /// (ketama's search); a retry's `attempt` moves that many entries on, as Envoy's
    /// `chooseHost` does.
    pub fn pick(&self, hash: u64, attempt: u32) -> Option<usize> {
        let n = self.entries.len();
        if n == 0 {
            return None;
        }
        let mut at = self.entries.partition_point(|e| e.0 < hash);
        if at == n {
            at = 0;
        }
        let at = (at + attempt as usize) % n;
        self.entries.get(at).map(|e| e.1 as usize)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(addrs: &[String], weights: &[u32]) -> Vec<(usize, String, u32)> {
        addrs
            .iter()
            .zip(weights)
            .enumerate()
            .map(|(i, (a, w))| (i, a.clone(), *w))
            .collect()
    }

    fn build(h: &[(usize, String, u32)], min: u64, max: u64) -> Ring {
        let v: Vec<(usize, &str, u32)> = h.iter().map(|(i, a, w)| (*i, a.as_str(), *w)).collect();
        Ring::build(&v, min, max)
    }

    fn addrs(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{}:80", i + 1)).collect()
    }

    #[test]
    fn ring_size_follows_envoy() {
        // Equal weights: the minimum ring size, rounded up to whole entries per host.
        let r = build(&hosts(&addrs(3), &[1, 1, 1]), 1024, 8 << 20);
        assert_eq!(r.len(), 1026);
        // Capped by the maximum.
        let r = build(&hosts(&addrs(4), &[1, 1, 1, 1]), 1024, 6);
        assert_eq!(r.len(), 6);
        assert_eq!(Ring::build(&[], 1024, 2048).pick(7, 0), None);
    }

    #[test]
    fn distribution_follows_weights() {
        let r = build(&hosts(&addrs(2), &[3, 1]), 1024, 8 << 20);
        let mut seen = [0u32; 2];
        for k in 0..20_000u32 {
            seen[r.pick(xxh64(&k.to_le_bytes(), 0), 0).unwrap()] += 1;
        }
        let share = f64::from(seen[0]) / 20_000.0;
        assert!((0.65..0.85).contains(&share), "{seen:?}");
    }

    #[test]
    fn removing_one_endpoint_moves_few_other_keys() {
        let a = addrs(10);
        let full = build(&hosts(&a, &[1; 10]), 1024, 8 << 20);
        // Endpoint 3 gone; the others keep their indices.
        let rest: Vec<(usize, String, u32)> = hosts(&a, &[1; 10])
            .into_iter()
            .filter(|h| h.0 != 3)
            .collect();
        let less = build(&rest, 1024, 8 << 20);
        let mut moved = 0;
        for k in 0..10_000u32 {
            let h = xxh64(&k.to_le_bytes(), 0);
            let (before, after) = (full.pick(h, 0).unwrap(), less.pick(h, 0).unwrap());
            if before != 3 && before != after {
                moved += 1;
            }
        }
        // Each host keeps its first entries (`addr_0`, `addr_1`, ...); the ring's size
        // per host grows a little (1024 / 9 vs / 10), so a few other keys move to them.
        assert!(moved < 1_000, "{moved} of ~9000 other keys moved");
    }

    #[test]
    fn the_same_endpoints_make_the_same_ring() {
        let h = hosts(&addrs(5), &[1, 2, 3, 1, 1]);
        let (a, b) = (build(&h, 1024, 8 << 20), build(&h, 1024, 8 << 20));
        assert_eq!(a.entries, b.entries);
        // A retry's attempt moves on along the ring.
        let k = 12345;
        let at = a.entries.partition_point(|e| e.0 < k) % a.len();
        assert_eq!(a.pick(k, 1), Some(a.entries[(at + 1) % a.len()].1 as usize));
    }
}
