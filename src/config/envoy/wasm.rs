//! Envoy's proxy-wasm HTTP filter (`envoy.extensions.filters.http.wasm.v3.Wasm`) ->
//! the native `wasm` filter config. Control plane only.
//!
//! Any runtime Envoy names (`envoy.wasm.runtime.v8`, `.wasmtime`, `.wamr`, or none)
//! runs the module on wasmtime; `envoy.wasm.runtime.null` (code linked into Envoy) is
//! refused. The code must be local (`remote` is refused by the walker); the
//! configurations must be a `StringValue` or `BytesValue` (`Struct` is refused).

use envoy_types::pb::envoy::config::core::v3::{async_data_source, data_source};
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::wasm::v3::{plugin_config, FailurePolicy};
use envoy_types::pb::google::protobuf::Any;

use super::convert::{payload, R};
use super::err;
use crate::wasm::config::{RawCode, RawWasm};

pub(super) const WASM: &str = "envoy.extensions.filters.http.wasm.v3.Wasm";

/// The runtimes whose modules run on wasmtime here.
const RUNTIMES: [&str; 5] = [
    "",
    "envoy.wasm.runtime.v8",
    "envoy.wasm.runtime.wasmtime",
    "envoy.wasm.runtime.wamr",
    "envoy.wasm.runtime.wavm",
];

/// A `configuration` Any: a `StringValue`'s or `BytesValue`'s content, as Envoy hands
/// them to the plugin.
fn configuration(any: &Option<Any>, p: &str) -> R<String> {
    let Some(any) = any else {
        return Ok(String::new());
    };
    match super::walk::type_name(&any.type_url) {
        "google.protobuf.StringValue" => payload::<String>(any, "google.protobuf.StringValue", p),
        "google.protobuf.BytesValue" => {
            let b = payload::<Vec<u8>>(any, "google.protobuf.BytesValue", p)?;
            String::from_utf8(b).map_err(|_| err(p, "must be UTF-8 for Outrigger"))
        }
        other => Err(err(
            p,
            format!(
                "`{other}` is not supported here (use google.protobuf.StringValue or BytesValue)"
            ),
        )),
    }
}

/// The filter's `Wasm` config as the native `wasm` filter.
pub(super) fn translate(w: &Wasm, p: &str) -> R<RawWasm> {
    let cp = format!("{p}.config");
    let Some(c) = &w.config else {
        return Err(err(cp, "is required"));
    };
    let Some(plugin_config::Vm::VmConfig(vm)) = &c.vm else {
        return Err(err(format!("{cp}.vm_config"), "is required"));
    };
    let vp = format!("{cp}.vm_config");
    if !RUNTIMES.contains(&vm.runtime.as_str()) {
        return Err(err(
            format!("{vp}.runtime"),
            format!(
                "runtime `{}` is not supported (v8, wasmtime, wamr and wavm modules run on wasmtime)",
                vm.runtime
            ),
        ));
    }
    let local = match vm.code.as_ref().and_then(|c| c.specifier.as_ref()) {
        Some(async_data_source::Specifier::Local(d)) => d,
        Some(async_data_source::Specifier::Remote(_)) => {
            return Err(err(format!("{vp}.code.remote"), "is not supported"))
        }
        None => return Err(err(format!("{vp}.code"), "is required")),
    };
    let lp = format!("{vp}.code.local");
    let mut code = RawCode::default();
    match &local.specifier {
        Some(data_source::Specifier::Filename(f)) => code.filename = Some(f.clone()),
        Some(data_source::Specifier::InlineBytes(b)) => code.inline_bytes = Some(b.clone()),
        Some(data_source::Specifier::InlineString(s)) => code.inline_string = Some(s.clone()),
        Some(data_source::Specifier::EnvironmentVariable(_)) => {
            return Err(err(
                format!("{lp}.environment_variable"),
                "is not supported",
            ))
        }
        None => return Err(err(lp, "set `filename`, `inline_bytes` or `inline_string`")),
    }
    // Envoy: `failure_policy` wins when set; otherwise the deprecated `fail_open`.
    #[allow(deprecated)]
    let fail_open = c.fail_open;
    let policy = FailurePolicy::try_from(c.failure_policy)
        .map_err(|_| err(format!("{cp}.failure_policy"), "unknown value"))?;
    let failure_policy = match policy {
        FailurePolicy::FailReload => Some("fail_reload".into()),
        FailurePolicy::FailOpen => Some("fail_open".into()),
        FailurePolicy::FailClosed => Some("fail_closed".into()),
        FailurePolicy::Unspecified => None,
    };
    Ok(RawWasm {
        name: c.name.clone(),
        root_id: c.root_id.clone(),
        vm_id: vm.vm_id.clone(),
        code,
        vm_configuration: configuration(&vm.configuration, &format!("{vp}.configuration"))?,
        configuration: configuration(&c.configuration, &format!("{cp}.configuration"))?,
        failure_policy,
        fail_open,
        max_memory_bytes: None,
        max_fuel_per_call: None,
    })
}
