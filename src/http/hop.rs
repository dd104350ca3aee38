//! The header fields the proxy itself acts on, and which of them belong to one
//! connection ("hop-by-hop"): the one definition every codec and translation uses.
//!
//! Where it sits: the HTTP/1 head analysis (`h1::head`) classifies each field name once,
//! with [`classify`] (one length-dispatched comparison, no allocation). Whoever writes a
//! message for the next hop asks [`fate`] what each field becomes there: the HTTP/1
//! encoder (`h1::encode`, requests upstream and responses downstream), and the
//! translations between HTTP/1 and HTTP/2 (`h2::to_h1`, `h2::to_h2`, `h1_to_h2`), on
//! requests, responses and trailers alike. The encoder of each hop then writes what that
//! hop needs itself: its framing (Content-Length or chunked), `connection: close` or
//! `keep-alive`, and `upgrade` for an upgrade the route allows.
//!
//! # The rule
//!
//! RFC 9110 section 7.6.1: a proxy removes `Connection`, every field a `Connection`
//! header names, and the fields that only describe one connection (`Proxy-Connection`,
//! `Keep-Alive`, `TE`, `Transfer-Encoding`, `Upgrade`) before it forwards a message.
//! RFC 9113 section 8.2.2: an HTTP/2 message carries none of them at all, except `TE`
//! with the value `trailers`. Outrigger applies one rule on every hop, whatever the two
//! protocols are:
//!
//! - The six connection-specific fields ([`is_connection_specific`]) never pass as they
//!   came.
//! - `TE` in a request that lists `trailers` passes as `te: trailers` and nothing else
//!   (the one value HTTP/2 allows; gRPC needs it). Any other `TE`, and `TE` in a
//!   response, where it means nothing, is dropped.
//! - A field an HTTP/1 `Connection` header names is dropped too, except `Host` and
//!   `Content-Length`: the proxy has already routed and framed the message by them, and
//!   letting `Connection: content-length` remove a length the body was framed by is a
//!   known way to make two hops disagree about where a message ends. (HTTP/2 has no
//!   `Connection` header, so there is nothing to look up there.)

#![deny(clippy::indexing_slicing, clippy::string_slice)]

/// Which header the proxy itself interprets. Everything else is forwarded untouched
/// (unless a `Connection` header names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Other,
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Upgrade,
    Expect,
    XForwardedFor,
    XForwardedProto,
}

/// Classifies a header name, in any case, without allocating.
#[inline]
pub fn classify(name: &str) -> Special {
    let n = name.as_bytes();
    // Dispatch on length first: almost every header is rejected by one comparison.
    let eq = |s: &str| n.eq_ignore_ascii_case(s.as_bytes());
    match n.len() {
        2 if eq("te") => Special::Te,
        4 if eq("host") => Special::Host,
        6 if eq("expect") => Special::Expect,
        7 if eq("upgrade") => Special::Upgrade,
        10 if eq("connection") => Special::Connection,
        10 if eq("keep-alive") => Special::KeepAlive,
        14 if eq("content-length") => Special::ContentLength,
        15 if eq("x-forwarded-for") => Special::XForwardedFor,
        16 if eq("proxy-connection") => Special::ProxyConnection,
        17 if eq("transfer-encoding") => Special::TransferEncoding,
        17 if eq("x-forwarded-proto") => Special::XForwardedProto,
        _ => Special::Other,
    }
}

/// The fields that describe one connection and never pass as they came (RFC 9110
/// section 7.6.1, RFC 9113 section 8.2.2). `TE` is among them: see [`fate`] for the
/// `te: trailers` that does pass.
#[inline]
pub const fn is_connection_specific(s: Special) -> bool {
    matches!(
        s,
        Special::Connection
            | Special::KeepAlive
            | Special::ProxyConnection
            | Special::Te
            | Special::TransferEncoding
            | Special::Upgrade
    )
}

/// Iterates the comma-separated tokens of a header value, trimmed.
pub fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty())
}

/// A header value without its leading and trailing spaces and tabs.
pub fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// True if a `TE` value lists `trailers`.
pub fn te_lists_trailers(value: &[u8]) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(b"trailers"))
}

/// True if `name` is listed in any `Connection` header of `headers`.
pub fn named_by_connection(headers: &[httparse::Header<'_>], name: &str) -> bool {
    headers.iter().any(|h| {
        classify(h.name) == Special::Connection
            && tokens(h.value).any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
    })
}

/// Which kind of message a field is in: `TE` is a request field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    Request,
    /// A response head or a trailer section.
    Response,
}

/// The fields one HTTP/1 message's `Connection` headers name, for [`fate`].
#[derive(Debug, Clone, Copy)]
pub struct Nominated<'a, 'b> {
    /// The message's headers, or none when no `Connection` header names a field.
    headers: &'a [httparse::Header<'b>],
}

impl<'a, 'b> Nominated<'a, 'b> {
    /// Nothing is named: an HTTP/2 message, or one whose `Connection` headers were
    /// already applied.
    pub const NONE: Nominated<'static, 'static> = Nominated { headers: &[] };

    /// The message `headers`. `any` is `h1::head::Framing::has_connection_header` (a
    /// `Connection` token other than `close` and `keep-alive` was seen): without one,
    /// nothing is ever looked up.
    pub fn of(headers: &'a [httparse::Header<'b>], any: bool) -> Self {
        Nominated {
            headers: if any { headers } else { &[] },
        }
    }

    fn contains(&self, name: &str) -> bool {
        !self.headers.is_empty() && named_by_connection(self.headers, name)
    }
}

/// What a header field becomes on the next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// End-to-end: forwarded as it came.
    Forward,
    /// Connection-specific: not forwarded.
    Drop,
    /// Forwarded as `te: trailers`, whatever else the value listed.
    TeTrailers,
}

/// The rule of this module for one field `name: value` (`special` is `classify(name)`)
/// of a `msg` whose `Connection` headers name `named`.
#[inline]
pub fn fate(
    special: Special,
    name: &str,
    value: &[u8],
    msg: Message,
    named: Nominated<'_, '_>,
) -> Fate {
    match special {
        Special::Te if msg == Message::Request && te_lists_trailers(value) => Fate::TeTrailers,
        s if is_connection_specific(s) => Fate::Drop,
        Special::Host | Special::ContentLength => Fate::Forward,
        _ if named.contains(name) => Fate::Drop,
        _ => Fate::Forward,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(name: &'a str, value: &'a [u8]) -> httparse::Header<'a> {
        httparse::Header { name, value }
    }

    #[test]
    fn classify_and_tokens() {
        assert_eq!(classify("Transfer-Encoding"), Special::TransferEncoding);
        assert_eq!(classify("X-Forwarded-Proto"), Special::XForwardedProto);
        assert_eq!(classify("content-type"), Special::Other);
        let v: Vec<&[u8]> = tokens(b" a , b,,c ").collect();
        assert_eq!(v, vec![&b"a"[..], b"b", b"c"]);
        let hs = [h("Connection", b"X-Foo, close")];
        assert!(named_by_connection(&hs, "x-foo"));
        assert!(!named_by_connection(&hs, "x-bar"));
    }

    #[test]
    fn the_rule() {
        use Message::{Request, Response};
        let none = Nominated::NONE;
        let fate_of =
            |name: &str, value: &[u8], msg, named| fate(classify(name), name, value, msg, named);
        for name in [
            "Connection",
            "keep-alive",
            "Proxy-Connection",
            "transfer-encoding",
            "Upgrade",
        ] {
            assert_eq!(fate_of(name, b"x", Request, none), Fate::Drop, "{name}");
            assert_eq!(fate_of(name, b"x", Response, none), Fate::Drop, "{name}");
        }
        assert_eq!(
            fate_of("TE", b"trailers, deflate", Request, none),
            Fate::TeTrailers
        );
        assert_eq!(fate_of("te", b"gzip", Request, none), Fate::Drop);
        assert_eq!(fate_of("te", b"trailers", Response, none), Fate::Drop);
        assert_eq!(fate_of("accept", b"*/*", Request, none), Fate::Forward);

        let hs = [
            h(
                "Connection",
                b"keep-alive, X-Secret, host, content-length, expect",
            ),
            h("X-Secret", b"1"),
        ];
        let named = Nominated::of(&hs, true);
        assert_eq!(fate_of("x-secret", b"1", Request, named), Fate::Drop);
        assert_eq!(fate_of("X-SECRET", b"1", Response, named), Fate::Drop);
        assert_eq!(fate_of("x-other", b"1", Request, named), Fate::Forward);
        // The proxy routed and framed the message by these: naming them changes nothing.
        assert_eq!(fate_of("Host", b"a", Request, named), Fate::Forward);
        assert_eq!(
            fate_of("Content-Length", b"1", Request, named),
            Fate::Forward
        );
        assert_eq!(fate_of("Expect", b"x", Response, named), Fate::Drop);
        // No field-naming token seen: nothing is looked up.
        let unnamed = Nominated::of(&hs, false);
        assert_eq!(fate_of("x-secret", b"1", Request, unnamed), Fate::Forward);
    }
}
