//! Load-balancer state for one cluster on one core: round robin (smooth weighted),
//! least request (power of two choices, weighted), random (weighted), peak EWMA
//! (power of two choices on latency estimates, `ewma.rs`), and the
//! consistent hashes, ring hash (`ring.rs`) and Maglev (`maglev.rs`), over Envoy's
//! priority levels and localities (`priority.rs`): a pick first chooses a priority by
//! the priorities' loads (healthy, then degraded), then, with locality weighting, a
//! locality by its effective weight, then an endpoint in that set (`group.rs`) with the
//! policy; a priority in Envoy's panic mode picks among all its endpoints. The loads
//! and sets (and a hash's ring or table) are rebuilt when health changes (a control
//! message), never per pick. A pick is called by `upstream::request::pick` (and a
//! retry's re-pick) with the request's hash, made by `http::router::hash`.

mod ewma;
mod group;
mod maglev;
mod priority;
mod ring;

use std::time::{Duration, Instant};

use crate::config::{Endpoint, EndpointHealth, LbPolicy, Localities, PeakEwma, SlowStart};
use group::{next_random, Group};

/// One priority level's sets.
#[derive(Default)]
struct Level {
    panic: bool,
    healthy: Group,
    degraded: Group,
    /// Every endpoint of the level (built in panic only).
    all: Group,
    /// With locality weighting: each locality's healthy and degraded endpoints, and
    /// the schedulers that pick a locality (indices into these lists).
    healthy_localities: Vec<Group>,
    degraded_localities: Vec<Group>,
    healthy_sched: priority::Sched,
    degraded_sched: priority::Sched,
}

pub(crate) struct Lb {
    policy: LbPolicy,
    /// Every endpoint's weight, priority, locality and configured health.
    weights: Vec<u32>,
    priorities: Vec<u32>,
    localities: Vec<usize>,
    configured: Vec<EndpointHealth>,
    locality_cfg: Localities,
    levels: Vec<Level>,
    healthy_load: Vec<u32>,
    degraded_load: Vec<u32>,
    /// The last pick came from a priority in panic (counted by the caller).
    last_panic: bool,
    /// Slow start: its settings, when each endpoint last became healthy (on this
    /// core; `None`: not healthy), and until when some endpoint is still ramping.
    slow: Option<SlowStart>,
    healthy_since: Vec<Option<Instant>>,
    slow_until: Option<Instant>,
    /// Least request's `active_request_bias` (Envoy's default 1.0).
    bias: f64,
    /// Peak EWMA's latency estimates (empty for the other policies).
    ewma: ewma::Estimates,
    rng: u64,
    /// Every endpoint's address as text (`ip:port`, `[ip6]:port`): what the ring and
    /// the Maglev table hash, as Envoy does (kept only for the hashing policies).
    keys: Vec<String>,
}

impl Lb {
    pub fn new(
        policy: LbPolicy,
        endpoints: &[Endpoint],
        localities: &Localities,
        panic_threshold: u32,
        seed: u64,
    ) -> Self {
        let mut lb = Lb {
            policy,
            weights: endpoints.iter().map(|e| e.weight.max(1)).collect(),
            priorities: endpoints.iter().map(|e| e.priority).collect(),
            localities: endpoints.iter().map(|e| e.locality).collect(),
            configured: endpoints.iter().map(|e| e.health).collect(),
            locality_cfg: localities.clone(),
            levels: Vec::new(),
            healthy_load: Vec::new(),
            degraded_load: Vec::new(),
            last_panic: false,
            slow: None,
            healthy_since: vec![None; endpoints.len()],
            slow_until: None,
            bias: 1.0,
            ewma: ewma::Estimates::default(),
            rng: seed | 1,
            keys: if policy.hashing() {
                endpoints.iter().map(|e| e.addr.to_string()).collect()
            } else {
                Vec::new()
            },
        };
        lb.set_health(&vec![false; endpoints.len()], panic_threshold);
        lb
    }

    /// Turns on slow start (Envoy's `slow_start_config`): the endpoints healthy now
    /// start their ramp now, as Envoy's do when its load balancer is created.
    pub fn with_slow_start(mut self, slow: Option<SlowStart>) -> Self {
        self.slow = slow;
        self.slow_until = slow.map(|s| Instant::now() + s.window);
        self
    }

    /// Sets least request's `active_request_bias`.
    pub fn with_active_request_bias(mut self, bias: f64) -> Self {
        self.bias = bias;
        self
    }

    /// Sets peak EWMA's settings (kept only with `lb_policy: peak_ewma`).
    pub fn with_peak_ewma(mut self, cfg: PeakEwma) -> Self {
        if self.policy == LbPolicy::PeakEwma {
            self.ewma = ewma::Estimates::new(cfg, self.weights.len());
        }
        self
    }

    /// A response head from endpoint `i` that took `rtt` (peak EWMA's sample; the other
    /// policies keep none).
    pub fn observe(&mut self, i: usize, rtt: Duration) {
        if self.policy == LbPolicy::PeakEwma {
            self.ewma.observe(i, rtt, Instant::now());
        }
    }

    /// Keeps the ramp (slow start) and the latency estimates (peak EWMA) of the
    /// endpoints `old` also has (`map(i)`: endpoint `i`'s index in `old`), for a reload
    /// that changed only the endpoints.
    pub fn adopt_slow_start(&mut self, old: &Lb, map: impl Fn(usize) -> Option<usize>) {
        self.ewma.adopt(&old.ewma, &map);
        if self.slow.is_none() {
            return;
        }
        for (i, since) in self.healthy_since.iter_mut().enumerate() {
            if since.is_some() {
                if let Some(o) = map(i).and_then(|o| old.healthy_since.get(o)) {
                    *since = *o;
                }
            }
        }
    }

    /// Applies the endpoints' health (`failed[i]`: a failed active health check or an
    /// outlier ejection; the configured health adds EDS's unhealthy and degraded) with
    /// Envoy's priority loads, panic rule (`panic_threshold` percent, 0: never) and
    /// locality weights.
    pub fn set_health(&mut self, failed: &[bool], panic_threshold: u32) {
        let n = self.weights.len();
        let health: Vec<EndpointHealth> = (0..n)
            .map(|i| {
                if failed.get(i).copied().unwrap_or(false) {
                    EndpointHealth::Unhealthy
                } else {
                    self.configured.get(i).copied().unwrap_or_default()
                }
            })
            .collect();
        let levels = self.priorities.iter().max().map_or(0, |&m| m as usize + 1);
        let mut counts = vec![priority::Counts::default(); levels];
        for (i, &p) in self.priorities.iter().enumerate() {
            let Some(c) = counts.get_mut(p as usize) else {
                continue;
            };
            c.total += 1;
            match health.get(i) {
                Some(EndpointHealth::Healthy) => c.healthy += 1,
                Some(EndpointHealth::Degraded) => c.degraded += 1,
                _ => {}
            }
        }
        let now = Instant::now();
        for (since, h) in self.healthy_since.iter_mut().zip(&health) {
            match (h, *since) {
                (EndpointHealth::Healthy, None) => {
                    *since = Some(now);
                    if let Some(s) = &self.slow {
                        self.slow_until = Some(now + s.window);
                    }
                }
                (EndpointHealth::Healthy, Some(_)) => {}
                _ => *since = None,
            }
        }
        let factor = self.locality_cfg.overprovisioning_factor;
        let loads = priority::loads(&counts, factor, panic_threshold);
        self.levels = (0..levels)
            .map(|p| self.build_level(p as u32, &health, loads.panic.get(p) == Some(&true)))
            .collect();
        self.healthy_load = loads.healthy;
        self.degraded_load = loads.degraded;
    }

    fn build_level(&self, p: u32, health: &[EndpointHealth], panic: bool) -> Level {
        let members: Vec<usize> = (0..self.weights.len())
            .filter(|&i| self.priorities.get(i) == Some(&p))
            .collect();
        let with = |h: EndpointHealth| -> Vec<usize> {
            members
                .iter()
                .copied()
                .filter(|&i| health.get(i) == Some(&h))
                .collect()
        };
        let group = |eligible: Vec<usize>| {
            Group::build(
                self.policy,
                eligible,
                |i| self.weights.get(i).copied().unwrap_or(1),
                &self.keys,
            )
        };
        let mut level = Level {
            panic,
            ..Level::default()
        };
        if panic {
            level.all = group(members);
            return level;
        }
        level.healthy = group(with(EndpointHealth::Healthy));
        // The hashing policies keep one table per priority, over its healthy endpoints
        // (Envoy's thread-aware balancers).
        if self.policy.hashing() {
            return level;
        }
        level.degraded = group(with(EndpointHealth::Degraded));
        if self.locality_cfg.weighted {
            let factor = self.locality_cfg.overprovisioning_factor;
            let nloc = members
                .iter()
                .filter_map(|&i| self.localities.get(i))
                .max()
                .map_or(0, |&m| m + 1);
            for (want, groups, sched) in [
                (
                    EndpointHealth::Healthy,
                    &mut level.healthy_localities,
                    &mut level.healthy_sched,
                ),
                (
                    EndpointHealth::Degraded,
                    &mut level.degraded_localities,
                    &mut level.degraded_sched,
                ),
            ] {
                let mut weights = Vec::with_capacity(nloc);
                for l in 0..nloc {
                    let in_loc: Vec<usize> = members
                        .iter()
                        .copied()
                        .filter(|&i| self.localities.get(i) == Some(&l))
                        .collect();
                    let eligible: Vec<usize> = in_loc
                        .iter()
                        .copied()
                        .filter(|&i| health.get(i) == Some(&want))
                        .collect();
                    let w = self.locality_cfg.list.get(l).map_or(0, |l| l.weight);
                    weights.push(priority::locality_weight(
                        w,
                        factor,
                        eligible.len(),
                        in_loc.len(),
                    ));
                    groups.push(group(eligible));
                }
                *sched = priority::Sched::new(&weights);
            }
        }
        level
    }

    /// Some priority is in panic mode (its picks use all of its endpoints).
    #[cfg(test)]
    pub fn panic(&self) -> bool {
        self.levels.iter().any(|l| l.panic)
    }

    /// The last pick was made in a priority in panic mode (Envoy counts
    /// `lb_healthy_panic` per such pick).
    pub fn last_pick_panicked(&self) -> bool {
        self.last_panic
    }

    /// Envoy's `choosePriority` with `h`; a single priority needs no draw.
    fn choose_priority(&self, h: u64) -> (usize, bool) {
        priority::choose(&self.healthy_load, &self.degraded_load, h)
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
        if !self.policy.hashing() {
            return self.pick(active);
        }
        let h = match hash {
            Some(h) => h,
            None => next_random(&mut self.rng),
        };
        // Envoy's thread-aware balancers choose the priority with the request's hash.
        let (p, _) = self.choose_priority(h);
        let level = self.levels.get(p)?;
        self.last_panic = level.panic;
        let g = if level.panic {
            &level.all
        } else {
            &level.healthy
        };
        g.pick_hashed(h, attempt).flatten()
    }

    /// Picks an endpoint index; `active(i)` is the endpoint's in-flight request count.
    pub fn pick(&mut self, active: impl Fn(usize) -> u64) -> Option<usize> {
        let h = if self.levels.len() > 1 {
            next_random(&mut self.rng)
        } else {
            0
        };
        let (p, degraded) = self.choose_priority(h);
        let policy = self.policy;
        let weighted = self.locality_cfg.weighted;
        let level = self.levels.get_mut(p)?;
        self.last_panic = level.panic;
        let rng = &mut self.rng;
        let g = if level.panic {
            &mut level.all
        } else {
            let (sched, groups, plain) = if degraded {
                (
                    &mut level.degraded_sched,
                    &mut level.degraded_localities,
                    &mut level.degraded,
                )
            } else {
                (
                    &mut level.healthy_sched,
                    &mut level.healthy_localities,
                    &mut level.healthy,
                )
            };
            // Locality weighting: a locality first; none with weight: the whole set.
            match weighted.then(|| sched.next()).flatten() {
                Some(l) => match groups.get_mut(l) {
                    Some(g) => g,
                    None => plain,
                },
                None => plain,
            }
        };
        if g.is_empty() {
            return None;
        }
        if policy == LbPolicy::PeakEwma {
            // The cheaper of two; a ramping endpoint (slow start) costs more by its factor.
            let now = Instant::now();
            let (est, since) = (&self.ewma, &self.healthy_since);
            let slow = self
                .slow
                .filter(|_| self.slow_until.is_some_and(|u| now < u));
            return g.pick_p2c(rng, |i| {
                let cost = est.cost(i, active(i), now);
                match &slow {
                    Some(s) => cost / slow_factor(s, since.get(i).copied().flatten(), now),
                    None => cost,
                }
            });
        }
        if let (Some(slow), Some(until)) = (self.slow, self.slow_until) {
            let now = Instant::now();
            if now < until {
                let since = &self.healthy_since;
                let bias = self.bias;
                return g.pick_slow(
                    policy,
                    rng,
                    active,
                    |i| slow_factor(&slow, since.get(i).copied().flatten(), now),
                    bias,
                );
            }
            self.slow_until = None;
        }
        g.pick(policy, rng, active, self.bias)
    }
}

/// Envoy's `applySlowStartFactor` as a multiplier: within the window since the endpoint
/// became healthy, `max((elapsed / window) ^ (1 / aggression), min_weight_percent)`.
fn slow_factor(s: &SlowStart, since: Option<Instant>, now: Instant) -> f64 {
    let Some(since) = since else {
        return 1.0;
    };
    let elapsed = now.saturating_duration_since(since);
    if elapsed >= s.window {
        return 1.0;
    }
    let t = elapsed.max(Duration::from_millis(1)).as_secs_f64() / s.window.as_secs_f64();
    let ramp = if s.aggression == 1.0 {
        t
    } else {
        t.powf(1.0 / s.aggression)
    };
    ramp.max(s.min_weight_percent / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk(policy: LbPolicy, eps: &[Endpoint], seed: u64) -> Lb {
        Lb::new(policy, eps, &Localities::default(), 50, seed)
    }

    fn eps(weights: &[u32]) -> Vec<Endpoint> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Endpoint {
                addr: format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                weight: *w,
                hostname: None,
                priority: 0,
                locality: 0,
                health: EndpointHealth::Healthy,
            })
            .collect()
    }

    #[test]
    fn round_robin_follows_weights() {
        let mut lb = mk(LbPolicy::RoundRobin, &eps(&[3, 1]), 7);
        let picks: Vec<usize> = (0..8).map(|_| lb.pick(|_| 0).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 6);
        assert_eq!(picks[..4].iter().filter(|&&p| p == 1).count(), 1);
    }

    #[test]
    fn least_request_prefers_idle() {
        let mut lb = mk(LbPolicy::LeastRequest, &eps(&[1, 1]), 7);
        for _ in 0..50 {
            assert_eq!(lb.pick(|i| if i == 0 { 10 } else { 0 }), Some(1));
        }
    }

    /// Unequal weights: endpoint 0 (weight 3) has 2 requests in flight, endpoint 1
    /// (weight 1) none. Its effective weight is `3 / 3^bias`: bias 1 splits evenly,
    /// bias 0 keeps 3:1, bias 0.5 gives `sqrt(3)`:1.
    #[test]
    fn least_request_divides_weights_by_active_requests_raised_to_the_bias() {
        for (bias, share) in [
            (1.0, 0.5),
            (0.0, 0.75),
            (0.5, 3f64.sqrt() / (3f64.sqrt() + 1.0)),
        ] {
            let mut lb =
                mk(LbPolicy::LeastRequest, &eps(&[3, 1]), 7).with_active_request_bias(bias);
            let n = 1000;
            let zero = (0..n)
                .filter(|_| lb.pick(|i| if i == 0 { 2 } else { 0 }) == Some(0))
                .count();
            let got = zero as f64 / n as f64;
            assert!((got - share).abs() < 0.01, "bias {bias}: {got} for {share}");
        }
        // Equal weights stay with the two random choices: the idle endpoint wins.
        let mut lb = mk(LbPolicy::LeastRequest, &eps(&[2, 2]), 7).with_active_request_bias(0.0);
        assert!((0..50).all(|_| lb.pick(|i| if i == 0 { 1 } else { 0 }) == Some(1)));
    }

    /// Peak EWMA: the faster endpoint takes the picks, the requests in flight weigh on
    /// the cost, and a failed endpoint is never picked however fast it was.
    #[test]
    fn peak_ewma_prefers_the_faster_endpoint_among_the_healthy_ones() {
        let mut lb =
            mk(LbPolicy::PeakEwma, &eps(&[1, 1, 1]), 7).with_peak_ewma(PeakEwma::default());
        lb.observe(0, Duration::from_millis(1));
        lb.observe(1, Duration::from_millis(50));
        lb.observe(2, Duration::from_millis(5));
        let mut seen = [0; 3];
        for _ in 0..300 {
            seen[lb.pick(|_| 0).unwrap()] += 1;
        }
        // Of two drawn, 0 always wins; 1 never does.
        assert_eq!(seen[1], 0, "{seen:?}");
        assert!(seen[0] > 150 && seen[2] > 0, "{seen:?}");
        // 0 with 99 in flight (cost 100) loses to 1 (cost 50) and 2 (cost 5).
        assert!((0..50).all(|_| lb.pick(|i| if i == 0 { 99 } else { 0 }) != Some(0)));
        lb.set_health(&[true, false, false], 50);
        assert!((0..50).all(|_| lb.pick(|_| 0) == Some(2)));
    }

    #[test]
    fn random_covers_all() {
        let mut lb = mk(LbPolicy::Random, &eps(&[1, 1, 1]), 7);
        let mut seen = [0; 3];
        for _ in 0..300 {
            seen[lb.pick(|_| 0).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&s| s > 50), "{seen:?}");
        assert_eq!(mk(LbPolicy::Random, &[], 1).pick(|_| 0), None);
    }

    #[test]
    fn failed_endpoints_are_skipped_until_panic() {
        let mut lb = mk(LbPolicy::RoundRobin, &eps(&[1, 1, 1, 1]), 7);
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
        let mut lb = mk(LbPolicy::LeastRequest, &eps(&[1, 1, 1]), 7);
        lb.set_health(&[true, false, false], 50);
        for _ in 0..30 {
            assert_eq!(lb.pick(|i| if i == 1 { 10 } else { 0 }), Some(2));
        }
    }

    #[test]
    fn hashing_skips_failed_endpoints_until_panic() {
        for policy in [LbPolicy::RING_HASH_DEFAULT, LbPolicy::MAGLEV_DEFAULT] {
            let mut lb = mk(policy, &eps(&[1, 1, 1, 1]), 7);
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

    fn topo(
        prio_loc: &[(u32, usize)],
        weights: &[u32],
        weighted: bool,
    ) -> (Vec<Endpoint>, Localities) {
        let mut e = eps(&vec![1; prio_loc.len()]);
        for (x, &(p, l)) in e.iter_mut().zip(prio_loc) {
            x.priority = p;
            x.locality = l;
        }
        let loc = Localities {
            weighted,
            list: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| crate::config::Locality {
                    name: format!("l{i}"),
                    weight: w,
                })
                .collect(),
            ..Localities::default()
        };
        (e, loc)
    }

    fn spread(lb: &mut Lb, n: usize, picks: usize) -> Vec<usize> {
        let mut seen = vec![0; n];
        for _ in 0..picks {
            seen[lb.pick(|_| 0).unwrap()] += 1;
        }
        seen
    }

    #[test]
    fn failover_spills_to_the_next_priority_in_envoys_proportions() {
        let (e, loc) = topo(&[(0, 0), (0, 0), (1, 0), (1, 0)], &[], false);
        for policy in [
            LbPolicy::RoundRobin,
            LbPolicy::LeastRequest,
            LbPolicy::Random,
        ] {
            let mut lb = Lb::new(policy, &e, &loc, 50, 7);
            let s = spread(&mut lb, 4, 1000);
            assert_eq!(s[2] + s[3], 0, "{policy:?}: {s:?}");
            // One of two P0 endpoints fails: 140 * 1/2 = 70% stays, 30% spills.
            lb.set_health(&[true, false, false, false], 50);
            let s = spread(&mut lb, 4, 2000);
            assert_eq!(s[0], 0);
            assert!((1250..=1550).contains(&s[1]), "{policy:?}: {s:?}");
            // Both fail: all load on P1, no panic (P1 carries 100%).
            lb.set_health(&[true, true, false, false], 50);
            let s = spread(&mut lb, 4, 100);
            assert_eq!(s[0] + s[1], 0, "{policy:?}: {s:?}");
            assert!(!lb.panic());
        }
    }

    #[test]
    fn hashing_chooses_the_priority_with_the_hash() {
        let (e, loc) = topo(&[(0, 0), (0, 0), (1, 0), (1, 0)], &[], false);
        for policy in [LbPolicy::RING_HASH_DEFAULT, LbPolicy::MAGLEV_DEFAULT] {
            let mut lb = Lb::new(policy, &e, &loc, 50, 7);
            assert!((0..200u64).all(|k| lb.pick_hashed(Some(k), 0, |_| 0).unwrap() < 2));
            lb.set_health(&[true, false, false, false], 50);
            // hash % 100 below 70 stays on P0's healthy endpoint, the rest go to P1.
            for k in 0..200u64 {
                let p = lb.pick_hashed(Some(k), 0, |_| 0).unwrap();
                assert_eq!(p == 1, k % 100 < 70, "{policy:?} key {k}: {p}");
            }
        }
    }

    #[test]
    fn locality_weights_share_a_priority() {
        // l0 (weight 3) has endpoints 0, 1; l1 (weight 1) has 2, 3.
        let (e, loc) = topo(&[(0, 0), (0, 0), (0, 1), (0, 1)], &[3, 1], true);
        let mut lb = Lb::new(LbPolicy::RoundRobin, &e, &loc, 50, 7);
        let s = spread(&mut lb, 4, 400);
        assert_eq!(s, vec![150, 150, 50, 50]);
        // Half of l0 fails: its weight becomes 3 * min(1, 1.4 * 1/2) = 2.1 to l1's 1.
        lb.set_health(&[true, false, false, false], 50);
        let s = spread(&mut lb, 4, 310);
        assert_eq!(s, vec![0, 210, 50, 50]);
        // Without weighting: the endpoints alone.
        let (e, loc) = topo(&[(0, 0), (0, 0), (0, 1), (0, 1)], &[3, 1], false);
        let mut lb = Lb::new(LbPolicy::RoundRobin, &e, &loc, 50, 7);
        assert_eq!(spread(&mut lb, 4, 400), vec![100; 4]);
    }

    #[test]
    fn configured_health_counts_like_envoys_eds_status() {
        let (mut e, loc) = topo(&[(0, 0), (0, 0), (1, 0), (1, 0)], &[], false);
        e[0].health = EndpointHealth::Unhealthy;
        e[1].health = EndpointHealth::Degraded;
        let mut lb = Lb::new(LbPolicy::RoundRobin, &e, &loc, 50, 7);
        // P0: healthy 0, degraded 70; P1 healthy 100: normalized 100, healthy load goes
        // first: 0 / 100 healthy, and the degraded endpoint gets nothing.
        let s = spread(&mut lb, 4, 400);
        assert_eq!(s[0] + s[1], 0, "{s:?}");
        // With P1 all failed: P0's degraded endpoint takes the load (70% availability,
        // normalized 70: all of it).
        lb.set_health(&[false, false, true, true], 50);
        let s = spread(&mut lb, 4, 100);
        assert_eq!(s, vec![0, 100, 0, 0]);
    }

    #[test]
    fn slow_start_ramps_a_new_endpoint_up() {
        let s = SlowStart {
            window: Duration::from_secs(100),
            aggression: 1.0,
            min_weight_percent: 10.0,
        };
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        assert_eq!(slow_factor(&s, None, at(5)), 1.0);
        assert!((slow_factor(&s, Some(t0), at(50)) - 0.5).abs() < 1e-9);
        assert!((slow_factor(&s, Some(t0), at(1)) - 0.1).abs() < 1e-9);
        assert_eq!(slow_factor(&s, Some(t0), at(100)), 1.0);
        let s2 = SlowStart {
            aggression: 2.0,
            ..s
        };
        assert!((slow_factor(&s2, Some(t0), at(25)) - 0.5).abs() < 1e-9);
        // Through a group: an endpoint at a quarter of its weight gets a fifth of the
        // picks next to one at full weight.
        let e = eps(&[1, 1]);
        let mut lb = mk(LbPolicy::RoundRobin, &e, 7);
        let g = &mut lb.levels[0].healthy;
        let mut rng = 7u64;
        let mut seen = [0; 2];
        for _ in 0..500 {
            let f = |i: usize| if i == 1 { 0.25 } else { 1.0 };
            seen[g
                .pick_slow(LbPolicy::RoundRobin, &mut rng, |_| 0, f, 1.0)
                .unwrap()] += 1;
        }
        assert_eq!(seen, [400, 100]);
        for policy in [LbPolicy::Random, LbPolicy::LeastRequest] {
            let mut seen = [0; 2];
            for _ in 0..2000 {
                let f = |i: usize| if i == 1 { 0.25 } else { 1.0 };
                seen[g.pick_slow(policy, &mut rng, |_| 0, f, 1.0).unwrap()] += 1;
            }
            // Random: 20%; least request (two draws, ties to the first): under 40%.
            assert!(seen[1] > 200 && seen[1] < 800, "{policy:?}: {seen:?}");
        }
    }
}
