//! Load-balancer state for one cluster on one core: round robin (smooth weighted),
//! least request (power of two choices, weighted) and random (weighted).

use crate::config::{Endpoint, LbPolicy};

pub(crate) struct Lb {
    policy: LbPolicy,
    weights: Vec<u32>,
    /// Smooth weighted round robin: running "current weight" per endpoint.
    current: Vec<i64>,
    total: i64,
    /// Cumulative weights for weighted random picks.
    cumulative: Vec<u64>,
    rng: u64,
}

impl Lb {
    pub fn new(policy: LbPolicy, endpoints: &[Endpoint], seed: u64) -> Self {
        let weights: Vec<u32> = endpoints.iter().map(|e| e.weight.max(1)).collect();
        let mut acc = 0u64;
        let cumulative = weights
            .iter()
            .map(|w| {
                acc += u64::from(*w);
                acc
            })
            .collect();
        Lb {
            policy,
            current: vec![0; weights.len()],
            total: weights.iter().map(|w| i64::from(*w)).sum(),
            weights,
            cumulative,
            rng: seed | 1,
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

    /// Picks an endpoint index; `active(i)` is the endpoint's in-flight request count.
    pub fn pick(&mut self, active: impl Fn(usize) -> u64) -> Option<usize> {
        let n = self.weights.len();
        if n == 0 {
            return None;
        }
        if n == 1 {
            return Some(0);
        }
        Some(match self.policy {
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
            LbPolicy::Random => self.weighted_random(),
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
}
