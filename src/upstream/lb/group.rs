//! One set of endpoints a pick is made from (a priority's healthy, degraded or all
//! endpoints, or one locality's), with the policy's per-core state over it: smooth
//! weighted round robin counters, cumulative weights for weighted random and least
//! request, and a consistent hash's ring or table. Built when health changes (a control
//! message), never per pick; `Lb::pick` (`mod.rs`) calls `pick`/`pick_hashed`.

use super::{maglev, ring};
use crate::config::LbPolicy;

/// A consistent hash's lookup structure over the group's endpoints.
pub(super) enum Hashed {
    None,
    Ring(ring::Ring),
    Maglev(maglev::Maglev),
}

#[derive(Default)]
pub(super) struct Group {
    /// The endpoints (indices into the cluster's list) and their weights.
    pub eligible: Vec<usize>,
    weights: Vec<u32>,
    /// Smooth weighted round robin: running "current weight" per endpoint.
    current: Vec<i64>,
    total: i64,
    /// Cumulative weights for weighted random picks.
    cumulative: Vec<u64>,
    hashed: Option<Hashed>,
    /// Smooth round robin counters over weights that change per pick: slow start's
    /// scaled weights, and least request's `weight / (active + 1) ^ bias`.
    slow_current: Vec<f64>,
    /// Every endpoint has the same weight: least request then picks the less loaded
    /// of two at random (Envoy's unweighted pick) instead of by effective weight.
    uniform: bool,
}

/// Least request's divisor of an endpoint's weight, as a factor: Envoy's
/// `1 / (active + 1) ^ active_request_bias` (`bias` 0: the weight alone, as round
/// robin).
pub(super) fn load_factor(active: u64, bias: f64) -> f64 {
    let a = active.saturating_add(1) as f64;
    if bias == 1.0 {
        1.0 / a
    } else if bias == 0.0 {
        1.0
    } else {
        a.powf(-bias)
    }
}

/// One smooth weighted round robin step over `current` with the weights `w(k)` of this
/// pick: the slot whose counter is highest after each grew by its weight.
fn smooth(current: &mut [f64], w: impl Fn(usize) -> f64) -> usize {
    let mut total = 0.0;
    let mut best = 0;
    for k in 0..current.len() {
        let wk = w(k);
        total += wk;
        if let Some(c) = current.get_mut(k) {
            *c += wk;
        }
        if current.get(k) > current.get(best) {
            best = k;
        }
    }
    if let Some(c) = current.get_mut(best) {
        *c -= total;
    }
    best
}

/// xorshift64*: plenty for spreading load, no shared state.
pub(super) fn next_random(rng: &mut u64) -> u64 {
    let mut x = *rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

impl Group {
    /// The group over `eligible` with `weight(i)` per endpoint; `keys` (the endpoints'
    /// `ip:port`) are hashed onto the ring or table of a hashing policy.
    pub fn build(
        policy: LbPolicy,
        eligible: Vec<usize>,
        weight: impl Fn(usize) -> u32,
        keys: &[String],
    ) -> Group {
        let weights: Vec<u32> = eligible.iter().map(|&i| weight(i)).collect();
        let mut acc = 0u64;
        let cumulative = weights
            .iter()
            .map(|w| {
                acc += u64::from(*w);
                acc
            })
            .collect();
        let hosts: Vec<(usize, &str, u32)> = eligible
            .iter()
            .zip(&weights)
            .filter_map(|(&i, &w)| Some((i, keys.get(i)?.as_str(), w)))
            .collect();
        // Built from the endpoints alone (no per-core state), so every core, and
        // Envoy, maps a hash to the same endpoint.
        let hashed = match policy {
            LbPolicy::RingHash {
                min_ring_size,
                max_ring_size,
            } => Hashed::Ring(ring::Ring::build(&hosts, min_ring_size, max_ring_size)),
            LbPolicy::Maglev { table_size } => {
                Hashed::Maglev(maglev::Maglev::build(&hosts, table_size))
            }
            _ => Hashed::None,
        };
        Group {
            uniform: weights.windows(2).all(|w| w.first() == w.get(1)),
            current: vec![0; weights.len()],
            slow_current: vec![0.0; weights.len()],
            total: weights.iter().map(|w| i64::from(*w)).sum(),
            cumulative,
            weights,
            eligible,
            hashed: Some(hashed),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.eligible.is_empty()
    }

    fn weighted_random(&self, rng: &mut u64) -> usize {
        let total = (*self.cumulative.last().unwrap_or(&1)).max(1);
        let r = next_random(rng) % total;
        self.cumulative.partition_point(|&c| c <= r)
    }

    /// A consistent hash's pick (`hash`, moving on `attempt` entries); `None` for a
    /// policy without a table.
    pub fn pick_hashed(&self, hash: u64, attempt: u32) -> Option<Option<usize>> {
        match self.hashed.as_ref()? {
            Hashed::Ring(r) => Some(r.pick(hash, attempt)),
            Hashed::Maglev(m) => Some(m.pick(hash, attempt)),
            Hashed::None => None,
        }
    }

    /// Picks an endpoint index with `policy`; `active(i)` is the endpoint's in-flight
    /// request count, `bias` least request's `active_request_bias`.
    pub fn pick(
        &mut self,
        policy: LbPolicy,
        rng: &mut u64,
        active: impl Fn(usize) -> u64,
        bias: f64,
    ) -> Option<usize> {
        // Taken out for the call and put back: moving a Vec does not allocate.
        let eligible = std::mem::take(&mut self.eligible);
        let slot = self.pick_slot(
            policy,
            rng,
            |s| eligible.get(s).map_or(0, |&i| active(i)),
            bias,
        );
        self.eligible = eligible;
        self.eligible.get(slot?).copied()
    }

    /// Peak EWMA's pick: two endpoints drawn at random (in proportion to their
    /// weights, distinct), the one with the lower `cost(i)` (the first on a tie).
    pub fn pick_p2c(&self, rng: &mut u64, cost: impl Fn(usize) -> f64) -> Option<usize> {
        let n = self.eligible.len();
        if n <= 1 {
            return self.eligible.first().copied();
        }
        let a = self.weighted_random(rng);
        let mut b = self.weighted_random(rng);
        if a == b {
            b = (a + 1 + (next_random(rng) as usize % (n - 1))) % n;
        }
        let (a, b) = (*self.eligible.get(a)?, *self.eligible.get(b)?);
        Some(if cost(b) < cost(a) { b } else { a })
    }

    /// `pick` while some endpoint is in slow start: each weight scaled by `factor(i)`
    /// (Envoy's `applySlowStartFactor`, in `(0, 1]`), computed per pick. Least request
    /// then weighs every endpoint by `weight / (active + 1) ^ bias` too, equal weights
    /// or not, as Envoy's scheduler does while a host ramps.
    pub fn pick_slow(
        &mut self,
        policy: LbPolicy,
        rng: &mut u64,
        active: impl Fn(usize) -> u64,
        factor: impl Fn(usize) -> f64,
        bias: f64,
    ) -> Option<usize> {
        let n = self.eligible.len();
        if n <= 1 {
            return self.eligible.first().copied();
        }
        let w = |k: usize| -> f64 {
            let i = self.eligible.get(k).copied().unwrap_or(0);
            f64::from(self.weights.get(k).copied().unwrap_or(1)) * factor(i)
        };
        let total: f64 = (0..n).map(w).sum();
        let draw = |rng: &mut u64| -> usize {
            // A uniform point in [0, total): 53 random bits.
            let mut r = (next_random(rng) >> 11) as f64 / (1u64 << 53) as f64 * total;
            for k in 0..n {
                r -= w(k);
                if r < 0.0 {
                    return k;
                }
            }
            n - 1
        };
        let slot = match policy {
            LbPolicy::RoundRobin => {
                let mut best = 0;
                for k in 0..n {
                    self.slow_current[k] += w(k);
                    if self.slow_current[k] > self.slow_current[best] {
                        best = k;
                    }
                }
                self.slow_current[best] -= total;
                best
            }
            LbPolicy::LeastRequest => {
                let eligible = &self.eligible;
                let act = |k: usize| eligible.get(k).map_or(0, |&i| active(i));
                let weights = &self.weights;
                let wk = |k: usize| -> f64 {
                    let i = eligible.get(k).copied().unwrap_or(0);
                    f64::from(weights.get(k).copied().unwrap_or(1)) * factor(i)
                };
                smooth(&mut self.slow_current, |k| {
                    wk(k) * load_factor(act(k), bias)
                })
            }
            _ => draw(rng),
        };
        self.eligible.get(slot).copied()
    }

    /// Picks a position in `eligible`.
    fn pick_slot(
        &mut self,
        policy: LbPolicy,
        rng: &mut u64,
        active: impl Fn(usize) -> u64,
        bias: f64,
    ) -> Option<usize> {
        let n = self.weights.len();
        if n == 0 {
            return None;
        }
        if n == 1 {
            return Some(0);
        }
        Some(match policy {
            // (A hashing policy picks with its table; without one, at random.)
            // (Peak EWMA picks with `pick_p2c`; weighted random is its fallback.)
            LbPolicy::Random
            | LbPolicy::RingHash { .. }
            | LbPolicy::Maglev { .. }
            | LbPolicy::PeakEwma => self.weighted_random(rng),
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
            // Equal weights: the less loaded of two endpoints drawn at random (Envoy's
            // unweighted pick, with `choice_count` 2).
            LbPolicy::LeastRequest if self.uniform => {
                let a = self.weighted_random(rng);
                let mut b = self.weighted_random(rng);
                if a == b {
                    b = (a + 1 + (next_random(rng) as usize % (n - 1))) % n;
                }
                if active(b) < active(a) {
                    b
                } else {
                    a
                }
            }
            // Unequal weights: each endpoint weighs `weight / (active + 1) ^ bias` at the
            // pick (Envoy's `hostWeight`), spread by smooth weighted round robin (Envoy
            // schedules the same weights with its EDF scheduler).
            LbPolicy::LeastRequest => {
                let weights = &self.weights;
                smooth(&mut self.slow_current, |k| {
                    f64::from(weights.get(k).copied().unwrap_or(1)) * load_factor(active(k), bias)
                })
            }
        })
    }
}
