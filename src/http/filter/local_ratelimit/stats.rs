//! The filter's counters with Envoy's names: `<stat_prefix>.http_local_rate_limit.`
//! `enabled`, `enforced`, `ok`, `rate_limited` and `shadow_mode` (always 0: shadow-mode
//! descriptors are not supported). They are the config's named counters
//! (`Snapshot::counters`, as RBAC's): the config builder gives each name its index, a
//! worker keeps one counter per name across reloads, and the filter counts through the
//! request's `RequestCtx::counters`. `/stats` (`counters`) and `/stats/prometheus`
//! (`outrigger_filter_counter_total{name}`) show them summed over the cores.

/// The counters' last names, in the order of [`Counters::from_indices`]'s argument.
pub const NAMES: [&str; 5] = ["enabled", "enforced", "ok", "rate_limited", "shadow_mode"];

/// Envoy's names of the counters of `stat_prefix`, in [`NAMES`]' order.
pub fn names(stat_prefix: &str) -> [String; 5] {
    NAMES.map(|n| format!("{stat_prefix}.http_local_rate_limit.{n}"))
}

/// Indices of one config's counters in `Snapshot::counters`. `shadow_mode` has a
/// counter too (shown as 0) but nothing counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub enabled: usize,
    pub enforced: usize,
    pub ok: usize,
    pub rate_limited: usize,
}

impl Counters {
    /// The indices of the counters named by [`names`], in that order.
    pub fn from_indices([enabled, enforced, ok, rate_limited, _shadow_mode]: [usize; 5]) -> Self {
        Counters {
            enabled,
            enforced,
            ok,
            rate_limited,
        }
    }
}
