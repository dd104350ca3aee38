//! A STRICT_DNS or LOGICAL_DNS cluster's names and refresh settings, as built from the
//! config. The control executor resolves them (`runtime/dns.rs`) and fills the
//! cluster's endpoints; the workers see only the endpoints.

use std::time::Duration;

use super::model::Endpoint;

/// Envoy's STRICT_DNS or LOGICAL_DNS: what to resolve and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct Dns {
    /// LOGICAL_DNS: one name, and only its first address is used.
    pub logical: bool,
    /// `dns_refresh_rate` (Envoy's default 5 s).
    pub refresh_rate: Duration,
    /// `dns_failure_refresh_rate`: after a failed resolution the next one comes after a
    /// jittered back-off from `base` up to `max`; `None`: `refresh_rate`.
    pub failure_refresh: Option<(Duration, Duration)>,
    pub family: DnsFamily,
    /// One per configured endpoint, in order.
    pub targets: Vec<DnsTarget>,
}

/// One configured endpoint whose address is a name: each address it resolves to
/// becomes an endpoint like `template` with that address.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsTarget {
    pub host: String,
    pub port: u16,
    /// Weight, hostname, priority, locality and health of the endpoints it makes (its
    /// `addr` is unused).
    pub template: Endpoint,
}

/// Envoy's `dns_lookup_family`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DnsFamily {
    /// IPv6 addresses if there are any, else IPv4 (Envoy's default).
    #[default]
    Auto,
    V4Only,
    V6Only,
    /// IPv4 addresses if there are any, else IPv6.
    V4Preferred,
    /// Both.
    All,
}

impl DnsFamily {
    pub fn parse(s: &str) -> Option<DnsFamily> {
        Some(match s {
            "auto" => DnsFamily::Auto,
            "v4_only" => DnsFamily::V4Only,
            "v6_only" => DnsFamily::V6Only,
            "v4_preferred" => DnsFamily::V4Preferred,
            "all" => DnsFamily::All,
            _ => return None,
        })
    }

    /// The addresses of `all` (in the resolver's order) this family keeps.
    pub fn pick(self, all: &[std::net::IpAddr]) -> Vec<std::net::IpAddr> {
        let v4: Vec<_> = all.iter().copied().filter(|a| a.is_ipv4()).collect();
        let v6: Vec<_> = all.iter().copied().filter(|a| a.is_ipv6()).collect();
        match self {
            DnsFamily::Auto if v6.is_empty() => v4,
            DnsFamily::Auto | DnsFamily::V6Only => v6,
            DnsFamily::V4Preferred if v4.is_empty() => v6,
            DnsFamily::V4Preferred | DnsFamily::V4Only => v4,
            DnsFamily::All => all.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_pick_as_envoy_says() {
        let a: Vec<std::net::IpAddr> = vec![
            "127.0.0.1".parse().unwrap(),
            "::1".parse().unwrap(),
            "127.0.0.2".parse().unwrap(),
        ];
        let v4 = vec![a[0], a[2]];
        assert_eq!(DnsFamily::Auto.pick(&a), vec![a[1]]);
        assert_eq!(DnsFamily::Auto.pick(&v4), v4);
        assert_eq!(DnsFamily::V4Only.pick(&a), v4);
        assert!(DnsFamily::V6Only.pick(&v4).is_empty());
        assert_eq!(DnsFamily::V4Preferred.pick(&a), v4);
        assert_eq!(DnsFamily::V4Preferred.pick(&a[1..2]), vec![a[1]]);
        assert_eq!(DnsFamily::All.pick(&a), a);
    }
}
