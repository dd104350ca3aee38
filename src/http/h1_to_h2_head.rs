//! The HTTP/1 head of a response that came from an HTTP/2 upstream, shared by the
//! streamed path (`h1_to_h2`) and the held one (`h1_to_h2_held`). Its own module so
//! that neither of those two reaches into the other (`h1_to_h2` already uses
//! `h1_to_h2_held`; `tests/layering.rs` refuses the cycle).

use super::h1::encode::{self, DownFraming, DownstreamResponse};
use crate::upstream::request::clock::Progress;

/// Writes an HTTP/2 upstream's response head (`parts`) into `out` (cleared first) as the
/// HTTP/1 client's, with `framing` and `close`, the stream's response edits and the
/// upstream side's phase marks. Shared by the streamed path and the held one.
pub(super) fn write_h1_head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    (framing, close): (DownFraming, bool),
    minor: u8,
    mut edits: crate::http::filter::headers::Edits<'_>,
    progress: &Progress,
) {
    let headers: Vec<httparse::Header<'_>> = parts
        .headers
        .iter()
        .map(|(n, v)| httparse::Header {
            name: n.as_str(),
            value: v.as_bytes(),
        })
        .collect();
    out.clear();
    if let Some(m) = edits.stamp.phases.as_mut() {
        m.set_upstream(progress.phase_marks());
    }
    encode::write_response(
        out,
        &DownstreamResponse {
            status: parts.status.as_u16(),
            reason: parts.status.canonical_reason().unwrap_or(""),
            headers: &headers,
            has_connection_header: false,
            framing,
            close,
            http10_keep_alive: minor == 0 && !close,
            upgrade: None,
            edits,
        },
    );
}
