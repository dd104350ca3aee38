//! Envoy `cluster.health_checks` -> native raw `health_checks` (the same field names;
//! durations become native strings, binary payloads hex). Checked afterwards by the
//! native builder (`config/build/health.rs`), whose errors map back to these paths.
//! Control plane only.

use envoy_types::pb::envoy::config::core::v3::health_check::{payload, HealthChecker, Payload};
use envoy_types::pb::envoy::config::core::v3::{HealthCheck, RequestMethod};

use super::super::raw_health::{
    RawGrpcHealthCheck, RawHealthCheck, RawHttpHealthCheck, RawMetadata, RawPayload,
    RawTcpHealthCheck,
};
use super::super::raw_match::RawRange;
use super::convert::{duration, native_duration, R};
use super::err;

pub(super) fn translate(h: &HealthCheck, p: &str) -> R<RawHealthCheck> {
    let d = |v, field: &str| -> R<Option<String>> {
        Ok(duration(v, &format!("{p}.{field}"))?.map(native_duration))
    };
    let mut raw = RawHealthCheck {
        timeout: d(&h.timeout, "timeout")?,
        interval: d(&h.interval, "interval")?,
        initial_jitter: d(&h.initial_jitter, "initial_jitter")?,
        interval_jitter: d(&h.interval_jitter, "interval_jitter")?,
        interval_jitter_percent: Some(h.interval_jitter_percent),
        unhealthy_threshold: h.unhealthy_threshold.as_ref().map(|v| v.value),
        healthy_threshold: h.healthy_threshold.as_ref().map(|v| v.value),
        reuse_connection: h.reuse_connection.as_ref().map(|v| v.value),
        no_traffic_interval: d(&h.no_traffic_interval, "no_traffic_interval")?,
        no_traffic_healthy_interval: d(
            &h.no_traffic_healthy_interval,
            "no_traffic_healthy_interval",
        )?,
        unhealthy_interval: d(&h.unhealthy_interval, "unhealthy_interval")?,
        unhealthy_edge_interval: d(&h.unhealthy_edge_interval, "unhealthy_edge_interval")?,
        healthy_edge_interval: d(&h.healthy_edge_interval, "healthy_edge_interval")?,
        ..RawHealthCheck::default()
    };
    match &h.health_checker {
        Some(HealthChecker::HttpHealthCheck(x)) => {
            let hp = format!("{p}.http_health_check");
            let method = RequestMethod::try_from(x.method)
                .map_err(|_| err(format!("{hp}.method"), "unknown value"))?;
            let ranges = |list: &[envoy_types::pb::envoy::r#type::v3::Int64Range]| {
                list.iter()
                    .map(|r| RawRange {
                        start: r.start,
                        end: r.end,
                    })
                    .collect()
            };
            raw.http_health_check = Some(RawHttpHealthCheck {
                host: Some(x.host.clone()),
                path: Some(x.path.clone()),
                method: match method {
                    RequestMethod::MethodUnspecified => None,
                    m => Some(m.as_str_name().to_string()),
                },
                expected_statuses: ranges(&x.expected_statuses),
                retriable_statuses: ranges(&x.retriable_statuses),
            });
        }
        Some(HealthChecker::TcpHealthCheck(x)) => {
            let tp = format!("{p}.tcp_health_check");
            raw.tcp_health_check = Some(RawTcpHealthCheck {
                send: x
                    .send
                    .as_ref()
                    .map(|s| hex_payload(s, &format!("{tp}.send")))
                    .transpose()?,
                receive: x
                    .receive
                    .iter()
                    .enumerate()
                    .map(|(i, r)| hex_payload(r, &format!("{tp}.receive[{i}]")))
                    .collect::<R<_>>()?,
            });
        }
        Some(HealthChecker::GrpcHealthCheck(x)) => {
            let gp = format!("{p}.grpc_health_check");
            let initial_metadata = x
                .initial_metadata
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let Some(hv) = &h.header else {
                        return Err(err(
                            format!("{gp}.initial_metadata[{i}].header"),
                            "is required",
                        ));
                    };
                    Ok(RawMetadata {
                        key: hv.key.clone(),
                        value: hv.value.clone(),
                    })
                })
                .collect::<R<_>>()?;
            raw.grpc_health_check = Some(RawGrpcHealthCheck {
                service_name: Some(x.service_name.clone()),
                authority: Some(x.authority.clone()),
                initial_metadata,
            });
        }
        // The walker refused it by path already.
        Some(HealthChecker::CustomHealthCheck(_)) => {
            return Err(err(
                format!("{p}.custom_health_check"),
                "not supported by Outrigger",
            ))
        }
        None => {}
    }
    Ok(raw)
}

/// A payload as native hex `text`.
fn hex_payload(pl: &Payload, p: &str) -> R<RawPayload> {
    let text = match &pl.payload {
        Some(payload::Payload::Text(t)) => t.clone(),
        Some(payload::Payload::Binary(b)) => b.iter().map(|x| format!("{x:02x}")).collect(),
        None => return Err(err(p, "set `text` or `binary`")),
    };
    Ok(RawPayload { text })
}
