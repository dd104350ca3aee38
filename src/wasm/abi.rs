//! The proxy-wasm ABI 0.2.1 host functions (module `env`), and the signatures of the
//! callbacks a module exports. Pointers and sizes are 32-bit offsets into the module's
//! `memory`; data returned to the module goes into memory it allocates with
//! `proxy_on_memory_allocate` (or `malloc`), as the spec says.
//!
//! Implemented: logging, the clock, header maps of the HTTP stream (request and
//! response headers; trailers answer `NotFound`) and of an HTTP call's answer, the
//! body buffers of the body callbacks (`host_body.rs`, which also edits them), properties (a fixed set, `props`), shared data (`shared.rs`),
//! `proxy_send_local_response`, `proxy_continue_stream`, `proxy_set_effective_context`,
//! `proxy_done`, the configuration buffers and an HTTP call's body,
//! `proxy_set_tick_period_milliseconds`, `proxy_http_call` (`http_call.rs`). The stream
//! calls act on the effective context (`Host::cur`). Every other ABI function is
//! defined so that a module using it loads, and answers `Unimplemented` (12).

use wasmtime::{Caller, Extern, FuncType, Linker, Val, ValType};

pub use super::host::Props;
use super::host::{Host, LocalResponse};
use super::host_headers::{decode_pairs, encode_pairs, HeaderMap};

pub const OK: i32 = 0;
pub const NOT_FOUND: i32 = 1;
pub const BAD_ARGUMENT: i32 = 2;
pub const INVALID_MEMORY_ACCESS: i32 = 6;
pub const UNIMPLEMENTED: i32 = 12;

/// `MapType`s.
const REQUEST_HEADERS: i32 = 0;
pub const REQUEST_TRAILERS: i32 = 1;
const RESPONSE_HEADERS: i32 = 2;
pub const RESPONSE_TRAILERS: i32 = 3;
const HTTP_CALL_RESPONSE_HEADERS: i32 = 6;
/// `BufferType`s.
pub const HTTP_REQUEST_BODY: i32 = 0;
pub const HTTP_RESPONSE_BODY: i32 = 1;
const HTTP_CALL_RESPONSE_BODY: i32 = 4;
const VM_CONFIGURATION: i32 = 6;
const PLUGIN_CONFIGURATION: i32 = 7;

/// The callbacks the host calls, with their parameter counts and whether they return
/// an i32 (all parameters are i32). A module exporting one with another signature is
/// refused at load.
const CALLBACKS: &[(&str, usize, bool)] = &[
    ("_initialize", 0, false),
    ("_start", 0, false),
    ("proxy_on_memory_allocate", 1, true),
    ("malloc", 1, true),
    ("proxy_on_context_create", 2, false),
    ("proxy_on_vm_start", 2, true),
    ("proxy_on_configure", 2, true),
    ("proxy_on_tick", 1, false),
    ("proxy_on_request_headers", 3, true),
    ("proxy_on_response_headers", 3, true),
    ("proxy_on_request_body", 3, true),
    ("proxy_on_response_body", 3, true),
    ("proxy_on_request_trailers", 2, true),
    ("proxy_on_response_trailers", 2, true),
    ("proxy_on_done", 1, true),
    ("proxy_on_log", 1, false),
    ("proxy_on_delete", 1, false),
    ("proxy_on_http_call_response", 5, false),
];

/// Refuses an export named like a callback whose signature is not the ABI's.
pub fn check_export(name: &str, ty: &FuncType) -> Result<(), String> {
    let Some((_, params, ret)) = CALLBACKS.iter().find(|(n, _, _)| *n == name) else {
        return Ok(());
    };
    let ok = ty.params().len() == *params
        && ty.params().all(|p| matches!(p, ValType::I32))
        && ty.results().len() == usize::from(*ret)
        && ty.results().all(|p| matches!(p, ValType::I32));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the export `{name}` has the wrong signature {ty:?} (the ABI's: {params} i32 parameters{})",
            if *ret { ", an i32 result" } else { ", no result" }
        ))
    }
}

fn memory(c: &mut Caller<'_, Host>) -> Option<wasmtime::Memory> {
    c.get_export("memory").and_then(Extern::into_memory)
}

pub(super) fn read(c: &mut Caller<'_, Host>, ptr: i32, len: i32) -> Option<Vec<u8>> {
    let m = memory(c)?;
    let (p, l) = (ptr as u32 as usize, len as u32 as usize);
    m.data(&*c).get(p..p.checked_add(l)?).map(<[u8]>::to_vec)
}

pub(super) fn read_str(c: &mut Caller<'_, Host>, ptr: i32, len: i32) -> Option<String> {
    read(c, ptr, len).map(|b| String::from_utf8_lossy(&b).into_owned())
}

pub(super) fn write(c: &mut Caller<'_, Host>, at: i32, bytes: &[u8]) -> bool {
    let Some(m) = memory(c) else { return false };
    let p = at as u32 as usize;
    match m.data_mut(&mut *c).get_mut(p..p + bytes.len()) {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

/// Copies `data` into memory the module allocates and stores its address and size at
/// `ret_ptr` and `ret_size`.
fn give(c: &mut Caller<'_, Host>, data: &[u8], ret_ptr: i32, ret_size: i32) -> i32 {
    let alloc = c
        .get_export("proxy_on_memory_allocate")
        .or_else(|| c.get_export("malloc"))
        .and_then(Extern::into_func);
    let Some(alloc) = alloc.and_then(|f| f.typed::<i32, i32>(&*c).ok()) else {
        return INVALID_MEMORY_ACCESS;
    };
    let ptr = match alloc.call(&mut *c, data.len() as i32) {
        Ok(p) => p,
        Err(_) => return INVALID_MEMORY_ACCESS,
    };
    if (ptr == 0 && !data.is_empty())
        || !write(c, ptr, data)
        || !write(c, ret_ptr, &ptr.to_le_bytes())
        || !write(c, ret_size, &(data.len() as u32).to_le_bytes())
    {
        return INVALID_MEMORY_ACCESS;
    }
    OK
}

pub(super) fn map(h: &mut Host, t: i32) -> Option<&mut HeaderMap> {
    match t {
        REQUEST_HEADERS => h.cur().request.as_mut(),
        RESPONSE_HEADERS => h.cur().response.as_mut(),
        // Only during the trailers callback of that side.
        REQUEST_TRAILERS | RESPONSE_TRAILERS => match h.cur().trailers.as_mut() {
            Some((kind, m)) if *kind == t => Some(m),
            _ => None,
        },
        HTTP_CALL_RESPONSE_HEADERS => h.call_response.as_mut().map(|r| &mut r.headers),
        _ => None,
    }
}

fn log(h: &Host, level: i32, msg: &str) {
    let (plugin, root) = (h.plugin.name.as_str(), h.plugin.root_id.as_str());
    match level {
        0 => tracing::trace!(target: "wasm", plugin, root_id = root, "{msg}"),
        1 => tracing::debug!(target: "wasm", plugin, root_id = root, "{msg}"),
        2 => tracing::info!(target: "wasm", plugin, root_id = root, "{msg}"),
        3 => tracing::warn!(target: "wasm", plugin, root_id = root, "{msg}"),
        _ => tracing::error!(target: "wasm", plugin, root_id = root, "{msg}"),
    }
}

fn log_level() -> i32 {
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        LevelFilter::TRACE => 0,
        LevelFilter::DEBUG => 1,
        LevelFilter::INFO => 2,
        LevelFilter::WARN => 3,
        LevelFilter::ERROR => 4,
        _ => 5,
    }
}

/// A property's value by path (segments separated by NUL), in Envoy's encoding:
/// strings as their bytes, integers as 8 little-endian bytes, maps as pairs.
fn property(h: &Host, path: &[u8]) -> Option<Vec<u8>> {
    let segs: Vec<&[u8]> = path.split(|b| *b == 0).collect();
    let s = |v: &str| Some(v.as_bytes().to_vec());
    let int = |v: i64| Some(v.to_le_bytes().to_vec());
    let call = h.cur_ref();
    let p = call.props.as_ref();
    match segs.as_slice() {
        [b"plugin_name"] => s(&h.plugin.name),
        [b"plugin_root_id"] => s(&h.plugin.root_id),
        [b"plugin_vm_id"] => s(&h.plugin.vm_id),
        [b"request", b"path"] => s(&p?.path),
        [b"request", b"url_path"] => s(p?.path.split('?').next().unwrap_or_default()),
        [b"request", b"method"] => s(&p?.method),
        [b"request", b"host"] => s(&p?.host),
        [b"request", b"scheme"] => s(&p?.scheme),
        [b"request", b"headers"] => {
            let m = call.request.as_ref()?;
            let pairs = m.pairs.iter().filter(|(n, _)| !n.starts_with(':'));
            Some(encode_pairs(pairs.map(|(n, v)| (n.as_str(), v.as_str()))))
        }
        [b"request", b"headers", name] => {
            let name = std::str::from_utf8(name).ok()?.to_ascii_lowercase();
            call.request.as_ref()?.joined(&name).map(String::into_bytes)
        }
        [b"response", b"code"] => int(i64::from(p?.response_code?)),
        [b"source", b"address"] => s(&p?.source?.to_string()),
        [b"destination", b"address"] => s(&p?.destination?.to_string()),
        [b"destination", b"port"] => int(i64::from(p?.destination?.port())),
        _ => None,
    }
}

macro_rules! wrap {
    ($l:expr, $name:literal, $f:expr) => {
        // Defining a name twice is the only error, and every name here is distinct.
        let _ = $l.func_wrap("env", $name, $f);
    };
}

/// Defines the host functions in `l`.
pub fn define(l: &mut Linker<Host>) {
    wrap!(l, "proxy_log", |mut c: Caller<'_, Host>,
                           level: i32,
                           p: i32,
                           n: i32|
     -> i32 {
        let Some(msg) = read_str(&mut c, p, n) else {
            return INVALID_MEMORY_ACCESS;
        };
        log(c.data(), level, &msg);
        OK
    });
    wrap!(l, "proxy_get_log_level", |mut c: Caller<'_, Host>,
                                     ret: i32|
     -> i32 {
        if write(&mut c, ret, &log_level().to_le_bytes()) {
            OK
        } else {
            INVALID_MEMORY_ACCESS
        }
    });
    wrap!(l, "proxy_get_current_time_nanoseconds", |mut c: Caller<
        '_,
        Host,
    >,
                                                    ret: i32|
     -> i32 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        if write(&mut c, ret, &now.to_le_bytes()) {
            OK
        } else {
            INVALID_MEMORY_ACCESS
        }
    });
    wrap!(l, "proxy_set_tick_period_milliseconds", |mut c: Caller<
        '_,
        Host,
    >,
                                                    ms: i32|
     -> i32 {
        // The worker's tick task (`calls::pump`) reads it before each tick; 0 stops it.
        c.data_mut().tick_ms = ms as u32;
        OK
    });
    wrap!(l, "proxy_get_header_map_value", |mut c: Caller<
        '_,
        Host,
    >,
                                            t: i32,
                                            kp: i32,
                                            ks: i32,
                                            rp: i32,
                                            rs: i32|
     -> i32 {
        let Some(k) = read_str(&mut c, kp, ks) else {
            return INVALID_MEMORY_ACCESS;
        };
        let v = match map(c.data_mut(), t) {
            None => return NOT_FOUND,
            Some(m) => m.joined(&k.to_ascii_lowercase()),
        };
        match v {
            Some(v) => give(&mut c, v.as_bytes(), rp, rs),
            None => NOT_FOUND,
        }
    });
    wrap!(l, "proxy_get_header_map_pairs", |mut c: Caller<
        '_,
        Host,
    >,
                                            t: i32,
                                            rp: i32,
                                            rs: i32|
     -> i32 {
        let data = match map(c.data_mut(), t) {
            None => return NOT_FOUND,
            Some(m) => encode_pairs(m.pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))),
        };
        give(&mut c, &data, rp, rs)
    });
    wrap!(l, "proxy_get_header_map_size", |mut c: Caller<'_, Host>,
                                           t: i32,
                                           rs: i32|
     -> i32 {
        let n = match map(c.data_mut(), t) {
            None => return NOT_FOUND,
            Some(m) => encode_pairs(m.pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))).len(),
        };
        if write(&mut c, rs, &(n as u32).to_le_bytes()) {
            OK
        } else {
            INVALID_MEMORY_ACCESS
        }
    });
    wrap!(l, "proxy_set_header_map_pairs", |mut c: Caller<
        '_,
        Host,
    >,
                                            t: i32,
                                            p: i32,
                                            n: i32|
     -> i32 {
        let Some(data) = read(&mut c, p, n) else {
            return INVALID_MEMORY_ACCESS;
        };
        let Some(pairs) = decode_pairs(&data) else {
            return BAD_ARGUMENT;
        };
        let pairs: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        if pairs
            .iter()
            .any(|(k, v)| !k.starts_with(':') && !HeaderMap::editable(k, v))
        {
            return BAD_ARGUMENT;
        }
        match map(c.data_mut(), t) {
            None => NOT_FOUND,
            Some(m) => {
                m.replace_all(pairs);
                OK
            }
        }
    });
    fn edit(
        c: &mut Caller<'_, Host>,
        t: i32,
        k: (i32, i32),
        v: Option<(i32, i32)>,
        op: fn(&mut HeaderMap, &str, &str),
    ) -> i32 {
        let Some(name) = read_str(c, k.0, k.1) else {
            return INVALID_MEMORY_ACCESS;
        };
        let value = match v {
            Some((p, n)) => match read_str(c, p, n) {
                Some(v) => v,
                None => return INVALID_MEMORY_ACCESS,
            },
            None => String::new(),
        };
        let name = name.to_ascii_lowercase();
        if !HeaderMap::editable(&name, &value) {
            return BAD_ARGUMENT;
        }
        match map(c.data_mut(), t) {
            None => NOT_FOUND,
            Some(m) => {
                op(m, &name, &value);
                OK
            }
        }
    }
    wrap!(l, "proxy_add_header_map_value", |mut c: Caller<
        '_,
        Host,
    >,
                                            t: i32,
                                            kp: i32,
                                            ks: i32,
                                            vp: i32,
                                            vs: i32|
     -> i32 {
        edit(&mut c, t, (kp, ks), Some((vp, vs)), HeaderMap::add)
    });
    wrap!(l, "proxy_replace_header_map_value", |mut c: Caller<
        '_,
        Host,
    >,
                                                t: i32,
                                                kp: i32,
                                                ks: i32,
                                                vp: i32,
                                                vs: i32|
     -> i32 {
        edit(&mut c, t, (kp, ks), Some((vp, vs)), HeaderMap::set)
    });
    wrap!(l, "proxy_remove_header_map_value", |mut c: Caller<
        '_,
        Host,
    >,
                                               t: i32,
                                               kp: i32,
                                               ks: i32|
     -> i32 {
        edit(&mut c, t, (kp, ks), None, |m, n, _| m.remove(n))
    });
    wrap!(l, "proxy_get_buffer_bytes", |mut c: Caller<'_, Host>,
                                        t: i32,
                                        start: i32,
                                        max: i32,
                                        rp: i32,
                                        rs: i32|
     -> i32 {
        let p = c.data().plugin.clone();
        let body;
        let buf: &[u8] = match t {
            VM_CONFIGURATION => &p.vm_configuration,
            PLUGIN_CONFIGURATION => &p.configuration,
            HTTP_CALL_RESPONSE_BODY => match &c.data().call_response {
                Some(r) => {
                    body = r.body.clone();
                    &body
                }
                None => return NOT_FOUND,
            },
            HTTP_REQUEST_BODY | HTTP_RESPONSE_BODY => match c.data_mut().body(t) {
                Some(b) => {
                    body = b.bytes.clone();
                    &body
                }
                None => return NOT_FOUND,
            },
            _ => return NOT_FOUND,
        };
        let s = (start as u32 as usize).min(buf.len());
        let e = s.saturating_add(max as u32 as usize).min(buf.len());
        give(&mut c, buf.get(s..e).unwrap_or_default(), rp, rs)
    });
    wrap!(l, "proxy_get_buffer_status", |mut c: Caller<'_, Host>,
                                         t: i32,
                                         rl: i32,
                                         rf: i32|
     -> i32 {
        let n = match t {
            VM_CONFIGURATION => c.data().plugin.vm_configuration.len(),
            PLUGIN_CONFIGURATION => c.data().plugin.configuration.len(),
            HTTP_CALL_RESPONSE_BODY => match &c.data().call_response {
                Some(r) => r.body.len(),
                None => return NOT_FOUND,
            },
            HTTP_REQUEST_BODY | HTTP_RESPONSE_BODY => match c.data_mut().body(t) {
                Some(b) => b.bytes.len(),
                None => return NOT_FOUND,
            },
            _ => return NOT_FOUND,
        };
        if write(&mut c, rl, &(n as u32).to_le_bytes()) && write(&mut c, rf, &0u32.to_le_bytes()) {
            OK
        } else {
            INVALID_MEMORY_ACCESS
        }
    });
    wrap!(l, "proxy_get_property", |mut c: Caller<'_, Host>,
                                    pp: i32,
                                    ps: i32,
                                    rp: i32,
                                    rs: i32|
     -> i32 {
        let Some(path) = read(&mut c, pp, ps) else {
            return INVALID_MEMORY_ACCESS;
        };
        match property(c.data(), &path) {
            Some(v) => give(&mut c, &v, rp, rs),
            None => NOT_FOUND,
        }
    });
    wrap!(l, "proxy_send_local_response", |mut c: Caller<'_, Host>,
                                           status: i32,
                                           _dp: i32,
                                           _ds: i32,
                                           bp: i32,
                                           bs: i32,
                                           hp: i32,
                                           hs: i32,
                                           _grpc: i32|
     -> i32 {
        let (Some(body), Some(h)) = (read_str(&mut c, bp, bs), read(&mut c, hp, hs)) else {
            return INVALID_MEMORY_ACCESS;
        };
        let Some(headers) = decode_pairs(&h) else {
            return BAD_ARGUMENT;
        };
        if !(200..=599).contains(&status) {
            return BAD_ARGUMENT;
        }
        let headers = headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .filter(|(k, v)| HeaderMap::editable(k, v))
            .collect();
        c.data_mut().cur().local = Some(LocalResponse {
            status: status as u16,
            body,
            headers,
        });
        OK
    });
    wrap!(l, "proxy_continue_stream", |mut c: Caller<'_, Host>,
                                       _t: i32|
     -> i32 {
        c.data_mut().cur().continued = true;
        OK
    });
    wrap!(
        l,
        "proxy_continue_request",
        |mut c: Caller<'_, Host>| -> i32 {
            c.data_mut().cur().continued = true;
            OK
        }
    );
    wrap!(
        l,
        "proxy_continue_response",
        |mut c: Caller<'_, Host>| -> i32 {
            c.data_mut().cur().continued = true;
            OK
        }
    );
    wrap!(l, "proxy_set_effective_context", |mut c: Caller<
        '_,
        Host,
    >,
                                             id: i32|
     -> i32 {
        c.data_mut().effective = id;
        OK
    });
    wrap!(l, "proxy_done", |_c: Caller<'_, Host>| -> i32 { OK });
    wrap!(l, "proxy_get_shared_data", |mut c: Caller<'_, Host>,
                                       kp: i32,
                                       ks: i32,
                                       rp: i32,
                                       rs: i32,
                                       rcas: i32|
     -> i32 {
        let Some(k) = read_str(&mut c, kp, ks) else {
            return INVALID_MEMORY_ACCESS;
        };
        let vm_id = c.data().plugin.vm_id.clone();
        let Some((v, cas)) = super::shared::get(&vm_id, &k) else {
            return NOT_FOUND;
        };
        let s = give(&mut c, &v, rp, rs);
        if s != OK || !write(&mut c, rcas, &cas.to_le_bytes()) {
            return INVALID_MEMORY_ACCESS;
        }
        OK
    });
    wrap!(l, "proxy_set_shared_data", |mut c: Caller<'_, Host>,
                                       kp: i32,
                                       ks: i32,
                                       vp: i32,
                                       vs: i32,
                                       cas: i32|
     -> i32 {
        let (Some(k), Some(v)) = (read_str(&mut c, kp, ks), read(&mut c, vp, vs)) else {
            return INVALID_MEMORY_ACCESS;
        };
        let vm_id = c.data().plugin.vm_id.clone();
        super::shared::set(&vm_id, &k, v, cas as u32)
    });
    // The rest of ABI 0.2.1: defined so that modules importing them load.
    let i = ValType::I32;
    let unimplemented: &[(&str, &[ValType])] = &[
        (
            "proxy_set_property",
            &[i.clone(), i.clone(), i.clone(), i.clone()],
        ),
        ("proxy_close_stream", std::slice::from_ref(&i)),
        ("proxy_clear_route_cache", &[]),
        (
            "proxy_register_shared_queue",
            &[i.clone(), i.clone(), i.clone()],
        ),
        (
            "proxy_resolve_shared_queue",
            &[i.clone(), i.clone(), i.clone(), i.clone(), i.clone()],
        ),
        (
            "proxy_dequeue_shared_queue",
            &[i.clone(), i.clone(), i.clone()],
        ),
        (
            "proxy_enqueue_shared_queue",
            &[i.clone(), i.clone(), i.clone()],
        ),
        (
            "proxy_grpc_call",
            &[
                i.clone(),
                i.clone(),
                i.clone(),
                i.clone(),
                i.clone(),
                i.clone(),
                i.clone(),
                i.clone(),
                i.clone(),
                i.clone(),
                i.clone(),
                i.clone(),
            ],
        ),
        (
            "proxy_grpc_stream",
            &[
                i.clone(),
                i.clone(),
                i.clone(),
                i.clone(),
                i.clone(),
                i.clone(),
                i.clone(),
                i.clone(),
                i.clone(),
            ],
        ),
        (
            "proxy_grpc_send",
            &[i.clone(), i.clone(), i.clone(), i.clone()],
        ),
        ("proxy_grpc_cancel", std::slice::from_ref(&i)),
        ("proxy_grpc_close", std::slice::from_ref(&i)),
        ("proxy_get_status", &[i.clone(), i.clone(), i.clone()]),
        (
            "proxy_call_foreign_function",
            &[
                i.clone(),
                i.clone(),
                i.clone(),
                i.clone(),
                i.clone(),
                i.clone(),
            ],
        ),
        (
            "proxy_define_metric",
            &[i.clone(), i.clone(), i.clone(), i.clone()],
        ),
        ("proxy_increment_metric", &[i.clone(), ValType::I64]),
        ("proxy_record_metric", &[i.clone(), ValType::I64]),
        ("proxy_get_metric", &[i.clone(), i.clone()]),
    ];
    for (name, params) in unimplemented {
        let ty = FuncType::new(l.engine(), params.iter().cloned(), [ValType::I32]);
        let _ = l.func_new("env", name, ty, |_c, _args, out: &mut [Val]| {
            if let Some(o) = out.first_mut() {
                *o = Val::I32(UNIMPLEMENTED);
            }
            Ok(())
        });
    }
}
