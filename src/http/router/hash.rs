//! A request's hash for a ring hash or Maglev cluster, from its route's `hash_policy`
//! (Envoy's `Http::HashPolicyImpl`): runs once per request after routing, when the
//! route has policies and its cluster hashes; `upstream::lb` maps the hash to an
//! endpoint. Every value is hashed with xxHash64 (seed 0) as Envoy does, so a key
//! lands on the endpoint Envoy would pick. Nothing here allocates, except the
//! `Set-Cookie` of a generated cookie.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use xxhash_rust::xxh64::xxh64;

use super::Request;
use crate::config::{HashKind, HashPolicy};
use crate::http::filter::set_headers::SetHeaders;

/// The downstream connection as the cookie and source-IP policies see it.
#[derive(Clone, Copy)]
pub struct Conn {
    /// Envoy's downstream remote address: the trusted client (after
    /// `x-forwarded-for`); its port is the peer's when it is the peer, else 0.
    pub remote: SocketAddr,
    pub local: SocketAddr,
}

/// Envoy's `generateHash`: each policy that yields a value is folded in (the running
/// hash rotated left by one, then xor-ed), and a `terminal` policy that yielded one
/// ends the walk. `None`: no policy matched (the load balancer then picks at random).
/// A cookie policy with a `ttl` whose cookie is missing generates one and adds its
/// `Set-Cookie` to `response`.
pub fn compute(
    policies: &[HashPolicy],
    req: &Request<'_>,
    conn: Conn,
    response: Option<&SetHeaders>,
) -> Option<u64> {
    let mut hash: Option<u64> = None;
    for p in policies {
        let new = match &p.kind {
            HashKind::Header(name) => header(req, name),
            HashKind::Cookie { name, ttl, path } => match cookie(req, name) {
                Some(v) if !v.is_empty() => Some(xxh64(v, 0)),
                _ => ttl.map(|ttl| generated_cookie(name, path, ttl, conn, response)),
            },
            HashKind::SourceIp => {
                let mut b = Text::default();
                let _ = write!(b, "{}", conn.remote.ip());
                Some(xxh64(b.bytes(), 0))
            }
            HashKind::QueryParameter(name) => query(req, name).map(|v| xxh64(v, 0)),
        };
        if let Some(n) = new {
            let old = hash.map_or(0, |h| h.rotate_left(1));
            hash = Some(old ^ n);
        }
        if p.terminal && hash.is_some() {
            break;
        }
    }
    hash
}

/// Every value of the header, sorted (so their order does not matter), each hashed
/// with the previous value's hash as its seed (0 for the first), as Envoy's
/// `xxHash64(Span)` does (the parity test shows it). Sorted without a buffer: the
/// values are walked in order by repeated minimum (a request has few fields of one
/// name).
fn header(req: &Request<'_>, name: &str) -> Option<u64> {
    let pseudo: Option<&[u8]> = match name {
        ":authority" => Some(req.authority),
        ":path" => Some(req.path.as_bytes()),
        ":method" => Some(req.method.as_bytes()),
        ":scheme" => Some(req.scheme.as_bytes()),
        _ => None,
    };
    if let Some(v) = pseudo {
        return Some(xxh64(v, 0));
    }
    let values = || {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let mut it = values();
    let first = it.next()?;
    if it.next().is_none() {
        return Some(xxh64(first, 0));
    }
    let mut h = 0u64;
    let mut prev: Option<&[u8]> = None;
    while let Some(v) = values().filter(|v| prev.is_none_or(|p| *v > p)).min() {
        for _ in values().filter(|x| *x == v) {
            h = xxh64(v, h);
        }
        prev = Some(v);
    }
    Some(h)
}

/// Envoy's `parseCookieValue`: the first `name=value` of the `cookie` fields, split on
/// `;`, leading spaces skipped, a value in double quotes unquoted.
fn cookie<'a>(req: &Request<'a>, name: &str) -> Option<&'a [u8]> {
    for h in req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
    {
        for part in h.value.split(|&b| b == b';') {
            let Some(start) = part.iter().position(|&b| b != b' ') else {
                continue;
            };
            let part = part.get(start..).unwrap_or_default();
            let Some(eq) = part.iter().position(|&b| b == b'=') else {
                continue;
            };
            let Some((k, v)) = part.split_at_checked(eq) else {
                continue;
            };
            if k != name.as_bytes() {
                continue;
            }
            let v = v.get(1..).unwrap_or_default();
            let unquoted = match v {
                [b'"', inner @ .., b'"'] => inner,
                _ => v,
            };
            return Some(unquoted);
        }
    }
    None
}

/// Envoy's `generateCookie`: the value is the hex of xxHash64 over the downstream
/// remote and local addresses' text; its `Set-Cookie` (`name="value"; Max-Age=..;
/// Path=..; HttpOnly`) is added to the response. The hash is the value's.
fn generated_cookie(
    name: &str,
    path: &str,
    ttl: std::time::Duration,
    conn: Conn,
    response: Option<&SetHeaders>,
) -> u64 {
    let mut addrs = Text::default();
    let _ = write!(addrs, "{}{}", conn.remote, conn.local);
    let mut value = Text::default();
    let _ = write!(value, "{:016x}", xxh64(addrs.bytes(), 0));
    if let Some(r) = response {
        let v = std::str::from_utf8(value.bytes()).unwrap_or_default();
        let mut c = format!("{name}=\"{v}\"");
        if !ttl.is_zero() {
            let _ = write!(c, "; Max-Age={}", ttl.as_secs());
        }
        if !path.is_empty() {
            let _ = write!(c, "; Path={path}");
        }
        c.push_str("; HttpOnly");
        r.add("set-cookie", c);
    }
    xxh64(value.bytes(), 0)
}

/// Envoy's query parsing for the hash: the first `name=value` (or bare `name`, an
/// empty value) of the query, not decoded.
fn query<'a>(req: &Request<'a>, name: &str) -> Option<&'a [u8]> {
    req.query().split('&').find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (k == name).then_some(v.as_bytes())
    })
}

/// Text formatted on the stack: two socket addresses at most (IPv6 with scope ids and
/// ports, 58 bytes each).
struct Text {
    buf: [u8; 128],
    len: usize,
}

impl Default for Text {
    fn default() -> Self {
        Text {
            buf: [0; 128],
            len: 0,
        }
    }
}

impl Text {
    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl std::fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The remote address the hash policies see: the trusted client, with the peer's
/// port when it is the peer.
pub fn remote(client: Option<IpAddr>, peer: SocketAddr) -> SocketAddr {
    match client {
        Some(ip) if ip != peer.ip() => SocketAddr::new(ip, 0),
        _ => peer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HashKind::*;

    fn req<'a>(path: &'a str, headers: &'a [httparse::Header<'a>]) -> Request<'a> {
        Request {
            method: "GET",
            authority: b"example.com",
            path,
            scheme: "http",
            headers,
        }
    }

    fn conn() -> Conn {
        Conn {
            remote: "10.1.2.3:5555".parse().unwrap(),
            local: "127.0.0.1:10000".parse().unwrap(),
        }
    }

    fn policy(kind: HashKind, terminal: bool) -> HashPolicy {
        HashPolicy { kind, terminal }
    }

    fn h<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
        httparse::Header {
            name,
            value: value.as_bytes(),
        }
    }

    #[test]
    fn each_policy_hashes_its_value_with_xxhash64() {
        let hs = [h("X-User", "alice"), h("cookie", "a=1; sticky=\"v1\"; b=2")];
        let r = req("/p?x=1&user=bob&user=carol", &hs);
        let one = |k| compute(&[policy(k, false)], &r, conn(), None);
        assert_eq!(one(Header("x-user".into())), Some(xxh64(b"alice", 0)));
        assert_eq!(one(Header("x-none".into())), None);
        let ck = |name: &str| Cookie {
            name: name.into(),
            ttl: None,
            path: String::new(),
        };
        assert_eq!(one(ck("sticky")), Some(xxh64(b"v1", 0)));
        assert_eq!(one(ck("b")), Some(xxh64(b"2", 0)));
        assert_eq!(one(ck("c")), None);
        assert_eq!(one(SourceIp), Some(xxh64(b"10.1.2.3", 0)));
        assert_eq!(one(QueryParameter("user".into())), Some(xxh64(b"bob", 0)));
        assert_eq!(one(QueryParameter("nope".into())), None);
    }

    #[test]
    fn header_values_hash_sorted_and_chained() {
        let a = [h("x-k", "b"), h("x-k", "a"), h("x-k", "b")];
        let b = [h("x-k", "a"), h("x-k", "b"), h("x-k", "b")];
        let p = [policy(Header("x-k".into()), false)];
        let ha = compute(&p, &req("/", &a), conn(), None);
        assert_eq!(ha, compute(&p, &req("/", &b), conn(), None));
        let chained = xxh64(b"b", xxh64(b"b", xxh64(b"a", 0)));
        assert_eq!(ha, Some(chained));
    }

    #[test]
    fn policies_combine_and_terminal_stops() {
        let hs = [h("x-a", "1"), h("x-b", "2")];
        let r = req("/", &hs);
        let (a, b) = (xxh64(b"1", 0), xxh64(b"2", 0));
        let both = [
            policy(Header("x-a".into()), false),
            policy(Header("x-b".into()), false),
        ];
        assert_eq!(compute(&both, &r, conn(), None), Some(a.rotate_left(1) ^ b));
        let stop = [
            policy(Header("x-missing".into()), true),
            policy(Header("x-a".into()), true),
            policy(Header("x-b".into()), false),
        ];
        assert_eq!(compute(&stop, &r, conn(), None), Some(a));
    }

    #[test]
    fn a_missing_cookie_with_a_ttl_is_generated() {
        let r = req("/", &[]);
        let store = SetHeaders::default();
        let p = [policy(
            Cookie {
                name: "sticky".into(),
                ttl: Some(std::time::Duration::from_secs(3600)),
                path: "/app".into(),
            },
            false,
        )];
        let got = compute(&p, &r, conn(), Some(&store));
        let value = format!("{:016x}", xxh64(b"10.1.2.3:5555127.0.0.1:10000", 0));
        assert_eq!(got, Some(xxh64(value.as_bytes(), 0)));
        let mut set = Vec::new();
        store.for_each(|n, v| set.push(format!("{n}: {v}")));
        assert_eq!(
            set,
            [format!(
                "set-cookie: sticky=\"{value}\"; Max-Age=3600; Path=/app; HttpOnly"
            )]
        );
    }
}
