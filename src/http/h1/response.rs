//! The response-head parser for HTTP/1.1 upstreams: bytes in, the status, headers and
//! body framing the connection manager forwards out. Sans-IO and allocation-free like
//! `request`: headers live in a caller-provided stack array.
//!
//! `conn::prepare_response` calls [`parse`] on the upstream read buffer; `Ok(None)`
//! asks for more bytes. A response refused here becomes a local `502` (UPE).

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::mem::MaybeUninit;

use super::encode::DownFraming;
use super::head::{self, BodyKind, Framing, Special};

/// Largest upstream response head accepted.
pub const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;
/// Most headers accepted in an upstream response.
pub const MAX_RESPONSE_HEADERS: usize = 128;

/// Stack storage for the parsed headers of one response.
pub type HeaderSlots<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_RESPONSE_HEADERS];

/// Fresh, uninitialised header slots (no allocation, nothing written).
pub fn header_slots<'b>() -> HeaderSlots<'b> {
    [const { MaybeUninit::uninit() }; MAX_RESPONSE_HEADERS]
}

/// What the request that this answers changes about reading the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked {
    /// A HEAD request: the response has no body whatever its headers say.
    pub head: bool,
    /// The proxy passed an upgrade on: a `101` is expected and accepted.
    pub upgrade: bool,
}

/// What kind of response head this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind<'b> {
    /// A 1xx interim response (not 101): skip it and read the next head.
    Interim,
    /// `101 Switching Protocols` to the upgrade the proxy asked for, to this protocol.
    Upgraded { upgrade: &'b [u8] },
    /// A final response. `body` already accounts for HEAD, 204 and 304.
    Final { body: BodyKind, framing: Framing },
}

/// A complete, accepted response head.
#[derive(Debug, Clone, Copy)]
pub struct ResponseHead<'b, 'h> {
    pub status: u16,
    /// The reason phrase (empty if it had obs-text).
    pub reason: &'b str,
    pub minor: u8,
    /// Bytes of `data` the head takes, final empty line included.
    pub head_len: usize,
    pub headers: &'h [httparse::Header<'b>],
    pub kind: Kind<'b>,
}

/// Why a response head was refused (for logs); the proxy answers 502 UPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadResponse(pub &'static str);

/// True for a status code HTTP defines: RFC 9110 section 15 has 100..=599 only, and a
/// client may not know what to make of anything else. httparse and the h2 crate take any
/// three digits; every path treats another as the upstream's protocol error (502 UPE,
/// as Envoy does).
pub const fn valid_status(status: u16) -> bool {
    matches!(status, 100..=599)
}

/// Parses the response head at the start of `data`. `Ok(None)`: not complete yet and
/// still within `MAX_RESPONSE_HEAD_BYTES`.
pub fn parse<'b, 'h>(
    data: &'b [u8],
    asked: Asked,
    slots: &'h mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Option<ResponseHead<'b, 'h>>, BadResponse> {
    let mut resp = httparse::Response::new(&mut []);
    let head_len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, data, slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if data.len() <= MAX_RESPONSE_HEAD_BYTES => return Ok(None),
        Ok(httparse::Status::Partial) => return Err(BadResponse("response head too large")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(BadResponse("too many response headers"))
        }
        Err(_) => return Err(BadResponse("malformed response head")),
    };
    let (Some(status), Some(minor)) = (resp.code, resp.version) else {
        return Err(BadResponse("malformed status line"));
    };
    if !valid_status(status) {
        return Err(BadResponse("status code out of range"));
    }
    let headers: &'h [httparse::Header<'b>] = resp.headers;
    let reason = resp.reason.unwrap_or("");
    let kind = if status == 101 && asked.upgrade {
        let upgrade = headers
            .iter()
            .find(|h| head::classify(h.name) == Special::Upgrade)
            .map(|h| head::trim(h.value))
            .ok_or(BadResponse("101 without upgrade"))?;
        Kind::Upgraded { upgrade }
    } else if status == 101 {
        // A 101 the proxy did not ask for cannot be followed.
        return Err(BadResponse("unsolicited 101"));
    } else if (100..200).contains(&status) {
        Kind::Interim
    } else {
        let framing = head::framing(headers, minor, false)
            .map_err(|_| BadResponse("invalid response framing"))?;
        let body = if asked.head || status == 204 || status == 304 {
            BodyKind::Empty
        } else {
            framing.body
        };
        Kind::Final { body, framing }
    };
    Ok(Some(ResponseHead {
        status,
        reason,
        minor,
        head_len,
        headers,
        kind,
    }))
}

/// How a final response body of `body` goes to a client speaking HTTP/1.`client_minor`:
/// the downstream framing, and whether chunked framing must be stripped (an HTTP/1.0
/// client gets the data and a close instead).
pub fn down_framing(body: BodyKind, client_minor: u8) -> (DownFraming, bool) {
    match body {
        BodyKind::Chunked if client_minor >= 1 => (DownFraming::Chunked, false),
        BodyKind::Chunked => (DownFraming::Close, true),
        BodyKind::UntilClose => (DownFraming::Close, false),
        BodyKind::Empty | BodyKind::Length(_) => (DownFraming::AsIs, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Asked = Asked {
        head: false,
        upgrade: false,
    };

    fn kind(data: &[u8], asked: Asked) -> Result<Option<(u16, usize)>, BadResponse> {
        let mut slots = header_slots();
        parse(data, asked, &mut slots).map(|r| r.map(|h| (h.status, h.head_len)))
    }

    #[test]
    fn parses_final_interim_and_upgrade() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        assert_eq!(kind(ok, PLAIN).unwrap(), Some((200, ok.len() - 2)));
        let mut slots = header_slots();
        let h = parse(ok, PLAIN, &mut slots).unwrap().unwrap();
        assert_eq!(
            h.kind,
            Kind::Final {
                body: BodyKind::Length(2),
                framing: head::framing(h.headers, 1, false).unwrap()
            }
        );
        let mut slots = header_slots();
        let head = parse(
            ok,
            Asked {
                head: true,
                upgrade: false,
            },
            &mut slots,
        )
        .unwrap()
        .unwrap();
        assert!(matches!(
            head.kind,
            Kind::Final {
                body: BodyKind::Empty,
                ..
            }
        ));
        let mut slots = header_slots();
        let interim = parse(b"HTTP/1.1 100 Continue\r\n\r\n", PLAIN, &mut slots)
            .unwrap()
            .unwrap();
        assert_eq!(interim.kind, Kind::Interim);
        let up = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        assert!(kind(up, PLAIN).is_err());
        let asked = Asked {
            head: false,
            upgrade: true,
        };
        let mut slots = header_slots();
        let u = parse(up, asked, &mut slots).unwrap().unwrap();
        assert_eq!(
            u.kind,
            Kind::Upgraded {
                upgrade: b"websocket"
            }
        );
        assert!(kind(b"HTTP/1.1 101 Switching\r\n\r\n", asked).is_err());
        assert_eq!(kind(b"HTTP/1.1 200 OK\r\nA: b", PLAIN).unwrap(), None);
        assert!(kind(b"HTLP/1.1 200 OK\r\n\r\n", PLAIN).is_err());
        for out_of_range in ["000", "099", "600", "999"] {
            let raw = format!("HTTP/1.1 {out_of_range} X\r\nContent-Length: 0\r\n\r\n");
            assert!(kind(raw.as_bytes(), PLAIN).is_err(), "{out_of_range}");
        }
        assert!(kind(b"HTTP/1.1 599 X\r\n\r\n", PLAIN).unwrap().is_some());
        assert!(kind(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            PLAIN
        )
        .is_err());
    }

    #[test]
    fn framing_towards_the_client() {
        assert_eq!(
            down_framing(BodyKind::Chunked, 1),
            (DownFraming::Chunked, false)
        );
        assert_eq!(
            down_framing(BodyKind::Chunked, 0),
            (DownFraming::Close, true)
        );
        assert_eq!(
            down_framing(BodyKind::UntilClose, 1),
            (DownFraming::Close, false)
        );
        assert_eq!(
            down_framing(BodyKind::Length(3), 0),
            (DownFraming::AsIs, false)
        );
    }
}
