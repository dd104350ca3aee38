//! The local rate-limit filter's checked config: what `config.rs` builds and the
//! request-head hook (`mod.rs`) reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::super::headers::HeaderPlan;
use super::bucket::{SharedBucket, Spec};
use super::descriptors::Policy;
use super::stats::Counters;

/// The filter's configuration, shared by every worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRateLimitFilter(pub Arc<Limiter>);

/// A checked config.
#[derive(Debug, PartialEq, Eq)]
pub struct Limiter {
    /// Its counters' indices in `Snapshot::counters`.
    pub(super) counters: Counters,
    pub(super) status: u16,
    pub(super) enabled: Fraction,
    pub(super) enforced: Fraction,
    /// `token_bucket`; none: requests no descriptor limits are allowed (Envoy's).
    pub(super) default: Option<Bucket>,
    /// Sorted by fill rate, slowest first.
    pub(super) descriptors: Vec<Descriptor>,
    /// The filter's own `rate_limits` (used instead of the route's when set).
    pub(super) rate_limits: Option<Vec<Policy>>,
    pub(super) stage: u32,
    pub(super) vh: VhRateLimits,
    pub(super) always_consume_default: bool,
    pub(super) x_headers: bool,
    pub(super) request_headers: HeaderPlan,
    pub(super) response_headers: HeaderPlan,
}

/// Envoy's `RuntimeFractionalPercent` default value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fraction {
    pub numerator: u32,
    pub denominator: u32,
}

impl Fraction {
    pub const NEVER: Fraction = Fraction {
        numerator: 0,
        denominator: 100,
    };

    pub(super) fn hit(self) -> bool {
        if self.numerator >= self.denominator {
            return true;
        }
        self.numerator > 0 && fastrand::u32(..self.denominator) < self.numerator
    }
}

/// Envoy's `vh_rate_limits`: whether the virtual host's `rate_limits` count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VhRateLimits {
    /// The virtual host's only when the route has none (Envoy's default).
    Override,
    Include,
    Ignore,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) struct Descriptor {
    pub(super) entries: Vec<(String, String)>,
    pub(super) bucket: Bucket,
}

/// Where a bucket's tokens are.
#[derive(Debug)]
pub(super) enum Bucket {
    /// One for the process, leased per core.
    Shared(Arc<SharedBucket>),
    /// One per connection (`local_rate_limit_per_downstream_connection`), by this id.
    PerConnection(Spec, u64),
}

impl PartialEq for Bucket {
    fn eq(&self, o: &Bucket) -> bool {
        match (self, o) {
            (Bucket::Shared(a), Bucket::Shared(b)) => Arc::ptr_eq(a, b),
            (Bucket::PerConnection(a, _), Bucket::PerConnection(b, _)) => a == b,
            _ => false,
        }
    }
}
impl Eq for Bucket {}

impl Bucket {
    pub(super) fn spec(&self) -> &Spec {
        match self {
            Bucket::Shared(b) => &b.spec,
            Bucket::PerConnection(s, _) => s,
        }
    }
}

pub(super) fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
