//! Modules for the body callbacks (`proxy_on_request_body`, `proxy_on_response_body`),
//! the paused heads and the timer, shared by `wasm_filter.rs` and `wasm_parity.rs`.

/// The imports of the body modules (not in `module`'s, so that the loadtest's
/// add-header module keeps its bytes).
const BODY_IMPORTS: &str = r#"  (import "env" "proxy_get_buffer_bytes" (func $buf_get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes" (func $buf_set (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_remove_header_map_value" (func $remove (param i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick_period (param i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))
"#;

fn body_module(body: &str) -> String {
    super::module("proxy_abi_version_0_2_1", 1, 1, body).replacen(
        "  (memory (export \"memory\") 2)",
        &format!("{BODY_IMPORTS}  (memory (export \"memory\") 2)"),
        1,
    )
}

/// Edits bodies as the request's `x-body` header says. Its first byte is the
/// operation: lower case on the request body, upper case on the response body:
/// `r`/`R` replace the body (`[new request body]`, `[new response body]`: start 0,
/// size the whole body), `p`/`P` prepend `<<` (start 0, size 0), `a`/`A` append `>>`
/// (start at the body's size), `w`/`W` read the body (`proxy_get_buffer_bytes`) and
/// append it (the body twice), `t`/`T` trap, `h` pauses the request body at its end
/// too and never continues it. With an operation the body is buffered
/// (`Pause` until the end of stream) and edited at its end; without one every chunk
/// continues. A second byte `d` removes `content-length` from the request head and
/// from the response head. The response gets `x-seen-request-body: <size>`, the
/// request-body size the last request-body callback was given, when it had one.
pub fn body_edit() -> String {
    body_module(
        r#"
  (data (i32.const 1024) "x-body")
  (data (i32.const 1040) "content-length")
  (data (i32.const 1064) "[new request body]")
  (data (i32.const 1088) "[new response body]")
  (data (i32.const 1112) "<<")
  (data (i32.const 1116) ">>")
  (data (i32.const 1120) "x-seen-request-body")
  ;; Per context (by its low 8 bits), at 4096 + 8 * ctx: the operation, the drop flag,
  ;; and at +4 the last request-body size + 1 (0: no callback).
  (func $slot (param $ctx i32) (result i32)
    (i32.add (i32.const 4096) (i32.shl (i32.and (local.get $ctx) (i32.const 255)) (i32.const 3))))
  (func $edit (param $buf i32) (param $op i32) (param $size i32)
    (local.set $op (i32.or (local.get $op) (i32.const 0x20)))
    (if (i32.eq (local.get $op) (i32.const 0x74)) (then unreachable))
    (if (i32.eq (local.get $op) (i32.const 0x72))
      (then (drop (call $buf_set (local.get $buf) (i32.const 0) (local.get $size)
                     (i32.add (i32.const 1064) (i32.mul (local.get $buf) (i32.const 24)))
                     (i32.add (i32.const 18) (local.get $buf))))))
    (if (i32.eq (local.get $op) (i32.const 0x70))
      (then (drop (call $buf_set (local.get $buf) (i32.const 0) (i32.const 0) (i32.const 1112) (i32.const 2)))))
    (if (i32.eq (local.get $op) (i32.const 0x61))
      (then (drop (call $buf_set (local.get $buf) (local.get $size) (i32.const 0) (i32.const 1116) (i32.const 2)))))
    (if (i32.eq (local.get $op) (i32.const 0x77))
      (then
        (if (i32.eqz (call $buf_get (local.get $buf) (i32.const 0) (local.get $size) (i32.const 64) (i32.const 68)))
          (then (drop (call $buf_set (local.get $buf) (local.get $size) (i32.const 0)
                         (call $ret_ptr) (call $ret_len))))))))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (call $reset)
    (i64.store (call $slot (local.get $ctx)) (i64.const 0))
    (if (i32.and (i32.eqz (call $get (i32.const 0) (i32.const 1024) (i32.const 6) (i32.const 64) (i32.const 68)))
                 (i32.ne (call $ret_len) (i32.const 0)))
      (then
        (i32.store8 (call $slot (local.get $ctx)) (i32.load8_u (call $ret_ptr)))
        (if (i32.ge_u (call $ret_len) (i32.const 2))
          (then
            (if (i32.eq (i32.load8_u offset=1 (call $ret_ptr)) (i32.const 0x64))
              (then
                (i32.store8 offset=1 (call $slot (local.get $ctx)) (i32.const 1))
                (drop (call $remove (i32.const 0) (i32.const 1040) (i32.const 14)))))))))
    (i32.const 0))
  (func (export "proxy_on_request_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    (local $op i32)
    (call $reset)
    (i32.store offset=4 (call $slot (local.get $ctx)) (i32.add (local.get $size) (i32.const 1)))
    (local.set $op (i32.load8_u (call $slot (local.get $ctx))))
    (if (i32.or (i32.lt_u (local.get $op) (i32.const 0x61)) (i32.gt_u (local.get $op) (i32.const 0x7a)))
      (then (return (i32.const 0))))
    (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))
    ;; 'h': paused at the end too, and never continued.
    (if (i32.eq (local.get $op) (i32.const 0x68)) (then (return (i32.const 1))))
    (call $edit (i32.const 0) (local.get $op) (local.get $size))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param $ctx i32) (param i32 i32) (result i32)
    (local $n i32)
    (call $reset)
    (if (i32.load8_u offset=1 (call $slot (local.get $ctx)))
      (then (drop (call $remove (i32.const 2) (i32.const 1040) (i32.const 14)))))
    (local.set $n (i32.load offset=4 (call $slot (local.get $ctx))))
    (if (local.get $n)
      (then
        (call $decimal (i32.sub (local.get $n) (i32.const 1)))
        (drop (call $add (i32.const 2) (i32.const 1120) (i32.const 19) (i32.const 1200) (global.get $digits)))))
    (i32.const 0))
  (func (export "proxy_on_response_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    (local $op i32)
    (call $reset)
    (local.set $op (i32.load8_u (call $slot (local.get $ctx))))
    (if (i32.or (i32.lt_u (local.get $op) (i32.const 0x41)) (i32.gt_u (local.get $op) (i32.const 0x5a)))
      (then (return (i32.const 0))))
    (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))
    (call $edit (i32.const 1) (local.get $op) (local.get $size))
    (i32.const 0))
  ;; Writes $v in decimal at 1200; its length in $digits.
  (global $digits (mut i32) (i32.const 0))
  (func $decimal (param $v i32)
    (local $n i32) (local $i i32) (local $t i32)
    (local.set $t (local.get $v))
    (local.set $n (i32.const 1))
    (block $done (loop $count
      (br_if $done (i32.lt_u (local.get $t) (i32.const 10)))
      (local.set $t (i32.div_u (local.get $t) (i32.const 10)))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $count)))
    (global.set $digits (local.get $n))
    (local.set $i (local.get $n))
    (loop $write
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (i32.store8 (i32.add (i32.const 1200) (local.get $i))
        (i32.add (i32.const 0x30) (i32.rem_u (local.get $v) (i32.const 10))))
      (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
      (br_if $write (local.get $i))))
"#,
    )
}

/// Trailer callbacks: adds `x-wasm-trailer: req` to an HTTP/2 request's trailers, and to
/// a response's trailers `x-wasm-trailer: resp` and `x-trail: wasm` (replacing the
/// upstream's value).
pub fn trailers() -> String {
    super::module(
        "proxy_abi_version_0_2_1",
        1,
        1,
        r#"
  (data (i32.const 1024) "x-wasm-trailer")
  (data (i32.const 1040) "req")
  (data (i32.const 1048) "resp")
  (data (i32.const 1056) "x-trail")
  (data (i32.const 1064) "wasm")
  (func (export "proxy_on_request_trailers") (param i32 i32) (result i32)
    (drop (call $add (i32.const 1) (i32.const 1024) (i32.const 14) (i32.const 1040) (i32.const 3)))
    (i32.const 0))
  (func (export "proxy_on_response_trailers") (param i32 i32) (result i32)
    (drop (call $add (i32.const 3) (i32.const 1024) (i32.const 14) (i32.const 1048) (i32.const 4)))
    (drop (call $replace (i32.const 3) (i32.const 1056) (i32.const 7) (i32.const 1064) (i32.const 4)))
    (i32.const 0))
"#,
    )
}

/// A response head paused until the next tick: a request with `x-hold: go` or
/// `x-hold: deny` has its `proxy_on_response_headers` add `x-before: yes` and return
/// `Pause`; the next tick (every 20 ms) switches to its context and adds `x-resumed:
/// yes` and continues the response (`go`), or answers `403 held back` (`deny`).
/// `x-hold: never` pauses the response head and `x-hold: queue` the request head, and
/// nothing continues them.
pub fn response_pause() -> String {
    body_module(
        r#"
  (data (i32.const 1024) "x-hold")
  (data (i32.const 1040) "x-resumed")
  (data (i32.const 1056) "yes")
  (data (i32.const 1064) "x-before")
  (data (i32.const 1080) "held back")
  (data (i32.const 1096) "\00\00\00\00")
  (global $waiting (mut i32) (i32.const 0))
  (global $deny (mut i32) (i32.const 0))
  (func $slot (param $ctx i32) (result i32)
    (i32.add (i32.const 4096) (i32.shl (i32.and (local.get $ctx) (i32.const 255)) (i32.const 2))))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (call $reset)
    (i32.store (call $slot (local.get $ctx)) (i32.const 0))
    (if (i32.eqz (call $get (i32.const 0) (i32.const 1024) (i32.const 6) (i32.const 64) (i32.const 68)))
      (then (i32.store (call $slot (local.get $ctx)) (i32.load8_u (call $ret_ptr)))))
    ;; 'q': the request head paused, and never continued.
    (i32.eq (i32.load (call $slot (local.get $ctx))) (i32.const 0x71)))
  (func (export "proxy_on_response_headers") (param $ctx i32) (param i32 i32) (result i32)
    (local $hold i32)
    (local.set $hold (i32.load (call $slot (local.get $ctx))))
    (if (i32.eqz (local.get $hold)) (then (return (i32.const 0))))
    (drop (call $add (i32.const 2) (i32.const 1064) (i32.const 8) (i32.const 1056) (i32.const 3)))
    ;; 'n': paused, and never continued.
    (if (i32.eq (local.get $hold) (i32.const 0x6e)) (then (return (i32.const 1))))
    (global.set $deny (i32.eq (local.get $hold) (i32.const 0x64)))
    (global.set $waiting (local.get $ctx))
    (i32.const 1))
  (func (export "proxy_on_tick") (param i32)
    (if (i32.eqz (global.get $waiting)) (then (return)))
    (drop (call $effective (global.get $waiting)))
    (global.set $waiting (i32.const 0))
    (if (global.get $deny)
      (then
        (drop (call $local (i32.const 403) (i32.const 0) (i32.const 0)
                 (i32.const 1080) (i32.const 9) (i32.const 1096) (i32.const 4) (i32.const -1)))
        (return)))
    (drop (call $add (i32.const 2) (i32.const 1040) (i32.const 9) (i32.const 1056) (i32.const 3)))
    (drop (call $continue (i32.const 1))))
"#,
    )
    .replace(
        r#"(func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))"#,
        r#"(func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $tick_period (i32.const 20)))
    (i32.const 1))"#,
    )
}

/// A timer from `proxy_on_configure` (20 ms) whose first tick logs `ticked before any
/// request` at warn level, once.
pub fn tick_logger() -> String {
    body_module(
        r#"
  (data (i32.const 1024) "ticked before any request")
  (global $logged (mut i32) (i32.const 0))
  (func (export "proxy_on_tick") (param i32)
    (if (global.get $logged) (then (return)))
    (global.set $logged (i32.const 1))
    (drop (call $log (i32.const 3) (i32.const 1024) (i32.const 25))))
"#,
    )
    .replace(
        r#"(func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))"#,
        r#"(func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $tick_period (i32.const 20)))
    (i32.const 1))"#,
    )
}
