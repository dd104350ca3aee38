//! Shared pieces of the Envoy translation: the translation's output (`Translation`), and
//! the conversions every area uses (`Any` payloads, durations, socket addresses, header
//! edits). Below `bootstrap`, `cluster`, `listener`, `hcm` and `route`, which depend on
//! it and not on each other's helpers. Control plane only.

use std::net::IpAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::common::mutation_rules::v3::header_mutation::Action;
use envoy_types::pb::envoy::config::core::v3::{
    address, header_value_option::HeaderAppendAction, socket_address, Address, HeaderValueOption,
};
use envoy_types::pb::envoy::extensions::filters::http::header_mutation::v3::Mutations;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration};
use prost::Message;

use super::super::build::ConfigError;
use super::super::raw::RawConfig;
use super::{err, walk, PathMap};
use crate::http::filter::header_mutation::{RawHeaderAdd, RawHeaderMutation};

/// The native raw config a bootstrap translates to, and where its fields came from.
pub(in crate::config) struct Translation {
    pub raw: RawConfig,
    pub paths: PathMap,
    /// The bootstrap node's id and zone (tracing tags them on every span).
    pub node_id: String,
    pub zone: String,
    /// The `traffic_direction` of the listener being translated (the span kind of its
    /// connection managers' tracing).
    pub direction: i32,
    /// This proxy's workload from the node metadata (Istio's stats labels).
    pub istio_workload: super::super::raw_istio::RawWorkload,
    /// The secrets delivered over ADS (empty for a bootstrap file).
    pub ads_secrets: AdsSecrets,
}

pub(super) type R<T> = Result<T, ConfigError>;

/// The secrets delivered over ADS, by name (`sds.rs` reads them).
pub type AdsSecrets = std::collections::BTreeMap<String, Secret>;

/// Decodes an `Any` payload that must be of type `want`.
pub(super) fn payload<M: Message + Default>(any: &Any, want: &str, path: &str) -> R<M> {
    let name = walk::type_name(&any.type_url);
    if name != want {
        return Err(err(
            path,
            format!("extension type `{name}` is not valid here (expected `{want}`)"),
        ));
    }
    M::decode(any.value.as_slice()).map_err(|e| err(path, format!("cannot decode `{name}`: {e}")))
}

/// A duration field; negative values are invalid.
pub(super) fn duration(d: &Option<PbDuration>, path: &str) -> R<Option<Duration>> {
    let Some(d) = d else { return Ok(None) };
    if d.seconds < 0 || d.nanos < 0 {
        return Err(err(path, "must not be negative"));
    }
    Ok(Some(
        Duration::from_secs(d.seconds as u64) + Duration::from_nanos(d.nanos as u64),
    ))
}

/// A duration in the native syntax.
pub(super) fn native_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us.is_multiple_of(1000) {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

/// A timeout where Envoy's zero means "disabled" but the native field must be positive:
/// the longest duration the native format takes (a year) stands for "never".
pub(super) fn timeout_or_never(d: Duration) -> String {
    if d.is_zero() {
        "8760h".into()
    } else {
        native_duration(d)
    }
}

/// A `socket_address` with an IP address (Envoy resolves no names for listeners, the
/// admin address or STATIC endpoints) and a `port_value`.
pub(super) fn socket_address(a: &Option<Address>, path: &str) -> R<(String, u16)> {
    let sa = match a.as_ref().and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(sa)) => sa,
        _ => return Err(err(path, "a `socket_address` is required")),
    };
    let p = format!("{path}.socket_address");
    let port = match sa.port_specifier {
        Some(socket_address::PortSpecifier::PortValue(v)) => v,
        _ => 0,
    };
    let port =
        u16::try_from(port).map_err(|_| err(format!("{p}.port_value"), "must be at most 65535"))?;
    Ok((sa.address.clone(), port))
}

/// Like [`socket_address`], and the address must be an IP literal.
pub(super) fn ip_socket_address(a: &Option<Address>, path: &str) -> R<(String, u16)> {
    let (host, port) = socket_address(a, path)?;
    if host.parse::<IpAddr>().is_err() {
        return Err(err(
            format!("{path}.socket_address.address"),
            format!("`{host}` is not an IP address"),
        ));
    }
    Ok((host, port))
}

/// `*_headers_to_add` entries.
pub(super) fn header_adds(list: &[HeaderValueOption], path: &str) -> R<Vec<RawHeaderAdd>> {
    list.iter()
        .enumerate()
        .map(|(i, h)| header_add(h, &format!("{path}[{i}]")))
        .collect()
}

pub(super) fn header_add(h: &HeaderValueOption, path: &str) -> R<RawHeaderAdd> {
    let Some(hv) = &h.header else {
        return Err(err(format!("{path}.header"), "is required"));
    };
    let action = HeaderAppendAction::try_from(h.append_action)
        .map_err(|_| err(format!("{path}.append_action"), "unknown value"))?;
    Ok(RawHeaderAdd {
        name: hv.key.clone(),
        value: hv.value.clone(),
        append_action: Some(action.as_str_name().to_string()),
    })
}

/// The header-mutation filter's edit lists, in the native filter's shape.
pub(super) fn mutations(m: &Option<Mutations>, p: &str) -> R<RawHeaderMutation> {
    let mut out = RawHeaderMutation::default();
    let Some(m) = m else { return Ok(out) };
    for (list, field, add, remove) in [
        (
            &m.request_mutations,
            "request_mutations",
            &mut out.request_headers_to_add,
            &mut out.request_headers_to_remove,
        ),
        (
            &m.response_mutations,
            "response_mutations",
            &mut out.response_headers_to_add,
            &mut out.response_headers_to_remove,
        ),
    ] {
        for (k, hm) in list.iter().enumerate() {
            let mp = format!("{p}.{field}[{k}]");
            match &hm.action {
                Some(Action::Append(h)) => add.push(header_add(h, &format!("{mp}.append"))?),
                Some(Action::Remove(name)) => remove.push(name.clone()),
                _ => return Err(err(mp, "set `append` or `remove`")),
            }
        }
    }
    Ok(out)
}
