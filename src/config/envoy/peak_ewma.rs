//! Envoy's contrib peak EWMA load balancer
//! (`envoy.extensions.load_balancing_policies.peak_ewma.v3alpha.PeakEwma`, in
//! `load_balancing_policy`) and the HTTP filter it goes with
//! (`envoy.extensions.filters.http.peak_ewma.v3alpha.PeakEwmaConfig`) -> the native
//! `lb_policy: peak_ewma` and its `peak_ewma_lb_config`. Control plane only.
//!
//! The messages are in Envoy's contrib API, which envoy-types does not ship (and which
//! Envoy's release binary does not build: only its contrib image does), so
//! [`descriptors`] describes them as `api/contrib/envoy/extensions/.../peak_ewma.proto`
//! defines them, and `pool()` adds them to the descriptors a bootstrap is decoded
//! against; the walker checks their fields like any other.
//!
//! Envoy's filter stamps each response's time to first byte on the host for its
//! balancer; Outrigger's router measures every try itself, so the filter is accepted
//! and adds nothing to the chain. `aggregation_interval` and `max_samples_per_host`
//! size Envoy's hand-over of samples from its workers to its main thread; Outrigger's
//! estimates are per core and take each sample at once, so both are accepted and have
//! no effect.

use envoy_types::pb::google::protobuf::{Any, DoubleValue, Duration as PbDuration, UInt32Value};
use prost_reflect::prost_types::field_descriptor_proto::Type;
use prost_reflect::prost_types::{DescriptorProto, FileDescriptorProto};

use super::super::raw::RawPeakEwma;
use super::convert::{duration, native_duration, payload, R};
use super::err;
use super::istio_stats::field;

pub(super) const PEAK_EWMA: &str =
    "envoy.extensions.load_balancing_policies.peak_ewma.v3alpha.PeakEwma";
pub(super) const FILTER: &str = "envoy.extensions.filters.http.peak_ewma.v3alpha.PeakEwmaConfig";

/// The contrib `PeakEwma` message (field numbers and types as its proto has them).
#[derive(Clone, PartialEq, prost::Message)]
struct PbPeakEwma {
    #[prost(message, optional, tag = "1")]
    decay_time: Option<PbDuration>,
    #[prost(message, optional, tag = "2")]
    aggregation_interval: Option<PbDuration>,
    #[prost(message, optional, tag = "3")]
    max_samples_per_host: Option<UInt32Value>,
    #[prost(message, optional, tag = "4")]
    default_rtt: Option<PbDuration>,
    #[prost(message, optional, tag = "5")]
    penalty_value: Option<DoubleValue>,
}

/// The two contrib files, for the descriptor pool.
pub(super) fn descriptors() -> [FileDescriptorProto; 2] {
    let dur = Some(".google.protobuf.Duration");
    let lb = DescriptorProto {
        name: Some("PeakEwma".into()),
        field: vec![
            field("decay_time", 1, Type::Message, dur, false),
            field("aggregation_interval", 2, Type::Message, dur, false),
            field(
                "max_samples_per_host",
                3,
                Type::Message,
                Some(".google.protobuf.UInt32Value"),
                false,
            ),
            field("default_rtt", 4, Type::Message, dur, false),
            field(
                "penalty_value",
                5,
                Type::Message,
                Some(".google.protobuf.DoubleValue"),
                false,
            ),
        ],
        ..Default::default()
    };
    let filter = DescriptorProto {
        name: Some("PeakEwmaConfig".into()),
        ..Default::default()
    };
    [
        FileDescriptorProto {
            name: Some(
                "contrib/envoy/extensions/load_balancing_policies/peak_ewma/v3alpha/peak_ewma.proto"
                    .into(),
            ),
            package: Some("envoy.extensions.load_balancing_policies.peak_ewma.v3alpha".into()),
            dependency: vec![
                "google/protobuf/duration.proto".into(),
                "google/protobuf/wrappers.proto".into(),
            ],
            message_type: vec![lb],
            syntax: Some("proto3".into()),
            ..Default::default()
        },
        FileDescriptorProto {
            name: Some("contrib/envoy/extensions/filters/http/peak_ewma/v3alpha/peak_ewma.proto".into()),
            package: Some("envoy.extensions.filters.http.peak_ewma.v3alpha".into()),
            message_type: vec![filter],
            syntax: Some("proto3".into()),
            ..Default::default()
        },
    ]
}

/// A `PeakEwma` payload as the native block: `decay_time` (10s) and `default_rtt`
/// (10ms) must be positive, `penalty_value` (1e6) above 0 (the native builder checks).
pub(super) fn translate(any: &Any, path: &str) -> R<RawPeakEwma> {
    let m: PbPeakEwma = payload(any, PEAK_EWMA, path)?;
    duration(
        &m.aggregation_interval,
        &format!("{path}.aggregation_interval"),
    )?;
    let positive = |d: &Option<PbDuration>, name: &str| -> R<Option<String>> {
        let at = format!("{path}.{name}");
        match duration(d, &at)? {
            Some(d) if d.is_zero() => Err(err(at, "must be greater than zero")),
            d => Ok(d.map(native_duration)),
        }
    };
    Ok(RawPeakEwma {
        decay_time: positive(&m.decay_time, "decay_time")?,
        default_rtt: positive(&m.default_rtt, "default_rtt")?,
        penalty_value: m.penalty_value.map(|v| v.value),
    })
}
