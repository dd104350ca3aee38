//! Load-balancer state for one cluster on one core: round robin (smooth weighted),
//! least request (power of two choices, weighted), random (weighted), and the
//! consistent hashes, ring hash (`ring.rs`) and Maglev (`maglev.rs`), over the
//! endpoints that pass their health checks, or over all of them in Envoy's panic mode.
//! The eligible set (and a hash's ring or table) is rebuilt when health changes (a
//! control message), never per pick. A pick is called by `upstream::request::pick`
//! (and a retry's re-pick) with the request's hash, made by `http::router::hash`.

mod maglev;
mod ring;

use crate::config::{Endpoint, LbPolicy};

/// A consistent hash's lookup structure over the eligible endpoints.
enum Hashed {
    None,
    Ring(ring::Ring),
    Maglev(maglev::Maglev),
}

pub(crate) struct Lb {
    policy: LbPolicy,
    /// Every endpoint's weight, by endpoint index.
    all_weights: Vec<u32>,
    /// The endpoints picks are made from (indices), and their weights.
    eligible: Vec<usize>,
    /// Envoy's panic mode: too few healthy endpoints, so all are used.
    panic: bool,
    weights: Vec<u32>,
    /// Smooth weighted round robin: running "current weight" per endpoint.
    current: Vec<i64>,
    total: i64,
    /// Cumulative weights for weighted random picks.
    cumulative: Vec<u64>,
    rng: u64,
    /// Every endpoint's address as text (`ip:port`, `[ip6]:port`): what the ring and
    /// the Maglev table hash, as Envoy does (kept only for the hashing policies).
    keys: Vec<String>,
    hashed: Hashed,
}

impl Lb {
    pub fn new(policy: LbPolicy, endpoints: &[Endpoint], seed: u64) -> Self {
        let all_weights: Vec<u32> = endpoints.iter().map(|e| e.weight.max(1)).collect();
        let mut lb = Lb {
            policy,
            eligible: Vec::new(),
            panic: false,
            all_weights,
            weights: Vec::new(),
            current: Vec::new(),
            total: 0,
            cumulative: Vec::new(),
            rng: seed | 1,
            keys: if policy.hashing() {
                endpoints.iter().map(|e| e.addr.to_string()).collect()
            } else {
                Vec::new()
            },
            hashed: Hashed::None,
        };
        lb.use_endpoints((0..lb.all_weights.len()).collect(), false);
        lb
    }

    /// Applies the endpoints' health (`failed[i]`): Envoy's panic rule with
    /// `panic_threshold` percent (`LoadBalancerBase`): a priority's availability is
    /// `min(100, 140 * healthy / total)`; below 100, if fewer than `panic_threshold`
    /// percent of the endpoints are healthy, all of them are used (a threshold of 0
    /// never panics, and then no healthy endpoint means no endpoint).
    pub fn set_health(&mut self, failed: &[bool], panic_threshold: u32) {
        let total = failed.len();
        let healthy: Vec<usize> = (0..total)
            .filter(|&i| !failed.get(i).copied().unwrap_or(false))
            .collect();
        let availability = (140 * healthy.len())
            .checked_div(total)
            .map_or(0, |a| a.min(100));
        let healthy_percent = if total == 0 {
            0.0
        } else {
            100.0 * healthy.len() as f64 / total as f64
        };
        let panic = availability < 100
            && panic_threshold > 0
            && healthy_percent < f64::from(panic_threshold);
        if panic {
            self.use_endpoints((0..total).collect(), true);
        } else {
            self.use_endpoints(healthy, false);
        }
    }

    /// In panic mode: the last rebuild used every endpoint because too few were healthy.
    pub fn panic(&self) -> bool {
        self.panic
    }

    fn use_endpoints(&mut self, eligible: Vec<usize>, panic: bool) {
        let weights: Vec<u32> = eligible
            .iter()
            .map(|&i| self.all_weights.get(i).copied().unwrap_or(1))
            .collect();
        let mut acc = 0u64;
        self.cumulative = weights
            .iter()
            .map(|w| {
                acc += u64::from(*w);
                acc
            })
            .collect();
        self.current = vec![0; weights.len()];
        self.total = weights.iter().map(|w| i64::from(*w)).sum();
        self.hashed = self.build_hashed(&eligible, &weights);
        self.weights = weights;
        self.eligible = eligible;
        self.panic = panic;
    }

    /// The ring or table over `eligible`: built from the endpoints alone (no per-core
    /// state), so every core, and Envoy, maps a hash to the same endpoint.
    fn build_hashed(&self, eligible: &[usize], weights: &[u32]) -> Hashed {
        let hosts: Vec<(usize, &str, u32)> = eligible
            .iter()
            .zip(weights)
            .filter_map(|(&i, &w)| Some((i, self.keys.get(i)?.as_str(), w)))
            .collect();
        match self.policy {
            LbPolicy::RingHash {
                min_ring_size,
                max_ring_size,
            } => Hashed::Ring(ring::Ring::build(&hosts, min_ring_size, max_ring_size)),
            LbPolicy::Maglev { table_size } => {
                Hashed::Maglev(maglev::Maglev::build(&hosts, table_size))
            }
            _ => Hashed::None,
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: plenty for spreading load, no shared state.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn weighted_random(&mut self) -> usize {
        let total = *self.cumulative.last().unwrap_or(&1);
        let r = self.next_random() % total;
        self.cumulative.partition_point(|&c| c <= r)
    }

    /// Picks an endpoint index for a request whose hash is `hash` (from the route's
    /// `hash_policy`; `None`: no policy gave one, and a hashing policy then picks at a
    /// random point, as Envoy does). `attempt` counts a retry's re-picks that found an
    /// endpoint already tried (Envoy's host selection attempts): a hashing policy moves
    /// on from the hash's endpoint; the others ignore both.
    pub fn pick_hashed(
        &mut self,
        hash: Option<u64>,
        attempt: u32,
        active: impl Fn(usize) -> u64,
    ) -> Option<usize> {
        if matches!(self.hashed, Hashed::None) {
            return self.pick(active);
        }
        let h = match hash {
            Some(h) => h,
            None => self.next_random(),
        };
        match &self.hashed {
            Hashed::Ring(r) => r.pick(h, attempt),
            Hashed::Maglev(m) => m.pick(h, attempt),
            Hashed::None => None,
        }
    }

    /// Picks an endpoint index; `active(i)` is the endpoint's in-flight request count.
    pub fn pick(&mut self, active: impl Fn(usize) -> u64) -> Option<usize> {
        // Taken out for the call and put back: moving a Vec does not allocate.
        let eligible = std::mem::take(&mut self.eligible);
        let slot = self.pick_slot(|s| eligible.get(s).map_or(0, |&i| active(i)));
        self.eligible = eligible;
        self.eligible.get(slot?).copied()
    }

    /// Picks a position in `eligible`.
    fn pick_slot(&mut self, active: impl Fn(usize) -> u64) -> Option<usize> {
        let n = self.weights.len();
        if n == 0 {
            return None;
        }
        if n == 1 {
            return Some(0);
        }
        Some(match self.policy {
            // (A hashing policy picks in `pick_hashed`; without its table, at random.)
            LbPolicy::Random | LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. } => {
                self.weighted_random()
            }
            LbPolicy::RoundRobin => {
                let mut best = 0;
                for i in 0..n {
                    self.current[i] += i64::from(self.weights[i]);
                    if self.current[i] > self.current[best] {
                        best = i;
                    }
                }
                self.current[best] -= self.total;
                best
            }
            LbPolicy::LeastRequest => {
                let a = self.weighted_random();
                let mut b = self.weighted_random();
                if a == b {
                    b = (a + 1 + (self.next_random() as usize % (n - 1))) % n;
                }
                // Compare active/weight without division.
                let la = active(a) * u64::from(self.weights[b]);
                let lb = active(b) * u64::from(self.weights[a]);
                if lb < la {
                    b
                } else {
                    a
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(weights: &[u32]) -> Vec<Endpoint> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Endpoint {
                addr: format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                weight: *w,
                hostname: None,
            })
            .collect()
    }

    #[test]
    fn round_robin_follows_weights() {
        let mut lb = Lb::new(LbPolicy::RoundRobin, &eps(&[3, 1]), 7);
        let picks: Vec<usize> = (0..8).map(|_| lb.pick(|_| 0).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 6);
        assert_eq!(picks[..4].iter().filter(|&&p| p == 1).count(), 1);
    }

    #[test]
    fn least_request_prefers_idle() {
        let mut lb = Lb::new(LbPolicy::LeastRequest, &eps(&[1, 1]), 7);
        for _ in 0..50 {
            assert_eq!(lb.pick(|i| if i == 0 { 10 } else { 0 }), Some(1));
        }
    }

    #[test]
    fn random_covers_all() {
        let mut lb = Lb::new(LbPolicy::Random, &eps(&[1, 1, 1]), 7);
        let mut seen = [0; 3];
        for _ in 0..300 {
            seen[lb.pick(|_| 0).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&s| s > 50), "{seen:?}");
        assert_eq!(Lb::new(LbPolicy::Random, &[], 1).pick(|_| 0), None);
    }

    #[test]
    fn failed_endpoints_are_skipped_until_panic() {
        let mut lb = Lb::new(LbPolicy::RoundRobin, &eps(&[1, 1, 1, 1]), 7);
        // 3 of 4 healthy: availability 100%, no panic.
        lb.set_health(&[false, true, false, false], 50);
        assert!(!lb.panic());
        assert!((0..30).all(|_| lb.pick(|_| 0) != Some(1)));
        // 2 of 4: availability 70% but 50% healthy is not below 50: no panic.
        lb.set_health(&[true, false, true, false], 50);
        assert!(!lb.panic());
        assert!((0..30).all(|_| matches!(lb.pick(|_| 0), Some(1 | 3))));
        // 1 of 4: 25% < 50%: every endpoint is used.
        lb.set_health(&[true, true, true, false], 50);
        assert!(lb.panic());
        let mut seen = [0; 4];
        for _ in 0..40 {
            seen[lb.pick(|_| 0).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&s| s == 10), "{seen:?}");
        // A threshold of 0 never panics: no healthy endpoint, no endpoint.
        lb.set_health(&[true, true, true, true], 0);
        assert!(!lb.panic());
        assert_eq!(lb.pick(|_| 0), None);
    }

    #[test]
    fn least_request_reads_the_endpoints_own_counts() {
        let mut lb = Lb::new(LbPolicy::LeastRequest, &eps(&[1, 1, 1]), 7);
        lb.set_health(&[true, false, false], 50);
        for _ in 0..30 {
            assert_eq!(lb.pick(|i| if i == 1 { 10 } else { 0 }), Some(2));
        }
    }

    #[test]
    fn hashing_skips_failed_endpoints_until_panic() {
        for policy in [LbPolicy::RING_HASH_DEFAULT, LbPolicy::MAGLEV_DEFAULT] {
            let mut lb = Lb::new(policy, &eps(&[1, 1, 1, 1]), 7);
            let keys: Vec<u64> = (0..200u64)
                .map(|k| k.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .collect();
            let before: Vec<usize> = keys
                .iter()
                .map(|&k| lb.pick_hashed(Some(k), 0, |_| 0).unwrap())
                .collect();
            assert!(before.contains(&1));
            // Endpoint 1 fails: its keys move, the others' mostly stay.
            lb.set_health(&[false, true, false, false], 50);
            let after: Vec<usize> = keys
                .iter()
                .map(|&k| lb.pick_hashed(Some(k), 0, |_| 0).unwrap())
                .collect();
            assert!(!after.contains(&1), "{policy:?}");
            let kept = before
                .iter()
                .zip(&after)
                .filter(|(b, a)| **b != 1 && b == a)
                .count();
            let others = before.iter().filter(|&&b| b != 1).count();
            assert!(
                kept * 10 >= others * 8,
                "{policy:?}: {kept} of {others} kept"
            );
            // Panic (1 of 4 healthy < 50%): every endpoint again, the first table back.
            lb.set_health(&[true, true, false, true], 50);
            assert!(lb.panic());
            let panic: Vec<usize> = keys
                .iter()
                .map(|&k| lb.pick_hashed(Some(k), 0, |_| 0).unwrap())
                .collect();
            assert_eq!(panic, before, "{policy:?}");
            // No healthy endpoint and no panic: no endpoint.
            lb.set_health(&[true, true, true, true], 0);
            assert_eq!(lb.pick_hashed(Some(1), 0, |_| 0), None);
        }
    }
}
