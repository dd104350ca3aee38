//! Envoy's priority and locality arithmetic (`LoadBalancerBase`,
//! `HostSetImpl::effectiveLocalityWeight`), as pure functions of the endpoints' health
//! counts: each priority's share of the load (healthy, then degraded), which priorities
//! are in panic, and a locality's effective weight. Runs when health changes (a control
//! message reaches the core), never per pick; `Lb` (`mod.rs`) keeps the results.

/// One priority level's endpoint counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub total: u64,
    pub healthy: u64,
    pub degraded: u64,
}

/// The percentage of requests each priority gets, healthy and degraded (together they
/// add up to 100 when there is any endpoint), and each priority's panic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Loads {
    pub healthy: Vec<u32>,
    pub degraded: Vec<u32>,
    pub panic: Vec<bool>,
}

/// Envoy's availability: `min(100, factor * part / total)` in integers.
fn availability(factor: u32, part: u64, total: u64) -> u32 {
    (u64::from(factor) * part)
        .checked_div(total)
        .map_or(0, |a| a.min(100) as u32)
}

/// Envoy's `distributeLoad`: as much of `load` as each priority's availability allows,
/// in order; returns the first priority with any availability and what is left.
fn distribute(
    out: &mut [u32],
    avail: &[u32],
    mut load: u32,
    normalized: u32,
) -> (Option<usize>, u32) {
    let mut first = None;
    for (i, (o, &a)) in out.iter_mut().zip(avail).enumerate() {
        if first.is_none() && a > 0 {
            first = Some(i);
        }
        *o = load.min(a * 100 / normalized);
        load -= *o;
    }
    (first, load)
}

/// Envoy's `isHostSetInPanic`: healthy plus degraded below `threshold` percent.
fn in_panic(c: Counts, threshold: u32) -> bool {
    if c.total == 0 {
        return 0.0 < f64::from(threshold);
    }
    let healthy = 100.0 * c.healthy as f64 / c.total as f64;
    let degraded = 100.0 * c.degraded as f64 / c.total as f64;
    healthy + degraded < f64::from(threshold)
}

/// Envoy's `recalculatePerPriorityState` and `recalculatePerPriorityPanic` over every
/// priority (`levels[p]`), with the overprovisioning `factor` (percent, default 140)
/// and the panic `threshold` (percent, default 50).
pub(super) fn loads(levels: &[Counts], factor: u32, threshold: u32) -> Loads {
    let n = levels.len();
    let mut out = Loads {
        healthy: vec![0; n],
        degraded: vec![0; n],
        panic: vec![false; n],
    };
    if n == 0 {
        return out;
    }
    let health: Vec<u32> = levels
        .iter()
        .map(|c| availability(factor, c.healthy, c.total))
        .collect();
    let degraded: Vec<u32> = levels
        .iter()
        .map(|c| availability(factor, c.degraded, c.total))
        .collect();
    let normalized = (health.iter().sum::<u32>() + degraded.iter().sum::<u32>()).min(100);
    if normalized > 0 {
        let (first_healthy, left) = distribute(&mut out.healthy, &health, 100, normalized);
        let (first_degraded, left) = distribute(&mut out.degraded, &degraded, left, normalized);
        // Rounding leftovers go to the first healthy priority, else the first degraded.
        if left > 0 {
            if let Some(slot) = first_healthy.and_then(|p| out.healthy.get_mut(p)) {
                *slot += left;
            } else if let Some(slot) = first_degraded.and_then(|p| out.degraded.get_mut(p)) {
                *slot += left;
            }
        }
    }
    // Panic disabled and nothing available: all load on P0, which has no endpoint to
    // give (Envoy keeps the loads adding up to 100 this way).
    if threshold == 0 && normalized == 0 {
        out.healthy[0] = 100;
        return out;
    }
    for (p, c) in out.panic.iter_mut().zip(levels) {
        // Enough availability overall: no priority panics, however few it has.
        *p = normalized < 100 && in_panic(*c, threshold);
    }
    if out.panic.iter().all(|&p| p) {
        // Total panic: load by each priority's share of all endpoints, health aside.
        let all: u64 = levels.iter().map(|c| c.total).sum();
        out.degraded.iter_mut().for_each(|d| *d = 0);
        if all == 0 {
            out.healthy.iter_mut().for_each(|h| *h = 0);
            out.healthy[0] = 100;
            return out;
        }
        let mut left = 100u32;
        for (h, c) in out.healthy.iter_mut().zip(levels) {
            *h = (100 * c.total / all) as u32;
            left -= *h;
        }
        if let Some(p) = levels.iter().position(|c| c.total > 0) {
            out.healthy[p] += left;
        }
    }
    out
}

/// Envoy's `choosePriority`: `hash % 100 + 1` walks the healthy loads, then the
/// degraded ones; `(priority, degraded)`.
pub(super) fn choose(healthy: &[u32], degraded: &[u32], hash: u64) -> (usize, bool) {
    let h = (hash % 100 + 1) as u32;
    let mut acc = 0;
    for (p, l) in healthy.iter().enumerate() {
        acc += l;
        if h <= acc {
            return (p, false);
        }
    }
    for (p, l) in degraded.iter().enumerate() {
        acc += l;
        if h <= acc {
            return (p, true);
        }
    }
    (0, false)
}

/// Envoy's effective locality weight: its weight scaled by its availability
/// (`min(1, factor / 100 * eligible / endpoints)`).
pub(super) fn locality_weight(weight: u32, factor: u32, eligible: usize, total: usize) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let ratio = (f64::from(factor) / 100.0 * (eligible as f64 / total as f64)).min(1.0);
    f64::from(weight) * ratio
}

/// Smooth weighted round robin over localities (Envoy uses an EDF scheduler: the same
/// proportions, deterministic). Zero-weight entries are left out.
#[derive(Default)]
pub(super) struct Sched {
    entries: Vec<(usize, f64, f64)>,
    total: f64,
}

impl Sched {
    /// `weights[i]` for the entry `i`.
    pub fn new(weights: &[f64]) -> Sched {
        let entries: Vec<(usize, f64, f64)> = weights
            .iter()
            .enumerate()
            .filter(|(_, w)| **w > 0.0)
            .map(|(i, w)| (i, *w, 0.0))
            .collect();
        let total = entries.iter().map(|e| e.1).sum();
        Sched { entries, total }
    }

    pub fn next(&mut self) -> Option<usize> {
        let mut best: Option<usize> = None;
        for k in 0..self.entries.len() {
            let e = &mut self.entries[k];
            e.2 += e.1;
            if best.is_none_or(|b| self.entries[k].2 > self.entries[b].2) {
                best = Some(k);
            }
        }
        let b = best?;
        let e = &mut self.entries[b];
        e.2 -= self.total;
        Some(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(total: u64, healthy: u64) -> Counts {
        Counts {
            total,
            healthy,
            degraded: 0,
        }
    }

    #[test]
    fn envoy_priority_load_examples() {
        // All healthy: P0 takes everything.
        let l = loads(&[c(4, 4), c(4, 4)], 140, 50);
        assert_eq!(l.healthy, vec![100, 0]);
        // Half of P0 healthy: 70% there, the rest spills to P1.
        let l = loads(&[c(4, 2), c(4, 4)], 140, 50);
        assert_eq!(l.healthy, vec![70, 30]);
        assert_eq!(l.panic, vec![false, false]);
        // 1 of 4 in P0: 35% / 65%.
        let l = loads(&[c(4, 1), c(4, 4)], 140, 50);
        assert_eq!(l.healthy, vec![35, 65]);
        // Envoy's comment: 10/20/10 healthy, 20/10/0 degraded (factor 100).
        let l = loads(
            &[
                Counts {
                    total: 10,
                    healthy: 1,
                    degraded: 2,
                },
                Counts {
                    total: 10,
                    healthy: 2,
                    degraded: 1,
                },
                Counts {
                    total: 10,
                    healthy: 1,
                    degraded: 0,
                },
            ],
            100,
            0,
        );
        assert_eq!(l.healthy, vec![16, 28, 14]);
        assert_eq!(l.degraded, vec![28, 14, 0]);
        // Factor 100: no headroom, P0 at 75% already spills 25%.
        let l = loads(&[c(4, 3), c(4, 4)], 100, 50);
        assert_eq!(l.healthy, vec![75, 25]);
    }

    #[test]
    fn panic_per_priority_and_total() {
        // Normalized availability under 100: the priority below the threshold panics.
        let l = loads(&[c(4, 1), c(4, 1)], 140, 50);
        assert_eq!(l.healthy, vec![50, 50]);
        assert_eq!(l.panic, vec![true, true]);
        // Total panic with nothing healthy: load by endpoint count.
        let l = loads(&[c(2, 0), c(6, 0)], 140, 50);
        assert_eq!(l.healthy, vec![25, 75]);
        // Threshold 0: no panic, P0 carries the load it cannot serve.
        let l = loads(&[c(2, 0), c(6, 0)], 140, 0);
        assert_eq!(l.healthy, vec![100, 0]);
        assert_eq!(l.panic, vec![false, false]);
        // Enough availability overall: no panic, even with an empty P0.
        let l = loads(&[c(4, 0), c(4, 4)], 140, 50);
        assert_eq!(l.healthy, vec![0, 100]);
        assert_eq!(l.panic, vec![false, false]);
    }

    #[test]
    fn choose_walks_healthy_then_degraded() {
        assert_eq!(choose(&[70, 30], &[0, 0], 69), (0, false));
        assert_eq!(choose(&[70, 30], &[0, 0], 70), (1, false));
        assert_eq!(choose(&[0, 60], &[40, 0], 99), (0, true));
    }

    #[test]
    fn locality_sched_follows_weights() {
        let mut s = Sched::new(&[3.0, 0.0, 1.0]);
        let mut seen = [0; 3];
        for _ in 0..40 {
            seen[s.next().unwrap()] += 1;
        }
        assert_eq!(seen, [30, 0, 10]);
        assert_eq!(Sched::new(&[0.0]).next(), None);
        assert!((locality_weight(10, 140, 1, 2) - 7.0).abs() < 1e-9);
        assert!((locality_weight(10, 140, 2, 2) - 10.0).abs() < 1e-9);
    }
}
