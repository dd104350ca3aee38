//! Envoy v3 bootstrap files (YAML or JSON) as a config source: control plane only.
//!
//! The text follows the proto3 JSON mapping. It is decoded against the descriptor set
//! that envoy-types ships (`build.rs` copies it to OUT_DIR; decoded once, on the first
//! bootstrap), which handles `Any` with `@type`, durations like `"1s"`, wrappers and
//! enums by name. The walker (`walk`) refuses every set field outside the supported
//! table, naming its path; then the message is transcoded to envoy-types' prost structs
//! and translated (one file per area) into the native raw config, which the native
//! builder checks and turns into a `Snapshot` like any other source. Where a field has
//! an Envoy default, the translation writes that default explicitly, so a bootstrap
//! behaves as under Envoy, not as the native YAML's defaults would.

mod access_log;
mod bootstrap;
mod cluster;
mod convert;
mod dns;
mod ext_authz;
mod ext_proc;
mod fault_cors;
mod hcm;
mod health;
mod istio_stats;
mod lb;
mod listener;
mod local_ratelimit;
mod outlier;
mod peak_ewma;
mod rbac;
mod route;
mod sds;
mod tls;
mod tracer;
mod walk;
mod wasm;
pub mod xds;

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::Value;

use super::build::{ConfigError, ConfigErrors};
use super::locate;
use super::model::Snapshot;

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_types.bin"));

pub(super) fn pool() -> Result<&'static DescriptorPool, String> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut pool =
            DescriptorPool::decode(DESCRIPTORS).map_err(|e| format!("Envoy descriptors: {e}"))?;
        // Istio's stats filter config, which Envoy's API does not have.
        pool.add_file_descriptor_proto(istio_stats::descriptor())
            .map_err(|e| format!("Istio stats descriptor: {e}"))?;
        // Envoy's contrib peak EWMA balancer and filter, which envoy-types lacks.
        for file in peak_ewma::descriptors() {
            pool.add_file_descriptor_proto(file)
                .map_err(|e| format!("peak EWMA descriptor: {e}"))?;
        }
        Ok(pool)
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Keys only an Envoy bootstrap has at the top level.
const ENVOY_KEYS: &[&str] = &[
    "static_resources",
    "dynamic_resources",
    "node",
    "overload_manager",
    "layered_runtime",
    "cluster_manager",
    "stats_sinks",
    "stats_config",
    "tracing",
    "staticResources",
    "dynamicResources",
];

/// Keys only the native format has at the top level.
const NATIVE_KEYS: &[&str] = &["runtime", "listeners", "route_tables", "clusters"];

/// Whether parsed config text is an Envoy bootstrap rather than the native format: it has
/// a bootstrap-only top-level key, or its `admin.address` is an Envoy `Address` object.
pub(crate) fn is_bootstrap(v: &Value) -> bool {
    let Some(top) = v.as_object() else {
        return false;
    };
    if top.keys().any(|k| NATIVE_KEYS.contains(&k.as_str())) {
        return false;
    }
    top.keys().any(|k| ENVOY_KEYS.contains(&k.as_str()))
        || top
            .get("admin")
            .and_then(|a| a.get("address"))
            .is_some_and(Value::is_object)
}

/// A translation error: the Envoy field path and what is wrong.
pub(super) fn err(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        line: None,
        message: message.into(),
    }
}

/// Loads a bootstrap already parsed into JSON (`text` is the source, for line numbers).
pub(crate) fn load(text: &str, mut value: Value) -> Result<Snapshot, ConfigErrors> {
    // With dynamic resources, the snapshot is what xDS would start from: the static
    // resources, with listeners awaiting RDS and clusters awaiting EDS still warming.
    if value.get("dynamic_resources").is_some() {
        if let Some(x) = xds::xds_bootstrap(text)? {
            let dump = xds::static_dump(&x);
            let none = Default::default();
            return xds::assemble(&x, &xds::Dynamic::default(), &none, dump).map(|a| a.snapshot);
        }
    }
    let lines = locate::line_map(text);
    let fail = |mut e: ConfigError| {
        e.line = locate::line_of(&lines, &e.path);
        ConfigErrors(vec![e])
    };
    let pool = pool().map_err(|m| fail(err("(root)", m)))?;
    skip_optional_filters(&mut value, "", pool);
    check_type_urls(&value, "", pool).map_err(fail)?;
    let desc = pool
        .get_message_by_name("envoy.config.bootstrap.v3.Bootstrap")
        .ok_or_else(|| fail(err("(root)", "Bootstrap missing from the descriptors")))?;
    let msg: DynamicMessage = msg_from(desc, &value).map_err(fail)?;
    walk::check(&msg, "").map_err(|(p, m)| fail(err(p, m)))?;
    let typed = msg
        .transcode_to::<envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap>()
        .map_err(|e| fail(err("(root)", format!("cannot transcode: {e}"))))?;
    let tr = bootstrap::translate(&typed, &convert::AdsSecrets::new()).map_err(fail)?;
    let dump = bootstrap::config_dump(&value);
    super::build::build_raw(&tr.raw, dump).map_err(|errors| {
        let mut errors: Vec<ConfigError> = errors
            .into_iter()
            .map(|mut e| {
                e.path = tr.paths.envoy_path(&e.path);
                e.line = locate::line_of(&lines, &e.path);
                e
            })
            .collect();
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        ConfigErrors(errors)
    })
}

/// Decodes the JSON into a `Bootstrap` message, with the failing field's path.
pub(super) fn msg_from(
    desc: prost_reflect::MessageDescriptor,
    value: &Value,
) -> Result<DynamicMessage, ConfigError> {
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(value, &mut track);
    match DynamicMessage::deserialize(desc, de) {
        Ok(m) => Ok(m),
        Err(e) => {
            let path = track.path().to_string();
            Err(err(
                if path == "." { "(root)".into() } else { path },
                e.to_string(),
            ))
        }
    }
}

/// Envoy's rule for HTTP filters marked `is_optional`: one whose type the proxy does not
/// implement is skipped (with a warning) instead of failing the config. A type that is
/// not in Envoy's API at all is still refused (Envoy cannot even parse it).
pub(super) fn skip_optional_filters(v: &mut Value, path: &str, pool: &DescriptorPool) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if k == "http_filters" {
                    if let Value::Array(filters) = child {
                        let mut i = 0;
                        filters.retain(|f| {
                            let keep = !optional_unsupported(f, pool);
                            if !keep {
                                tracing::warn!(
                                    "{p}[{i}]: skipping optional HTTP filter `{}` of type `{}`: not supported by Outrigger",
                                    f.get("name").and_then(serde_json::Value::as_str).unwrap_or(""),
                                    filter_type(f).unwrap_or("")
                                );
                            }
                            i += 1;
                            keep
                        });
                    }
                }
                skip_optional_filters(child, &p, pool);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                skip_optional_filters(child, &format!("{path}[{i}]"), pool);
            }
        }
        _ => {}
    }
}

fn filter_type(f: &Value) -> Option<&str> {
    let t = f.get("typed_config").or_else(|| f.get("typedConfig"))?;
    t.get("@type")?.as_str().map(walk::type_name)
}

fn optional_unsupported(f: &Value, pool: &DescriptorPool) -> bool {
    let optional = f
        .get("is_optional")
        .or_else(|| f.get("isOptional"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    optional
        && filter_type(f).is_some_and(|t| {
            !walk::HTTP_FILTERS.contains(&t) && pool.get_message_by_name(t).is_some()
        })
}

/// Every `@type` must name a message of Envoy's API (else the JSON mapping cannot even
/// decode it); whether Outrigger implements it is the walker's question.
pub(super) fn check_type_urls(
    v: &Value,
    path: &str,
    pool: &DescriptorPool,
) -> Result<(), ConfigError> {
    match v {
        Value::Object(map) => {
            if let Some(t) = map.get("@type") {
                let url = t.as_str().unwrap_or("");
                if pool.get_message_by_name(walk::type_name(url)).is_none() {
                    return Err(err(
                        if path.is_empty() { "(root)" } else { path },
                        format!("unknown extension type `{url}`"),
                    ));
                }
            }
            for (k, child) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                check_type_urls(child, &p, pool)?;
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, c)| check_type_urls(c, &format!("{path}[{i}]"), pool)),
        _ => Ok(()),
    }
}

/// Native field path prefixes and the Envoy paths they came from, so that errors the
/// native builder finds name the bootstrap's fields.
#[derive(Default)]
pub(super) struct PathMap(Vec<(String, String)>);

impl PathMap {
    pub(super) fn add(&mut self, native: String, envoy: String) {
        self.0.push((native, envoy));
    }

    fn envoy_path(&self, native: &str) -> String {
        // The longest native prefix that ends at a path segment boundary.
        let best = self
            .0
            .iter()
            .filter_map(|(n, e)| {
                let rest = native.strip_prefix(n.as_str())?;
                (rest.is_empty() || rest.starts_with(['.', '['])).then_some((n.len(), e, rest))
            })
            .max_by_key(|(len, _, _)| *len);
        match best {
            Some((_, e, rest)) => format!("{e}{rest}"),
            None => native.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(t: &str) -> Value {
        serde_yaml::from_str(t).unwrap()
    }

    #[test]
    fn tells_bootstraps_from_native_files() {
        assert!(is_bootstrap(&yaml("static_resources: {}")));
        assert!(is_bootstrap(&yaml("node: {id: a}")));
        assert!(is_bootstrap(&yaml(
            "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}"
        )));
        assert!(!is_bootstrap(&yaml("admin: {address: 127.0.0.1, port: 1}")));
        assert!(!is_bootstrap(&yaml("listeners: []\nnode: {}")));
        assert!(!is_bootstrap(&yaml("[]")));
    }

    #[test]
    fn native_paths_map_to_the_longest_bootstrap_prefix() {
        let mut m = PathMap::default();
        m.add(
            "listeners[0]".into(),
            "static_resources.listeners[0]".into(),
        );
        m.add("listeners[0].port".into(), "X.address".into());
        assert_eq!(m.envoy_path("listeners[0].port"), "X.address");
        assert_eq!(
            m.envoy_path("listeners[0].name"),
            "static_resources.listeners[0].name"
        );
        // `listeners[0]` is not a prefix of `listeners[01]` at a segment boundary.
        assert_eq!(m.envoy_path("listeners[01]"), "listeners[01]");
        assert_eq!(m.envoy_path("clusters[0]"), "clusters[0]");
    }
}
