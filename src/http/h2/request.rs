//! Checks an HTTP/2 request head by the rules the HTTP/1.1 codec applies to its own
//! (`h1::head`), before it is routed: the listener's limits on the request line and the
//! header count, and the authority. The h2 crate has already refused what HTTP/2 itself
//! forbids (connection-specific headers, bad pseudo-headers) and enforces the header
//! section size (`max_header_list_size`, answered with 431).
//!
//! Also the stream's lookups of request fields by name: which of them the head carries
//! (`Carried`, one pass), and the router's view of the `x-envoy-*` headers it honours
//! (`Honoured`).

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::borrow::Cow;

use http::request::Parts;

use crate::config::Limits;
use crate::http::authority::{self, Malformed, Version};
use crate::http::h1::head::HeadError;
use crate::upstream::request::retry::Headers;

/// Which of the fields a stream asks for by name its request carries, from one pass
/// over the head's names: a request without one skips asking. A lookup in the header
/// map hashes the name (and parses it first when given as text); a stream asked for
/// 19 names, 8 of them ones a plain request never carries (the retry and timeout
/// headers, `grpc-timeout`, `x-forwarded-for`, XFCC, Host).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Carried {
    pub host: bool,
    /// The first `content-type` names gRPC (what `HeaderMap::get` would have read).
    pub grpc: bool,
    pub grpc_timeout: bool,
    pub xff: bool,
    pub xfcc: bool,
    pub request_id: bool,
    /// One of the `x-envoy-*` fields the router reads and consumes
    /// (`retry_model::CONSUMED`).
    pub consumed: bool,
}

impl Carried {
    pub(crate) fn of(headers: &http::HeaderMap) -> Carried {
        let mut c = Carried::default();
        let mut content_type = false;
        for (name, value) in headers {
            match name.as_str() {
                "host" => c.host = true,
                "content-type" if !content_type => {
                    content_type = true;
                    c.grpc = crate::http::grpc_local::is_grpc_content_type(value.as_bytes());
                }
                "grpc-timeout" => c.grpc_timeout = true,
                "x-forwarded-for" => c.xff = true,
                crate::http::xfcc::XFCC => c.xfcc = true,
                crate::http::stamp::REQUEST_ID => c.request_id = true,
                n => c.consumed |= crate::upstream::request::retry::consumed(n),
            }
        }
        c
    }
}

/// The routing facts of a request that passed the checks.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Checked<'a> {
    /// `:authority`, or Host when there is no `:authority`: borrowed from the head (a
    /// valid host is ASCII), so a stream takes no allocation for it.
    pub authority: Cow<'a, str>,
    /// Path and query; for CONNECT its `host:port` target. Borrowed likewise.
    pub path: Cow<'a, str>,
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
///
/// `host`: whether the head carries a Host field (`Carried::host`).
pub(crate) fn check<'a>(
    parts: &'a Parts,
    limits: &Limits,
    host: bool,
) -> Result<Checked<'a>, HeadError> {
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
    let hosts = values_if(host, &parts.headers, http::header::HOST);
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
    // A valid host is ASCII only: the text is borrowed as it came.
    let authority = String::from_utf8_lossy(authority);
    Ok(Checked {
        path: if connect {
            authority.clone()
        } else {
            Cow::Borrowed(target)
        },
        authority,
        connect,
    })
}

/// The request headers the router honours: those the connection manager's sanitizing
/// (`sanitize_envoy_headers`) leaves in place.
pub(super) struct Honoured<'a> {
    pub headers: &'a http::HeaderMap,
    pub edits: &'a crate::http::filter::headers::Edits<'a>,
    /// The head carries one of the fields the router consumes (`Carried::consumed`).
    pub consumed: bool,
}

impl Honoured<'_> {
    /// Whether `name` is worth a lookup: not sanitized away, and not a consumed field
    /// the head has none of. Every forwarded request asks for the retry headers
    /// (`RetryState::new`), and the map's lookup hashes the name.
    fn asks(&self, name: &str) -> bool {
        (self.consumed || !crate::upstream::request::retry::consumed(name))
            && self.edits.keeps(name)
    }
}

impl Headers for Honoured<'_> {
    fn values<'v>(&'v self, name: &'v str) -> impl Iterator<Item = &'v [u8]> + 'v {
        values_if(self.asks(name), self.headers, name)
    }
    fn known<'v>(&'v self, name: &'static http::HeaderName) -> impl Iterator<Item = &'v [u8]> + 'v {
        values_if(self.asks(name.as_str()), self.headers, name)
    }
}

/// Every value of the field `name`, in order, looked up only if `present` (the head
/// carries it, by `Carried`): otherwise none, without hashing the name.
pub(super) fn values_if<K: http::header::AsHeaderName>(
    present: bool,
    headers: &http::HeaderMap,
    name: K,
) -> impl Iterator<Item = &[u8]> {
    present
        .then(|| headers.get_all(name).iter())
        .into_iter()
        .flatten()
        .map(|v| v.as_bytes())
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

    /// `check`'s verdict, its text owned (it borrows from the head made here).
    fn checked(
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> Result<Checked<'static>, HeadError> {
        let p = parts(method, uri, headers);
        check(&p, &Limits::default(), Carried::of(&p.headers).host).map(|c| Checked {
            authority: Cow::Owned(c.authority.into_owned()),
            path: Cow::Owned(c.path.into_owned()),
            connect: c.connect,
        })
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
            check(&parts("GET", &long, &[]), &limits, false),
            Err(HeadError::UriTooLong)
        );
        let fine = format!("http://a/{}", "x".repeat(60));
        assert!(check(&parts("GET", &fine, &[]), &limits, false).is_ok());
        let three = [("a", "1"), ("b", "2"), ("c", "3")];
        assert_eq!(
            check(&parts("GET", "http://a/", &three), &limits, false),
            Err(HeadError::HeadersTooLarge)
        );
        assert!(check(&parts("GET", "http://a/", &three[..2]), &limits, false).is_ok());
    }

    #[test]
    fn carried_fields_are_the_ones_looked_up() {
        let c = |h: &[(&str, &str)]| Carried::of(&parts("GET", "http://a/", h).headers);
        assert_eq!(
            c(&[("user-agent", "x"), ("accept", "*/*")]),
            Carried::default()
        );
        let all = c(&[
            ("Host", "a"),
            ("content-type", "application/grpc+proto"),
            ("grpc-timeout", "1S"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-client-cert", "By=a"),
            ("x-request-id", "r"),
            ("x-envoy-max-retries", "2"),
        ]);
        assert_eq!(
            all,
            Carried {
                host: true,
                grpc: true,
                grpc_timeout: true,
                xff: true,
                xfcc: true,
                request_id: true,
                consumed: true,
            }
        );
        // Only the first content-type counts (as `HeaderMap::get`), and an `x-envoy-`
        // field the router does not consume is not one.
        let c2 = c(&[
            ("content-type", "text/plain"),
            ("content-type", "application/grpc"),
            ("x-envoy-foo", "1"),
        ]);
        assert_eq!(c2, Carried::default());
        assert!(c(&[("content-type", "application/grpc")]).grpc);
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
