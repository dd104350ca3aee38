//! The ext_authz HTTP filter's counters in the scope of the cluster a checked request's
//! route names (Envoy's `cluster.<cluster>.ext_authz.[<filter stat_prefix>.]ok`,
//! `denied`, `error`, `failure_mode_allowed`), per core, beside the cluster's other
//! stats (`ClusterStats::ext_authz`).
//!
//! Envoy makes each of these counters when it first counts it, so a cluster shows only
//! the ones some request counted: an entry here is made by the first count of its
//! filter prefix on this core (one small allocation, then none), and the admin shows
//! only counts above zero.

use std::cell::{Cell, RefCell};

use serde::Serialize;

/// The counters, in the order of [`ExtAuthzReport::counts`].
pub const NAMES: [&str; 4] = ["ok", "denied", "error", "failure_mode_allowed"];

/// Which counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthzStat {
    Ok = 0,
    Denied = 1,
    Error = 2,
    FailureModeAllowed = 3,
}

/// One filter prefix's counters on one cluster and core.
struct Counts {
    /// The filter's own `stat_prefix` (empty: none).
    prefix: Box<str>,
    /// Plain cells (per core, like `stats::Counter`, which this module does not name:
    /// `stats` names it).
    counts: [Cell<u64>; 4],
}

/// A cluster's ext_authz counters on one core, by filter prefix.
#[derive(Default)]
pub struct ClusterExtAuthz(RefCell<Vec<Counts>>);

impl ClusterExtAuthz {
    /// Counts `stat` for the filter whose `stat_prefix` is `prefix`.
    pub fn count(&self, prefix: &str, stat: AuthzStat) {
        let Ok(mut list) = self.0.try_borrow_mut() else {
            return;
        };
        let at = match list.iter().position(|c| &*c.prefix == prefix) {
            Some(i) => i,
            None => {
                list.push(Counts {
                    prefix: prefix.into(),
                    counts: Default::default(),
                });
                list.len() - 1
            }
        };
        if let Some(c) = list.get(at).and_then(|c| c.counts.get(stat as usize)) {
            c.set(c.get().wrapping_add(1));
        }
    }

    pub fn report(&self) -> Vec<ExtAuthzReport> {
        self.0.try_borrow().map_or_else(
            |_| Vec::new(),
            |list| {
                list.iter()
                    .map(|c| ExtAuthzReport {
                        prefix: c.prefix.to_string(),
                        counts: [0, 1, 2, 3].map(|i| c.counts[i].get()),
                    })
                    .collect()
            },
        )
    }
}

/// One filter prefix's counts on a cluster (summed over cores once merged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExtAuthzReport {
    pub prefix: String,
    /// Indexed like [`NAMES`].
    pub counts: [u64; 4],
}

impl ExtAuthzReport {
    /// The stat names below `cluster.<name>.` with their counts, those above zero only
    /// (Envoy has not made the others).
    pub fn named(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        NAMES
            .iter()
            .zip(self.counts)
            .filter(|(_, n)| *n > 0)
            .map(|(stat, n)| {
                let name = if self.prefix.is_empty() {
                    format!("ext_authz.{stat}")
                } else {
                    format!("ext_authz.{}.{stat}", self.prefix)
                };
                (name, n)
            })
    }
}

/// Adds another core's reports into `into`, matching by prefix.
pub fn merge(into: &mut Vec<ExtAuthzReport>, from: Vec<ExtAuthzReport>) {
    for r in from {
        match into.iter_mut().find(|x| x.prefix == r.prefix) {
            Some(x) => {
                for (a, b) in x.counts.iter_mut().zip(r.counts) {
                    *a += b;
                }
            }
            None => into.push(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_prefix_and_names_only_what_was_counted() {
        let c = ClusterExtAuthz::default();
        c.count("", AuthzStat::Ok);
        c.count("", AuthzStat::Ok);
        c.count("sp1", AuthzStat::Error);
        let mut r = c.report();
        merge(&mut r, c.report());
        let names: Vec<(String, u64)> = r.iter().flat_map(|x| x.named()).collect();
        assert_eq!(
            names,
            vec![
                ("ext_authz.ok".to_string(), 4),
                ("ext_authz.sp1.error".to_string(), 2)
            ]
        );
    }
}
