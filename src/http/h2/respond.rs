//! The response side of one HTTP/2 stream: the h2 crate's `SendResponse`, through which
//! every path answers (`reply`, `to_h1`, `to_h2`, `connect`), and the copies the access
//! log reads of what went out: the response head (`%RESP(..)%`) and the trailers
//! (`%TRAILER(..)%`). A copy is made only when the chain's log prints it
//! ([`ResponseWants`], decided when the config is built); otherwise sending costs
//! nothing more than the h2 call.

use std::cell::RefCell;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::SendStream;
use http::{HeaderMap, Response};

use crate::observe::stream_info::{keep_header_map, LogFacts, ResponseWants};

pub(crate) struct Respond {
    send: SendResponse<Bytes>,
    wants: ResponseWants,
    /// The request head as it went upstream, in the form `LogFacts::request_head` holds
    /// (empty: it did not go upstream, or none is kept).
    request: Vec<u8>,
    /// The head sent, in the form `LogFacts::response_head` holds (empty: none kept).
    head: Vec<u8>,
    /// The trailers sent, as `LogFacts::trailers` holds them.
    trailers: Vec<u8>,
    /// The head is the proxy's own reply without a body: its `content-length: 0` is not
    /// a header Envoy logs (its local reply has none).
    empty_local_reply: bool,
    /// `%RESPONSE_CODE_DETAILS%` of a failure whose flag does not say it
    /// (`Failure::details`).
    details: Option<&'static str>,
}

impl Respond {
    /// `bufs`: where the copies' buffers come from (only those `wants` asks for).
    pub fn new(send: SendResponse<Bytes>, wants: ResponseWants, bufs: &LogBuffers) -> Self {
        let buf = |wanted: bool| if wanted { bufs.take() } else { Vec::new() };
        Respond {
            send,
            wants,
            request: buf(wants.request),
            head: buf(wants.head),
            trailers: buf(wants.trailers),
            empty_local_reply: false,
            details: None,
        }
    }

    /// Sends the response head (`end`: and ends the stream with it), keeping a copy
    /// when the log prints response headers.
    pub fn send_response(
        &mut self,
        resp: Response<()>,
        end: bool,
    ) -> Result<SendStream<Bytes>, h2::Error> {
        if self.wants.head {
            keep_header_map(&mut self.head, resp.headers());
        }
        self.send.send_response(resp, end)
    }

    /// A local reply's head: as [`Respond::send_response`], noting a reply without a
    /// body.
    pub fn send_local(
        &mut self,
        resp: Response<()>,
        end: bool,
        empty_body: bool,
    ) -> Result<SendStream<Bytes>, h2::Error> {
        self.empty_local_reply = empty_body;
        self.send_response(resp, end)
    }

    pub fn send_reset(&mut self, reason: h2::Reason) {
        self.send.send_reset(reason);
    }

    /// Notes the HTTP/1 request head as it goes upstream, when the stream is logged:
    /// Envoy's `%REQ(..)%` reads the request's headers after the router's edits.
    pub fn keep_request_h1(&mut self, head: &[u8]) {
        if self.wants.request {
            LogFacts::keep_head(&mut self.request, head);
        }
    }

    /// Notes the HTTP/2 request as it goes upstream, when the stream is logged.
    pub fn keep_request_h2(&mut self, headers: &HeaderMap) {
        if self.wants.request {
            keep_header_map(&mut self.request, headers);
        }
    }

    /// Notes the trailers about to end the response, when the log prints trailers.
    pub fn keep_trailers(&mut self, t: &HeaderMap) {
        if let Some(into) = self.trailer_copy() {
            keep_header_map(into, t);
        }
    }

    /// Where the response's trailers are to be copied as they go out (`None`: the log
    /// does not print them), for a path that sends them away from this value.
    pub fn trailer_copy(&mut self) -> Option<&mut Vec<u8>> {
        self.wants.trailers.then_some(&mut self.trailers)
    }

    /// Hands what was kept to the stream's log record.
    pub fn into_log(self, log: &mut LogFacts) {
        log.request_head = self.request;
        log.response_head = self.head;
        log.trailers = self.trailers;
        log.empty_local_reply = self.empty_local_reply && !log.response_head.is_empty();
        if let Some(d) = self.details {
            log.details = d;
        }
    }

    /// The stream's reply is a failure's, whose details its flag does not say.
    pub fn note_details(&mut self, d: Option<&'static str>) {
        self.details = d.or(self.details);
    }
}

/// The buffers a connection's logged streams copy heads into (the request head, and the
/// response head and trailers when the log prints them), handed back once the stream's
/// line is written: the streams of a connection reuse them rather than allocate, as an
/// HTTP/1 connection reuses its record's. A few are kept, none very large.
#[derive(Default)]
pub(crate) struct LogBuffers(RefCell<Vec<Vec<u8>>>);

impl LogBuffers {
    const KEEP: usize = 8;
    const LARGEST: usize = 64 * 1024;

    pub fn take(&self) -> Vec<u8> {
        self.0.borrow_mut().pop().unwrap_or_default()
    }

    /// Takes back the buffers of a logged stream's record.
    pub fn recycle(&self, log: &mut LogFacts) {
        let mut pool = self.0.borrow_mut();
        for b in [
            &mut log.request_head,
            &mut log.response_head,
            &mut log.trailers,
        ] {
            let mut b = std::mem::take(b);
            if pool.len() < Self::KEEP && b.capacity() > 0 && b.capacity() <= Self::LARGEST {
                b.clear();
                pool.push(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::observe::stream_info::{find_header, keep_header_map};

    #[test]
    fn a_kept_header_map_reads_back() {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", http::HeaderValue::from_static("0"));
        h.append("x-t", http::HeaderValue::from_static("one"));
        h.append("x-t", http::HeaderValue::from_static("two"));
        let mut kept = Vec::new();
        keep_header_map(&mut kept, &h);
        assert_eq!(find_header(&kept, "grpc-status"), Some(&b"0"[..]));
        assert_eq!(find_header(&kept, "x-t"), Some(&b"one"[..]));
        assert_eq!(find_header(&kept, "x-nope"), None);
    }
}
