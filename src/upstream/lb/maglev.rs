//! Envoy's Maglev lookup table for one cluster on one core, built from the eligible
//! endpoints when health changes, never per pick. The same endpoints give the same
//! table on every core and in Envoy: endpoints are sorted by their address text, each
//! one's permutation is `offset = xxHash64(addr) % M`, `skip = xxHash64(addr, seed 1)
//! % (M - 1) + 1`, and weights are honoured as Envoy's `MaglevTable` does (an endpoint
//! takes a turn once its normalized weight has caught up with its target).

use xxhash_rust::xxh64::xxh64;

pub(crate) struct Maglev {
    /// Endpoint index per slot (empty: no endpoint).
    table: Vec<u32>,
}

struct Entry {
    index: u32,
    offset: u64,
    skip: u64,
    weight: f64,
    target: f64,
    next: u64,
}

impl Maglev {
    /// `hosts`: `(endpoint index, address text, weight)`; `size` is prime.
    pub fn build(hosts: &[(usize, &str, u32)], size: u64) -> Maglev {
        let sum: u64 = hosts.iter().map(|h| u64::from(h.2)).sum();
        if hosts.is_empty() || sum == 0 || size < 2 {
            return Maglev { table: Vec::new() };
        }
        let mut sorted: Vec<&(usize, &str, u32)> = hosts.iter().collect();
        sorted.sort_by(|a, b| a.1.cmp(b.1));
        let mut entries: Vec<Entry> = sorted
            .iter()
            .map(|(index, addr, w)| Entry {
                index: *index as u32,
                offset: xxh64(addr.as_bytes(), 0) % size,
                skip: xxh64(addr.as_bytes(), 1) % (size - 1) + 1,
                weight: f64::from(*w) * 1.0 / sum as f64,
                target: 0.0,
                next: 0,
            })
            .collect();
        let max_weight = entries.iter().map(|e| e.weight).fold(0.0, f64::max);
        const EMPTY: u32 = u32::MAX;
        let mut table = vec![EMPTY; size as usize];
        let mut filled: u64 = 0;
        let mut iteration: u32 = 1;
        while filled < size {
            for e in entries.iter_mut() {
                if filled >= size {
                    break;
                }
                // A lighter endpoint sits out iterations until its share catches up.
                if f64::from(iteration) * e.weight < e.target {
                    continue;
                }
                e.target += max_weight;
                let mut slot = permutation(e, size);
                while table.get(slot).is_some_and(|&t| t != EMPTY) {
                    e.next += 1;
                    slot = permutation(e, size);
                }
                if let Some(t) = table.get_mut(slot) {
                    *t = e.index;
                }
                e.next += 1;
                filled += 1;
            }
            iteration += 1;
        }
        Maglev { table }
    }

    /// The endpoint for `hash`; a retry's `attempt` flips most of the hash's bits, as
    /// Envoy's `chooseHost` does.
    pub fn pick(&self, hash: u64, attempt: u32) -> Option<usize> {
        let n = self.table.len() as u64;
        if n == 0 {
            return None;
        }
        let h = if attempt > 0 {
            hash ^ (u64::from(attempt)).wrapping_neg()
        } else {
            hash
        };
        self.table.get((h % n) as usize).map(|&i| i as usize)
    }
}

fn permutation(e: &Entry, size: u64) -> usize {
    // Both terms are below `size` (< 2^32), so the product fits in u128 comfortably.
    ((u128::from(e.offset) + u128::from(e.skip) * u128::from(e.next)) % u128::from(size)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(addrs: &[String], weights: &[u32], size: u64) -> Maglev {
        let v: Vec<(usize, &str, u32)> = addrs
            .iter()
            .zip(weights)
            .enumerate()
            .map(|(i, (a, w))| (i, a.as_str(), *w))
            .collect();
        Maglev::build(&v, size)
    }

    fn addrs(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{}:80", i + 1)).collect()
    }

    #[test]
    fn table_shares_follow_weights() {
        let m = build(&addrs(3), &[1, 1, 2], 65537);
        let mut count = [0u32; 3];
        for &i in &m.table {
            count[i as usize] += 1;
        }
        assert_eq!(count.iter().sum::<u32>(), 65537, "every slot filled");
        let share = f64::from(count[2]) / 65537.0;
        assert!((0.45..0.55).contains(&share), "{count:?}");
        assert!(Maglev::build(&[], 65537).pick(1, 0).is_none());
    }

    #[test]
    fn the_same_endpoints_in_any_order_make_the_same_table() {
        let a = addrs(4);
        let m1 = build(&a, &[1; 4], 65537);
        let m2 = build(&a, &[1; 4], 65537);
        assert_eq!(m1.table, m2.table);
        // Listed in another order (indices follow), the slots name the same addresses.
        let rev: Vec<String> = a.iter().rev().cloned().collect();
        let m3 = build(&rev, &[1; 4], 65537);
        for (x, y) in m1.table.iter().zip(&m3.table) {
            assert_eq!(a[*x as usize], rev[*y as usize]);
        }
    }

    #[test]
    fn removing_one_endpoint_moves_few_other_keys() {
        let a = addrs(10);
        let full = build(&a, &[1; 10], 65537);
        let rest: Vec<(usize, &str, u32)> = a
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 3)
            .map(|(i, s)| (i, s.as_str(), 1))
            .collect();
        let less = Maglev::build(&rest, 65537);
        let mut moved = 0;
        for k in 0..10_000u64 {
            let h = xxh64(&k.to_le_bytes(), 0);
            let (b, c) = (full.pick(h, 0).unwrap(), less.pick(h, 0).unwrap());
            if b != 3 && b != c {
                moved += 1;
            }
        }
        // Maglev trades a little disruption for balance: a few percent at most.
        assert!(moved < 500, "{moved} of ~9000 keys moved");
    }
}
