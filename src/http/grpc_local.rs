//! The gRPC form of a local reply, shared by both codecs. When the proxy answers a gRPC
//! request itself (a direct response, a redirect, a filter's denial, a failure), Envoy
//! sends it as a trailers-only gRPC response: HTTP status 200, `content-type:
//! application/grpc`, the HTTP status mapped to a `grpc-status` and the reply's body
//! percent-encoded in `grpc-message`. It does so for every status, 2xx included, and
//! for HTTP/1.1 requests as well as HTTP/2 ones, since it only looks at the
//! `content-type`.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

/// Whether a request with this `content-type` value is gRPC (Envoy's
/// `isGrpcRequestHeaders`: the value starts with `application/grpc`).
pub fn is_grpc_content_type(value: &[u8]) -> bool {
    value.starts_with(b"application/grpc")
}

/// The `grpc-status` for a local reply with this HTTP status: gRPC's HTTP-to-gRPC
/// mapping, as Envoy's `httpToGrpcStatus`. A route or per-try timeout (504 `UT`) is
/// UNAVAILABLE, as Envoy 1.40's router sends it; a reason that fixes its own status
/// (the stream's duration limit: DEADLINE_EXCEEDED) sets it in the reply's stamp.
pub fn status(http_status: u16) -> u8 {
    match http_status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

/// The `grpc-message` for a reply body: none for an empty body, else the body with
/// every byte outside printable ASCII, and `%`, percent-encoded (the gRPC spec's
/// encoding, which Envoy applies).
pub fn message(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(body.len());
    for &b in body {
        if (b' '..=b'~').contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(hex(b >> 4));
            out.push(hex(b & 0xf));
        }
    }
    Some(out)
}

/// An upper-case hex digit for a nibble.
fn hex(n: u8) -> char {
    char::from_digit(u32::from(n & 0xf), 16).map_or('0', |c| c.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_http_statuses_as_envoy() {
        assert_eq!(status(200), 2);
        assert_eq!(status(403), 7);
        assert_eq!(status(404), 12);
        assert_eq!(status(503), 14);
        assert_eq!(status(504), 14);
    }

    #[test]
    fn percent_encodes_the_message() {
        assert_eq!(message(b""), None);
        assert_eq!(message(b"hello world").as_deref(), Some("hello world"));
        assert_eq!(message(b"a%b\n\xc3\xa9").as_deref(), Some("a%25b%0A%C3%A9"));
    }
}
