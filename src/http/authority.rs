//! The Host / `:authority` rule: which authority a request is routed by, and when its
//! Host fields make it malformed. One rule for both protocols.
//!
//! Where it sits: the HTTP/1 request parser (`h1::request::parse`) and the HTTP/2
//! request check (`h2::request::check`) call [`resolve`] (and [`connect_target`] for
//! CONNECT) before a request is routed; a request refused here is a `400` on either
//! protocol, with the same reason.
//!
//! # The rule
//!
//! - At most one Host field (RFC 9112 section 3.2: more is a `400`; RFC 9113 section
//!   8.3.1 takes Host as HTTP/1 defines it).
//! - The authority of the request target wins: an absolute-form or authority-form target
//!   on HTTP/1, `:authority` on HTTP/2. On HTTP/1 a Host next to it is ignored (RFC 9112
//!   section 3.2.2: the recipient MUST ignore it); on HTTP/2 a Host that names another
//!   authority makes the request malformed (RFC 9113 section 8.3.1).
//! - Without one, the Host value is the authority. HTTP/1.1 requires a Host field (an
//!   empty value is allowed, for a target without an authority, RFC 9112 section 3.2);
//!   HTTP/1.0 may omit it; HTTP/2 requires `:authority` or Host.
//! - The authority is a reg-name or IP literal with an optional port ([`valid_host`]).
//! - A CONNECT target is `host:port` with a port (RFC 9110 section 9.3.6, RFC 9113
//!   section 8.5).

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use super::hop::trim;

/// The protocol a request came in, as far as the rule differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
    Http2,
}

/// Why a request's authority was refused: a `400` with this reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// Checks a Host value: a reg-name or IP literal with an optional port, nothing else.
pub fn valid_host(h: &[u8]) -> bool {
    !h.is_empty()
        && h.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~:[]!$&'()*+,;=%".contains(&b))
}

/// The authority a request is routed by: `target` is the request target's authority
/// (absolute- or authority-form on HTTP/1, `:authority` on HTTP/2), `hosts` the values
/// of its Host fields in order. Empty only for an HTTP/1 request that names none.
pub fn resolve<'a>(
    target: Option<&'a [u8]>,
    mut hosts: impl Iterator<Item = &'a [u8]>,
    version: Version,
) -> Result<&'a [u8], Malformed> {
    let host = hosts.next().map(trim);
    if hosts.next().is_some() {
        return Err(Malformed("more than one host header"));
    }
    let authority = match (target, host) {
        (Some(t), Some(h)) if version == Version::Http2 && !t.eq_ignore_ascii_case(h) => {
            return Err(Malformed("host differs from :authority"))
        }
        (Some(t), _) => t,
        (None, Some(h)) => h,
        (None, None) => match version {
            Version::Http10 => b"",
            Version::Http11 => return Err(Malformed("missing host header")),
            Version::Http2 => return Err(Malformed("missing :authority and host")),
        },
    };
    // HTTP/1 allows an empty Host (a target without an authority); HTTP/2 names one.
    let empty_ok = version != Version::Http2;
    if !(valid_host(authority) || (empty_ok && authority.is_empty())) {
        return Err(Malformed("invalid host"));
    }
    Ok(authority)
}

/// Checks a CONNECT target: `host:port`, a valid host and a decimal port.
pub fn connect_target(a: &[u8]) -> Result<(), Malformed> {
    let refused = Malformed("CONNECT needs an authority-form target");
    let colon = a.iter().rposition(|&b| b == b':').ok_or(refused)?;
    let (host, port) = a.split_at_checked(colon).ok_or(refused)?;
    let port = port.get(1..).unwrap_or_default();
    let port_ok = (1..=5).contains(&port.len())
        && port.iter().all(u8::is_ascii_digit)
        && std::str::from_utf8(port).is_ok_and(|p| p.parse::<u16>().is_ok());
    // An IP literal keeps its colons inside brackets: `[::1]` alone has no port.
    let host_ok = !host.is_empty() && (!host.starts_with(b"[") || host.ends_with(b"]"));
    if valid_host(a) && port_ok && host_ok {
        Ok(())
    } else {
        Err(refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Version::{Http10, Http11, Http2};

    fn r<'a>(
        target: Option<&'a str>,
        hosts: &[&'a str],
        v: Version,
    ) -> Result<&'a str, &'static str> {
        resolve(
            target.map(str::as_bytes),
            hosts.iter().map(|h| h.as_bytes()),
            v,
        )
        .map(|a| std::str::from_utf8(a).unwrap())
        .map_err(|Malformed(why)| why)
    }

    #[test]
    fn one_rule_for_both_protocols() {
        for v in [Http10, Http11, Http2] {
            assert_eq!(r(None, &[" h:8080 "], v), Ok("h:8080"));
            assert_eq!(r(Some("a"), &[], v), Ok("a"));
            assert_eq!(r(None, &["a", "a"], v), Err("more than one host header"));
            assert_eq!(
                r(Some("a"), &["a", "b"], v),
                Err("more than one host header")
            );
            assert_eq!(r(None, &["a b"], v), Err("invalid host"));
            assert_eq!(r(None, &["u@a"], v), Err("invalid host"));
            assert_eq!(r(Some("A.example"), &["a.EXAMPLE"], v), Ok("A.example"));
        }
        // The target's authority wins; HTTP/1 ignores a different Host, HTTP/2 refuses it.
        assert_eq!(r(Some("a"), &["b"], Http11), Ok("a"));
        assert_eq!(
            r(Some("a"), &["b"], Http2),
            Err("host differs from :authority")
        );
        assert_eq!(r(None, &[], Http10), Ok(""));
        assert_eq!(r(None, &[], Http11), Err("missing host header"));
        assert_eq!(r(None, &[], Http2), Err("missing :authority and host"));
        assert_eq!(r(None, &[""], Http11), Ok(""));
        assert_eq!(r(None, &[""], Http2), Err("invalid host"));
    }

    #[test]
    fn connect_targets_have_a_port() {
        for ok in ["db.example:5432", "[::1]:443", "10.0.0.1:0", "h:65535"] {
            assert_eq!(connect_target(ok.as_bytes()), Ok(()), "{ok}");
        }
        for bad in [
            "db.example",
            "[::1]",
            "h:",
            ":443",
            "h:http",
            "h:65536",
            "h:+443",
            "h:123456",
            "/x",
            "a b:1",
            "",
        ] {
            assert!(connect_target(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
