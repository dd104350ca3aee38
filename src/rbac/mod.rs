//! Role-based access control: the policy engine shared by the HTTP `rbac` filter
//! (`http::filter::rbac`, on each request head) and the network `rbac` filter
//! (`listener::rbac`, once per connection before its terminal filter), with Envoy's
//! semantics (`source/extensions/filters/common/rbac/`).
//!
//! A config's policies are compiled once, when the config is built
//! (`config::build::rbac`), into a tree of [`Permission`]s and [`Principal`]s: header
//! and string matchers are the router's (`http::router`), CIDR ranges are a network and
//! a mask as integers. Evaluating it walks the tree over borrowed request and
//! connection facts ([`Input`]) and allocates nothing.
//!
//! An engine's policies are tried in name order (Envoy keeps them in a sorted map) and
//! the first whose permissions and principals both match is the matched policy. Its
//! action decides: `ALLOW` allows only a request some policy matches, `DENY` denies
//! only those, `LOG` allows everything (Envoy then only marks the request for the
//! access log, which Outrigger's access log does not read yet).

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::net::{IpAddr, SocketAddr};

use crate::config::{Forwarding, HeaderMatch, HeaderMatchKind, StringMatch};
use crate::http::router::{self, header_matches, string_matches};
use crate::tls::TlsInfo;

/// `RBAC.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
    Log,
}

/// One set of rules (Envoy's `RBAC` message): enforced, or shadow.
#[derive(Debug, Clone, PartialEq)]
pub struct Engine {
    pub action: Action,
    /// Sorted by name.
    pub policies: Vec<(String, Policy)>,
}

/// A policy matches when one of its permissions and one of its principals match.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub permissions: Vec<Permission>,
    pub principals: Vec<Principal>,
}

/// What a request or connection does (Envoy's `Permission`).
#[derive(Debug, Clone, PartialEq)]
pub enum Permission {
    Any,
    And(Vec<Permission>),
    Or(Vec<Permission>),
    Not(Box<Permission>),
    Header(HeaderMatch),
    /// The path without its query and fragment.
    UrlPath(StringMatch),
    DestinationIp(Cidr),
    /// Envoy's field is a `uint32`; a value above 65535 never matches.
    DestinationPort(u32),
    /// `[start, end)`.
    DestinationPortRange(u32, u32),
    /// The TLS SNI (empty on a plain connection).
    RequestedServerName(StringMatch),
}

/// Who sends it (Envoy's `Principal`).
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    Any,
    And(Vec<Principal>),
    Or(Vec<Principal>),
    Not(Box<Principal>),
    /// A TLS peer; with a matcher, one whose URI SAN, DNS SAN or subject (RFC 2253;
    /// empty without a certificate) matches it, as Envoy's `AuthenticatedMatcher`.
    Authenticated(Option<StringMatch>),
    /// The connection's peer address.
    SourceIp(Cidr),
    /// The downstream's direct peer (the same as `SourceIp`: Outrigger has no PROXY
    /// protocol listener filter that could make them differ).
    DirectRemoteIp(Cidr),
    /// The client as the connection manager trusts it: from `x-forwarded-for` under
    /// `use_remote_address: false` or `xff_num_trusted_hops`, else the peer.
    RemoteIp(Cidr),
    Header(HeaderMatch),
    UrlPath(StringMatch),
}

/// An address range as integers; an address of the other family never matches (as
/// Envoy's `CidrRange::isInRange`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cidr {
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

impl Cidr {
    /// `addr/len`, host bits cleared; a length past the family's size is clamped to it
    /// (Envoy's `CidrRange::create` does the same).
    pub fn new(addr: IpAddr, len: u32) -> Cidr {
        match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - len.min(32)).unwrap_or(0);
                Cidr::V4 {
                    net: u32::from(a) & mask,
                    mask,
                }
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - len.min(128)).unwrap_or(0);
                Cidr::V6 {
                    net: u128::from(a) & mask,
                    mask,
                }
            }
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Cidr::V4 { net, mask }, IpAddr::V4(a)) => u32::from(a) & mask == *net,
            (Cidr::V6 { net, mask }, IpAddr::V6(a)) => u128::from(a) & mask == *net,
            _ => false,
        }
    }
}

/// The connection facts RBAC reads.
#[derive(Debug, Clone, Copy)]
pub struct Conn<'a> {
    /// The connection's peer.
    pub peer: IpAddr,
    /// The connection's local address (the destination the client connected to).
    pub local: SocketAddr,
    pub tls: Option<&'a TlsInfo>,
}

/// Everything one evaluation reads: the connection, and for HTTP the request head and
/// the connection manager's forwarding settings (for `remote_ip`).
#[derive(Clone, Copy)]
pub struct Input<'a> {
    pub conn: Conn<'a>,
    pub http: Option<(&'a router::Request<'a>, &'a Forwarding)>,
}

impl Input<'_> {
    /// Envoy's downstream remote address: what the connection manager decided from
    /// `x-forwarded-for` (computed only when a `remote_ip` principal asks).
    fn remote(&self) -> IpAddr {
        let peer = self.conn.peer;
        let Some((req, fwd)) = self.http else {
            return peer;
        };
        let xff = req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
            .map(|h| h.value);
        crate::http::forwarding::decide(fwd, peer, xff)
            .client
            .unwrap_or(peer)
    }

    fn header(&self, m: &HeaderMatch) -> bool {
        match self.http {
            Some((req, _)) => header_matches(m, req),
            // The network filter matches against an empty header map: every header is
            // missing.
            None => missing_header_matches(m),
        }
    }

    fn path(&self, m: &StringMatch) -> bool {
        self.http
            .is_some_and(|(req, _)| string_matches(m, req.path_only().as_bytes()))
    }

    fn authenticated(&self, m: Option<&StringMatch>) -> bool {
        let Some(tls) = self.conn.tls else {
            return false;
        };
        let Some(m) = m else {
            return true;
        };
        let sans = &tls.peer;
        if sans
            .uri
            .iter()
            .chain(&sans.dns)
            .any(|n| string_matches(m, n.as_bytes()))
        {
            return true;
        }
        // Envoy's `AuthenticatedMatcher` last tries the certificate's subject (RFC 2253,
        // `tls::subject`; empty without a certificate), whatever SANs it has.
        string_matches(m, sans.subject.as_bytes())
    }
}

/// Envoy's `HeaderUtility::matchHeaders` on a header that is absent.
fn missing_header_matches(m: &HeaderMatch) -> bool {
    match &m.kind {
        // Absent: `present_match: false` holds (then inverted).
        HeaderMatchKind::Present(want) => *want == m.invert,
        _ if !m.treat_missing_as_empty => false,
        // An empty value is no integer.
        HeaderMatchKind::Range { .. } => m.invert,
        HeaderMatchKind::String(s) => string_matches(s, b"") != m.invert,
    }
}

impl Permission {
    pub fn matches(&self, i: &Input<'_>) -> bool {
        match self {
            Permission::Any => true,
            Permission::And(v) => v.iter().all(|p| p.matches(i)),
            Permission::Or(v) => v.iter().any(|p| p.matches(i)),
            Permission::Not(p) => !p.matches(i),
            Permission::Header(h) => i.header(h),
            Permission::UrlPath(m) => i.path(m),
            Permission::DestinationIp(c) => c.contains(i.conn.local.ip()),
            Permission::DestinationPort(p) => u32::from(i.conn.local.port()) == *p,
            Permission::DestinationPortRange(start, end) => {
                (*start..*end).contains(&u32::from(i.conn.local.port()))
            }
            Permission::RequestedServerName(m) => {
                string_matches(m, i.conn.tls.map_or("", |t| t.sni.as_str()).as_bytes())
            }
        }
    }
}

impl Principal {
    pub fn matches(&self, i: &Input<'_>) -> bool {
        match self {
            Principal::Any => true,
            Principal::And(v) => v.iter().all(|p| p.matches(i)),
            Principal::Or(v) => v.iter().any(|p| p.matches(i)),
            Principal::Not(p) => !p.matches(i),
            Principal::Authenticated(m) => i.authenticated(m.as_ref()),
            Principal::SourceIp(c) | Principal::DirectRemoteIp(c) => c.contains(i.conn.peer),
            Principal::RemoteIp(c) => c.contains(i.remote()),
            Principal::Header(h) => i.header(h),
            Principal::UrlPath(m) => i.path(m),
        }
    }
}

/// The outcome of one engine on one request or connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'e> {
    pub allowed: bool,
    /// The first matching policy, by name.
    pub policy: Option<&'e str>,
}

impl Engine {
    pub fn decide(&self, i: &Input<'_>) -> Decision<'_> {
        let policy = self
            .policies
            .iter()
            .find(|(_, p)| {
                p.permissions.iter().any(|x| x.matches(i))
                    && p.principals.iter().any(|x| x.matches(i))
            })
            .map(|(name, _)| name.as_str());
        let allowed = match self.action {
            Action::Allow => policy.is_some(),
            Action::Deny => policy.is_none(),
            Action::Log => true,
        };
        Decision { allowed, policy }
    }
}

/// An enforced engine and a shadow one, either absent (Envoy's filter config, or a
/// route's `RBACPerRoute` replacing it).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rules {
    pub rules: Option<Engine>,
    pub shadow: Option<Engine>,
}

/// Indices of a filter's four counters in `Snapshot::counters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub allowed: usize,
    pub denied: usize,
    pub shadow_allowed: usize,
    pub shadow_denied: usize,
}

/// Runs the shadow engine (counted only) then the enforced one (counted, and its
/// answer), incrementing the counters through `inc`. `None`: no enforced engine, the
/// request passes uncounted. `Some(decision)` otherwise.
pub fn evaluate<'e>(
    r: &'e Rules,
    c: &Counters,
    i: &Input<'_>,
    mut inc: impl FnMut(usize),
) -> Option<Decision<'e>> {
    if let Some(s) = &r.shadow {
        let d = s.decide(i);
        inc(if d.allowed {
            c.shadow_allowed
        } else {
            c.shadow_denied
        });
    }
    let d = r.rules.as_ref()?.decide(i);
    inc(if d.allowed { c.allowed } else { c.denied });
    Some(d)
}

/// Envoy's response-code details (and connection termination details) for a denial:
/// the policy name with whitespace replaced by `_`, or `none`. Written to the debug log.
pub fn denial_details(policy: Option<&str>) -> String {
    let name: String = policy
        .unwrap_or("none")
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    format!("rbac_access_denied_matched_policy[{name}]")
}

#[cfg(test)]
mod tests;
