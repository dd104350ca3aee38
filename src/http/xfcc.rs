//! `x-forwarded-client-cert` on the request path, as Envoy's connection manager treats
//! it (`forward_client_cert_details`), decided once per request before the filters run:
//!
//! - `always_forward_only`: the incoming header goes on unchanged;
//! - `sanitize` (the default), or any mode on a connection without a client
//!   certificate: it is removed;
//! - `forward_only`: it goes on unchanged;
//! - `append_forward`: the proxy's element (`tls/xfcc.rs`) is appended after a comma;
//! - `sanitize_set`: it is replaced by the proxy's element.
//!
//! The removal is a variant of the connection manager's sanitizing plan
//! (`OwnHeaders::request_plan` against `request_plan_keeping_xfcc`), so it costs no
//! plan slot and nothing per request. The element is made once per connection; a
//! request that carries it costs one string for the header's value, set through the
//! stream's request `SetHeaders`, which every encoder writes.

use crate::config::{ForwardClientCert, Forwarding, OwnHeaders};
use crate::http::filter::headers::Edits;
use crate::http::filter::set_headers::SetHeaders;
use crate::tls::TlsInfo;

pub const XFCC: &str = "x-forwarded-client-cert";
/// `XFCC` as a header name: an HTTP/2 request's map looks it up by hash alone, without
/// parsing a `&str` first (once per stream).
pub static XFCC_NAME: http::HeaderName = http::HeaderName::from_static(XFCC);

/// The sanitizing plan a request starts from: whether its incoming XFCC header may go
/// on (an internal request's plans keep the `x-envoy-*` headers).
pub fn request_plan<'c>(
    own: &'c OwnHeaders,
    fwd: &Forwarding,
    tls: Option<&TlsInfo>,
    internal: bool,
) -> &'c crate::http::filter::headers::HeaderPlan {
    let mtls = tls.is_some_and(TlsInfo::peer_presented);
    let keep = match fwd.xfcc {
        ForwardClientCert::AlwaysForwardOnly => true,
        ForwardClientCert::Sanitize => false,
        // Append and forward keep what came; set replaces it (through `set`).
        ForwardClientCert::ForwardOnly
        | ForwardClientCert::AppendForward
        | ForwardClientCert::SanitizeSet => mtls,
    };
    match (own.internal.as_deref().filter(|_| internal), keep) {
        (Some(i), true) => &i.plan_keeping_xfcc,
        (Some(i), false) => &i.plan,
        (None, true) => &own.request_plan_keeping_xfcc,
        (None, false) => &own.request_plan,
    }
}

/// Adds the proxy's element for `append_forward` and `sanitize_set` on a mutual-TLS
/// connection. `incoming` yields the request's XFCC values as they arrived.
pub fn set<'c, 'a>(
    fwd: &Forwarding,
    tls: Option<&TlsInfo>,
    incoming: impl Iterator<Item = &'a [u8]>,
    store: &'c SetHeaders,
    e: &mut Edits<'c>,
) {
    let append = match fwd.xfcc {
        ForwardClientCert::AppendForward => true,
        ForwardClientCert::SanitizeSet => false,
        _ => return,
    };
    let Some(t) = tls.filter(|t| t.peer_presented()) else {
        return;
    };
    let element = crate::tls::xfcc::cached_element(t, fwd.xfcc_details);
    let mut value = String::new();
    if append {
        // Several incoming fields are one comma-joined value, as Envoy's header map
        // holds them.
        for v in incoming.filter(|v| !v.is_empty()) {
            value.push_str(&String::from_utf8_lossy(v));
            value.push(',');
        }
    }
    value.push_str(&element);
    store.set(XFCC, &value);
    e.set = Some(store);
}
