//! proxy-wasm filter modules for the tests, written in WebAssembly text and compiled
//! with the `wat` crate (no toolchain is downloaded). Shared by `wasm_filter.rs` and
//! `wasm_parity.rs`, so Outrigger and Envoy run the same bytes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

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
