//! Envoy `HttpConnectionManager` -> a native chain's HTTP settings: codec, limits,
//! timeouts, forwarding, HTTP filters, upgrades, access log and the inline route
//! configuration. Envoy's defaults are written out explicitly. Control plane only.

use std::time::Duration;

use envoy_types::pb::envoy::extensions::filters::http::buffer::v3::Buffer as PbBuffer;
use envoy_types::pb::envoy::extensions::filters::http::header_mutation::v3::HeaderMutation as PbHeaderMutation;
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as PbRbac;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::{CodecType, ForwardClientCertDetails, RouteSpecifier, StripPortMode},
    http_filter, HttpConnectionManager,
};

use super::super::raw::{
    RawCertDetails, RawFilterChain, RawForwarding, RawHttp2, RawLimits, RawProxyHeaders,
};
use super::convert::{
    duration, mutations, native_duration, payload, timeout_or_never, Translation,
    R,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router as PbRouter;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::ServerHeaderTransformation;
use super::{err, fault_cors, rbac, route, walk};
use crate::http::filter::RawHttpFilter;

const ROUTER: &str = "envoy.extensions.filters.http.router.v3.Router";
const HEADER_MUTATION: &str = "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation";
const BUFFER: &str = "envoy.extensions.filters.http.buffer.v3.Buffer";

pub(super) fn translate(
    h: &HttpConnectionManager,
    p: &str,
    native: &str,
    listener: &str,
    chain: &mut RawFilterChain,
    tx: &mut Translation,
) -> R<()> {
    let codec = CodecType::try_from(h.codec_type)
        .map_err(|_| err(format!("{p}.codec_type"), "unknown value"))?;
    chain.codec = Some(
        match codec {
            CodecType::Auto => "auto",
            CodecType::Http1 => "http1",
            CodecType::Http2 => "http2",
            CodecType::Http3 => {
                return Err(err(
                    format!("{p}.codec_type"),
                    "HTTP3 is not supported by Outrigger",
                ))
            }
        }
        .into(),
    );
    if h.stat_prefix.is_empty() {
        return Err(err(format!("{p}.stat_prefix"), "is required"));
    }
    chain.stat_prefix = Some(h.stat_prefix.clone());

    // Envoy: max_request_headers_kb 60 (the request line counts towards it),
    // max_headers_count 100.
    let kb = h.max_request_headers_kb.as_ref().map_or(60, |v| v.value);
    tx.paths.add(
        format!("{native}.limits.max_header_bytes"),
        format!("{p}.max_request_headers_kb"),
    );
    tx.paths.add(
        format!("{native}.limits.max_request_line_bytes"),
        format!("{p}.max_request_headers_kb"),
    );
    let common = h.common_http_protocol_options.unwrap_or_default();
    let cp = format!("{p}.common_http_protocol_options");
    if common.max_requests_per_connection.is_some() {
        return Err(err(
            format!("{cp}.max_requests_per_connection"),
            "not supported by Outrigger for downstream connections",
        ));
    }
    tx.paths.add(
        format!("{native}.limits.max_headers"),
        format!("{cp}.max_headers_count"),
    );
    let bytes = (kb as usize).saturating_mul(1024);
    chain.limits = Some(RawLimits {
        max_request_line_bytes: Some(bytes.min(1 << 20)),
        max_header_bytes: Some(bytes),
        max_headers: Some(common.max_headers_count.map_or(100, |v| v.value as usize)),
    });
    // Envoy: connection idle timeout 1h, stream idle timeout 5m, no request-head
    // deadline; zero disables each.
    let idle = duration(&common.idle_timeout, &format!("{cp}.idle_timeout"))?
        .unwrap_or(Duration::from_secs(3600));
    chain.idle_timeout = Some(timeout_or_never(idle));
    let stream_idle = duration(&h.stream_idle_timeout, &format!("{p}.stream_idle_timeout"))?
        .unwrap_or(Duration::from_secs(300));
    chain.stream_idle_timeout = Some(native_duration(stream_idle));
    // Envoy: no stream duration limit unless set (zero: none).
    if let Some(d) = duration(
        &common.max_stream_duration,
        &format!("{cp}.max_stream_duration"),
    )? {
        chain.max_stream_duration = Some(native_duration(d));
    }
    let headers_timeout = duration(
        &h.request_headers_timeout,
        &format!("{p}.request_headers_timeout"),
    )?
    .unwrap_or(Duration::ZERO);
    chain.request_headers_timeout = Some(native_duration(headers_timeout));

    // Envoy: use_remote_address defaults to false (the client address comes from
    // x-forwarded-for and nothing is appended).
    let internal_addresses = internal_addresses(h, p)?;
    chain.forwarding = Some(RawForwarding {
        internal_addresses,
        use_remote_address: Some(h.use_remote_address.as_ref().is_some_and(|b| b.value)),
        xff_num_trusted_hops: Some(h.xff_num_trusted_hops),
        skip_xff_append: Some(h.skip_xff_append),
        forward_client_cert_details: Some(xfcc_mode(h, p)?.into()),
        set_current_client_cert_details: h.set_current_client_cert_details.map(|d| {
            RawCertDetails {
                subject: d.subject.is_some_and(|b| b.value),
                cert: d.cert,
                chain: d.chain,
                dns: d.dns,
                uri: d.uri,
            }
        }),
    });

    if let Some(t) = &h.tracing {
        let tp = format!("{p}.tracing");
        let local = super::tracer::Local {
            node_id: &tx.node_id,
            zone: &tx.zone,
            direction: tx.direction,
        };
        chain.tracing = Some(super::tracer::translate(t, &tp, &local)?);
        tx.paths.add(format!("{native}.tracing"), tp);
    }
    chain.proxy_headers = Some(proxy_headers(h, p)?);
    tx.paths
        .add(format!("{native}.proxy_headers"), p.to_string());

    // Envoy's HTTP/2 defaults: 2^31-1 concurrent streams, 256 MiB windows.
    let h2 = h.http2_protocol_options.clone().unwrap_or_default();
    let h2p = format!("{p}.http2_protocol_options");
    tx.paths.add(format!("{native}.http2"), h2p.clone());
    let keepalive = h2.connection_keepalive.unwrap_or_default();
    let kp = format!("{h2p}.connection_keepalive");
    let interval = duration(&keepalive.interval, &format!("{kp}.interval"))?;
    let timeout = duration(&keepalive.timeout, &format!("{kp}.timeout"))?;
    if h2.connection_keepalive.is_some() && timeout.is_none() {
        return Err(err(format!("{kp}.timeout"), "is required"));
    }
    chain.http2 = Some(RawHttp2 {
        max_concurrent_streams: Some(
            h2.max_concurrent_streams
                .map_or(i32::MAX as u32, |v| v.value),
        ),
        initial_stream_window_size: Some(
            h2.initial_stream_window_size
                .map_or(268_435_456, |v| v.value),
        ),
        initial_connection_window_size: Some(
            h2.initial_connection_window_size
                .map_or(268_435_456, |v| v.value),
        ),
        keepalive_interval: interval.map(native_duration),
        keepalive_timeout: timeout.map(native_duration),
    });

    chain.access_log = super::access_log::access_log(&h.access_log, &format!("{p}.access_log"))?;
    for (n, e) in [
        ("format", "typed_config.log_format"),
        ("json_format", "typed_config.log_format.json_format"),
        ("filter", "filter"),
    ] {
        tx.paths.add(
            format!("{native}.access_log.{n}"),
            format!("{p}.access_log[0].{e}"),
        );
    }

    let filters = http_filters(h, p)?;
    for (k, f) in h.http_filters.iter().enumerate() {
        if let Some(http_filter::ConfigType::TypedConfig(any)) = &f.config_type {
            if walk::type_name(&any.type_url) == super::istio_stats::PLUGIN_CONFIG {
                let tp = format!("{p}.http_filters[{k}].typed_config");
                chain.istio_stats = Some(super::istio_stats::translate(any, &tp, tx)?);
                tx.paths.add(format!("{native}.istio_stats"), tp);
            }
        }
    }
    tx.paths.add(
        format!("{native}.http_filters"),
        format!("{p}.http_filters"),
    );
    let (filters, own): (Vec<RawHttpFilter>, Vec<route::ChainFilter>) = filters.into_iter().unzip();
    chain.http_filters = filters;

    let upgrades: Vec<(String, bool)> = h
        .upgrade_configs
        .iter()
        .map(|u| {
            (
                u.upgrade_type.to_ascii_lowercase(),
                u.enabled.as_ref().is_none_or(|b| b.value),
            )
        })
        .collect();
    for (k, (t, _)) in upgrades.iter().enumerate() {
        if t.is_empty() {
            return Err(err(
                format!("{p}.upgrade_configs[{k}].upgrade_type"),
                "must not be empty",
            ));
        }
    }
    // Envoy strips the Host's port before routing only when asked (the two are
    // exclusive; the native builder says so, under these paths).
    for f in ["strip_any_host_port", "strip_matching_host_port"] {
        tx.paths.add(format!("{native}.{f}"), format!("{p}.{f}"));
    }
    chain.strip_any_host_port = Some(matches!(
        h.strip_port_mode,
        Some(StripPortMode::StripAnyHostPort(true))
    ));
    chain.strip_matching_host_port = Some(h.strip_matching_host_port);
    let rc = match &h.route_specifier {
        Some(RouteSpecifier::RouteConfig(rc)) => rc,
        _ => {
            return Err(err(
                format!("{p}.route_config"),
                "is required (`rds` needs `dynamic_resources.ads_config` in the bootstrap)",
            ))
        }
    };
    let table = route::translate(
        rc,
        &format!("{p}.route_config"),
        listener,
        &own,
        &upgrades,
        tx,
    )?;
    chain.route_table = Some(table);
    Ok(())
}

/// The HTTP filters before the router, which Envoy requires last.
fn http_filters(h: &HttpConnectionManager, p: &str) -> R<Vec<(RawHttpFilter, route::ChainFilter)>> {
    let mut out = Vec::new();
    let n = h.http_filters.len();
    for (k, f) in h.http_filters.iter().enumerate() {
        let fp = format!("{p}.http_filters[{k}]");
        let Some(http_filter::ConfigType::TypedConfig(any)) = &f.config_type else {
            return Err(err(format!("{fp}.typed_config"), "is required"));
        };
        let tp = format!("{fp}.typed_config");
        match walk::type_name(&any.type_url) {
            // Istio's stats filter is the chain's `istio_stats`, not a filter of its own.
            super::istio_stats::PLUGIN_CONFIG => {
                if k + 1 == n {
                    return Err(err(fp, "the last HTTP filter must be the router"));
                }
            }
            // Envoy's contrib peak EWMA filter feeds its balancer response times; the
            // router measures them here (`peak_ewma.rs`): nothing to add to the chain.
            super::peak_ewma::FILTER => {
                if k + 1 == n {
                    return Err(err(fp, "the last HTTP filter must be the router"));
                }
            }
            ROUTER => {
                if k + 1 != n {
                    return Err(err(
                        fp,
                        format!(
                            "the router filter `{}` must be the last HTTP filter",
                            f.name
                        ),
                    ));
                }
            }
            HEADER_MUTATION => {
                if k + 1 == n {
                    return Err(err(fp, "the last HTTP filter must be the router"));
                }
                let m: PbHeaderMutation = payload(any, HEADER_MUTATION, &tp)?;
                let raw = RawHttpFilter {
                    name: f.name.clone(),
                    header_mutation: Some(mutations(&m.mutations, &format!("{tp}.mutations"))?),
                    ..Default::default()
                };
                out.push((
                    raw,
                    (f.name.clone(), route::ChainOwn::Mutations(m.mutations)),
                ));
            }
            BUFFER => {
                if k + 1 == n {
                    return Err(err(fp, "the last HTTP filter must be the router"));
                }
                let b: PbBuffer = payload(any, BUFFER, &tp)?;
                let raw = RawHttpFilter {
                    name: f.name.clone(),
                    buffer: Some(route::buffer(&b, &tp)?),
                    ..Default::default()
                };
                out.push((raw, (f.name.clone(), route::ChainOwn::Buffer)));
            }
            super::local_ratelimit::LOCAL_RATELIMIT => {
                if k + 1 == n {
                    return Err(err(fp, "the last HTTP filter must be the router"));
                }
                let l = payload(any, super::local_ratelimit::LOCAL_RATELIMIT, &tp)?;
                let raw = RawHttpFilter {
                    name: f.name.clone(),
                    local_ratelimit: Some(super::local_ratelimit::translate(&l, &tp, false)?),
                    ..Default::default()
                };
                out.push((raw, (f.name.clone(), route::ChainOwn::LocalRateLimit)));
            }
            rbac::HTTP => {
                if k + 1 == n {
                    return Err(err(fp, "the last HTTP filter must be the router"));
                }
                let r: PbRbac = payload(any, rbac::HTTP, &tp)?;
                let raw = RawHttpFilter {
                    name: f.name.clone(),
                    rbac: Some(rbac::http(&r, &tp)?),
                    ..Default::default()
                };
                out.push((raw, (f.name.clone(), route::ChainOwn::Rbac)));
            }
            fault_cors::FAULT => {
                if k + 1 == n {
                    return Err(err(fp, "the last HTTP filter must be the router"));
                }
                let h: envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault =
                    payload(any, fault_cors::FAULT, &tp)?;
                let raw = RawHttpFilter {
                    name: f.name.clone(),
                    fault: Some(fault_cors::fault(&h, &tp)?),
                    ..Default::default()
                };
                out.push((raw, (f.name.clone(), route::ChainOwn::Fault)));
            }
            fault_cors::CORS => {
                if k + 1 == n {
                    return Err(err(fp, "the last HTTP filter must be the router"));
                }
                let raw = RawHttpFilter {
                    name: f.name.clone(),
                    cors: Some(Default::default()),
                    ..Default::default()
                };
                out.push((raw, (f.name.clone(), route::ChainOwn::Cors)));
            }
            super::ext_proc::EXT_PROC => {
                if k + 1 == n {
                    return Err(err(fp, "the last HTTP filter must be the router"));
                }
                let e = payload(any, super::ext_proc::EXT_PROC, &tp)?;
                let raw = RawHttpFilter {
                    name: f.name.clone(),
                    ext_proc: Some(super::ext_proc::filter(&e, &tp)?),
                    ..Default::default()
                };
                out.push((raw, (f.name.clone(), route::ChainOwn::ExtProc)));
            }
            super::ext_authz::HTTP => {
                if k + 1 == n {
                    return Err(err(fp, "the last HTTP filter must be the router"));
                }
                let e = payload(any, super::ext_authz::HTTP, &tp)?;
                let raw = RawHttpFilter {
                    name: f.name.clone(),
                    ext_authz: Some(super::ext_authz::http(&e, &tp)?),
                    ..Default::default()
                };
                out.push((raw, (f.name.clone(), route::ChainOwn::ExtAuthz)));
            }
            super::wasm::WASM => {
                if k + 1 == n {
                    return Err(err(fp, "the last HTTP filter must be the router"));
                }
                let w = payload(any, super::wasm::WASM, &tp)?;
                let raw = RawHttpFilter {
                    name: f.name.clone(),
                    wasm: Some(Box::new(super::wasm::translate(&w, &tp)?)),
                    ..Default::default()
                };
                out.push((raw, (f.name.clone(), route::ChainOwn::Wasm)));
            }
            other => {
                return Err(err(
                    tp,
                    format!("HTTP filter type `{other}` is not supported by Outrigger"),
                ))
            }
        }
    }
    // Envoy accepts an empty list but then has no router: requests get no answer.
    if n == 0 {
        return Err(err(
            format!("{p}.http_filters"),
            "must end with the router (envoy.filters.http.router); without it Envoy never answers",
        ));
    }
    Ok(out)
}

/// What the connection manager and the router add by themselves, with Envoy's defaults
/// written out: HTTP/1.0 refused, `date`, `server: envoy` (overwritten), the router's
/// `x-envoy-*` headers unless `suppress_envoy_headers`, the sanitizing of incoming
/// `x-envoy-*` headers (every client is external without an `internal_address_config`),
/// and `x-request-id`.
/// `forward_client_cert_details` as the native value.
fn xfcc_mode(h: &HttpConnectionManager, p: &str) -> R<&'static str> {
    Ok(
        match ForwardClientCertDetails::try_from(h.forward_client_cert_details)
            .map_err(|_| err(format!("{p}.forward_client_cert_details"), "unknown value"))?
        {
            ForwardClientCertDetails::Sanitize => "sanitize",
            ForwardClientCertDetails::ForwardOnly => "forward_only",
            ForwardClientCertDetails::AppendForward => "append_forward",
            ForwardClientCertDetails::SanitizeSet => "sanitize_set",
            ForwardClientCertDetails::AlwaysForwardOnly => "always_forward_only",
        },
    )
}

fn proxy_headers(h: &HttpConnectionManager, p: &str) -> R<RawProxyHeaders> {
    let h1 = h.http_protocol_options.clone().unwrap_or_default();
    let transformation = ServerHeaderTransformation::try_from(h.server_header_transformation)
        .map_err(|_| err(format!("{p}.server_header_transformation"), "unknown value"))?;
    let mut suppress = false;
    for (k, f) in h.http_filters.iter().enumerate() {
        if let Some(http_filter::ConfigType::TypedConfig(any)) = &f.config_type {
            if walk::type_name(&any.type_url) == ROUTER {
                let tp = format!("{p}.http_filters[{k}].typed_config");
                let r: PbRouter = payload(any, ROUTER, &tp)?;
                suppress = r.suppress_envoy_headers;
            }
        }
    }
    Ok(RawProxyHeaders {
        accept_http_10: Some(h1.accept_http_10),
        default_host_for_http_10: Some(h1.default_host_for_http_10).filter(|d| !d.is_empty()),
        http1_trailers: Some(h1.enable_trailers),
        date: Some(true),
        server_name: Some(if h.server_name.is_empty() {
            "envoy".into()
        } else {
            h.server_name.clone()
        }),
        server_header_transformation: Some(
            match transformation {
                ServerHeaderTransformation::Overwrite => "overwrite",
                ServerHeaderTransformation::AppendIfAbsent => "append_if_absent",
                ServerHeaderTransformation::PassThrough => "pass_through",
            }
            .into(),
        ),
        envoy_headers: Some(!suppress),
        sanitize_envoy_headers: Some(true),
        generate_request_id: Some(h.generate_request_id.as_ref().is_none_or(|b| b.value)),
        preserve_external_request_id: Some(h.preserve_external_request_id),
        phases_header: None,
    })
}

/// `internal_address_config.cidr_ranges` as native ranges (`prefix_len` unset is 0, as
/// Envoy reads it). `unix_sockets` is accepted: Outrigger's listeners are TCP, so no
/// client comes over a unix socket.
fn internal_addresses(h: &HttpConnectionManager, p: &str) -> R<Vec<String>> {
    let Some(c) = &h.internal_address_config else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, r) in c.cidr_ranges.iter().enumerate() {
        let rp = format!("{p}.internal_address_config.cidr_ranges[{i}]");
        let addr: std::net::IpAddr = r
            .address_prefix
            .parse()
            .map_err(|_| err(format!("{rp}.address_prefix"), "not an IP address"))?;
        let len = r.prefix_len.as_ref().map_or(0, |v| v.value);
        if len > if addr.is_ipv4() { 32 } else { 128 } {
            return Err(err(format!("{rp}.prefix_len"), "too long for the address"));
        }
        out.push(format!("{addr}/{len}"));
    }
    Ok(out)
}
