//! Envoy's HCM `tracing` with the OpenTelemetry provider -> the native `tracing` block
//! (`config::raw_tracing`). Control plane only. Envoy's defaults are written out: 100%
//! random, client and overall sampling, `max_path_tag_length` 256, the listener's
//! `traffic_direction` for the span kind, the bootstrap node's id and zone as tags, and
//! its OpenTelemetry tracer's export cadence (5 spans or 5 seconds).

use envoy_types::pb::envoy::config::core::v3::{grpc_service, http_uri, TrafficDirection};
use envoy_types::pb::envoy::config::trace::v3::{tracing::http, OpenTelemetryConfig};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::Tracing;
use envoy_types::pb::envoy::r#type::tracing::v3::custom_tag;

use super::super::raw_tracing::{RawCustomTag, RawTracing};
use super::convert::{payload, R};
use super::err;

const OTEL: &str = "envoy.config.trace.v3.OpenTelemetryConfig";

/// The node and listener facts a connection manager's tracing reads.
pub(super) struct Local<'a> {
    pub node_id: &'a str,
    pub zone: &'a str,
    pub direction: i32,
}

pub(super) fn translate(t: &Tracing, p: &str, local: &Local<'_>) -> R<RawTracing> {
    let Some(provider) = &t.provider else {
        return Err(err(
            format!("{p}.provider"),
            "Outrigger needs a provider (envoy.tracers.opentelemetry)",
        ));
    };
    let pp = format!("{p}.provider");
    let Some(http::ConfigType::TypedConfig(any)) = &provider.config_type else {
        return Err(err(format!("{pp}.typed_config"), "is required"));
    };
    let o: OpenTelemetryConfig = payload(any, OTEL, &format!("{pp}.typed_config"))?;
    let op = format!("{pp}.typed_config");
    // Export over gRPC (an `envoy_grpc` cluster) or over HTTP (`http_service`).
    let (cluster, authority, path, protocol) = match (&o.grpc_service, &o.http_service) {
        (Some(g), None) => {
            let gp = format!("{op}.grpc_service");
            let Some(grpc_service::TargetSpecifier::EnvoyGrpc(e)) = &g.target_specifier else {
                return Err(err(
                    format!("{gp}.envoy_grpc"),
                    "is required (google_grpc is not supported by Outrigger)",
                ));
            };
            // Envoy's `:authority` for an `envoy_grpc` target is the cluster's name.
            let c = e.cluster_name.clone();
            (c.clone(), c, "/v1/traces".to_string(), "grpc")
        }
        (None, Some(svc)) => {
            let up = format!("{op}.http_service.http_uri");
            let Some(uri) = &svc.http_uri else {
                return Err(err(up, "is required"));
            };
            let Some(http_uri::HttpUpstreamType::Cluster(cluster)) = &uri.http_upstream_type else {
                return Err(err(format!("{up}.cluster"), "is required"));
            };
            // `http://host[:port]/path`: the Host and the path of the export requests.
            let rest = uri
                .uri
                .strip_prefix("http://")
                .ok_or_else(|| err(format!("{up}.uri"), "must be an http:// URI"))?;
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, "/"),
            };
            (
                cluster.clone(),
                authority.to_string(),
                path.to_string(),
                "http",
            )
        }
        _ => {
            return Err(err(
                format!("{op}.http_service"),
                "set one of `grpc_service` and `http_service`",
            ))
        }
    };
    if t.spawn_upstream_span.as_ref().is_some_and(|b| b.value) {
        return Err(err(
            format!("{p}.spawn_upstream_span"),
            "upstream spans are not supported by Outrigger yet",
        ));
    }
    let pct = |v: &Option<envoy_types::pb::envoy::r#type::v3::Percent>| v.as_ref().map(|v| v.value);
    let mut custom_tags = Vec::new();
    for (k, c) in t.custom_tags.iter().enumerate() {
        let cp = format!("{p}.custom_tags[{k}]");
        custom_tags.push(match &c.r#type {
            Some(custom_tag::Type::Literal(l)) => RawCustomTag {
                tag: c.tag.clone(),
                literal: Some(l.value.clone()),
                ..RawCustomTag::default()
            },
            Some(custom_tag::Type::RequestHeader(h)) => RawCustomTag {
                tag: c.tag.clone(),
                request_header: Some(h.name.clone()),
                default_value: Some(h.default_value.clone()).filter(|d| !d.is_empty()),
                ..RawCustomTag::default()
            },
            _ => {
                return Err(err(
                    cp,
                    "only `literal` and `request_header` custom tags are supported by Outrigger",
                ))
            }
        });
    }
    let direction = match TrafficDirection::try_from(local.direction) {
        Ok(TrafficDirection::Outbound) => "outbound",
        _ => "inbound",
    };
    Ok(RawTracing {
        collector_cluster: cluster,
        protocol: Some(protocol.into()),
        path: Some(path),
        authority: Some(authority),
        // Envoy's resource default.
        service_name: Some(if o.service_name.is_empty() {
            "unknown_service:envoy".into()
        } else {
            o.service_name.clone()
        }),
        traffic_direction: Some(direction.into()),
        random_sampling: pct(&t.random_sampling),
        client_sampling: pct(&t.client_sampling),
        overall_sampling: pct(&t.overall_sampling),
        propagation: Some(vec!["w3c".into()]),
        custom_tags,
        max_path_tag_length: Some(
            t.max_path_tag_length
                .as_ref()
                .map_or(256, |v| v.value as usize),
        ),
        node_id: Some(local.node_id.to_string()),
        zone: Some(local.zone.to_string()),
        // Envoy's tracer: `tracing.opentelemetry.min_flush_spans` 5, `flush_interval_ms`
        // 5000 (`max_cache_size` bounds its buffer, not the batch).
        batch_spans: Some(5),
        flush_interval: Some("5s".into()),
        queue_spans: Some(
            o.max_cache_size
                .as_ref()
                .map_or(1024, |v| v.value as usize)
                .max(1),
        ),
    })
}
