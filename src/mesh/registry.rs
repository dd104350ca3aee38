//! Workload self-registration (for hosts without Kubernetes): a workload, or the agent
//! beside it, registers itself on the control plane's admin port and keeps the
//! registration alive with heartbeats; one that stops beating expires and leaves the
//! mesh. A registered workload is a WorkloadEntry like one from the directory
//! (ServiceEntries select it by its labels), checked with the directory's resources.
//!
//! ```text
//! PUT    /workloads/NAMESPACE/NAME?ttl=30s   body: a WorkloadEntry spec (JSON or YAML)
//! DELETE /workloads/NAMESPACE/NAME
//! GET    /workloads                          what is registered, with each TTL left
//! ```
//!
//! A PUT is the heartbeat too: the same spec again only renews the TTL (nothing is
//! pushed); a changed spec is applied at once. The TTL is 30 s unless `?ttl=` says
//! otherwise (1 s to 1 h). With `--tokens`, a request needs `authorization: Bearer
//! TOKEN` for the namespace (and the spec's `serviceAccount`, which defaults to the
//! token's), as the ADS stream does.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::istio::{Metadata, Resource, Spec, WorkloadEntry};

pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
const MIN_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(3600);
/// The most workloads the registry holds: a caller cannot grow it without end.
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Clone, Default)]
pub struct Registry {
    entries: BTreeMap<(String, String), Entry>,
}

#[derive(Clone)]
struct Entry {
    spec: WorkloadEntry,
    /// `None`: kept in etcd under a lease, which expires it there.
    expires: Option<Instant>,
}

impl Registry {
    pub fn get(&self, namespace: &str, name: &str) -> Option<&WorkloadEntry> {
        self.entries
            .get(&(namespace.to_string(), name.to_string()))
            .map(|e| &e.spec)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds or replaces a workload; `ttl` `None` for one etcd expires.
    pub fn put(&mut self, namespace: &str, name: &str, spec: WorkloadEntry, ttl: Option<Duration>) {
        let expires = ttl.map(|t| Instant::now() + t);
        self.entries.insert(
            (namespace.to_string(), name.to_string()),
            Entry { spec, expires },
        );
    }

    /// Pushes the expiry of a registered workload out to `ttl` from now.
    pub fn renew(&mut self, namespace: &str, name: &str, ttl: Duration) {
        if let Some(e) = self
            .entries
            .get_mut(&(namespace.to_string(), name.to_string()))
        {
            e.expires = Some(Instant::now() + ttl);
        }
    }

    pub fn remove(&mut self, namespace: &str, name: &str) -> bool {
        self.entries
            .remove(&(namespace.to_string(), name.to_string()))
            .is_some()
    }

    /// Removes the workloads expired by `now`; returns them as `NAMESPACE/NAME`.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let gone: Vec<(String, String)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.expires.is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            self.entries.remove(k);
        }
        gone.into_iter()
            .map(|(ns, n)| format!("{ns}/{n}"))
            .collect()
    }

    pub fn next_expiry(&self) -> Option<Instant> {
        self.entries.values().filter_map(|e| e.expires).min()
    }

    /// The registered workloads as resources, for the mesh's build.
    pub fn resources(&self) -> Vec<Resource> {
        self.entries
            .iter()
            .map(|((ns, name), e)| Resource {
                meta: Metadata {
                    name: name.clone(),
                    namespace: ns.clone(),
                    ..Default::default()
                },
                spec: Spec::WorkloadEntry(e.spec.clone()),
                origin: format!("registry (PUT /workloads/{ns}/{name})"),
            })
            .collect()
    }

    /// `GET /workloads`.
    pub fn status(&self) -> Value {
        let now = Instant::now();
        let list: Vec<Value> = self
            .entries
            .iter()
            .map(|((ns, name), e)| {
                json!({
                    "namespace": ns,
                    "name": name,
                    "address": e.spec.address,
                    "labels": e.spec.labels,
                    "serviceAccount": e.spec.service_account,
                    "ttl_left_ms": e.expires.map(|t| t.saturating_duration_since(now).as_millis() as u64),
                })
            })
            .collect();
        json!({ "workloads": list })
    }
}

/// The etcd key of a registered workload under `prefix`.
pub fn etcd_key(prefix: &str, namespace: &str, name: &str) -> String {
    format!("{prefix}{namespace}/{name}")
}

/// The value stored for a workload in etcd: its spec and TTL.
pub fn etcd_value(spec: &WorkloadEntry, ttl: Duration) -> String {
    json!({"spec": spec, "ttl_s": ttl.as_secs()}).to_string()
}

/// The registry as etcd holds it: each key under `prefix` a workload (its expiry is
/// etcd's lease). A value that does not read is skipped, with a warning.
pub fn from_etcd(prefix: &str, kvs: Vec<(String, String)>) -> Registry {
    let mut r = Registry::default();
    for (key, value) in kvs {
        let Some((ns, name)) = key.strip_prefix(prefix).and_then(|k| k.split_once('/')) else {
            continue;
        };
        let spec = serde_json::from_str::<Value>(&value)
            .ok()
            .and_then(|v| serde_json::from_value::<WorkloadEntry>(v.get("spec")?.clone()).ok());
        match spec {
            Some(spec) => r.put(ns, name, spec, None),
            None => tracing::warn!(key = %key, "a registration in etcd does not read; skipped"),
        }
    }
    r
}

/// `NAMESPACE/NAME` of a `/workloads/NAMESPACE/NAME` path (names as Kubernetes allows:
/// lower-case letters, digits, `-` and `.`).
pub fn target(path: &str) -> Result<(String, String), String> {
    let rest = path
        .strip_prefix("/workloads/")
        .ok_or("the path is /workloads/NAMESPACE/NAME")?;
    let (ns, name) = rest
        .split_once('/')
        .ok_or("the path is /workloads/NAMESPACE/NAME")?;
    for (what, v) in [("namespace", ns), ("name", name)] {
        let ok = !v.is_empty()
            && v.len() <= 253
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !ok {
            return Err(format!(
                "{what} `{v}`: lower-case letters, digits, `-` and `.` only"
            ));
        }
    }
    Ok((ns.to_string(), name.to_string()))
}

/// The TTL of a query string (`ttl=30s`).
pub fn ttl(query: &str) -> Result<Duration, String> {
    let Some(v) = query.split('&').find_map(|kv| kv.strip_prefix("ttl=")) else {
        return Ok(DEFAULT_TTL);
    };
    let d = crate::config::duration::parse_duration(v).map_err(|e| format!("ttl: {e}"))?;
    if !(MIN_TTL..=MAX_TTL).contains(&d) {
        return Err(format!("ttl: `{v}` is not between 1s and 1h"));
    }
    Ok(d)
}

/// A WorkloadEntry spec from a request body (JSON or YAML), its field in errors.
pub fn spec(body: &[u8]) -> Result<WorkloadEntry, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
    let de = serde_yaml::Deserializer::from_str(text);
    let w: WorkloadEntry = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!("spec: {}", e.inner())
        } else {
            format!("spec.{path}: {}", e.inner())
        }
    })?;
    if w.address.is_empty() {
        return Err("spec.address: missing".into());
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_and_bad_ones_named() {
        assert_eq!(
            target("/workloads/demo/vm-1").unwrap(),
            ("demo".to_string(), "vm-1".to_string())
        );
        assert!(target("/workloads/demo").is_err());
        assert!(target("/workloads/Demo/x")
            .unwrap_err()
            .contains("namespace `Demo`"));
        assert_eq!(ttl("").unwrap(), DEFAULT_TTL);
        assert_eq!(ttl("ttl=5s").unwrap(), Duration::from_secs(5));
        assert!(ttl("ttl=2h").unwrap_err().contains("between"));
        let w =
            spec(br#"{"address": "10.0.0.7", "labels": {"app": "vm"}, "ports": {"http": 8080}}"#)
                .unwrap();
        assert_eq!(w.ports["http"], 8080);
        assert!(spec(b"{labels: {app: vm}}")
            .unwrap_err()
            .contains("spec.address"));
        assert!(spec(b"{address: 1.2.3.4, color: red}")
            .unwrap_err()
            .contains("unknown field `color`"));
    }

    #[test]
    fn entries_expire_unless_renewed() {
        let mut r = Registry::default();
        let w = WorkloadEntry {
            address: "10.0.0.1".into(),
            ..Default::default()
        };
        r.put("demo", "a", w.clone(), Some(Duration::from_millis(0)));
        r.put("demo", "b", w.clone(), Some(Duration::from_secs(60)));
        r.put("demo", "c", w.clone(), None);
        r.renew("demo", "b", Duration::from_secs(60));
        assert_eq!(r.expire(Instant::now()), ["demo/a"]);
        assert_eq!(r.resources().len(), 2);
        let stored = etcd_value(&w, Duration::from_secs(5));
        let back = from_etcd("/r/", vec![("/r/demo/x".into(), stored)]);
        assert_eq!(back.get("demo", "x"), Some(&w));
        assert!(r.next_expiry().is_some());
    }
}
