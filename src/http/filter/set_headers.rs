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

use std::cell::RefCell;

use super::throttle::FaultStream;

/// Headers set for one stream's response: `(lower-case name, value)`, each name once.
#[derive(Debug, Default)]
pub struct SetHeaders {
    // Filters write while the chain runs on the request head; encoders read later. The
    // two never overlap, and every access uses `try_borrow*`, so nothing can panic.
    // The flag marks an added value (`add`): it replaces nothing.
    list: RefCell<Vec<(&'static str, String, bool)>>,
    /// The fault filter's state for this stream (empty: no fault injected, no
    /// allocation). Borrowed briefly by the filter, never across an await.
    pub(crate) fault: RefCell<FaultStream>,
    /// A filter's own state for this stream, set once on the request head (ext_proc's
    /// gRPC stream and the plans it made; `filter::ext_proc::run::State`). Type-erased
    /// so that this module need not know the filter; empty (no allocation) without one.
    pub(crate) ext: StreamExt,
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

impl SetHeaders {
    /// Sets `name` (lower-case) to `value`, replacing an earlier value of the name.
    pub fn set(&self, name: &'static str, value: &str) {
        let Ok(mut l) = self.list.try_borrow_mut() else {
            return;
        };
        match l.iter_mut().find(|(n, _, add)| *n == name && !add) {
            Some((_, v, _)) => {
                v.clear();
                v.push_str(value);
            }
            None => l.push((name, value.to_string(), false)),
        }
    }

    /// Adds a value of `name` (lower-case) beside any others, incoming or planned (a
    /// consistent-hash cookie's `set-cookie`, which Envoy adds rather than sets).
    pub fn add(&self, name: &'static str, value: String) {
        if let Ok(mut l) = self.list.try_borrow_mut() {
            l.push((name, value, true));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.try_borrow().map_or(true, |l| l.is_empty())
    }

    /// Whether a header called `name` is set (any case), replacing other values.
    pub fn has(&self, name: &str) -> bool {
        self.list.try_borrow().is_ok_and(|l| {
            l.iter()
                .any(|(n, _, add)| !add && n.eq_ignore_ascii_case(name))
        })
    }

    /// Calls `emit` for each header, in the order they were first set.
    pub fn for_each(&self, mut emit: impl FnMut(&str, &str)) {
        if let Ok(l) = self.list.try_borrow() {
            for (n, v, _) in l.iter() {
                emit(n, v);
            }
        }
    }

    /// Writes the headers into an HTTP/2 (or `http`) header map, replacing values.
    pub fn apply_to_map(&self, map: &mut http::HeaderMap) {
        let Ok(l) = self.list.try_borrow() else {
            return;
        };
        for (n, v, add) in l.iter() {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(n.as_bytes()),
                http::HeaderValue::from_str(v),
            ) {
                if *add {
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
}
