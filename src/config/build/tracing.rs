//! Building a connection manager's `tracing` (`observe::trace::Tracing`): defaults,
//! checks, and the collector's address from its cluster. Part of `config::build`.

use std::sync::Arc;
use std::time::Duration;

use super::super::model::Cluster;
use super::super::raw_tracing::{RawCustomTag, RawTracing};
use super::Builder;
use crate::observe::trace::{Collector, CustomTag, Propagation, SpanKind, Tracing};

impl Builder {
    pub(super) fn tracing(
        &mut self,
        p: &str,
        raw: &Option<RawTracing>,
        clusters: &[Arc<Cluster>],
    ) -> Option<Arc<Tracing>> {
        let r = raw.as_ref()?;
        let p = format!("{p}.tracing");
        let addr = match clusters.iter().find(|c| c.name == r.collector_cluster) {
            None => {
                self.err(
                    format!("{p}.collector_cluster"),
                    format!("no cluster named `{}`", r.collector_cluster),
                );
                None
            }
            Some(c) => match c.endpoints.first() {
                Some(e) => Some(e.addr),
                None => {
                    self.err(
                        format!("{p}.collector_cluster"),
                        "the collector's cluster needs a static endpoint",
                    );
                    None
                }
            },
        };
        let kind = match r.traffic_direction.as_deref() {
            None | Some("inbound") | Some("unspecified") => SpanKind::Server,
            Some("outbound") => SpanKind::Client,
            Some(o) => {
                self.err(
                    format!("{p}.traffic_direction"),
                    format!("unknown value `{o}` (use inbound or outbound)"),
                );
                SpanKind::Server
            }
        };
        let mut pct = |name: &str, v: Option<f64>| -> u32 {
            match v {
                None => 10_000,
                Some(v) if (0.0..=100.0).contains(&v) => (v * 100.0).round() as u32,
                Some(_) => {
                    self.err(format!("{p}.{name}"), "must be between 0 and 100");
                    10_000
                }
            }
        };
        let random_sampling = pct("random_sampling", r.random_sampling);
        let client_sampling = pct("client_sampling", r.client_sampling);
        let overall_sampling = pct("overall_sampling", r.overall_sampling);
        let mut propagation = Propagation::default();
        match &r.propagation {
            None => propagation.w3c = true,
            Some(list) => {
                for (k, f) in list.iter().enumerate() {
                    match f.as_str() {
                        "w3c" => propagation.w3c = true,
                        "b3" => propagation.b3 = true,
                        "b3_single" => propagation.b3_single = true,
                        o => self.err(
                            format!("{p}.propagation[{k}]"),
                            format!("unknown format `{o}` (use w3c, b3 or b3_single)"),
                        ),
                    }
                }
            }
        }
        let custom_tags = r
            .custom_tags
            .iter()
            .enumerate()
            .filter_map(|(k, t)| self.custom_tag(&format!("{p}.custom_tags[{k}]"), t))
            .collect();
        let flush_interval = self.positive_duration(
            format!("{p}.flush_interval"),
            &r.flush_interval,
            Duration::from_secs(1),
        );
        let batch_spans = r.batch_spans.unwrap_or(512);
        let queue_spans = r.queue_spans.unwrap_or(4096);
        if batch_spans == 0 {
            self.err(format!("{p}.batch_spans"), "must be greater than zero");
        }
        if queue_spans == 0 {
            self.err(format!("{p}.queue_spans"), "must be greater than zero");
        }
        let grpc = match r.protocol.as_deref() {
            None | Some("http") => false,
            Some("grpc") => true,
            Some(o) => {
                self.err(
                    format!("{p}.protocol"),
                    format!("unknown value `{o}` (use http or grpc)"),
                );
                false
            }
        };
        let path = r.path.clone().unwrap_or_else(|| "/v1/traces".into());
        if !path.starts_with('/') || http::HeaderValue::from_str(&path).is_err() {
            self.err(format!("{p}.path"), "must be an absolute path");
        }
        let authority = r
            .authority
            .clone()
            .unwrap_or_else(|| r.collector_cluster.clone());
        if http::HeaderValue::from_str(&authority).is_err() {
            self.err(format!("{p}.authority"), "must be a header value");
        }
        Some(Arc::new(Tracing {
            kind,
            random_sampling,
            client_sampling,
            overall_sampling,
            propagation,
            custom_tags,
            max_path_tag_length: r.max_path_tag_length.unwrap_or(256),
            node_id: r.node_id.clone().unwrap_or_default(),
            zone: r.zone.clone().unwrap_or_default(),
            collector: Arc::new(Collector {
                addr: addr?,
                authority,
                path,
                grpc,
                service_name: r.service_name.clone().unwrap_or_else(|| "outrigger".into()),
                batch_spans: batch_spans.max(1),
                flush_interval,
                queue_spans: queue_spans.max(1),
            }),
        }))
    }

    fn custom_tag(&mut self, p: &str, t: &RawCustomTag) -> Option<CustomTag> {
        if t.tag.is_empty() {
            self.err(format!("{p}.tag"), "must not be empty");
            return None;
        }
        match (&t.literal, &t.request_header) {
            (Some(v), None) if t.default_value.is_none() => Some(CustomTag::Literal {
                tag: t.tag.clone(),
                value: v.clone(),
            }),
            (None, Some(h)) if !h.is_empty() => Some(CustomTag::RequestHeader {
                tag: t.tag.clone(),
                name: h.to_ascii_lowercase(),
                default: t.default_value.clone(),
            }),
            _ => {
                self.err(
                    p.to_string(),
                    "set one of `literal` and `request_header` (`default_value` goes with `request_header`)",
                );
                None
            }
        }
    }
}
