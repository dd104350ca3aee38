//! A cluster's load-balancing settings beyond the `lb_policy` enum: the `lb_config`
//! oneof (`ring_hash_lb_config`, `maglev_lb_config`) and the typed
//! `load_balancing_policy` extensions (round robin, least request, random, ring hash,
//! Maglev, and the contrib peak EWMA: `peak_ewma.rs`), as the native `lb_policy` and
//! its blocks. Control plane only.

use envoy_types::pb::envoy::config::cluster::v3::cluster::ring_hash_lb_config::HashFunction;
use envoy_types::pb::envoy::config::cluster::v3::cluster::LbConfig;
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, LoadBalancingPolicy};
use envoy_types::pb::envoy::extensions::load_balancing_policies::maglev::v3::Maglev;
use envoy_types::pb::envoy::extensions::load_balancing_policies::ring_hash::v3::{
    ring_hash::HashFunction as TypedHashFunction, RingHash,
};

use envoy_types::pb::envoy::extensions::load_balancing_policies::common::v3::SlowStartConfig;
use envoy_types::pb::envoy::extensions::load_balancing_policies::least_request::v3::LeastRequest;
use envoy_types::pb::envoy::extensions::load_balancing_policies::round_robin::v3::RoundRobin;

use super::super::raw::{
    RawLeastRequest, RawMaglev, RawOriginalDstLb, RawPeakEwma, RawRingHash, RawSlowStart,
};
use super::convert::{duration, native_duration, payload, R};
use super::{err, walk, PathMap};

const ROUND_ROBIN: &str = "envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin";
const LEAST_REQUEST: &str =
    "envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest";
const RANDOM: &str = "envoy.extensions.load_balancing_policies.random.v3.Random";
const RING_HASH: &str = "envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash";
const MAGLEV: &str = "envoy.extensions.load_balancing_policies.maglev.v3.Maglev";

type Lb = (
    &'static str,
    Option<RawRingHash>,
    Option<RawMaglev>,
    Option<RawSlowStart>,
    Option<RawLeastRequest>,
    Option<RawPeakEwma>,
);

/// Envoy's `active_request_bias` (a `RuntimeDouble`; Outrigger has no runtime layer,
/// so its default value): a negative or NaN value is used as 1.0 with a warning, as
/// Envoy's least request balancer does.
fn least_request(
    bias: &Option<envoy_types::pb::envoy::config::core::v3::RuntimeDouble>,
    at: &str,
) -> Option<RawLeastRequest> {
    let b = bias.as_ref()?.default_value;
    let active_request_bias = if b < 0.0 || b.is_nan() {
        tracing::warn!("{at}.active_request_bias: invalid active request bias {b}, using 1.0");
        1.0
    } else {
        b
    };
    Some(RawLeastRequest {
        active_request_bias: Some(active_request_bias),
    })
}

/// Envoy's `slow_start_config` (either message: the cluster's legacy one or the typed
/// policies' common one have the same three fields) as the native block.
fn slow_start(
    window: &Option<envoy_types::pb::google::protobuf::Duration>,
    aggression: Option<f64>,
    min_weight_percent: Option<f64>,
    at: &str,
) -> R<RawSlowStart> {
    let window = duration(window, &format!("{at}.slow_start_window"))?;
    Ok(RawSlowStart {
        slow_start_window: window.map(native_duration),
        aggression,
        min_weight_percent,
    })
}

/// The cluster's own `SlowStartConfig` (in `round_robin_lb_config` and
/// `least_request_lb_config`): the typed policies' fields in another message.
fn legacy_slow_start(
    s: &Option<envoy_types::pb::envoy::config::cluster::v3::cluster::SlowStartConfig>,
    at: &str,
) -> R<Option<RawSlowStart>> {
    s.as_ref()
        .map(|s| {
            slow_start(
                &s.slow_start_window,
                s.aggression.as_ref().map(|a| a.default_value),
                s.min_weight_percent.as_ref().map(|p| p.value),
                &format!("{at}.slow_start_config"),
            )
        })
        .transpose()
}

fn typed_slow_start(s: &Option<SlowStartConfig>, at: &str) -> R<Option<RawSlowStart>> {
    s.as_ref()
        .map(|s| {
            slow_start(
                &s.slow_start_window,
                s.aggression.as_ref().map(|a| a.default_value),
                s.min_weight_percent.as_ref().map(|p| p.value),
                &format!("{at}.slow_start_config"),
            )
        })
        .transpose()
}

/// The cluster's `ring_hash_lb_config` or `maglev_lb_config` (Envoy's `lb_config`
/// oneof), each only with its own `lb_policy`, as the native blocks.
pub(super) fn lb_config(
    c: &Cluster,
    p: &str,
    policy: &str,
    native: &str,
    paths: &mut PathMap,
) -> R<Lb> {
    let mut slow = None;
    let mut least = None;
    let mut ring = (policy == "ring_hash").then(RawRingHash::default);
    let mut maglev = (policy == "maglev").then(RawMaglev::default);
    match &c.lb_config {
        None => {}
        Some(LbConfig::RingHashLbConfig(r)) => {
            let at = format!("{p}.ring_hash_lb_config");
            let Some(out) = ring.as_mut() else {
                return Err(err(at, "goes with `lb_policy: RING_HASH`"));
            };
            paths.add(format!("{native}.ring_hash_lb_config"), at);
            out.minimum_ring_size = r.minimum_ring_size.map(|v| v.value);
            out.maximum_ring_size = r.maximum_ring_size.map(|v| v.value);
            if r.hash_function == HashFunction::MurmurHash2 as i32 {
                out.hash_function = Some("MURMUR_HASH_2".into());
            }
        }
        Some(LbConfig::MaglevLbConfig(m)) => {
            let at = format!("{p}.maglev_lb_config");
            let Some(out) = maglev.as_mut() else {
                return Err(err(at, "goes with `lb_policy: MAGLEV`"));
            };
            paths.add(format!("{native}.maglev_lb_config"), at);
            out.table_size = m.table_size.map(|v| v.value);
        }
        Some(LbConfig::RoundRobinLbConfig(r)) => {
            let at = format!("{p}.round_robin_lb_config");
            if policy != "round_robin" {
                return Err(err(at, "goes with `lb_policy: ROUND_ROBIN`"));
            }
            slow = legacy_slow_start(&r.slow_start_config, &at)?;
        }
        Some(LbConfig::LeastRequestLbConfig(l)) => {
            let at = format!("{p}.least_request_lb_config");
            if policy != "least_request" {
                return Err(err(at, "goes with `lb_policy: LEAST_REQUEST`"));
            }
            slow = legacy_slow_start(&l.slow_start_config, &at)?;
            least = least_request(&l.active_request_bias, &at);
            if least.is_some() {
                paths.add(format!("{native}.least_request_lb_config"), at);
            }
        }
        // Translated with the cluster type (`original_dst_lb`).
        Some(LbConfig::OriginalDstLbConfig(_)) => {}
    }
    Ok((policy_name(policy), ring, maglev, slow, least, None))
}

/// The native policy name `lb_config` was called with, as a `'static` str.
fn policy_name(policy: &str) -> &'static str {
    match policy {
        "least_request" => "least_request",
        "random" => "random",
        "ring_hash" => "ring_hash",
        "maglev" => "maglev",
        _ => "round_robin",
    }
}

/// The cluster's `original_dst_lb_config` as the native block (the native builder
/// checks it: an original_dst cluster only, a header name only with `use_http_header`).
pub(super) fn original_dst_lb(
    c: &Cluster,
    p: &str,
    native: &str,
    paths: &mut PathMap,
) -> Option<RawOriginalDstLb> {
    let Some(LbConfig::OriginalDstLbConfig(o)) = &c.lb_config else {
        return None;
    };
    paths.add(
        format!("{native}.original_dst_lb_config"),
        format!("{p}.original_dst_lb_config"),
    );
    Some(RawOriginalDstLb {
        use_http_header: o.use_http_header,
        http_header_name: (!o.http_header_name.is_empty()).then(|| o.http_header_name.clone()),
    })
}

/// Envoy's `load_balancing_policy`: the first policy of the list (Envoy takes the first
/// it has a factory for, and it has one for each of these; another type is refused).
/// The walker has checked each payload's fields.
pub(super) fn typed(lbp: &LoadBalancingPolicy, p: &str) -> R<Lb> {
    let at = format!("{p}.policies[0].typed_extension_config");
    let Some(cfg) = lbp
        .policies
        .first()
        .and_then(|x| x.typed_extension_config.as_ref())
    else {
        return Err(err(format!("{p}.policies"), "needs a policy"));
    };
    let Some(any) = &cfg.typed_config else {
        return Err(err(format!("{at}.typed_config"), "is required"));
    };
    let tc = format!("{at}.typed_config");
    Ok(match walk::type_name(&any.type_url) {
        ROUND_ROBIN => {
            let r: RoundRobin = payload(any, ROUND_ROBIN, &tc)?;
            (
                "round_robin",
                None,
                None,
                typed_slow_start(&r.slow_start_config, &tc)?,
                None,
                None,
            )
        }
        LEAST_REQUEST => {
            let l: LeastRequest = payload(any, LEAST_REQUEST, &tc)?;
            let slow = typed_slow_start(&l.slow_start_config, &tc)?;
            let least = least_request(&l.active_request_bias, &tc);
            ("least_request", None, None, slow, least, None)
        }
        RANDOM => ("random", None, None, None, None, None),
        RING_HASH => {
            let r: RingHash = payload(any, RING_HASH, &tc)?;
            let murmur = r.hash_function == TypedHashFunction::MurmurHash2 as i32;
            let ring = RawRingHash {
                minimum_ring_size: r.minimum_ring_size.map(|v| v.value),
                maximum_ring_size: r.maximum_ring_size.map(|v| v.value),
                hash_function: murmur.then(|| "MURMUR_HASH_2".into()),
            };
            ("ring_hash", Some(ring), None, None, None, None)
        }
        MAGLEV => {
            let m: Maglev = payload(any, MAGLEV, &tc)?;
            let maglev = RawMaglev {
                table_size: m.table_size.map(|v| v.value),
            };
            ("maglev", None, Some(maglev), None, None, None)
        }
        super::peak_ewma::PEAK_EWMA => {
            let e = super::peak_ewma::translate(any, &tc)?;
            ("peak_ewma", None, None, None, None, Some(e))
        }
        other => {
            return Err(err(
                tc,
                format!("load balancing policy `{other}` is not supported by Outrigger"),
            ))
        }
    })
}
