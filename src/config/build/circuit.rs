//! A cluster's `circuit_breakers`: Envoy's thresholds per priority, checked into the
//! DEFAULT and HIGH priorities' `Thresholds` (a route's `priority` picks which apply to
//! its requests). Of several entries for one priority the first applies, as in
//! Envoy (`ResourceManagers::load` takes the first match; Envoy 1.40's `/stats` shows
//! the first entry's limits); a priority without an entry has Envoy's defaults.
//! `per_host_thresholds`: the first entry of a priority's `max_connections` limits each
//! endpoint's connections at that priority (Envoy refuses the other limits there).

use super::super::circuit::{Breakers, CircuitBreakers, Priority, RetryBudget, Thresholds};
use super::super::raw_circuit::RawCircuitBreakers;
use super::Builder;

impl Builder {
    pub(super) fn circuit_breakers(
        &mut self,
        p: &str,
        raw: Option<&RawCircuitBreakers>,
    ) -> CircuitBreakers {
        let default = Thresholds::default();
        let Some(raw) = raw else {
            return CircuitBreakers::new(Breakers::new(default), Breakers::new(default));
        };
        // The first entry of each priority, DEFAULT then HIGH (Envoy's `find_if`).
        let mut set: [Option<Thresholds>; 2] = [None, None];
        let mut per_host: [Option<Option<u64>>; 2] = [None, None];
        for (i, t) in raw.per_host_thresholds.iter().enumerate() {
            let tp = format!("{p}.circuit_breakers.per_host_thresholds[{i}]");
            for (set, name) in [
                (t.max_pending_requests.is_some(), "max_pending_requests"),
                (t.max_requests.is_some(), "max_requests"),
                (t.max_retries.is_some(), "max_retries"),
                (t.retry_budget.is_some(), "retry_budget"),
                (t.max_connection_pools.is_some(), "max_connection_pools"),
            ] {
                if set {
                    self.err(
                        format!("{tp}.{name}"),
                        "not supported in per_host_thresholds (only max_connections is, as in Envoy)",
                    );
                }
            }
            let Some(at) = self.priority(&tp, t.priority.as_deref()) else {
                continue;
            };
            // The first entry of a priority applies; unset: no per-host limit.
            if let Some(slot) = per_host.get_mut(at.index()) {
                slot.get_or_insert(t.max_connections.map(u64::from));
            }
        }
        for (i, t) in raw.thresholds.iter().enumerate() {
            let tp = format!("{p}.circuit_breakers.thresholds[{i}]");
            let Some(at) = self.priority(&tp, t.priority.as_deref()) else {
                continue;
            };
            let d = Thresholds::default();
            let retry_budget = t.retry_budget.as_ref().map(|b| RetryBudget {
                budget_percent: b.budget_percent.as_ref().map_or(20.0, |v| v.value),
                min_retry_concurrency: b.min_retry_concurrency.map_or(3, u64::from),
            });
            if let Some(b) = retry_budget {
                if !(0.0..=100.0).contains(&b.budget_percent) {
                    self.err(
                        format!("{tp}.retry_budget.budget_percent.value"),
                        "must be a percentage between 0 and 100",
                    );
                }
            }
            let th = Thresholds {
                max_connections: t.max_connections.map_or(d.max_connections, u64::from),
                max_pending_requests: t
                    .max_pending_requests
                    .map_or(d.max_pending_requests, u64::from),
                max_requests: t.max_requests.map_or(d.max_requests, u64::from),
                max_retries: t.max_retries.map_or(d.max_retries, u64::from),
                retry_budget,
                max_connection_pools: t
                    .max_connection_pools
                    .map_or(d.max_connection_pools, u64::from),
                track_remaining: t.track_remaining,
            };
            if let Some(slot) = set.get_mut(at.index()) {
                slot.get_or_insert(th);
            }
        }
        let [d, h] = set;
        let [dh, hh] = per_host;
        CircuitBreakers::new(
            Breakers::new(d.unwrap_or(default)).with_per_host(dh.flatten()),
            Breakers::new(h.unwrap_or(default)).with_per_host(hh.flatten()),
        )
    }

    /// A threshold entry's `priority` (unset: DEFAULT); `None` (refused) for anything
    /// else.
    fn priority(&mut self, tp: &str, p: Option<&str>) -> Option<Priority> {
        let parsed = Priority::parse(p);
        if parsed.is_none() {
            self.err(format!("{tp}.priority"), "must be `DEFAULT` or `HIGH`");
        }
        parsed
    }
}
