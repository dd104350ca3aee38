//! A cluster's `circuit_breakers`: Envoy's thresholds per priority, checked into the
//! DEFAULT priority's `Thresholds` (routes have no priority here, so HIGH is accepted
//! and never applies). Of several entries for one priority the first applies, as in
//! Envoy (`ResourceManagers::load` takes the first match; Envoy 1.40's `/stats` shows
//! the first entry's limits). `per_host_thresholds`: the first DEFAULT entry's `max_connections`
//! limits each endpoint's connections (Envoy refuses the other limits there).

use super::super::circuit::{Breakers, RetryBudget, Thresholds};
use super::super::raw_circuit::RawCircuitBreakers;
use super::Builder;

impl Builder {
    pub(super) fn circuit_breakers(
        &mut self,
        p: &str,
        raw: Option<&RawCircuitBreakers>,
    ) -> Breakers {
        let default = Thresholds::default();
        let Some(raw) = raw else {
            return Breakers::new(default);
        };
        // The first DEFAULT entry (Envoy's `find_if`).
        let mut default_set = None;
        let mut per_host = None;
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
            match t.priority.as_deref() {
                None | Some("DEFAULT") => {
                    // The first DEFAULT entry applies; unset: no per-host limit.
                    if per_host.is_none() {
                        per_host = Some(t.max_connections.map(u64::from));
                    }
                }
                Some("HIGH") => {}
                Some(_) => self.err(format!("{tp}.priority"), "must be `DEFAULT` or `HIGH`"),
            }
        }
        let per_host = per_host.flatten();
        let breakers = |limits| Breakers::new(limits).with_per_host(per_host);
        for (i, t) in raw.thresholds.iter().enumerate() {
            let tp = format!("{p}.circuit_breakers.thresholds[{i}]");
            let high = match t.priority.as_deref() {
                None | Some("DEFAULT") => false,
                Some("HIGH") => true,
                Some(_) => {
                    self.err(format!("{tp}.priority"), "must be `DEFAULT` or `HIGH`");
                    continue;
                }
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
            if !high && default_set.is_none() {
                default_set = Some(th);
            }
        }
        breakers(default_set.unwrap_or(default))
    }
}
