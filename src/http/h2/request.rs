//! Checks an HTTP/2 request head by the rules the HTTP/1.1 codec applies to its own
//! (`h1::head`), before it is routed: the listener's limits on the request line and the
//! header count, and the authority. The h2 crate has already refused what HTTP/2 itself
//! forbids (connection-specific headers, bad pseudo-headers) and enforces the header
//! section size (`max_header_list_size`, answered with 431).

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use http::request::Parts;

use crate::config::Limits;
use crate::http::authority::{self, Malformed, Version};
use crate::http::h1::head::HeadError;

/// The routing facts of a request that passed the checks.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Checked {
    /// `:authority`, or Host when there is no `:authority`.
    pub authority: String,
    /// Path and query; for CONNECT its `host:port` target.
    pub path: String,
    pub connect: bool,
}

/// Applies the listener's head rules to a request.
///
/// - `:method` and `:path` (a CONNECT's target) together count as the request line:
///   longer than `max_request_line_bytes` is 414.
/// - More header fields than `max_headers` is 431.
/// - The authority, from `:authority` and Host, by the rule HTTP/1 requests follow too
///   (`http::authority`: a valid host; at most one Host; a Host next to `:authority`
///   names the same one; one of them present). 400.
/// - A CONNECT's target is `host:port` only (RFC 9113 section 8.5); other paths start
///   with `/` or are `*`. 400.
pub(crate) fn check(parts: &Parts, limits: &Limits) -> Result<Checked, HeadError> {
    let connect = parts.method == http::Method::CONNECT;
    let uri_authority = parts.uri.authority().map(|a| a.as_str());
    let target = match (connect, parts.uri.path_and_query()) {
        (false, Some(p)) => p.as_str(),
        (true, None) => uri_authority.unwrap_or(""),
        // h2 refuses a CONNECT with :path and a request without one; never reached.
        _ => return Err(HeadError::BadRequest("invalid request target")),
    };
    if parts.method.as_str().len() + target.len() > limits.max_request_line_bytes {
        return Err(HeadError::UriTooLong);
    }
    if parts.headers.len() > limits.max_headers {
        return Err(HeadError::HeadersTooLarge);
    }
    let bad = |Malformed(why)| HeadError::BadRequest(why);
    let hosts = parts
        .headers
        .get_all(http::header::HOST)
        .iter()
        .map(|h| h.as_bytes());
    let authority =
        authority::resolve(uri_authority.map(str::as_bytes), hosts, Version::Http2).map_err(bad)?;
    if connect {
        if parts.uri.scheme().is_some() {
            return Err(HeadError::BadRequest(
                "CONNECT needs an authority-form target",
            ));
        }
        authority::connect_target(authority).map_err(bad)?;
    } else if !(target.starts_with('/') || target == "*") {
        return Err(HeadError::BadRequest("invalid request target"));
    }
    // A valid host is ASCII only.
    let authority = String::from_utf8_lossy(authority).into_owned();
    Ok(Checked {
        path: if connect {
            authority.clone()
        } else {
            target.to_string()
        },
        authority,
        connect,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn checked(method: &str, uri: &str, headers: &[(&str, &str)]) -> Result<Checked, HeadError> {
        check(&parts(method, uri, headers), &Limits::default())
    }

    #[test]
    fn authority_and_host_must_agree() {
        let ok = checked("GET", "http://a.example/x", &[("host", "A.example")]).unwrap();
        assert_eq!(ok.authority, "a.example");
        assert_eq!(ok.path, "/x");
        assert_eq!(
            checked("GET", "http://a.example/", &[("host", "b.example")]),
            Err(HeadError::BadRequest("host differs from :authority"))
        );
        assert_eq!(
            checked("GET", "/", &[("host", "a"), ("host", "a")]),
            Err(HeadError::BadRequest("more than one host header"))
        );
        assert_eq!(
            checked("GET", "/", &[("host", " h:8080 ")])
                .unwrap()
                .authority,
            "h:8080"
        );
        assert_eq!(
            checked("GET", "/", &[]),
            Err(HeadError::BadRequest("missing :authority and host"))
        );
        assert_eq!(
            checked("GET", "http://user@a.example/", &[]),
            Err(HeadError::BadRequest("invalid host"))
        );
        assert_eq!(
            checked("GET", "/", &[("host", "a b")]),
            Err(HeadError::BadRequest("invalid host"))
        );
    }

    #[test]
    fn listener_limits_apply() {
        let limits = Limits {
            max_request_line_bytes: 64,
            max_headers: 2,
            ..Limits::default()
        };
        let long = format!("http://a/{}", "x".repeat(61));
        assert_eq!(
            check(&parts("GET", &long, &[]), &limits),
            Err(HeadError::UriTooLong)
        );
        let fine = format!("http://a/{}", "x".repeat(60));
        assert!(check(&parts("GET", &fine, &[]), &limits).is_ok());
        let three = [("a", "1"), ("b", "2"), ("c", "3")];
        assert_eq!(
            check(&parts("GET", "http://a/", &three), &limits),
            Err(HeadError::HeadersTooLarge)
        );
        assert!(check(&parts("GET", "http://a/", &three[..2]), &limits).is_ok());
    }

    #[test]
    fn connect_targets() {
        let c = checked("CONNECT", "db.example:5432", &[]).unwrap();
        assert!(c.connect);
        assert_eq!(c.path, "db.example:5432");
        assert_eq!(
            checked("CONNECT", "db.example", &[]),
            Err(HeadError::BadRequest(
                "CONNECT needs an authority-form target"
            ))
        );
    }
}
