//! Response headers a filter sets for one stream with values it computed from that
//! request (the CORS filter's `access-control-allow-origin`, which echoes the request's
//! `Origin`; the fault filter's `grpc-status` for a gRPC abort). Compiled header plans
//! (`headers::HeaderPlan`) hold only configured values; these are per request.
//!
//! The connection manager owns one [`SetHeaders`] per stream, empty (no allocation)
//! until a filter sets something, and lends it to the chain in `StreamEdits::store`; a
//! filter that sets a header attaches it to the response `Edits`, so every encoder
//! (the four proxy paths and every local reply) writes it. Each header replaces any
//! value of its name, incoming or added by a plan (Envoy's filters `setInline` them).
//!
//! The same store carries the fault filter's state for the rest of the stream (its
//! response rate limit and the active fault it holds, `filter::throttle`): it is the one
//! per-stream storage the chain is lent, and dropping it with the stream releases that
//! fault whatever ended the stream.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::borrow::Cow;
use std::cell::RefCell;

use super::status::LocalReply;
use super::throttle::FaultStream;

/// A context's state for the rest of its stream, kept in the stream's `SetHeaders` (`http/filter/wasm.rs`).
#[derive(Debug, Clone, Default)]
pub struct StreamContext {
    /// Identifies the plugin (its address; the chain holds it for the stream).
    pub(crate) plugin: usize,
    pub id: i32,
    /// `proxy_on_response_headers` ran (or must not run).
    pub(crate) response_done: bool,
    /// What it answered, until the response-head hook takes it.
    pub(crate) reply: Option<LocalReply>,
    /// Its request body as the body callbacks left it (`filter::wasm_body`).
    pub(crate) request_body: WasmBody,
    /// `proxy_on_response_body` saw the end of the response body (or must not run).
    pub(crate) response_body_done: bool,
    /// What `proxy_on_response_headers` last did to `content-length`: set it (true) or
    /// removed it (false).
    pub(crate) response_length: Option<bool>,
    /// `proxy_on_response_headers` paused the response (the VM instance's serial).
    pub(crate) response_paused: Option<u64>,
    /// A paused response head was resumed (its edits came late).
    pub(crate) head_late: bool,
    /// The listener's `stream_idle_timeout`, which bounds its pauses (zero: none).
    pub(crate) idle_timeout: std::time::Duration,
}

/// A wasm context's request body as its callbacks left it (`filter::wasm_body`).
#[derive(Debug, Clone, Default)]
pub struct WasmBody {
    /// Passed on (a callback answered `Continue`), edits included.
    pub(crate) out: Vec<u8>,
    /// Held (`Pause`): the next callback sees it before its own chunk.
    pub(crate) held: Vec<u8>,
    /// A callback changed it (`proxy_set_buffer_bytes`).
    pub(crate) edited: bool,
}

/// Headers set for one stream's response: `(lower-case name, value)`, each name once.
#[derive(Debug, Default)]
pub struct SetHeaders {
    // Filters write while the chain runs on the request head; encoders read later. The
    // two never overlap, and every access uses `try_borrow*`, so nothing can panic.
    // The flag marks an added value (`add`): it replaces nothing. Names are lower-case;
    // a filter that learns them per request (ext_authz) owns them.
    list: RefCell<Vec<(Cow<'static, str>, String, Op)>>,
    /// The fault filter's state for this stream (empty: no fault injected, no
    /// allocation). Borrowed briefly by the filter, never across an await.
    pub(crate) fault: RefCell<FaultStream>,
    /// A filter's own state for this stream, set once on the request head (ext_proc's
    /// gRPC stream and the plans it made; `filter::ext_proc::run::State`). Type-erased
    /// so that this module need not know the filter; empty (no allocation) without one.
    pub(crate) ext: StreamExt,
    /// The ext_authz filter's check waiting for the request body
    /// (`filter::ext_authz::body::Pending`); empty without one.
    pub(crate) ext_authz: StreamExt,
    /// The wasm filters' contexts of this stream (`filter::wasm`; empty: no wasm
    /// filter, no allocation).
    wasm: RefCell<Vec<StreamContext>>,
}

/// `SetHeaders::ext`.
#[derive(Default)]
pub(crate) struct StreamExt(std::cell::OnceCell<Box<dyn std::any::Any>>);

impl StreamExt {
    pub fn set(&self, v: Box<dyn std::any::Any>) -> Result<(), Box<dyn std::any::Any>> {
        self.0.set(v)
    }

    pub fn get(&self) -> Option<&dyn std::any::Any> {
        self.0.get().map(|b| &**b)
    }
}

impl std::fmt::Debug for StreamExt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "StreamExt(set)"
        } else {
            "StreamExt"
        })
    }
}

/// What one entry does to the header of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Replaces every other value of the name (incoming, planned, earlier `add`s).
    Set,
    /// A value beside the others.
    Add,
    /// Drops every incoming and planned value of the name; writes nothing itself.
    Remove,
}

impl SetHeaders {
    /// Sets `name` (lower-case) to `value`, replacing an earlier value of the name.
    pub fn set(&self, name: impl Into<Cow<'static, str>>, value: &str) {
        let Ok(mut l) = self.list.try_borrow_mut() else {
            return;
        };
        let name = name.into();
        match l.iter_mut().find(|(n, _, op)| *n == name && *op != Op::Add) {
            Some((_, v, op)) => {
                v.clear();
                v.push_str(value);
                *op = Op::Set;
            }
            None => l.push((name, value.to_string(), Op::Set)),
        }
    }

    /// Adds a value of `name` (lower-case) beside any others, incoming or planned (a
    /// consistent-hash cookie's `set-cookie`, which Envoy adds rather than sets).
    pub fn add(&self, name: impl Into<Cow<'static, str>>, value: String) {
        if let Ok(mut l) = self.list.try_borrow_mut() {
            l.push((name.into(), value, Op::Add));
        }
    }

    /// Sets `name` (lower-case, computed per request: a wasm filter's) to `value`,
    /// replacing every earlier entry of the name.
    pub fn set_owned(&self, name: &str, value: &str) {
        if let Ok(mut l) = self.list.try_borrow_mut() {
            l.retain(|(n, _, _)| n != name);
            l.push((Cow::Owned(name.to_string()), value.to_string(), Op::Set));
        }
    }

    /// Adds a value of `name` (lower-case, computed per request). After a removal of
    /// the name the value is the name's only one.
    pub fn add_owned(&self, name: &str, value: &str) {
        if let Ok(mut l) = self.list.try_borrow_mut() {
            match l.iter_mut().find(|(n, _, m)| n == name && *m == Op::Remove) {
                Some(e) => {
                    e.1 = value.to_string();
                    e.2 = Op::Set;
                }
                None => l.push((Cow::Owned(name.to_string()), value.to_string(), Op::Add)),
            }
        }
    }

    /// The stream's wasm contexts, for the wasm filter.
    pub(crate) fn wasm_contexts(&self, f: impl FnOnce(&mut Vec<StreamContext>)) {
        if let Ok(mut c) = self.wasm.try_borrow_mut() {
            f(&mut c);
        }
    }

    /// Removes every value of `name` (lower-case): the incoming ones, the plans' and
    /// what this stream set or added before.
    pub fn remove(&self, name: impl Into<Cow<'static, str>>) {
        let Ok(mut l) = self.list.try_borrow_mut() else {
            return;
        };
        let name = name.into();
        l.retain(|(n, _, _)| *n != name);
        l.push((name, String::new(), Op::Remove));
    }

    pub fn is_empty(&self) -> bool {
        self.list.try_borrow().map_or(true, |l| l.is_empty())
    }

    /// Whether a header called `name` is set (any case), replacing other values.
    pub fn has(&self, name: &str) -> bool {
        self.list.try_borrow().is_ok_and(|l| {
            l.iter()
                .any(|(n, _, op)| *op != Op::Add && n.eq_ignore_ascii_case(name))
        })
    }

    /// Calls `emit` for each header, in the order they were first set.
    pub fn for_each(&self, mut emit: impl FnMut(&str, &str)) {
        if let Ok(l) = self.list.try_borrow() {
            for (n, v, op) in l.iter() {
                if *op != Op::Remove {
                    emit(n, v);
                }
            }
        }
    }

    /// Calls `edit` for each entry, in order: the name, the value (`None`: a removal)
    /// and whether it replaces the name's other values.
    pub fn for_each_edit(&self, mut edit: impl FnMut(&str, Option<&str>, bool)) {
        if let Ok(l) = self.list.try_borrow() {
            for (n, v, op) in l.iter() {
                match op {
                    Op::Set => edit(n, Some(v), true),
                    Op::Add => edit(n, Some(v), false),
                    Op::Remove => edit(n, None, true),
                }
            }
        }
    }

    /// Writes the headers into an HTTP/2 (or `http`) header map, replacing values.
    pub fn apply_to_map(&self, map: &mut http::HeaderMap) {
        let Ok(l) = self.list.try_borrow() else {
            return;
        };
        for (n, v, op) in l.iter() {
            let Ok(n) = http::HeaderName::from_bytes(n.as_bytes()) else {
                continue;
            };
            if *op == Op::Remove {
                map.remove(&n);
                continue;
            }
            if let Ok(v) = http::HeaderValue::from_str(v) {
                if *op == Op::Add {
                    map.append(n, v);
                } else {
                    map.insert(n, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_by_name_and_maps_overwrite() {
        let s = SetHeaders::default();
        assert!(s.is_empty());
        s.set("access-control-allow-origin", "https://a");
        s.set("grpc-status", "14");
        s.set("access-control-allow-origin", "https://b");
        let mut seen = Vec::new();
        s.for_each(|n, v| seen.push(format!("{n}={v}")));
        assert_eq!(
            seen,
            ["access-control-allow-origin=https://b", "grpc-status=14"]
        );
        assert!(s.has("Grpc-Status"));
        let mut map = http::HeaderMap::new();
        map.append("grpc-status", "2".parse().unwrap());
        map.append("grpc-status", "3".parse().unwrap());
        s.apply_to_map(&mut map);
        assert_eq!(map.get_all("grpc-status").iter().count(), 1);
        assert_eq!(map.get("grpc-status").unwrap(), "14");
    }

    #[test]
    fn computed_names_set_add_and_remove() {
        let s = SetHeaders::default();
        s.add_owned("x-a", "1");
        s.set_owned("x-b", "2");
        s.remove("x-c");
        s.add_owned("x-c", "3");
        s.remove("x-d");
        let mut seen = Vec::new();
        s.for_each(|n, v| seen.push(format!("{n}={v}")));
        assert_eq!(seen, ["x-a=1", "x-b=2", "x-c=3"]);
        assert!(!s.has("x-a") && s.has("x-b") && s.has("x-c") && s.has("x-d"));
        let mut map = http::HeaderMap::new();
        map.append("x-d", "old".parse().unwrap());
        map.append("x-a", "0".parse().unwrap());
        s.apply_to_map(&mut map);
        assert!(map.get("x-d").is_none());
        assert_eq!(map.get_all("x-a").iter().count(), 2);
    }
}
