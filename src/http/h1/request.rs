//! The request-head parser: bytes and the listener's limits in, the facts the
//! connection manager routes on out. Sans-IO and allocation-free: the headers live in a
//! caller-provided stack array and every field borrows the caller's read buffer.
//!
//! `conn::prepare` calls [`parse`] on whatever has arrived; `Ok(None)` asks for more
//! bytes. Everything that refuses a request head (limits, httparse syntax, framing,
//! target and Host rules, the latter shared with HTTP/2 in `http::authority`) happens
//! here, so the fuzz driver in `tests/fuzz_h1.rs` tests exactly what production runs.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::mem::MaybeUninit;

use crate::config::{Limits, MAX_HEADERS_CAP};

use super::head::{self, BodyKind, Framing, HeadError, Special};
use crate::http::authority::{self, Malformed, Version};

/// Stack storage for the parsed headers of one request (`MAX_HEADERS_CAP` slots; the
/// listener's `max_headers` of them are used).
pub type HeaderSlots<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS_CAP];

/// Fresh, uninitialised header slots (no allocation, nothing written).
pub fn header_slots<'b>() -> HeaderSlots<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS_CAP]
}

/// A complete, accepted request head.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'b, 'h> {
    pub method: &'b str,
    /// Origin-form path and query (or `*`); for CONNECT the authority-form target.
    pub path: &'b str,
    /// The authority of an absolute-form target: it replaces Host upstream.
    pub target_authority: Option<&'b str>,
    /// The routing authority: the absolute-form authority, else Host, else empty (an
    /// HTTP/1.0 request without Host); for CONNECT the target. Always a valid host.
    pub authority: &'b [u8],
    /// HTTP/1.x minor version.
    pub minor: u8,
    pub framing: Framing,
    /// Bytes of `data` the head takes, final empty line included.
    pub head_len: usize,
    /// The header fields in order, names and values borrowed from `data`.
    pub headers: &'h [httparse::Header<'b>],
}

impl<'b> RequestHead<'b, '_> {
    pub fn is_connect(&self) -> bool {
        self.method == "CONNECT"
    }

    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// RFC 9110 idempotent method: safe to send again if the first try never reached
    /// the upstream's application.
    pub fn idempotent(&self) -> bool {
        matches!(
            self.method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        )
    }

    /// The `Upgrade` value of an upgrade request (`Connection: upgrade` and an `Upgrade`
    /// header). `h2c` does not count: the proxy does not offer HTTP/2 by upgrade, and
    /// such a request goes on as plain HTTP/1.1 with the hop-by-hop headers dropped
    /// (RFC 9113 section 3.1; Envoy does the same).
    pub fn upgrade(&self) -> Option<&'b [u8]> {
        if !self.framing.connection_upgrade {
            return None;
        }
        let value = self
            .headers
            .iter()
            .find(|h| head::classify(h.name) == Special::Upgrade)
            .map(|h| head::trim(h.value))?;
        let h2c = head::tokens(value)
            .next()
            .is_some_and(|p| p.eq_ignore_ascii_case(b"h2c"));
        (!value.is_empty() && !h2c).then_some(value)
    }

    /// `HTTP/1.0` or `HTTP/1.1`, for the access log.
    pub fn protocol(&self) -> &'static str {
        if self.minor == 0 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        }
    }
}

/// Parses the request head at the start of `data`. `Ok(None)`: not complete yet (and
/// within the limits). At most `limits.max_headers` of `slots` are used.
pub fn parse<'b, 'h>(
    data: &'b [u8],
    limits: &Limits,
    slots: &'h mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Option<RequestHead<'b, 'h>>, HeadError> {
    // The request line proper: after any empty lines (which httparse skips), up to
    // `max_request_line_bytes` plus its CRLF. The answer must not depend on how the
    // bytes arrive: a line of exactly the limit, seen with its CR but not yet its LF,
    // is still within it.
    let skipped = data
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(data.len());
    let (_, line) = data.split_at_checked(skipped).unwrap_or_default();
    let max_line = limits.max_request_line_bytes;
    let line_len = match line.iter().position(|&b| b == b'\n') {
        Some(i) if i + 1 > max_line + 2 => return Err(HeadError::UriTooLong),
        Some(i) => skipped + i + 1,
        None if line.len() > max_line + 1 => return Err(HeadError::UriTooLong),
        None => return Ok(None),
    };
    // The config caps max_headers at MAX_HEADERS_CAP; `min` keeps the split in range.
    let n = limits.max_headers.min(slots.len());
    let slots = slots
        .split_at_mut_checked(n)
        .map(|(s, _)| s)
        .unwrap_or_default();
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(data, slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if data.len().saturating_sub(line_len) > limits.max_header_bytes {
                return Err(HeadError::HeadersTooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::HeadersTooLarge),
        Err(_) => return Err(HeadError::BadRequest("malformed request head")),
    };
    if head_len.saturating_sub(line_len) > limits.max_header_bytes {
        return Err(HeadError::HeadersTooLarge);
    }
    // httparse accepts a bare LF as a line end. A proxy that does, in front of a server
    // that does not (or the other way round), disagrees about where a header ends:
    // refuse it (RFC 9112 section 2.2 allows either; the request side is where
    // smuggling happens). One pass over the head; httparse already refused bare CR.
    if data.get(..head_len).is_some_and(has_bare_lf) {
        return Err(HeadError::BadRequest("bare LF in request head"));
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::BadRequest("malformed request line"));
    };
    let headers: &'h [httparse::Header<'b>] = req.headers;
    let framing = head::framing(headers, minor, true)?;
    // Host and the target's authority: the rule both protocols share.
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let hosts = || {
        headers
            .iter()
            .filter(|h| head::classify(h.name) == Special::Host)
            .map(|h| h.value)
    };
    let bad = |Malformed(why)| HeadError::BadRequest(why);
    if method == "CONNECT" {
        authority::connect_target(target.as_bytes()).map_err(bad)?;
        authority::resolve(Some(target.as_bytes()), hosts(), version).map_err(bad)?;
        if framing.body != BodyKind::Empty {
            return Err(HeadError::BadRequest("CONNECT with a body"));
        }
        return Ok(Some(RequestHead {
            method,
            path: target,
            target_authority: None,
            authority: target.as_bytes(),
            minor,
            framing,
            head_len,
            headers,
        }));
    }
    let split = head::target(target)?;
    let authority =
        authority::resolve(split.authority.map(str::as_bytes), hosts(), version).map_err(bad)?;
    Ok(Some(RequestHead {
        method,
        path: split.path,
        target_authority: split.authority,
        authority,
        minor,
        framing,
        head_len,
        headers,
    }))
}

/// True if some LF in `head` is not preceded by a CR.
fn has_bare_lf(head: &[u8]) -> bool {
    let mut prev = 0u8;
    head.iter().any(|&b| {
        let bare = b == b'\n' && prev != b'\r';
        prev = b;
        bare
    })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn parse_ok(data: &[u8]) -> Result<Option<(String, String, BodyKind, usize)>, HeadError> {
        let mut slots = header_slots();
        parse(data, &Limits::default(), &mut slots).map(|r| {
            r.map(|h| {
                (
                    h.method.to_string(),
                    h.path.to_string(),
                    h.framing.body,
                    h.head_len,
                )
            })
        })
    }

    #[test]
    fn parses_heads_and_asks_for_more() {
        let get = b"GET /a?b HTTP/1.1\r\nHost: x\r\n\r\nNEXT";
        assert_eq!(
            parse_ok(get).unwrap(),
            Some(("GET".into(), "/a?b".into(), BodyKind::Empty, get.len() - 4))
        );
        assert_eq!(parse_ok(b"GET /a HTTP/1.1\r\nHo").unwrap(), None);
        assert_eq!(parse_ok(b"GET /a").unwrap(), None);
        let abs = b"POST http://h:1/p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        let mut slots = header_slots();
        let h = parse(abs, &Limits::default(), &mut slots).unwrap().unwrap();
        assert_eq!((h.path, h.target_authority), ("/p", Some("h:1")));
        assert_eq!(h.authority, b"h:1");
        assert_eq!(h.framing.body, BodyKind::Length(3));
        let mut slots = header_slots();
        let c = parse(
            b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
            &Limits::default(),
            &mut slots,
        )
        .unwrap()
        .unwrap();
        assert!(c.is_connect());
        assert_eq!((c.path, c.authority), ("h:443", &b"h:443"[..]));
    }

    #[test]
    fn enforces_limits() {
        let limits = Limits {
            max_request_line_bytes: 16,
            max_header_bytes: 32,
            max_headers: 2,
        };
        let mut slots = header_slots();
        let long_line = b"GET /0123456789abcdef HTTP/1.1\r\n";
        assert_eq!(
            parse(long_line, &limits, &mut slots).unwrap_err(),
            HeadError::UriTooLong
        );
        let many = b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n";
        assert_eq!(
            parse(many, &limits, &mut slots).unwrap_err(),
            HeadError::HeadersTooLarge
        );
        let big = b"GET / HTTP/1.1\r\nHost: x\r\nA: 0123456789012345678901234567\r\n";
        assert_eq!(
            parse(big, &limits, &mut slots).unwrap_err(),
            HeadError::HeadersTooLarge
        );
    }

    #[test]
    fn request_line_limit_does_not_depend_on_arrival() {
        let limits = Limits {
            max_request_line_bytes: 16,
            ..Limits::default()
        };
        // 16 bytes: at the limit, complete or cut after its CR.
        let full = b"GET /ab HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut slots = header_slots();
        assert!(parse(full, &limits, &mut slots).unwrap().is_some());
        let mut slots = header_slots();
        assert!(parse(&full[..17], &limits, &mut slots).unwrap().is_none());
        // Leading empty lines do not move the limit.
        let long = b"\r\nGET /abcdefgh HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut slots = header_slots();
        assert_eq!(
            parse(long, &limits, &mut slots).unwrap_err(),
            HeadError::UriTooLong
        );
    }

    #[test]
    fn refuses_bad_targets_and_hosts() {
        for bad in [
            &b"GET abcdef\xc3\xa9x HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\nHost: a\n\n",
            b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\n",
            b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            b"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n",
            b"CONNECT h:1 HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
        ] {
            assert!(parse_ok(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        // HTTP/1.0 may omit Host.
        assert!(parse_ok(b"GET / HTTP/1.0\r\n\r\n").unwrap().is_some());
    }
}
