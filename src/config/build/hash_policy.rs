//! Building a route's `hash_policy` from the raw YAML (Envoy's `RouteAction.HashPolicy`):
//! what a ring hash or Maglev cluster hashes for each request. Part of `config::build`.

use std::time::Duration;

use super::super::model::{HashKind, HashPolicy};
use super::super::raw_route::RawHashPolicy;
use super::Builder;

impl Builder {
    pub(super) fn hash_policies(&mut self, p: &str, raw: &[RawHashPolicy]) -> Vec<HashPolicy> {
        let mut out = Vec::with_capacity(raw.len());
        for (i, h) in raw.iter().enumerate() {
            let hp = format!("{p}.hash_policy[{i}]");
            let set = usize::from(h.header.is_some())
                + usize::from(h.cookie.is_some())
                + usize::from(h.connection_properties.is_some())
                + usize::from(h.query_parameter.is_some());
            if set != 1 {
                self.err(
                    hp,
                    "set exactly one of `header`, `cookie`, `connection_properties` and `query_parameter`",
                );
                continue;
            }
            let kind = if let Some(hd) = &h.header {
                if hd.header_name.is_empty() {
                    self.err(format!("{hp}.header.header_name"), "must not be empty");
                    continue;
                }
                HashKind::Header(hd.header_name.to_ascii_lowercase())
            } else if let Some(c) = &h.cookie {
                if c.name.is_empty() {
                    self.err(format!("{hp}.cookie.name"), "must not be empty");
                    continue;
                }
                let ttl = c
                    .ttl
                    .as_ref()
                    .map(|_| self.duration(format!("{hp}.cookie.ttl"), &c.ttl, Duration::ZERO));
                HashKind::Cookie {
                    name: c.name.clone(),
                    ttl,
                    path: c.path.clone().unwrap_or_default(),
                }
            } else if let Some(c) = &h.connection_properties {
                // Envoy adds no hash method for `source_ip: false`.
                if !c.source_ip {
                    continue;
                }
                HashKind::SourceIp
            } else if let Some(q) = &h.query_parameter {
                if q.name.is_empty() {
                    self.err(format!("{hp}.query_parameter.name"), "must not be empty");
                    continue;
                }
                HashKind::QueryParameter(q.name.clone())
            } else {
                continue;
            };
            out.push(HashPolicy {
                kind,
                terminal: h.terminal,
            });
        }
        out
    }
}
