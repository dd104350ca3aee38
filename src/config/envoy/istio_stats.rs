//! Istio's `istio.stats` filters (HTTP and network, `type.googleapis.com/stats.PluginConfig`)
//! and the bootstrap node's metadata -> a chain's native `istio_stats`. Control plane only.
//!
//! Envoy's own API has no such message (istio/proxy builds it into Istio's Envoy), so
//! envoy-types does not ship it: [`descriptor`] describes `stats.PluginConfig` as
//! istio/proxy's `config.proto` defines it, and `pool()` adds it to the descriptors the
//! bootstrap is decoded against. The walker then accepts the fields Istio sets and
//! refuses the others (`metrics`, `definitions`) with their path.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{value::Kind, Any, Struct};
use prost_reflect::prost_types::field_descriptor_proto::{Label, Type};
use prost_reflect::prost_types::{
    DescriptorProto, EnumDescriptorProto, EnumValueDescriptorProto, FieldDescriptorProto,
    FileDescriptorProto, MessageOptions,
};
use prost_reflect::{DynamicMessage, Value};

use super::super::raw_istio::{RawIstioStats, RawWorkload};
use super::convert::{Translation, R};
use super::{err, walk};

pub(super) const PLUGIN_CONFIG: &str = "stats.PluginConfig";

pub(super) fn field(
    name: &str,
    number: i32,
    ty: Type,
    type_name: Option<&str>,
    repeated: bool,
) -> FieldDescriptorProto {
    FieldDescriptorProto {
        name: Some(name.into()),
        json_name: Some(json_name(name)),
        number: Some(number),
        label: Some(if repeated {
            Label::Repeated
        } else {
            Label::Optional
        } as i32),
        r#type: Some(ty as i32),
        type_name: type_name.map(Into::into),
        ..Default::default()
    }
}

/// protoc's `json_name`: lowerCamelCase of the field name.
pub(super) fn json_name(name: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in name.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn enumeration(name: &str, values: &[(&str, i32)]) -> EnumDescriptorProto {
    EnumDescriptorProto {
        name: Some(name.into()),
        value: values
            .iter()
            .map(|(n, v)| EnumValueDescriptorProto {
                name: Some((*n).into()),
                number: Some(*v),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// `stats.PluginConfig` and the messages it refers to (istio/proxy
/// `source/extensions/filters/http/istio_stats/config.proto`).
pub(super) fn descriptor() -> FileDescriptorProto {
    let dur = Some(".google.protobuf.Duration");
    let dimensions_entry = DescriptorProto {
        name: Some("DimensionsEntry".into()),
        field: vec![
            field("key", 1, Type::String, None, false),
            field("value", 2, Type::String, None, false),
        ],
        options: Some(MessageOptions {
            map_entry: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let metric_config = DescriptorProto {
        name: Some("MetricConfig".into()),
        field: vec![
            field(
                "dimensions",
                1,
                Type::Message,
                Some(".stats.MetricConfig.DimensionsEntry"),
                true,
            ),
            field("name", 2, Type::String, None, false),
            field("tags_to_remove", 3, Type::String, None, true),
            field("match", 4, Type::String, None, false),
            field("drop", 5, Type::Bool, None, false),
        ],
        nested_type: vec![dimensions_entry],
        ..Default::default()
    };
    let metric_definition = DescriptorProto {
        name: Some("MetricDefinition".into()),
        field: vec![
            field("name", 1, Type::String, None, false),
            field("value", 2, Type::String, None, false),
            field("type", 3, Type::Enum, Some(".stats.MetricType"), false),
        ],
        ..Default::default()
    };
    let plugin_config = DescriptorProto {
        name: Some("PluginConfig".into()),
        field: vec![
            field("disable_host_header_fallback", 6, Type::Bool, None, false),
            field("tcp_reporting_duration", 7, Type::Message, dur, false),
            field(
                "metrics",
                8,
                Type::Message,
                Some(".stats.MetricConfig"),
                true,
            ),
            field(
                "definitions",
                9,
                Type::Message,
                Some(".stats.MetricDefinition"),
                true,
            ),
            field("reporter", 10, Type::Enum, Some(".stats.Reporter"), false),
            field("rescoping_duration", 11, Type::Message, dur, false),
            field("scope_grace_period_duration", 12, Type::Message, dur, false),
        ],
        ..Default::default()
    };
    FileDescriptorProto {
        name: Some("outrigger/istio/stats_config.proto".into()),
        package: Some("stats".into()),
        dependency: vec!["google/protobuf/duration.proto".into()],
        message_type: vec![metric_config, metric_definition, plugin_config],
        enum_type: vec![
            enumeration(
                "MetricType",
                &[("COUNTER", 0), ("GAUGE", 1), ("HISTOGRAM", 2)],
            ),
            enumeration("Reporter", &[("UNSPECIFIED", 0), ("SERVER_GATEWAY", 1)]),
        ],
        syntax: Some("proto3".into()),
        ..Default::default()
    }
}

fn string_of(s: &Struct, key: &str) -> String {
    match s.fields.get(key).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(v)) => v.clone(),
        _ => String::new(),
    }
}

/// This proxy's workload from the node metadata Istio's agent writes.
pub(super) fn workload(node: &Node) -> RawWorkload {
    let Some(m) = &node.metadata else {
        return RawWorkload::default();
    };
    let labels = match m.fields.get("LABELS").and_then(|v| v.kind.as_ref()) {
        Some(Kind::StructValue(s)) => s.clone(),
        _ => Struct::default(),
    };
    RawWorkload {
        name: string_of(m, "WORKLOAD_NAME"),
        namespace: string_of(m, "NAMESPACE"),
        app: string_of(&labels, "app"),
        version: string_of(&labels, "version"),
        canonical_service: string_of(&labels, "service.istio.io/canonical-name"),
        canonical_revision: string_of(&labels, "service.istio.io/canonical-revision"),
        cluster_id: string_of(m, "CLUSTER_ID"),
        mesh_id: string_of(m, "MESH_ID"),
    }
}

/// A `stats.PluginConfig` payload (the walker has refused its unsupported fields).
/// `reporter: UNSPECIFIED` follows the listener's `traffic_direction` as Istio does:
/// INBOUND reports as the destination, anything else as the source.
pub(super) fn translate(any: &Any, path: &str, tx: &Translation) -> R<RawIstioStats> {
    let name = walk::type_name(&any.type_url);
    if name != PLUGIN_CONFIG {
        return Err(err(
            path,
            format!("extension type `{name}` is not valid here (expected `{PLUGIN_CONFIG}`)"),
        ));
    }
    let pool = super::pool().map_err(|m| err(path, m))?;
    let desc = pool
        .get_message_by_name(PLUGIN_CONFIG)
        .ok_or_else(|| err(path, "stats.PluginConfig missing from the descriptors"))?;
    let m = DynamicMessage::decode(desc, any.value.as_slice())
        .map_err(|e| err(path, format!("cannot decode `{name}`: {e}")))?;
    let disable = matches!(
        m.get_field_by_name("disable_host_header_fallback")
            .as_deref(),
        Some(Value::Bool(true))
    );
    let reporter = match m.get_field_by_name("reporter").as_deref() {
        Some(Value::EnumNumber(1)) => "waypoint",
        // Envoy's TrafficDirection: 1 is INBOUND.
        _ if tx.direction == 1 => "destination",
        _ => "source",
    };
    Ok(RawIstioStats {
        reporter: Some(reporter.into()),
        disable_host_header_fallback: Some(disable),
        workload: tx.istio_workload.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_descriptor_joins_the_pool() {
        let pool = super::super::pool().unwrap();
        let m = pool.get_message_by_name(PLUGIN_CONFIG).unwrap();
        assert!(m
            .get_field_by_name("disable_host_header_fallback")
            .is_some());
        assert_eq!(json_name("tcp_reporting_duration"), "tcpReportingDuration");
    }
}
