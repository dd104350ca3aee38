//! Envoy's `ExternalProcessor` (the ext_proc HTTP filter) and `ExtProcPerRoute` -> the
//! native `ext_proc` filter and its route override. The supported fields are in
//! `walk/ext_proc.rs`; anything else was refused there by field path. Control plane only.

use envoy_types::pb::envoy::config::core::v3::grpc_service::TargetSpecifier;
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::{
    ext_proc_per_route::Override, ExtProcPerRoute, ExternalProcessor, ProcessingMode,
};

use super::convert::{duration, native_duration, R};
use super::err;
use crate::http::filter::ext_proc::config::{RawExtProc, RawExtProcOverride, RawProcessingMode};

pub(super) const EXT_PROC: &str = "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor";
pub(super) const PER_ROUTE: &str = "envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute";

fn header_mode(v: i32) -> Option<String> {
    Some(
        match v {
            0 => "DEFAULT",
            1 => "SEND",
            2 => "SKIP",
            _ => return Some(format!("unknown ({v})")),
        }
        .into(),
    )
}

fn body_mode(v: i32) -> Option<String> {
    Some(
        match v {
            0 => "NONE",
            1 => "STREAMED",
            2 => "BUFFERED",
            3 => "BUFFERED_PARTIAL",
            4 => "FULL_DUPLEX_STREAMED",
            5 => "GRPC",
            _ => return Some(format!("unknown ({v})")),
        }
        .into(),
    )
}

/// A `ProcessingMode` in the native enum names; what is not built is refused here with
/// its Envoy field path (`p` is the mode's).
fn mode(m: &ProcessingMode, p: &str) -> R<RawProcessingMode> {
    if !matches!(m.request_body_mode, 0..=2) {
        return Err(err(
            format!("{p}.request_body_mode"),
            format!(
                "`{}` is not supported by Outrigger (NONE, STREAMED or BUFFERED)",
                body_mode(m.request_body_mode).unwrap_or_default()
            ),
        ));
    }
    if !matches!(m.response_body_mode, 0..=2) {
        return Err(err(
            format!("{p}.response_body_mode"),
            format!(
                "`{}` is not supported by Outrigger (NONE, STREAMED or BUFFERED)",
                body_mode(m.response_body_mode).unwrap_or_default()
            ),
        ));
    }
    Ok(RawProcessingMode {
        request_header_mode: header_mode(m.request_header_mode),
        response_header_mode: header_mode(m.response_header_mode),
        request_body_mode: body_mode(m.request_body_mode),
        response_body_mode: body_mode(m.response_body_mode),
        request_trailer_mode: header_mode(m.request_trailer_mode),
        response_trailer_mode: header_mode(m.response_trailer_mode),
    })
}

/// The filter's config; `p` is its `typed_config` path.
pub(super) fn filter(e: &ExternalProcessor, p: &str) -> R<RawExtProc> {
    let cluster = match e
        .grpc_service
        .as_ref()
        .and_then(|g| g.target_specifier.as_ref())
    {
        Some(TargetSpecifier::EnvoyGrpc(g)) if !g.cluster_name.is_empty() => g.cluster_name.clone(),
        // Envoy requires one of grpc_service or http_service; the HTTP service is not
        // supported (refused by the walker).
        _ => {
            return Err(err(
                format!("{p}.grpc_service.envoy_grpc.cluster_name"),
                "is required",
            ))
        }
    };
    let message_timeout = duration(&e.message_timeout, &format!("{p}.message_timeout"))?;
    Ok(RawExtProc {
        cluster: Some(cluster),
        authority: None,
        timeout: None,
        failure_mode_allow: e.failure_mode_allow,
        message_timeout: message_timeout.map(native_duration),
        allow_mode_override: e.allow_mode_override,
        stat_prefix: Some(e.stat_prefix.clone()).filter(|s| !s.is_empty()),
        processing_mode: e
            .processing_mode
            .as_ref()
            .map(|m| mode(m, &format!("{p}.processing_mode")))
            .transpose()?,
    })
}

/// A route's `ExtProcPerRoute`: `Ok(None)` disables the filter there.
pub(super) fn per_route(r: &ExtProcPerRoute, p: &str) -> R<Option<RawExtProcOverride>> {
    match &r.r#override {
        Some(Override::Disabled(true)) => Ok(None),
        Some(Override::Overrides(o)) => Ok(Some(RawExtProcOverride {
            processing_mode: o
                .processing_mode
                .as_ref()
                .map(|m| mode(m, &format!("{p}.overrides.processing_mode")))
                .transpose()?,
        })),
        // Envoy: `disabled` must be true, and the oneof is required.
        _ => Err(err(p, "set `disabled: true` or `overrides`")),
    }
}
