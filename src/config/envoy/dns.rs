//! A STRICT_DNS or LOGICAL_DNS cluster's DNS settings -> the native cluster's
//! (`dns_refresh_rate`, `dns_failure_refresh_rate`, `dns_lookup_family`). The walker
//! refuses the others (`respect_dns_ttl`: the system resolver gives no TTL;
//! `dns_jitter`, `dns_resolvers`, `typed_dns_resolver_config`).

use envoy_types::pb::envoy::config::cluster::v3::cluster::DnsLookupFamily;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;

use super::super::raw::{RawCluster, RawRefreshRate};
use super::convert::{duration, native_duration, R};
use super::{err, PathMap};

// The fields are deprecated in favour of the DnsCluster extension, which Outrigger
// does not take; Envoy 1.40 still reads them.
#[allow(deprecated)]
pub(super) fn translate(
    c: &Cluster,
    p: &str,
    native: &str,
    paths: &mut PathMap,
    raw: &mut RawCluster,
) -> R<()> {
    if let Some(d) = duration(&c.dns_refresh_rate, &format!("{p}.dns_refresh_rate"))? {
        raw.dns_refresh_rate = Some(native_duration(d));
        paths.add(
            format!("{native}.dns_refresh_rate"),
            format!("{p}.dns_refresh_rate"),
        );
    }
    if let Some(r) = &c.dns_failure_refresh_rate {
        let at = format!("{p}.dns_failure_refresh_rate");
        let base = duration(&r.base_interval, &format!("{at}.base_interval"))?
            .ok_or_else(|| err(format!("{at}.base_interval"), "is required"))?;
        let max = duration(&r.max_interval, &format!("{at}.max_interval"))?;
        raw.dns_failure_refresh_rate = Some(RawRefreshRate {
            base_interval: native_duration(base),
            max_interval: max.map(native_duration),
        });
        paths.add(format!("{native}.dns_failure_refresh_rate"), at);
    }
    let family = DnsLookupFamily::try_from(c.dns_lookup_family)
        .map_err(|_| err(format!("{p}.dns_lookup_family"), "unknown value"))?;
    raw.dns_lookup_family = Some(family.as_str_name().to_ascii_lowercase());
    paths.add(
        format!("{native}.dns_lookup_family"),
        format!("{p}.dns_lookup_family"),
    );
    Ok(())
}
