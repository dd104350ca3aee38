//! The wasm filter's configuration: native YAML (`RawWasm`) and the checked,
//! loaded plugin. Envoy's `envoy.extensions.filters.http.wasm.v3.Wasm` is translated
//! into `RawWasm` (`config/envoy/wasm.rs`).

use std::sync::Arc;

use serde::Deserialize;

use super::vm::{self, FailurePolicy, Plugin, Vm};

/// Default `max_memory_bytes`: 64 MiB of linear memory per VM (each worker has one VM
/// per plugin).
pub const DEFAULT_MAX_MEMORY: usize = 64 << 20;
/// Default `max_fuel_per_call`: about a hundred million Wasm instructions per callback,
/// a fraction of a second of CPU; a filter past it is stopped (a trap).
pub const DEFAULT_MAX_FUEL: u64 = 100_000_000;

/// `wasm:` of an HTTP filter.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWasm {
    /// The plugin's name (Envoy's `PluginConfig.name`; the `plugin_name` property).
    #[serde(default)]
    pub name: String,
    /// `PluginConfig.root_id`.
    #[serde(default)]
    pub root_id: String,
    /// `VmConfig.vm_id` (the shared-data namespace).
    #[serde(default)]
    pub vm_id: String,
    pub code: RawCode,
    /// Handed to `proxy_on_vm_start` (`VmConfig.configuration`).
    #[serde(default)]
    pub vm_configuration: String,
    /// Handed to `proxy_on_configure` (`PluginConfig.configuration`).
    #[serde(default)]
    pub configuration: String,
    /// `fail_closed` (default), `fail_open` or `fail_reload`.
    #[serde(default)]
    pub failure_policy: Option<String>,
    /// Envoy's deprecated `PluginConfig.fail_open`: the request whose callback failed
    /// continues too (not only the later ones); without `failure_policy` it means
    /// `fail_open`.
    #[serde(default)]
    pub fail_open: bool,
    #[serde(default)]
    pub max_memory_bytes: Option<u64>,
    #[serde(default)]
    pub max_fuel_per_call: Option<u64>,
}

/// Where the module comes from: a file or inline WebAssembly.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCode {
    #[serde(default)]
    pub filename: Option<String>,
    /// The module's bytes as a string (Envoy's `inline_string`).
    #[serde(default)]
    pub inline_string: Option<String>,
    /// Envoy's `inline_bytes` (set by the Envoy translation only).
    #[serde(skip)]
    pub inline_bytes: Option<Vec<u8>>,
}

/// Loads and checks a plugin; `Err((field, reason))`.
pub fn build(p: &str, raw: &RawWasm) -> Result<Arc<Plugin>, (String, String)> {
    let e = |f: &str, m: String| (format!("{p}.{f}"), m);
    let failure_policy = match raw.failure_policy.as_deref() {
        None if raw.fail_open => FailurePolicy::FailOpen,
        None | Some("fail_closed") => FailurePolicy::FailClosed,
        Some("fail_open") => FailurePolicy::FailOpen,
        Some("fail_reload") => FailurePolicy::FailReload,
        Some(o) => {
            return Err(e(
                "failure_policy",
                format!("unknown `{o}` (fail_closed, fail_open, fail_reload)"),
            ))
        }
    };
    let max_memory_bytes = raw.max_memory_bytes.unwrap_or(DEFAULT_MAX_MEMORY as u64);
    if !(65536..=(4u64 << 30)).contains(&max_memory_bytes) {
        return Err(e(
            "max_memory_bytes",
            "must be from 65536 (one Wasm page) to 4 GiB".into(),
        ));
    }
    let max_fuel_per_call = raw.max_fuel_per_call.unwrap_or(DEFAULT_MAX_FUEL);
    if max_fuel_per_call == 0 {
        return Err(e("max_fuel_per_call", "must be positive".into()));
    }
    let code = match (
        &raw.code.filename,
        &raw.code.inline_string,
        &raw.code.inline_bytes,
    ) {
        (Some(f), None, None) => std::fs::read(f)
            .map_err(|err| e("code.filename", format!("cannot read `{f}`: {err}")))?,
        (None, Some(s), None) => s.clone().into_bytes(),
        (None, None, Some(b)) => b.clone(),
        _ => {
            return Err(e(
                "code",
                "set exactly one of `filename` and `inline_string`".into(),
            ))
        }
    };
    let module = vm::compile(&code).map_err(|m| e("code", m))?;
    let plugin = Arc::new(Plugin {
        name: raw.name.clone(),
        root_id: raw.root_id.clone(),
        vm_id: raw.vm_id.clone(),
        vm_configuration: raw.vm_configuration.clone().into_bytes(),
        configuration: raw.configuration.clone().into_bytes(),
        failure_policy,
        fail_open_failed_request: raw.fail_open,
        max_memory_bytes: max_memory_bytes as usize,
        max_fuel_per_call,
        request_body: module.get_export("proxy_on_request_body").is_some(),
        response_body: module.get_export("proxy_on_response_body").is_some(),
        request_trailers: module.get_export("proxy_on_request_trailers").is_some(),
        response_trailers: module.get_export("proxy_on_response_trailers").is_some(),
        module,
    });
    // Start it once here: its imports, `proxy_on_vm_start` and `proxy_on_configure`
    // are checked before the config is taken (Envoy starts its base VM at load too).
    Vm::start(&plugin).map_err(|m| e("code", m))?;
    Ok(plugin)
}
