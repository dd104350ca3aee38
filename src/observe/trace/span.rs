//! A sampled request's tags while the request runs. They go straight into the span's
//! OTLP bytes (`otlp::SpanWriter`) as they are set: a span costs one buffer and one
//! pass over its values, and the exporter gets the bytes it sends.
//!
//! Envoy's `setTag` sets a key once: a later value replaces the earlier one. The tags
//! the proxy sets itself are each set once, so only a custom tag named like one of
//! them (or like another custom tag) can be set twice. A span looks its tags up only
//! then (`Tracing::tag_clash`, decided when the config is built); otherwise a tag is
//! one append.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::borrow::Cow;
use std::ops::Range;
use std::time::SystemTime;

use super::otlp::{SpanBytes, SpanWriter};

/// The tags the proxy sets (Envoy's names).
pub(super) mod tag {
    pub const REQUEST_ID: &str = "guid:x-request-id";
    pub const URL: &str = "http.url";
    pub const METHOD: &str = "http.method";
    pub const DOWNSTREAM_CLUSTER: &str = "downstream_cluster";
    pub const USER_AGENT: &str = "user_agent";
    pub const PROTOCOL: &str = "http.protocol";
    pub const PEER_ADDRESS: &str = "peer.address";
    pub const CLIENT_TRACE_ID: &str = "guid:x-client-trace-id";
    pub const NODE_ID: &str = "node_id";
    pub const ZONE: &str = "zone";
    pub const REQUEST_SIZE: &str = "request_size";
    pub const RESPONSE_SIZE: &str = "response_size";
    pub const COMPONENT: &str = "component";
    pub const UPSTREAM_CLUSTER: &str = "upstream_cluster";
    pub const UPSTREAM_CLUSTER_NAME: &str = "upstream_cluster.name";
    pub const STATUS_CODE: &str = "http.status_code";
    pub const RESPONSE_FLAGS: &str = "response_flags";
    pub const ERROR: &str = "error";
    pub const UPSTREAM_ADDRESS: &str = "upstream_address";

    pub const ALL: [&str; 19] = [
        REQUEST_ID,
        URL,
        METHOD,
        DOWNSTREAM_CLUSTER,
        USER_AGENT,
        PROTOCOL,
        PEER_ADDRESS,
        CLIENT_TRACE_ID,
        NODE_ID,
        ZONE,
        REQUEST_SIZE,
        RESPONSE_SIZE,
        COMPONENT,
        UPSTREAM_CLUSTER,
        UPSTREAM_CLUSTER_NAME,
        STATUS_CODE,
        RESPONSE_FLAGS,
        ERROR,
        UPSTREAM_ADDRESS,
    ];
}

/// A running span's bytes and where its tags are.
pub struct Tags {
    span: SpanWriter,
    /// Where each tag is in the span's bytes, kept when tags can clash; `None`: each
    /// key is set once and nothing is looked up.
    index: Option<Vec<Range<usize>>>,
    /// Where the upstream cluster's two tags are, so that a second route decision
    /// replaces them.
    cluster: Option<Range<usize>>,
}

impl Tags {
    /// `clash`: a key may be set twice (`Tracing::tag_clash`).
    pub(super) fn new(span: SpanWriter, clash: bool) -> Tags {
        Tags {
            span,
            index: clash.then(Vec::new),
            cluster: None,
        }
    }

    /// A tag with a fixed value.
    pub(super) fn tag(&mut self, k: &str, v: &str) -> Range<usize> {
        self.tag_with(k, &[v.as_bytes()])
    }

    /// A tag whose value is `parts` side by side (UTF-8); where the tag is in the
    /// span's bytes.
    pub(super) fn tag_with(&mut self, k: &str, parts: &[&[u8]]) -> Range<usize> {
        let at = self.span.attr(k, parts);
        let Some(index) = &mut self.index else {
            return at;
        };
        let Some(i) = index
            .iter()
            .position(|r| self.span.key_of(r.clone()) == Some(k.as_bytes()))
        else {
            index.push(at.clone());
            return at;
        };
        let Some(old) = index.get(i).cloned() else {
            return at;
        };
        // The new value takes the old one's place; the tags after it move by the
        // difference in length.
        let len = at.len();
        self.span.replace(old.clone(), at);
        for r in index.iter_mut().filter(|r| r.start > old.start) {
            *r = shift(r, old.len(), len);
        }
        let now = old.start..old.start + len;
        if let Some(r) = index.get_mut(i) {
            *r = now.clone();
        }
        now
    }

    /// The upstream cluster the route chose (Envoy's `upstream_cluster` and
    /// `upstream_cluster.name` tags).
    pub(super) fn set_cluster(&mut self, name: &str) {
        if self.index.is_none() {
            if let Some(r) = self.cluster.take() {
                self.span.remove(r);
            }
        }
        let a = self.tag(tag::UPSTREAM_CLUSTER, name);
        let b = self.tag(tag::UPSTREAM_CLUSTER_NAME, name);
        self.cluster = Some(a.start..b.end);
    }

    /// The span's bytes, ended now.
    pub(super) fn finish(self) -> SpanBytes {
        self.span.finish(SystemTime::now())
    }
}

/// `r`, after the bytes of an earlier range of `was` bytes became `now` bytes.
fn shift(r: &Range<usize>, was: usize, now: usize) -> Range<usize> {
    let move_by = |x: usize| (x + now).saturating_sub(was);
    move_by(r.start)..move_by(r.end)
}

/// `v`, a header's bytes, as UTF-8: itself, or with invalid sequences replaced (as
/// `String::from_utf8_lossy` does).
pub(super) fn utf8(v: &[u8]) -> Cow<'_, [u8]> {
    match String::from_utf8_lossy(v) {
        Cow::Borrowed(_) => Cow::Borrowed(v),
        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
    }
}

/// `n` in decimal, in `digits`.
pub(super) fn num(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits.get(i..).unwrap_or_default()
}

/// `v` as `Display` writes it (an address), in `buf`; cut at its size, which holds
/// any IPv6 socket address.
pub(super) fn shown<'b>(v: &impl std::fmt::Display, buf: &'b mut [u8; 64]) -> &'b [u8] {
    use std::io::Write as _;
    let mut rest = buf.as_mut_slice();
    let _ = write!(rest, "{v}");
    let left = rest.len();
    buf.get(..buf.len() - left).unwrap_or_default()
}
