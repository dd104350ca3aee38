//! Peak EWMA's per-core latency estimates (`lb_policy: peak_ewma`, linkerd's and
//! Finagle's default balancer): one estimate per endpoint, fed by the response heads
//! the requests of this core saw (`Lb::observe`, from `upstream::request::run`) and read
//! by the picks of this core; no cross-core traffic.
//!
//! An estimate is peak-sensitive: a response slower than it takes it at once; a faster
//! one moves it by the weight time has given it, `w = exp(-elapsed / decay)` since the
//! last response: `estimate * w + rtt * (1 - w)`. Between responses it decays toward
//! zero with the same time constant (read, not stored), so an endpoint that was slow
//! and got no traffic since is tried again after a while, and its next response then
//! says how it does now. The cost of an endpoint is `estimate * (in flight + 1)`;
//! before its first response it costs `default_rtt` while idle, and `penalty + in
//! flight` with requests in flight (Envoy's contrib `Cost::compute`: no answer yet to a
//! request is a sign of trouble).

use std::time::{Duration, Instant};

use crate::config::PeakEwma;

/// One endpoint's estimate: milliseconds as of `at` (`None`: no response yet).
#[derive(Debug, Clone, Copy, Default)]
struct Estimate {
    rtt_ms: f64,
    at: Option<Instant>,
}

/// The estimates of a cluster's endpoints on this core.
#[derive(Debug, Default)]
pub(super) struct Estimates {
    cfg: PeakEwma,
    /// `decay` in seconds (0: never built for peak EWMA, nothing is kept).
    tau: f64,
    list: Vec<Estimate>,
}

impl Estimates {
    pub fn new(cfg: PeakEwma, endpoints: usize) -> Self {
        Estimates {
            cfg,
            tau: cfg.decay.as_secs_f64(),
            list: vec![Estimate::default(); endpoints],
        }
    }

    /// `exp(-elapsed / decay)`: how much of an estimate `elapsed` leaves.
    fn weight(&self, elapsed: Duration) -> f64 {
        if self.tau <= 0.0 {
            return 0.0;
        }
        (-elapsed.as_secs_f64() / self.tau).exp()
    }

    /// Endpoint `i`'s estimate at `now` in milliseconds, decayed since its last
    /// response; `None` before its first.
    fn value(&self, i: usize, now: Instant) -> Option<f64> {
        let e = self.list.get(i)?;
        let at = e.at?;
        Some(e.rtt_ms * self.weight(now.saturating_duration_since(at)))
    }

    /// A response from endpoint `i` that took `rtt`, seen at `now`.
    pub fn observe(&mut self, i: usize, rtt: Duration, now: Instant) {
        let rtt_ms = rtt.as_secs_f64() * 1000.0;
        let w = match self.list.get(i).and_then(|e| e.at) {
            Some(at) => self.weight(now.saturating_duration_since(at)),
            None => 0.0,
        };
        let Some(e) = self.list.get_mut(i) else {
            return;
        };
        e.rtt_ms = if e.at.is_none() || rtt_ms >= e.rtt_ms {
            rtt_ms
        } else {
            e.rtt_ms * w + rtt_ms * (1.0 - w)
        };
        e.at = Some(now);
    }

    /// Endpoint `i`'s cost at `now` with `active` requests in flight (lower is better).
    pub fn cost(&self, i: usize, active: u64, now: Instant) -> f64 {
        let load = active as f64 + 1.0;
        match self.value(i, now) {
            Some(rtt) => rtt * load,
            None if active > 0 => self.cfg.penalty + active as f64,
            None => self.cfg.default_rtt.as_secs_f64() * 1000.0 * load,
        }
    }

    /// Takes over the estimates of the endpoints `old` also has (`map(i)`: endpoint
    /// `i`'s index in `old`), for a reload that changed only the endpoints.
    pub fn adopt(&mut self, old: &Estimates, map: impl Fn(usize) -> Option<usize>) {
        for (i, e) in self.list.iter_mut().enumerate() {
            if let Some(o) = map(i).and_then(|o| old.list.get(o)) {
                *e = *o;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_slower_response_counts_at_once_and_a_faster_one_by_the_time_since() {
        let mut e = Estimates::new(PeakEwma::default(), 1);
        let t0 = Instant::now();
        e.observe(0, ms(10), t0);
        e.observe(0, ms(500), t0 + ms(1));
        assert_eq!(e.cost(0, 0, t0 + ms(1)), 500.0, "the peak, at once");
        // 10s later (one time constant): the estimate decayed to 500/e, and a 10ms
        // response weighs 1 - 1/e of the next.
        let t1 = t0 + ms(1) + Duration::from_secs(10);
        e.observe(0, ms(10), t1);
        let w = (-1.0f64).exp();
        let want = 500.0 * w + 10.0 * (1.0 - w);
        assert!((e.cost(0, 0, t1) - want).abs() < 1e-6);
    }

    #[test]
    fn an_estimate_decays_toward_zero_without_responses() {
        let cfg = PeakEwma {
            decay: Duration::from_secs(1),
            ..PeakEwma::default()
        };
        let mut e = Estimates::new(cfg, 1);
        let t0 = Instant::now();
        e.observe(0, ms(1000), t0);
        let later = e.cost(0, 0, t0 + Duration::from_secs(3));
        assert!((later - 1000.0 * (-3.0f64).exp()).abs() < 1e-6, "{later}");
    }

    #[test]
    fn the_cost_weighs_the_requests_in_flight_and_an_unknown_endpoint_as_envoy() {
        let mut e = Estimates::new(PeakEwma::default(), 2);
        let t0 = Instant::now();
        assert_eq!(e.cost(1, 0, t0), 10.0, "default_rtt while idle");
        assert_eq!(
            e.cost(1, 3, t0),
            1_000_003.0,
            "the penalty with requests in flight"
        );
        e.observe(0, ms(20), t0);
        assert_eq!(e.cost(0, 2, t0), 60.0, "rtt * (active + 1)");
    }
}
