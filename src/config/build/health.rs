//! A cluster's raw `health_checks` -> checked [`HealthCheck`]s, with Envoy's required
//! fields and defaults. Control plane only.

use std::time::Duration;

use super::super::raw_health::{RawHealthCheck, RawPayload};
use super::super::raw_match::RawRange;
use super::Builder;
use crate::config::{CheckKind, GrpcCheck, HealthCheck, HttpCheck, TcpCheck};

/// Envoy's default `no_traffic_interval`.
const NO_TRAFFIC_INTERVAL: Duration = Duration::from_secs(60);

/// The methods Envoy's `RequestMethod` names (CONNECT is refused by Envoy for checks).
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH",
];

impl Builder {
    pub(super) fn health_checks(&mut self, p: &str, list: &[RawHealthCheck]) -> Vec<HealthCheck> {
        if list.len() > 1 {
            self.err(
                format!("{p}.health_checks[1]"),
                "Outrigger runs one health checker per cluster",
            );
        }
        list.iter()
            .enumerate()
            .filter_map(|(i, h)| self.health_check(&format!("{p}.health_checks[{i}]"), h))
            .collect()
    }

    fn health_check(&mut self, p: &str, h: &RawHealthCheck) -> Option<HealthCheck> {
        let required = |b: &mut Builder, field: &str, v: &Option<String>| -> Option<Duration> {
            if v.is_none() {
                b.err(format!("{p}.{field}"), "is required");
                return None;
            }
            Some(b.positive_duration(format!("{p}.{field}"), v, Duration::from_secs(1)))
        };
        let timeout = required(self, "timeout", &h.timeout);
        let interval = required(self, "interval", &h.interval);
        let mut threshold = |field: &str, v: Option<u32>| match v {
            None => {
                self.err(format!("{p}.{field}"), "is required");
                None
            }
            Some(n) => Some(n.max(1)),
        };
        let unhealthy_threshold = threshold("unhealthy_threshold", h.unhealthy_threshold);
        let healthy_threshold = threshold("healthy_threshold", h.healthy_threshold);
        let d = |b: &mut Builder, field: &str, v: &Option<String>, default: Duration| {
            b.duration(format!("{p}.{field}"), v, default)
        };
        let initial_jitter = d(self, "initial_jitter", &h.initial_jitter, Duration::ZERO);
        let interval_jitter = d(self, "interval_jitter", &h.interval_jitter, Duration::ZERO);
        let no_traffic_interval = self.positive_duration(
            format!("{p}.no_traffic_interval"),
            &h.no_traffic_interval,
            NO_TRAFFIC_INTERVAL,
        );
        let no_traffic_healthy_interval = self.positive_duration(
            format!("{p}.no_traffic_healthy_interval"),
            &h.no_traffic_healthy_interval,
            no_traffic_interval,
        );
        let base = interval.unwrap_or(Duration::from_secs(1));
        let unhealthy_interval = self.positive_duration(
            format!("{p}.unhealthy_interval"),
            &h.unhealthy_interval,
            base,
        );
        let unhealthy_edge_interval = self.positive_duration(
            format!("{p}.unhealthy_edge_interval"),
            &h.unhealthy_edge_interval,
            unhealthy_interval,
        );
        let healthy_edge_interval = self.positive_duration(
            format!("{p}.healthy_edge_interval"),
            &h.healthy_edge_interval,
            base,
        );
        let kinds = [
            h.http_health_check.is_some(),
            h.tcp_health_check.is_some(),
            h.grpc_health_check.is_some(),
        ];
        match kinds.iter().filter(|k| **k).count() {
            1 => {}
            0 => {
                self.err(
                    p.to_string(),
                    "set one of `http_health_check`, `tcp_health_check`, `grpc_health_check`",
                );
                return None;
            }
            _ => {
                self.err(p.to_string(), "set only one kind of health check");
                return None;
            }
        }
        let kind = if let Some(x) = &h.http_health_check {
            let hp = format!("{p}.http_health_check");
            let path = x.path.clone().unwrap_or_default();
            if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                self.err(format!("{hp}.path"), "must be a path starting with `/`");
            }
            let method = x.method.clone().unwrap_or_else(|| "GET".into());
            if !METHODS.contains(&method.as_str()) {
                self.err(
                    format!("{hp}.method"),
                    format!("`{method}` is not a method a health check may use"),
                );
            }
            if let Some(host) = &x.host {
                if host.bytes().any(|b| b <= b' ' || b == 0x7f) {
                    self.err(format!("{hp}.host"), "must be a valid Host value");
                }
            }
            let mut expected =
                self.status_ranges(&format!("{hp}.expected_statuses"), &x.expected_statuses);
            if expected.is_empty() {
                expected.push((200, 201));
            }
            let retriable =
                self.status_ranges(&format!("{hp}.retriable_statuses"), &x.retriable_statuses);
            CheckKind::Http(HttpCheck {
                host: x.host.clone().filter(|h| !h.is_empty()),
                path,
                method,
                expected_statuses: expected,
                retriable_statuses: retriable,
            })
        } else if let Some(x) = &h.tcp_health_check {
            let tp = format!("{p}.tcp_health_check");
            let send = x
                .send
                .as_ref()
                .map(|s| self.payload(&format!("{tp}.send.text"), s))
                .unwrap_or_default();
            let receive = x
                .receive
                .iter()
                .enumerate()
                .map(|(i, r)| self.payload(&format!("{tp}.receive[{i}].text"), r))
                .filter(|r| !r.is_empty())
                .collect();
            CheckKind::Tcp(TcpCheck { send, receive })
        } else if let Some(x) = &h.grpc_health_check {
            let gp = format!("{p}.grpc_health_check");
            let authority = x.authority.clone().filter(|a| !a.is_empty());
            if let Some(a) = &authority {
                if a.bytes().any(|b| b <= b' ' || b == 0x7f) {
                    self.err(
                        format!("{gp}.authority"),
                        "must be a valid :authority value",
                    );
                }
            }
            let mut initial_metadata = Vec::new();
            for (i, m) in x.initial_metadata.iter().enumerate() {
                let key = m.key.to_ascii_lowercase();
                let reserved =
                    key.starts_with(':') || matches!(key.as_str(), "host" | "content-type" | "te");
                if http::HeaderName::from_bytes(key.as_bytes()).is_err() || reserved {
                    self.err(
                        format!("{gp}.initial_metadata[{i}].key"),
                        "must be a header name other than a pseudo-header, host, content-type or te",
                    );
                    continue;
                }
                if http::HeaderValue::from_str(&m.value).is_err() {
                    self.err(
                        format!("{gp}.initial_metadata[{i}].value"),
                        "must be a valid header value",
                    );
                    continue;
                }
                initial_metadata.push((key, m.value.clone()));
            }
            CheckKind::Grpc(GrpcCheck {
                service_name: x.service_name.clone().unwrap_or_default(),
                authority,
                initial_metadata,
            })
        } else {
            return None;
        };
        Some(HealthCheck {
            timeout: timeout?,
            interval: interval?,
            initial_jitter,
            interval_jitter,
            interval_jitter_percent: h.interval_jitter_percent.unwrap_or(0),
            unhealthy_threshold: unhealthy_threshold?,
            healthy_threshold: healthy_threshold?,
            reuse_connection: h.reuse_connection.unwrap_or(true),
            no_traffic_interval,
            no_traffic_healthy_interval,
            unhealthy_interval,
            unhealthy_edge_interval,
            healthy_edge_interval,
            kind,
        })
    }

    /// Envoy's `Int64Range` status lists: `100 <= start < end <= 600`.
    fn status_ranges(&mut self, p: &str, list: &[RawRange]) -> Vec<(u16, u16)> {
        list.iter()
            .enumerate()
            .filter_map(|(i, r)| {
                if r.start < 100 || r.end > 600 || r.start >= r.end {
                    self.err(
                        format!("{p}[{i}]"),
                        "must have 100 <= start < end <= 600 (end is exclusive)",
                    );
                    return None;
                }
                Some((r.start as u16, r.end as u16))
            })
            .collect()
    }

    /// A hex `text` payload.
    fn payload(&mut self, p: &str, v: &RawPayload) -> Vec<u8> {
        match hex_decode(&v.text) {
            Some(b) => b,
            None => {
                self.err(p.to_string(), "must be hex digits, two per byte");
                Vec::new()
            }
        }
    }
}

/// Hex digits, two per byte (either case).
pub(crate) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Some(digit(*hi)? << 4 | digit(*lo)?),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::hex_decode;

    #[test]
    fn hex_payloads() {
        assert_eq!(hex_decode("50494e47"), Some(b"PING".to_vec()));
        assert_eq!(hex_decode("0aFF"), Some(vec![10, 255]));
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
        assert_eq!(hex_decode(""), Some(vec![]));
    }
}
