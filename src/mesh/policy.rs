//! Traffic policy in istiod's translation: a VirtualService route's fault injection,
//! mirroring, redirect, rewrite and CORS, and a DestinationRule's connection pool
//! (circuit breakers) and outlier detection on a cluster. Every value follows istiod's
//! mapping and defaults (`pilot/pkg/networking/core/route`, `cluster_traffic_policy`).

use serde_json::{json, Value};

use super::istio::{
    ConnectionPool, CorsPolicy, Fault, HttpRoute, OutlierDetection, Percent, StringMatch,
};
use crate::config::duration::parse_duration;

pub const FAULT_FILTER: &str = "envoy.filters.http.fault";
pub const CORS_FILTER: &str = "envoy.filters.http.cors";

/// The HTTP filters of every sidecar connection manager: fault and CORS (inert without
/// a route's config), then the router, as istiod's.
pub fn http_filters() -> Value {
    json!([
        {"name": FAULT_FILTER, "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}},
        {"name": CORS_FILTER, "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
        {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
    ])
}

/// Istio's percentage (a double, 0-100) as a fractional percent per million; a missing
/// one is 100%.
fn fraction(p: Option<&Percent>) -> Value {
    match p {
        Some(p) => {
            let n = (p.value.clamp(0.0, 100.0) * 10_000.0).round() as u64;
            json!({"numerator": n, "denominator": "MILLION"})
        }
        None => json!({"numerator": 100, "denominator": "HUNDRED"}),
    }
}

/// A duration in proto3 JSON (`1.500000000s`).
pub fn proto_duration(d: std::time::Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}.{:09}s", d.as_secs(), d.subsec_nanos())
    }
}

fn duration_of(s: &str) -> Option<String> {
    parse_duration(s).ok().map(proto_duration)
}

/// Adds the route's fault, CORS, mirror, rewrite and redirect to an Envoy route whose
/// `route` action is built. `cluster_of` names a destination's cluster.
pub fn route_extras(
    r: &HttpRoute,
    route: &mut Value,
    cluster_of: &dyn Fn(&super::istio::Destination) -> String,
) {
    let mut per_filter = serde_json::Map::new();
    if let Some(f) = &r.fault {
        per_filter.insert(FAULT_FILTER.into(), fault(f));
    }
    if let Some(c) = &r.cors_policy {
        per_filter.insert(CORS_FILTER.into(), cors(c));
    }
    if !per_filter.is_empty() {
        route["typed_per_filter_config"] = Value::Object(per_filter);
    }
    if let Some(m) = &r.mirror {
        route["route"]["request_mirror_policies"] = json!([{
            "cluster": cluster_of(m),
            "runtime_fraction": {"default_value": fraction(r.mirror_percentage.as_ref())},
            "trace_sampled": false
        }]);
    }
    if let Some(w) = &r.rewrite {
        if let Some(u) = &w.uri {
            route["route"]["prefix_rewrite"] = json!(u);
        }
        if let Some(a) = &w.authority {
            route["route"]["host_rewrite_literal"] = json!(a);
        }
    }
    if let Some(d) = &r.redirect {
        let mut rd = json!({});
        if let Some(u) = &d.uri {
            rd["path_redirect"] = json!(u);
        }
        if let Some(a) = &d.authority {
            rd["host_redirect"] = json!(a);
        }
        if let Some(p) = d.port {
            rd["port_redirect"] = json!(p);
        }
        if let Some(s) = &d.scheme {
            rd["scheme_redirect"] = json!(s);
        }
        rd["response_code"] = json!(match d.redirect_code.unwrap_or(301) {
            302 => "FOUND",
            303 => "SEE_OTHER",
            307 => "TEMPORARY_REDIRECT",
            308 => "PERMANENT_REDIRECT",
            _ => "MOVED_PERMANENTLY",
        });
        if let Some(o) = route.as_object_mut() {
            o.remove("route");
        }
        route["redirect"] = rd;
    }
}

/// The redirect codes istiod accepts.
pub fn check_redirect_code(code: u32) -> Result<(), String> {
    if [301, 302, 303, 307, 308].contains(&code) {
        Ok(())
    } else {
        Err(format!("{code} is not 301, 302, 303, 307 or 308"))
    }
}

fn fault(f: &Fault) -> Value {
    let mut out =
        json!({"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"});
    if let Some(d) = &f.delay {
        out["delay"] = json!({
            "fixed_delay": duration_of(&d.fixed_delay).unwrap_or_else(|| "0s".into()),
            "percentage": fraction(d.percentage.as_ref()),
        });
    }
    if let Some(a) = &f.abort {
        let mut ab = json!({"percentage": fraction(a.percentage.as_ref())});
        if let Some(s) = a.http_status {
            ab["http_status"] = json!(s);
        }
        if let Some(g) = a.grpc_status.as_deref().and_then(grpc_code) {
            ab["grpc_status"] = json!(g);
        }
        out["abort"] = ab;
    }
    out
}

/// gRPC status names (istiod takes the name) as codes.
pub fn grpc_code(name: &str) -> Option<u32> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.iter().position(|n| *n == name).map(|i| i as u32)
}

/// Istio's `StringMatch` as Envoy's.
pub fn string_match(s: &StringMatch) -> Value {
    match (&s.exact, &s.prefix, &s.regex) {
        (Some(e), _, _) => json!({"exact": e}),
        (_, Some(p), _) => json!({"prefix": p}),
        (_, _, Some(r)) => json!({"safe_regex": {"regex": r}}),
        _ => json!({"prefix": ""}),
    }
}

fn cors(c: &CorsPolicy) -> Value {
    let mut out = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": c.allow_origins.iter().map(string_match).collect::<Vec<_>>(),
    });
    let join = |v: &[String]| v.join(",");
    if !c.allow_methods.is_empty() {
        out["allow_methods"] = json!(join(&c.allow_methods));
    }
    if !c.allow_headers.is_empty() {
        out["allow_headers"] = json!(join(&c.allow_headers));
    }
    if !c.expose_headers.is_empty() {
        out["expose_headers"] = json!(join(&c.expose_headers));
    }
    if let Some(m) = c.max_age.as_deref().and_then(|m| parse_duration(m).ok()) {
        out["max_age"] = json!(m.as_secs().to_string());
    }
    if let Some(b) = c.allow_credentials {
        out["allow_credentials"] = json!(b);
    }
    out
}

/// istiod's thresholds when a DestinationRule sets none: no limit (Envoy's own
/// defaults, 1024 requests and connections, would cap a busy service).
const UNLIMITED: u64 = u32::MAX as u64;

/// The cluster's circuit breakers and connection settings from `connectionPool`
/// (istiod's defaults where a field is unset), its outlier detection from
/// `outlierDetection`. `http2`: the cluster speaks HTTP/2 to its endpoints.
pub fn cluster_policy(
    c: &mut Value,
    pool: Option<&ConnectionPool>,
    outlier: Option<&OutlierDetection>,
    http2: bool,
) {
    let tcp = pool.and_then(|p| p.tcp.as_ref());
    let http = pool.and_then(|p| p.http.as_ref());
    let or_max = |v: Option<u32>| v.map_or(UNLIMITED, u64::from);
    c["circuit_breakers"] = json!({"thresholds": [{
        "max_connections": or_max(tcp.and_then(|t| t.max_connections)),
        "max_pending_requests": or_max(http.and_then(|h| h.http1_max_pending_requests)),
        "max_requests": or_max(http.and_then(|h| h.http2_max_requests)),
        "max_retries": or_max(http.and_then(|h| h.max_retries)),
        "track_remaining": true
    }]});
    if let Some(t) = tcp
        .and_then(|t| t.connect_timeout.as_deref())
        .and_then(duration_of)
    {
        c["connect_timeout"] = json!(t);
    }
    let mut common = serde_json::Map::new();
    if let Some(n) = http
        .and_then(|h| h.max_requests_per_connection)
        .filter(|n| *n > 0)
    {
        common.insert("max_requests_per_connection".into(), json!(n));
    }
    if let Some(t) = http
        .and_then(|h| h.idle_timeout.as_deref())
        .and_then(duration_of)
    {
        common.insert("idle_timeout".into(), json!(t));
    }
    if http2 || !common.is_empty() {
        let explicit = if http2 {
            json!({"http2_protocol_options": {}})
        } else {
            json!({"http_protocol_options": {}})
        };
        let mut options = json!({
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": explicit
        });
        if !common.is_empty() {
            options["common_http_protocol_options"] = Value::Object(common);
        }
        c["typed_extension_protocol_options"] =
            json!({"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": options});
    }
    if let Some(o) = outlier {
        let mut od = json!({"enforcing_success_rate": 0});
        match o.consecutive5xx_errors {
            Some(n) if n > 0 => {
                od["consecutive_5xx"] = json!(n);
                od["enforcing_consecutive_5xx"] = json!(100);
            }
            _ => od["enforcing_consecutive_5xx"] = json!(0),
        }
        if let Some(n) = o.consecutive_gateway_errors.filter(|n| *n > 0) {
            od["consecutive_gateway_failure"] = json!(n);
            od["enforcing_consecutive_gateway_failure"] = json!(100);
        }
        if let Some(t) = o.interval.as_deref().and_then(duration_of) {
            od["interval"] = json!(t);
        }
        if let Some(t) = o.base_ejection_time.as_deref().and_then(duration_of) {
            od["base_ejection_time"] = json!(t);
        }
        if let Some(p) = o.max_ejection_percent {
            od["max_ejection_percent"] = json!(p);
        }
        c["outlier_detection"] = od;
        // istiod: the panic threshold is minHealthPercent, 0 (panic off) when unset.
        c["common_lb_config"] =
            json!({"healthy_panic_threshold": {"value": o.min_health_percent.unwrap_or(0)}});
    }
}

/// An optional duration field, checked (`at.name` in the error).
fn check_duration(at: &str, name: &str, v: Option<&str>) -> Result<(), String> {
    match v {
        Some(s) => parse_duration(s)
            .map(|_| ())
            .map_err(|e| format!("{at}.{name}: {e}")),
        None => Ok(()),
    }
}

/// The durations and values of a route's policies, checked (`at` is the route's path).
pub fn check_route(r: &HttpRoute, at: &str) -> Result<(), String> {
    let d = |name: &str, v: Option<&str>| check_duration(at, name, v);
    d("timeout", r.timeout.as_deref())?;
    d(
        "retries.perTryTimeout",
        r.retries
            .as_ref()
            .and_then(|x| x.per_try_timeout.as_deref()),
    )?;
    if let Some(f) = &r.fault {
        d(
            "fault.delay.fixedDelay",
            f.delay.as_ref().map(|x| x.fixed_delay.as_str()),
        )?;
        if let Some(a) = &f.abort {
            if let Some(s) = a.http_status.filter(|s| !(200..600).contains(s)) {
                return Err(format!(
                    "{at}.fault.abort.httpStatus: {s} is not an HTTP status"
                ));
            }
            if let Some(g) = &a.grpc_status {
                grpc_code(g).ok_or_else(|| {
                    format!("{at}.fault.abort.grpcStatus: `{g}` is not a gRPC status name")
                })?;
            }
            if a.http_status.is_none() && a.grpc_status.is_none() {
                return Err(format!("{at}.fault.abort: httpStatus or grpcStatus"));
            }
        }
    }
    if let Some(c) = &r.cors_policy {
        d("corsPolicy.maxAge", c.max_age.as_deref())?;
    }
    if let Some(x) = &r.redirect {
        if let Some(code) = x.redirect_code {
            check_redirect_code(code).map_err(|e| format!("{at}.redirect.redirectCode: {e}"))?;
        }
        if !r.route.is_empty() {
            return Err(format!("{at}.redirect: not together with route"));
        }
    } else if r.route.is_empty() {
        return Err(format!(
            "{at}.route: at least one destination (or a redirect)"
        ));
    }
    Ok(())
}

/// A DestinationRule traffic policy's durations, checked.
pub fn check_traffic_policy(t: &super::istio::TrafficPolicy, at: &str) -> Result<(), String> {
    let d = |name: &str, v: Option<&str>| check_duration(at, name, v);
    if let Some(tls) = &t.tls {
        super::mtls_kinds::check_client(tls).map_err(|e| format!("{at}.tls.{e}"))?;
    }
    if let Some(p) = &t.connection_pool {
        d(
            "connectionPool.tcp.connectTimeout",
            p.tcp.as_ref().and_then(|t| t.connect_timeout.as_deref()),
        )?;
        d(
            "connectionPool.http.idleTimeout",
            p.http.as_ref().and_then(|h| h.idle_timeout.as_deref()),
        )?;
    }
    if let Some(o) = &t.outlier_detection {
        d("outlierDetection.interval", o.interval.as_deref())?;
        d(
            "outlierDetection.baseEjectionTime",
            o.base_ejection_time.as_deref(),
        )?;
        if o.max_ejection_percent.is_some_and(|p| p > 100) {
            return Err(format!(
                "{at}.outlierDetection.maxEjectionPercent: at most 100"
            ));
        }
        if o.min_health_percent.is_some_and(|p| p > 100) {
            return Err(format!(
                "{at}.outlierDetection.minHealthPercent: at most 100"
            ));
        }
    }
    if let Some(Some(simple)) = t.load_balancer.as_ref().map(|l| l.simple.as_ref()) {
        super::istio::lb_policy(simple).map_err(|e| format!("{at}.loadBalancer.simple: {e}"))?;
    }
    if let Some(lb) = &t.load_balancer {
        super::lb_kinds::check(lb, at)?;
    }
    Ok(())
}
