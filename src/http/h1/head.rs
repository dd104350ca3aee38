//! Request and response head analysis.
//!
//! httparse already rejects whitespace before the colon, obsolete line folding, NUL,
//! bare CR and other control bytes in the head. This module adds the framing rules that
//! close request-smuggling holes (RFC 9112 section 6): Content-Length and
//! Transfer-Encoding together, conflicting or malformed Content-Length, any transfer
//! coding other than a single `chunked`. (Host and the target's authority follow the
//! rule in `http::authority`, which HTTP/2 requests follow too.)

#![deny(clippy::indexing_slicing, clippy::string_slice)]

// Field names and the hop-by-hop rule live in `http::hop`; re-exported here because the
// head analysis is where the HTTP/1 side meets them.
pub use crate::http::hop::{classify, tokens, trim, Special};

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the peer closes (responses only).
    UntilClose,
}

/// Why a head was refused. Each maps to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Malformed syntax, ambiguous framing: 400.
    BadRequest(&'static str),
    /// Request line longer than the limit: 414.
    UriTooLong,
    /// Header section larger than the limit or too many headers: 431.
    HeadersTooLarge,
    /// A transfer coding we do not implement: 501.
    NotImplemented(&'static str),
    /// HTTP/1.0 on a connection manager that does not accept it: 426 (Envoy's
    /// `accept_http_10: false`).
    UpgradeRequired,
}

impl HeadError {
    pub fn status(self) -> u16 {
        match self {
            HeadError::BadRequest(_) => 400,
            HeadError::UriTooLong => 414,
            HeadError::HeadersTooLarge => 431,
            HeadError::NotImplemented(_) => 501,
            HeadError::UpgradeRequired => 426,
        }
    }

    /// What exactly was wrong, for the debug log and `%RESPONSE_CODE_DETAILS%`.
    pub fn detail(self) -> &'static str {
        match self {
            HeadError::BadRequest(r) | HeadError::NotImplemented(r) => r,
            HeadError::UriTooLong => "request line too long",
            HeadError::HeadersTooLarge => "request headers too large",
            HeadError::UpgradeRequired => "HTTP/1.0 not allowed",
        }
    }

    /// The body of the HTTP/1 local reply: the status's reason phrase, as Envoy's
    /// HTTP/1 codec errors answer ("Bad Request", not the detail).
    pub fn body(self) -> &'static str {
        reason(self.status())
    }
}

/// Parses a Content-Length value: one or more ASCII digits, nothing else.
fn content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

/// Facts about a message's framing and connection handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    pub body: BodyKind,
    /// The sender allows the connection to stay open after this message.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    /// Any `Connection` header lists other header names that must be dropped.
    pub has_connection_header: bool,
    /// `Connection: upgrade` was sent.
    pub connection_upgrade: bool,
}

/// Works out body framing and persistence from the headers, refusing anything ambiguous.
/// `minor` is the HTTP/1.x minor version.
pub fn framing(
    headers: &[httparse::Header<'_>],
    minor: u8,
    is_request: bool,
) -> Result<Framing, HeadError> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut te_seen = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    let mut has_connection_header = false;
    let mut connection_upgrade = false;
    for h in headers {
        match classify(h.name) {
            Special::ContentLength => {
                let n = content_length(trim(h.value))
                    .ok_or(HeadError::BadRequest("malformed content-length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(HeadError::BadRequest("conflicting content-length"));
                }
                length = Some(n);
            }
            Special::TransferEncoding => {
                // Only a single, final `chunked` is accepted, once.
                if te_seen {
                    return Err(HeadError::BadRequest("repeated transfer-encoding"));
                }
                te_seen = true;
                let v = trim(h.value);
                if v.eq_ignore_ascii_case(b"chunked") {
                    chunked = true;
                } else if v.is_empty() || v.iter().any(|&b| b == b'"' || b == b';' || b < 0x20) {
                    return Err(HeadError::BadRequest("malformed transfer-encoding"));
                } else {
                    let last_chunked = tokens(v)
                        .last()
                        .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
                    if is_request && !last_chunked {
                        return Err(HeadError::BadRequest(
                            "transfer-encoding must end in chunked",
                        ));
                    }
                    return Err(HeadError::NotImplemented("unsupported transfer-encoding"));
                }
            }
            Special::Connection => {
                for t in tokens(h.value) {
                    if t.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive_token = true;
                    } else {
                        connection_upgrade |= t.eq_ignore_ascii_case(b"upgrade");
                        // Names another header as hop-by-hop: the encoder must look.
                        has_connection_header = true;
                    }
                }
            }
            Special::Expect if is_request => {
                if trim(h.value).eq_ignore_ascii_case(b"100-continue") {
                    expect_continue = true;
                } else {
                    return Err(HeadError::BadRequest("unsupported expectation"));
                }
            }
            _ => {}
        }
    }
    if chunked && length.is_some() {
        return Err(HeadError::BadRequest(
            "content-length with transfer-encoding",
        ));
    }
    if chunked && minor == 0 {
        return Err(HeadError::BadRequest("transfer-encoding in HTTP/1.0"));
    }
    let body = match (chunked, length) {
        (true, _) => BodyKind::Chunked,
        (false, Some(0)) => BodyKind::Empty,
        (false, Some(n)) => BodyKind::Length(n),
        (false, None) if is_request => BodyKind::Empty,
        (false, None) => BodyKind::UntilClose,
    };
    let keep_alive = if minor == 0 {
        keep_alive_token && !close
    } else {
        !close
    };
    Ok(Framing {
        body,
        keep_alive,
        // An HTTP/1.0 client must not get a 1xx (RFC 9110 section 15.2).
        expect_continue: expect_continue && body != BodyKind::Empty && minor >= 1,
        has_connection_header,
        connection_upgrade,
    })
}

/// The routing authority and origin-form path of a request target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// From an absolute-form target (`http://host/path`), else `None`.
    pub authority: Option<&'a str>,
    /// Origin-form path including the query, always starting with `/` (or `*`).
    pub path: &'a str,
}

/// Strips `prefix` from the start of `s`, ignoring ASCII case. Never cuts a UTF-8
/// character: a target may carry non-ASCII bytes, which httparse passes as UTF-8.
fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let (head, rest) = s.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}

/// Splits a request target into authority and path.
pub fn target(t: &str) -> Result<Target<'_>, HeadError> {
    if t.starts_with('/') || t == "*" {
        return Ok(Target {
            authority: None,
            path: t,
        });
    }
    let rest = strip_prefix_ci(t, "http://")
        .or_else(|| strip_prefix_ci(t, "https://"))
        .filter(|r| !r.is_empty())
        .ok_or(HeadError::BadRequest("invalid request target"))?;
    let (authority, path) = match rest.find(['/', '?']).and_then(|i| rest.split_at_checked(i)) {
        Some((a, p)) if p.starts_with('/') => (a, p),
        Some(_) => return Err(HeadError::BadRequest("invalid request target")),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(HeadError::BadRequest("invalid authority in request target"));
    }
    Ok(Target {
        authority: Some(authority),
        path,
    })
}

/// The canonical reason phrase for the statuses the proxy itself produces.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        414 => "URI Too Long",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs<'a>(list: &'a [(&'a str, &'a [u8])]) -> Vec<httparse::Header<'a>> {
        list.iter()
            .map(|(n, v)| httparse::Header { name: n, value: v })
            .collect()
    }

    #[test]
    fn framing_rules() {
        let f = |l: &[(&str, &[u8])], minor| framing(&hs(l), minor, true);
        assert_eq!(
            f(&[("Content-Length", b"5")], 1).unwrap().body,
            BodyKind::Length(5)
        );
        assert_eq!(
            f(&[("Content-Length", b"5"), ("content-length", b"5")], 1)
                .unwrap()
                .body,
            BodyKind::Length(5)
        );
        assert!(f(&[("Content-Length", b"5"), ("content-length", b"6")], 1).is_err());
        assert!(f(&[("Content-Length", b"5, 5")], 1).is_err());
        assert!(f(&[("Content-Length", b"+5")], 1).is_err());
        assert!(f(&[("Content-Length", b"")], 1).is_err());
        assert!(f(&[("Content-Length", b"99999999999999999999")], 1).is_err());
        assert_eq!(
            f(&[("Transfer-Encoding", b"Chunked")], 1).unwrap().body,
            BodyKind::Chunked
        );
        assert!(f(
            &[("Transfer-Encoding", b"chunked"), ("Content-Length", b"3")],
            1
        )
        .is_err());
        assert!(f(
            &[
                ("Transfer-Encoding", b"chunked"),
                ("Transfer-Encoding", b"chunked")
            ],
            1
        )
        .is_err());
        assert_eq!(
            f(&[("Transfer-Encoding", b"chunked, gzip")], 1),
            Err(HeadError::BadRequest(
                "transfer-encoding must end in chunked"
            ))
        );
        assert_eq!(
            f(&[("Transfer-Encoding", b"gzip, chunked")], 1)
                .unwrap_err()
                .status(),
            501
        );
        assert!(f(&[("Transfer-Encoding", b"\"chunked\"")], 1).is_err());
        assert!(f(&[("Transfer-Encoding", b"chunked")], 0).is_err());
        assert!(!f(&[], 0).unwrap().keep_alive);
        assert!(f(&[("Connection", b"Keep-Alive")], 0).unwrap().keep_alive);
        assert!(!f(&[("Connection", b"foo, close")], 1).unwrap().keep_alive);
        assert!(
            f(&[("Expect", b"100-continue"), ("Content-Length", b"1")], 1)
                .unwrap()
                .expect_continue
        );
        assert!(f(&[("Expect", b"nope")], 1).is_err());
        assert_eq!(framing(&[], 1, false).unwrap().body, BodyKind::UntilClose);
    }

    #[test]
    fn targets() {
        assert_eq!(target("/a?b").unwrap().path, "/a?b");
        let t = target("http://Example.com:8080/x").unwrap();
        assert_eq!((t.authority, t.path), (Some("Example.com:8080"), "/x"));
        assert_eq!(target("http://h").unwrap().path, "/");
        assert!(target("http://u@h/").is_err());
        assert!(target("example.com:443").is_err());
        assert!(target("ftp://h/").is_err());
        // Non-ASCII UTF-8 where a scheme would be: refused, never cut inside a character.
        assert!(target("abcdeféx").is_err());
        assert!(target("abcdefgé").is_err());
        assert!(target("http://é/").is_ok());
        assert!(target("ééééé").is_err());
        assert!(target("http:/").is_err());
    }
}
