//! The http_inspector listener filter's decision (Envoy's
//! `envoy.filters.listener.http_inspector`): from a connection's first bytes, is it
//! HTTP/2 with prior knowledge, HTTP/1.x, or not HTTP?
//!
//! Like Envoy's, it reads no further than the first request line: the HTTP/2 preface
//! gives `h2c`, a well-formed request line gives `http/1.1` (version HTTP/1.1) or
//! `http/1.0` (any other version), and the first byte that cannot belong to either gives
//! up at once with no protocol, so a non-HTTP client is not held back.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use crate::http::h2::PREFACE;

/// Envoy gives up (and closes the connection) if the request line is not complete
/// within this many bytes.
pub const MAX_INSPECT_BYTES: usize = 64 * 1024;

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// Not enough bytes yet.
    NeedMore,
    /// The application protocol: `h2c`, `http/1.1` or `http/1.0`.
    Protocol(&'static str),
    /// Not HTTP: carry on without an application protocol.
    NotHttp,
}

pub const H2C: &str = "h2c";
pub const HTTP11: &str = "http/1.1";
pub const HTTP10: &str = "http/1.0";

/// Decides from the bytes read so far.
pub fn inspect(data: &[u8]) -> Detected {
    let n = data.len().min(PREFACE.len());
    if data.get(..n) == PREFACE.get(..n) {
        return if data.len() < PREFACE.len() {
            Detected::NeedMore
        } else {
            Detected::Protocol(H2C)
        };
    }
    request_line(data)
}

/// Checks the bytes as the start of an HTTP/1 request line:
/// `method SP target SP HTTP/d.d [CR] LF`.
fn request_line(data: &[u8]) -> Detected {
    #[derive(Clone, Copy)]
    enum At {
        Method,
        Target,
        Version(usize),
        Cr,
    }
    const VERSION: &[u8] = b"HTTP/d.d";
    let mut at = At::Method;
    let mut token_len = 0;
    let mut http11 = true;
    for &b in data {
        at = match at {
            At::Method if crate::config::is_tchar(b) => {
                token_len += 1;
                At::Method
            }
            At::Method if b == b' ' && token_len > 0 => {
                token_len = 0;
                At::Target
            }
            // Envoy's request-target characters: visible ASCII (and tab, form feed).
            At::Target if b == b'\t' || b == 0x0c || (b'!'..=b'~').contains(&b) => {
                token_len += 1;
                At::Target
            }
            At::Target if b == b' ' && token_len > 0 => At::Version(0),
            At::Version(i) if i < VERSION.len() => {
                let want = VERSION.get(i).copied().unwrap_or(0);
                let ok = if want == b'd' {
                    b.is_ascii_digit()
                } else {
                    b == want
                };
                if !ok {
                    return Detected::NotHttp;
                }
                http11 &= b == b"HTTP/1.1".get(i).copied().unwrap_or(0);
                At::Version(i + 1)
            }
            At::Version(_) if b == b'\r' => At::Cr,
            At::Version(_) | At::Cr if b == b'\n' => {
                return Detected::Protocol(if http11 { HTTP11 } else { HTTP10 });
            }
            _ => return Detected::NotHttp,
        };
    }
    Detected::NeedMore
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn h2_preface_whole_or_in_part() {
        assert_eq!(inspect(PREFACE), Detected::Protocol(H2C));
        assert_eq!(inspect(&PREFACE[..10]), Detected::NeedMore);
        assert_eq!(inspect(b""), Detected::NeedMore);
    }

    #[test]
    fn http1_request_lines() {
        assert_eq!(
            inspect(b"GET / HTTP/1.1\r\nHost: a\r\n"),
            Detected::Protocol(HTTP11)
        );
        assert_eq!(inspect(b"GET /x HTTP/1.0\n"), Detected::Protocol(HTTP10));
        assert_eq!(inspect(b"PRX * HTTP/2.0\r\n"), Detected::Protocol(HTTP10));
        assert_eq!(inspect(b"POST /a?b=c HTTP/1."), Detected::NeedMore);
        assert_eq!(inspect(b"GE"), Detected::NeedMore);
    }

    #[test]
    fn gives_up_at_the_first_byte_that_is_not_http() {
        assert_eq!(inspect(b"\r\nGET / HTTP/1.1\r\n"), Detected::NotHttp);
        assert_eq!(inspect(b"SSH-2.0-OpenSSH_9.6\r\n"), Detected::NotHttp);
        assert_eq!(inspect(&[0x16, 0x03, 0x01]), Detected::NotHttp);
        assert_eq!(inspect(b"GET / FTP/1.1\r\n"), Detected::NotHttp);
        assert_eq!(inspect(b"GET  / HTTP/1.1\r\n"), Detected::NotHttp);
        assert_eq!(inspect(b"GET / HTTP/1.1 \r\n"), Detected::NotHttp);
        assert_eq!(inspect(b"GET / HTTP/1\r\n"), Detected::NotHttp);
    }
}
