//! An endpoint's active health-check flags, as Envoy keeps them on a host
//! (`Host::HealthFlag`): what the load balancer reads (`failed`) and what `/clusters`
//! shows (`health_flags`, Envoy's text). Sent from the control executor's checker to
//! every worker; a plain byte, so it crosses threads and sits in a `Cell`.

/// Flags of one endpoint; the empty set is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct HealthFlags(u8);

impl HealthFlags {
    /// Envoy's `FAILED_ACTIVE_HC`: the load balancer skips the endpoint.
    pub const FAILED_ACTIVE_HC: u8 = 1;
    /// Envoy's `PENDING_ACTIVE_HC`: not checked yet.
    pub const PENDING_ACTIVE_HC: u8 = 2;
    /// Envoy's `ACTIVE_HC_TIMEOUT`: failed, and the last check timed out.
    pub const ACTIVE_HC_TIMEOUT: u8 = 4;
    /// Envoy's `FAILED_OUTLIER_CHECK`: ejected by outlier detection (`src/outlier/`); set
    /// on the workers only, never by the checker.
    pub const FAILED_OUTLIER_CHECK: u8 = 8;

    pub const HEALTHY: HealthFlags = HealthFlags(0);
    /// Where an endpoint of a cluster with health checks starts (Envoy: a host of a
    /// health-checked cluster is initialised unhealthy until its first check passes).
    pub const INITIAL: HealthFlags = HealthFlags(Self::FAILED_ACTIVE_HC);

    pub const fn from_bits(b: u8) -> Self {
        HealthFlags(b & 15)
    }

    pub const fn bits(self) -> u8 {
        self.0
    }

    pub const fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }

    pub fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.0 |= flag;
        } else {
            self.0 &= !flag;
        }
    }

    /// The load balancer leaves this endpoint out (unless in panic): Envoy's coarse
    /// health is unhealthy for a failed active check or an outlier ejection.
    pub const fn failed(self) -> bool {
        self.has(Self::FAILED_ACTIVE_HC | Self::FAILED_OUTLIER_CHECK)
    }

    /// The active health check's verdict alone (what the checker counts as healthy).
    pub const fn failed_active_hc(self) -> bool {
        self.has(Self::FAILED_ACTIVE_HC)
    }

    /// Envoy's `HostUtility::healthFlagsToString`: `healthy`, or each flag as
    /// `/name`, in Envoy's order.
    pub fn envoy_text(self) -> String {
        if self.0 == 0 {
            return "healthy".into();
        }
        let mut s = String::new();
        for (flag, name) in [
            (Self::FAILED_ACTIVE_HC, "/failed_active_hc"),
            (Self::FAILED_OUTLIER_CHECK, "/failed_outlier_check"),
            (Self::PENDING_ACTIVE_HC, "/pending_active_hc"),
            (Self::ACTIVE_HC_TIMEOUT, "/active_hc_timeout"),
        ] {
            if self.has(flag) {
                s.push_str(name);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::HealthFlags;

    #[test]
    fn text_is_envoys() {
        assert_eq!(HealthFlags::HEALTHY.envoy_text(), "healthy");
        assert_eq!(HealthFlags::INITIAL.envoy_text(), "/failed_active_hc");
        assert_eq!(
            HealthFlags::from_bits(7).envoy_text(),
            "/failed_active_hc/pending_active_hc/active_hc_timeout"
        );
        assert_eq!(
            HealthFlags::from_bits(9).envoy_text(),
            "/failed_active_hc/failed_outlier_check"
        );
    }
}
