//! proxy-wasm filter modules for the tests, written in WebAssembly text and compiled
//! with the `wat` crate (no toolchain is downloaded). Shared by `wasm_filter.rs` and
//! `wasm_parity.rs`, so Outrigger and Envoy run the same bytes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

mod body;
pub use body::*;

/// The imports, memory, bump allocator and start callbacks every module shares;
/// `body` adds the module's own functions and data (offsets from 1024).
fn module(abi: &str, vm_start: i32, configure: i32, body: &str) -> String {
    format!(
        r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $shared_get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $shared_set (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 8192))
  (func (export "{abi}"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.add (local.get $n) (i32.const 8))))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const {vm_start}))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const {configure}))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))
  ;; The returned value's address and size (proxy_get_*), at 64 and 68.
  (func $ret_ptr (result i32) (i32.load (i32.const 64)))
  (func $ret_len (result i32) (i32.load (i32.const 68)))
  (func $reset (global.set $heap (i32.const 8192)))
{body}
)"#
    )
}

/// Adds `x-wasm-request: on` and `x-wasm-path: <request.path property>` to the request,
/// and `x-wasm-response: on` to the response.
pub fn add_headers() -> String {
    module(
        "proxy_abi_version_0_2_1",
        1,
        1,
        r#"
  (data (i32.const 1024) "x-wasm-request")
  (data (i32.const 1040) "on")
  (data (i32.const 1048) "x-wasm-response")
  (data (i32.const 1072) "request\00path")
  (data (i32.const 1088) "x-wasm-path")
  (data (i32.const 1104) "wasm add-header filter")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $reset)
    (drop (call $log (i32.const 1) (i32.const 1104) (i32.const 22)))
    (drop (call $add (i32.const 0) (i32.const 1024) (i32.const 14) (i32.const 1040) (i32.const 2)))
    (if (i32.eqz (call $property (i32.const 1072) (i32.const 12) (i32.const 64) (i32.const 68)))
      (then (drop (call $add (i32.const 0) (i32.const 1088) (i32.const 11)
                     (call $ret_ptr) (call $ret_len)))))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 2) (i32.const 1048) (i32.const 15) (i32.const 1040) (i32.const 2)))
    (i32.const 0))
"#,
    )
}

/// Answers `403` with the body `denied by wasm` and `x-wasm-denied: yes` when the
/// request has an `x-deny` header; lets the others through.
pub fn deny() -> String {
    module(
        "proxy_abi_version_0_2_1",
        1,
        1,
        r#"
  (data (i32.const 1024) "x-deny")
  (data (i32.const 1040) "denied by wasm")
  ;; One pair: x-wasm-denied = yes
  (data (i32.const 1088) "\01\00\00\00\0d\00\00\00\03\00\00\00x-wasm-denied\00yes\00")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $reset)
    (if (i32.eqz (call $get (i32.const 0) (i32.const 1024) (i32.const 6) (i32.const 64) (i32.const 68)))
      (then
        (drop (call $local (i32.const 403) (i32.const 0) (i32.const 0)
                 (i32.const 1040) (i32.const 14) (i32.const 1088) (i32.const 30) (i32.const -1)))
        (return (i32.const 1))))
    (i32.const 0))
"#,
    )
}

/// Traps (`unreachable`) on a request with an `x-trap` header.
pub fn trap() -> String {
    module(
        "proxy_abi_version_0_2_1",
        1,
        1,
        r#"
  (data (i32.const 1024) "x-trap")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $reset)
    (if (i32.eqz (call $get (i32.const 0) (i32.const 1024) (i32.const 6) (i32.const 64) (i32.const 68)))
      (then unreachable))
    (i32.const 0))
"#,
    )
}

/// Loops forever on a request with an `x-loop` header.
pub fn infinite_loop() -> String {
    module(
        "proxy_abi_version_0_2_1",
        1,
        1,
        r#"
  (data (i32.const 1024) "x-loop")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $reset)
    (if (i32.eqz (call $get (i32.const 0) (i32.const 1024) (i32.const 6) (i32.const 64) (i32.const 68)))
      (then (loop $forever (br $forever))))
    (i32.const 0))
"#,
    )
}

/// Shared data: a request with `x-put: V` stores V under `key`; every request then
/// gets the stored value as `x-shared`.
pub fn shared_data() -> String {
    module(
        "proxy_abi_version_0_2_1",
        1,
        1,
        r#"
  (data (i32.const 1024) "x-put")
  (data (i32.const 1040) "key")
  (data (i32.const 1048) "x-shared")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $reset)
    (if (i32.eqz (call $get (i32.const 0) (i32.const 1024) (i32.const 5) (i32.const 64) (i32.const 68)))
      (then (drop (call $shared_set (i32.const 1040) (i32.const 3)
                     (call $ret_ptr) (call $ret_len) (i32.const 0)))))
    (if (i32.eqz (call $shared_get (i32.const 1040) (i32.const 3) (i32.const 64) (i32.const 68) (i32.const 72)))
      (then (drop (call $add (i32.const 0) (i32.const 1048) (i32.const 8)
                     (call $ret_ptr) (call $ret_len)))))
    (i32.const 0))
"#,
    )
}

/// The imports of the modules that pause, call and tick (not in `module`'s, so that
/// the loadtest's add-header module keeps its bytes).
const ASYNC_IMPORTS: &str = r#"  (import "env" "proxy_http_call" (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick_period (param i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))
"#;

/// `module` with [`ASYNC_IMPORTS`].
fn async_module(body: &str) -> String {
    module("proxy_abi_version_0_2_1", 1, 1, body).replacen(
        "  (memory (export \"memory\") 2)",
        &format!("{ASYNC_IMPORTS}  (memory (export \"memory\") 2)"),
        1,
    )
}

/// A map of pairs in the ABI's encoding, as a WebAssembly text string, and its size.
fn pairs(p: &[(&str, &str)]) -> (String, usize) {
    let mut bytes = (p.len() as u32).to_le_bytes().to_vec();
    for (n, v) in p {
        bytes.extend((n.len() as u32).to_le_bytes());
        bytes.extend((v.len() as u32).to_le_bytes());
    }
    for (n, v) in p {
        bytes.extend(n.as_bytes());
        bytes.push(0);
        bytes.extend(v.as_bytes());
        bytes.push(0);
    }
    let text = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
    (text, bytes.len())
}

/// An authorization call: the request head pauses the stream and calls `GET /check`
/// (the answer comes to the root context, as in Envoy: the module maps the call's
/// token to the stream's context and switches to it, as the SDKs do)
/// on the cluster named by the request's `x-cluster` header (default `auth`) with a
/// `timeout_ms` timeout. A `200` answer adds its `x-auth-user` to the request and
/// continues it; another status answers `403` with the call's body; a failed call
/// (no headers) answers `503 call failed` (a timed-out one has Envoy's `504` answer); a refused call (`proxy_http_call` not Ok)
/// answers `500 bad call`; a `500` answer traps.
pub fn http_auth(timeout_ms: u32) -> String {
    let (call, call_len) = pairs(&[
        (":method", "GET"),
        (":path", "/check"),
        (":authority", "auth"),
    ]);
    async_module(&format!(
        r#"
  (data (i32.const 1024) "x-cluster")
  (data (i32.const 1040) "auth")
  (data (i32.const 1048) ":status")
  (data (i32.const 1064) "x-auth-user")
  (data (i32.const 1080) "call failed")
  (data (i32.const 1096) "bad call")
  (data (i32.const 1112) "\00\00\00\00")
  (data (i32.const 2048) "{call}")
  (func $answer (param $status i32) (param $p i32) (param $n i32)
    (drop (call $local (local.get $status) (i32.const 0) (i32.const 0)
             (local.get $p) (local.get $n) (i32.const 1112) (i32.const 4) (i32.const -1))))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (local $cp i32) (local $cl i32)
    (call $reset)
    (local.set $cp (i32.const 1040))
    (local.set $cl (i32.const 4))
    (if (i32.eqz (call $get (i32.const 0) (i32.const 1024) (i32.const 9) (i32.const 64) (i32.const 68)))
      (then (local.set $cp (call $ret_ptr)) (local.set $cl (call $ret_len))))
    (if (call $http_call (local.get $cp) (local.get $cl) (i32.const 2048) (i32.const {call_len})
          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const {timeout_ms}) (i32.const 72))
      (then (call $answer (i32.const 500) (i32.const 1096) (i32.const 8)) (return (i32.const 1))))
    ;; The call's answer comes to the root context: remember whose call it is.
    (i32.store (call $slot (i32.load (i32.const 72))) (local.get $ctx))
    (i32.const 1))
  (func $slot (param $token i32) (result i32)
    (i32.add (i32.const 4096) (i32.shl (i32.and (local.get $token) (i32.const 255)) (i32.const 2))))
  (func (export "proxy_on_http_call_response") (param $root i32) (param $token i32) (param $nh i32) (param $nb i32) (param $nt i32)
    (local $status i32)
    (call $reset)
    (drop (call $effective (i32.load (call $slot (local.get $token)))))
    (if (i32.eqz (local.get $nh))
      (then (call $answer (i32.const 503) (i32.const 1080) (i32.const 11)) (return)))
    (drop (call $get (i32.const 6) (i32.const 1048) (i32.const 7) (i32.const 64) (i32.const 68)))
    (local.set $status (i32.and (i32.load (call $ret_ptr)) (i32.const 0xffffff)))
    ;; "500": trap.
    (if (i32.eq (local.get $status) (i32.const 0x303035)) (then unreachable))
    ;; "200": allow.
    (if (i32.eq (local.get $status) (i32.const 0x303032))
      (then
        (if (i32.eqz (call $get (i32.const 6) (i32.const 1064) (i32.const 11) (i32.const 64) (i32.const 68)))
          (then (drop (call $add (i32.const 0) (i32.const 1064) (i32.const 11) (call $ret_ptr) (call $ret_len)))))
        (drop (call $continue (i32.const 0)))
        (return)))
    (drop (call $buffer (i32.const 4) (i32.const 0) (local.get $nb) (i32.const 64) (i32.const 68)))
    (call $answer (i32.const 403) (call $ret_ptr) (call $ret_len)))
"#
    ))
}

/// A timer: `proxy_on_configure` sets a 20 ms tick period; each `proxy_on_tick`
/// counts. A request gets `x-ticked: yes` once three ticks ran; a request with
/// `x-wait-tick` gets `x-waited: yes` and is paused until the next tick continues it
/// (`proxy_set_effective_context` and `proxy_continue_stream` from the root context).
pub fn ticker() -> String {
    async_module(
        r#"
  (data (i32.const 1024) "x-ticked")
  (data (i32.const 1040) "yes")
  (data (i32.const 1048) "x-wait-tick")
  (data (i32.const 1064) "x-waited")
  (global $ticks (mut i32) (i32.const 0))
  (global $waiting (mut i32) (i32.const 0))
  (func (export "proxy_on_tick") (param i32)
    (global.set $ticks (i32.add (global.get $ticks) (i32.const 1)))
    (if (global.get $waiting)
      (then
        (drop (call $effective (global.get $waiting)))
        (drop (call $continue (i32.const 0)))
        (global.set $waiting (i32.const 0)))))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (call $reset)
    (if (i32.ge_u (global.get $ticks) (i32.const 3))
      (then (drop (call $add (i32.const 0) (i32.const 1024) (i32.const 8) (i32.const 1040) (i32.const 3)))))
    (if (i32.eqz (call $get (i32.const 0) (i32.const 1048) (i32.const 11) (i32.const 64) (i32.const 68)))
      (then
        (drop (call $add (i32.const 0) (i32.const 1064) (i32.const 8) (i32.const 1040) (i32.const 3)))
        (global.set $waiting (local.get $ctx))
        (return (i32.const 1))))
    (i32.const 0))
"#,
    )
    .replace(
        r#"(func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))"#,
        r#"(func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $tick_period (i32.const 20)))
    (i32.const 1))"#,
    )
}

/// The bad modules, each with the words its refusal must name.
pub fn bad_modules() -> Vec<(&'static str, String, &'static str)> {
    vec![
        (
            "unknown ABI version",
            module("proxy_abi_version_0_9_9", 1, 1, ""),
            "proxy_abi_version_0_9_9",
        ),
        (
            "no ABI version",
            module("some_function", 1, 1, ""),
            "proxy_abi_version",
        ),
        (
            "no memory export",
            module("proxy_abi_version_0_2_1", 1, 1, "")
                .replace("(memory (export \"memory\") 2)", "(memory 2)"),
            "memory",
        ),
        (
            "an import with a wrong signature",
            module("proxy_abi_version_0_2_1", 1, 1, "").replace(
                "(func $log (param i32 i32 i32) (result i32))",
                "(func $log (param i32 i32) (result i32))",
            ),
            "proxy_log",
        ),
        (
            "proxy_on_vm_start returning false",
            module("proxy_abi_version_0_2_1", 0, 1, ""),
            "proxy_on_vm_start",
        ),
        (
            "proxy_on_configure returning false",
            module("proxy_abi_version_0_2_1", 1, 0, ""),
            "proxy_on_configure",
        ),
    ]
}

/// Compiles `wat` into `dir/name.wasm`.
pub fn write(dir: &Path, name: &str, wat: &str) -> PathBuf {
    let bytes = wat::parse_str(wat).unwrap_or_else(|e| panic!("{name}: {e}"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}
