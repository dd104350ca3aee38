//! How a STRICT_DNS or LOGICAL_DNS cluster's `dns_lookup_family` reads and picks
//! addresses (the types are in `model`: `Dns`, `DnsTarget`, `DnsFamily`). The control
//! executor resolves the names (`runtime/dns.rs`) and fills the cluster's endpoints;
//! the workers see only the endpoints.

pub use super::model::{Dns, DnsFamily, DnsTarget};

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
