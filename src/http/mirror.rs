//! The connection managers' side of request mirroring (Envoy's
//! `request_mirror_policies`): both keep the request as it goes upstream when its route
//! has mirror policies that fire (`router::Target::shadows`), have its body held whole
//! when it declares a length up to `shadow::MAX_BODY` (`wants_body`), and hand the
//! shadows to `upstream::request::shadow` once the body is at hand (`launch`). Routes
//! without mirror policies pay one branch: `Target::shadows` is an empty `Vec`.
//!
//! What is mirrored: the method, path and fields the upstream request carries (the
//! filter chain's and the route's edits, the forwarding headers, a rewritten path or
//! Host), with the Host suffixed `-shadow`; a body that was held (no body, a body up to
//! `MAX_BODY` with a Content-Length, or one the buffer filter held). A body that streams
//! (chunked or HTTP/2 DATA without a Content-Length, or larger than `MAX_BODY`) goes to
//! the primary cluster as usual and its shadow is not sent (`rq_shadow_dropped`).
//! Upgrades and CONNECT are never mirrored (as Envoy).

use std::time::Duration;

use bytes::Bytes;

use crate::config::MirrorPolicy;
use crate::upstream::request::shadow::{self, Shadow, MAX_BODY};
use crate::upstream::Connector;

use super::view::WorkerView;

/// A request to mirror, kept until its body is known.
pub(crate) struct Mirror<'v> {
    /// The request as it goes upstream (HTTP/2 form; the Host is `:authority`).
    pub req: http::Request<()>,
    pub to: Vec<(usize, &'v MirrorPolicy)>,
    /// The route timeout: it bounds each shadow.
    pub timeout: Duration,
    pub client_h2: bool,
}

/// Whether a body of this declared length is held whole for the shadow.
pub(crate) fn holds(declared: Option<u64>) -> bool {
    declared.is_some_and(|n| n <= MAX_BODY)
}

/// Sends the shadows of `m` with `body` (`None`: the body streamed and was not held:
/// each shadow is counted dropped on its cluster).
pub(crate) fn launch<C: Connector>(view: &WorkerView<C>, m: Mirror<'_>, body: Option<Bytes>) {
    let Mirror {
        req,
        to,
        timeout,
        client_h2,
    } = m;
    let last = to.len().saturating_sub(1);
    let mut req = Some(req);
    for (i, (cluster, policy)) in to.into_iter().enumerate() {
        let Some(cs) = view.clusters.get(cluster) else {
            continue;
        };
        let Some(body) = &body else {
            shadow::dropped(cs);
            continue;
        };
        // The last shadow takes the request; the others a copy.
        let r = if i == last {
            req.take()
        } else {
            req.as_ref().map(copy)
        };
        let Some(r) = r else { continue };
        let s = Shadow {
            req: r,
            body: body.clone(),
            timeout,
            client_h2,
        };
        shadow::send(
            cs.clone(),
            view.connector.clone(),
            s,
            policy.host_suffix,
            policy.host.as_deref(),
        );
    }
}

/// `http::Request` is not `Clone`; its head is.
fn copy(r: &http::Request<()>) -> http::Request<()> {
    let mut out = http::Request::new(());
    *out.method_mut() = r.method().clone();
    *out.uri_mut() = r.uri().clone();
    *out.version_mut() = r.version();
    *out.headers_mut() = r.headers().clone();
    out
}
