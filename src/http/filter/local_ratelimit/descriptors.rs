//! Rate-limit descriptors (Envoy's `RateLimit` actions on a route, a virtual host or the
//! filter itself): each policy turns a request into one descriptor, a list of
//! (key, value) entries, and a descriptor the filter configures (`descriptors`) with
//! exactly those entries, in order, takes its own token bucket.
//!
//! Actions supported: `request_headers`, `generic_key`, `remote_address` and
//! `masked_remote_address` (Envoy's downstream remote address: the client trusted after
//! `x-forwarded-for`, not the socket's peer), `destination_cluster` (the route entry's
//! cluster for this request), `header_value_match` and `query_parameter_value_match`
//! (a fixed entry when the request's headers / query parameters match, or with
//! `expect_match: false` when they do not; otherwise no descriptor). Nothing is allocated per request: entries borrow the
//! request's header values, and an address is formatted into a stack buffer.

use std::net::IpAddr;

use serde::Deserialize;

use crate::config::raw_match::RawHeaderMatch;
use crate::config::raw_match::RawQueryParameterMatch;
use crate::config::{HeaderMatch, QueryParameterMatch};
use crate::http::router::{header_matches_values, query_matches};

/// Checks the matchers of `header_value_match` / `query_parameter_value_match` (the
/// config builder's, which records its own errors under the path given).
pub(crate) trait Matchers {
    fn header(&mut self, p: &str, raw: &RawHeaderMatch) -> Option<HeaderMatch>;
    fn query(&mut self, p: &str, raw: &RawQueryParameterMatch) -> Option<QueryParameterMatch>;
}

/// Most actions in one policy, and most policies that apply to one request.
pub const MAX_ACTIONS: usize = 8;
pub const MAX_POLICIES: usize = 8;

/// One `rate_limits` entry, as written in the YAML (Envoy's `RateLimit`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    #[serde(default)]
    pub stage: u32,
    #[serde(default)]
    pub disable_key: String,
    pub actions: Vec<RawAction>,
}

/// One action (Envoy's `RateLimit.Action`): exactly one field is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAction {
    #[serde(default)]
    pub request_headers: Option<RawRequestHeaders>,
    #[serde(default)]
    pub generic_key: Option<RawGenericKey>,
    #[serde(default)]
    pub remote_address: Option<RawEmpty>,
    #[serde(default)]
    pub masked_remote_address: Option<RawMasked>,
    #[serde(default)]
    pub destination_cluster: Option<RawEmpty>,
    #[serde(default)]
    pub header_value_match: Option<RawHeaderValueMatch>,
    #[serde(default)]
    pub query_parameter_value_match: Option<RawQueryValueMatch>,
}

/// Envoy's `HeaderValueMatch`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeaderValueMatch {
    pub descriptor_value: String,
    #[serde(default)]
    pub descriptor_key: Option<String>,
    #[serde(default)]
    pub expect_match: Option<bool>,
    #[serde(default)]
    pub headers: Vec<RawHeaderMatch>,
}

/// Envoy's `QueryParameterValueMatch`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQueryValueMatch {
    pub descriptor_value: String,
    #[serde(default)]
    pub descriptor_key: Option<String>,
    #[serde(default)]
    pub expect_match: Option<bool>,
    #[serde(default)]
    pub query_parameters: Vec<RawQueryParameterMatch>,
}

/// Envoy's `MaskedRemoteAddress` (unset: 32 and 128, the whole address).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMasked {
    #[serde(default)]
    pub v4_prefix_mask_len: Option<u32>,
    #[serde(default)]
    pub v6_prefix_mask_len: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRequestHeaders {
    pub header_name: String,
    pub descriptor_key: String,
    #[serde(default)]
    pub skip_if_absent: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGenericKey {
    pub descriptor_value: String,
    #[serde(default)]
    pub descriptor_key: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEmpty {}

/// A checked policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub stage: u32,
    /// Envoy skips a policy with a `disable_key` in the local rate limit.
    pub disabled: bool,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The header's first value under `key`; a missing header drops the descriptor
    /// (or only this entry, with `skip_if_absent`).
    RequestHeaders {
        header: String,
        key: String,
        skip_if_absent: bool,
    },
    GenericKey {
        key: String,
        value: String,
    },
    /// `remote_address`: the downstream address.
    RemoteAddress,
    /// `masked_remote_address`: the downstream address's network, `addr/len`.
    MaskedRemoteAddress {
        v4: u8,
        v6: u8,
    },
    /// `destination_cluster`: the route entry's cluster (no entry: no descriptor).
    DestinationCluster,
    /// `header_value_match`: `(key, value)` when every matcher matches (is `expect`).
    HeaderValueMatch {
        key: String,
        value: String,
        expect: bool,
        headers: Vec<HeaderMatch>,
    },
    /// `query_parameter_value_match`, likewise over the query parameters.
    QueryValueMatch {
        key: String,
        value: String,
        expect: bool,
        params: Vec<QueryParameterMatch>,
    },
}

// Matchers compare by their configured form; a checked config equals itself.
impl Eq for Action {}

/// Checks `rate_limits` (errors are (field path, message)).
pub(crate) fn build(
    raw: &[RawRateLimit],
    p: &str,
    errors: &mut Vec<(String, String)>,
    matchers: &mut dyn Matchers,
) -> Vec<Policy> {
    if raw.len() > MAX_POLICIES {
        errors.push((
            p.to_string(),
            format!("at most {MAX_POLICIES} rate limits per level"),
        ));
    }
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let rp = format!("{p}[{i}]");
        if r.actions.is_empty() {
            errors.push((
                format!("{rp}.actions"),
                "must list at least one action".into(),
            ));
        }
        if r.actions.len() > MAX_ACTIONS {
            errors.push((
                format!("{rp}.actions"),
                format!("at most {MAX_ACTIONS} actions"),
            ));
        }
        if r.stage > 10 {
            errors.push((format!("{rp}.stage"), "must be between 0 and 10".into()));
        }
        let mut actions = Vec::new();
        for (j, a) in r.actions.iter().enumerate() {
            let ap = format!("{rp}.actions[{j}]");
            let set = [
                a.request_headers.is_some(),
                a.generic_key.is_some(),
                a.remote_address.is_some(),
                a.masked_remote_address.is_some(),
                a.destination_cluster.is_some(),
                a.header_value_match.is_some(),
                a.query_parameter_value_match.is_some(),
            ]
            .iter()
            .filter(|s| **s)
            .count();
            if set != 1 {
                errors.push((
                    ap,
                    "set exactly one of `request_headers`, `generic_key`, `remote_address`, `masked_remote_address`, `destination_cluster`, `header_value_match`, `query_parameter_value_match` (the actions Outrigger supports)".into(),
                ));
                continue;
            }
            if let Some(m) = &a.masked_remote_address {
                let v4 = m.v4_prefix_mask_len.unwrap_or(32);
                let v6 = m.v6_prefix_mask_len.unwrap_or(128);
                if v4 > 32 {
                    errors.push((
                        format!("{ap}.masked_remote_address.v4_prefix_mask_len"),
                        "must be at most 32".into(),
                    ));
                }
                if v6 > 128 {
                    errors.push((
                        format!("{ap}.masked_remote_address.v6_prefix_mask_len"),
                        "must be at most 128".into(),
                    ));
                }
                actions.push(Action::MaskedRemoteAddress {
                    v4: v4.min(32) as u8,
                    v6: v6.min(128) as u8,
                });
                continue;
            }
            if a.destination_cluster.is_some() {
                actions.push(Action::DestinationCluster);
                continue;
            }
            if let Some(m) = &a.header_value_match {
                let mp = format!("{ap}.header_value_match");
                if m.descriptor_value.is_empty() {
                    errors.push((format!("{mp}.descriptor_value"), "must not be empty".into()));
                }
                let headers = m
                    .headers
                    .iter()
                    .enumerate()
                    .filter_map(|(k, h)| matchers.header(&format!("{mp}.headers[{k}]"), h))
                    .collect();
                actions.push(Action::HeaderValueMatch {
                    key: key_or(&m.descriptor_key, "header_match"),
                    value: m.descriptor_value.clone(),
                    expect: m.expect_match.unwrap_or(true),
                    headers,
                });
                continue;
            }
            if let Some(m) = &a.query_parameter_value_match {
                let mp = format!("{ap}.query_parameter_value_match");
                if m.descriptor_value.is_empty() {
                    errors.push((format!("{mp}.descriptor_value"), "must not be empty".into()));
                }
                let params = m
                    .query_parameters
                    .iter()
                    .enumerate()
                    .filter_map(|(k, q)| matchers.query(&format!("{mp}.query_parameters[{k}]"), q))
                    .collect();
                actions.push(Action::QueryValueMatch {
                    key: key_or(&m.descriptor_key, "query_match"),
                    value: m.descriptor_value.clone(),
                    expect: m.expect_match.unwrap_or(true),
                    params,
                });
                continue;
            }
            match (&a.request_headers, &a.generic_key, &a.remote_address) {
                (Some(h), None, None) => {
                    if h.header_name.is_empty() {
                        errors.push((
                            format!("{ap}.request_headers.header_name"),
                            "must not be empty".into(),
                        ));
                    }
                    if h.descriptor_key.is_empty() {
                        errors.push((
                            format!("{ap}.request_headers.descriptor_key"),
                            "must not be empty".into(),
                        ));
                    }
                    actions.push(Action::RequestHeaders {
                        header: h.header_name.to_ascii_lowercase(),
                        key: h.descriptor_key.clone(),
                        skip_if_absent: h.skip_if_absent,
                    });
                }
                (None, Some(g), None) => {
                    if g.descriptor_value.is_empty() {
                        errors.push((
                            format!("{ap}.generic_key.descriptor_value"),
                            "must not be empty".into(),
                        ));
                    }
                    actions.push(Action::GenericKey {
                        key: g
                            .descriptor_key
                            .clone()
                            .filter(|k| !k.is_empty())
                            .unwrap_or_else(|| "generic_key".into()),
                        value: g.descriptor_value.clone(),
                    });
                }
                _ => actions.push(Action::RemoteAddress),
            }
        }
        out.push(Policy {
            stage: r.stage,
            disabled: !r.disable_key.is_empty(),
            actions,
        });
    }
    out
}

/// A descriptor key, or Envoy's default for the action.
fn key_or(k: &Option<String>, default: &str) -> String {
    k.clone()
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// What a policy's descriptor entries are read from.
pub struct Source<'a> {
    pub headers: &'a [httparse::Header<'a>],
    /// The request's query (after `?`, empty without one).
    pub query: &'a str,
    /// Envoy's downstream remote address (after `x-forwarded-for`).
    pub remote: IpAddr,
    /// The route entry's cluster name for this request (`None`: no route entry).
    pub cluster: Option<&'a [u8]>,
}

/// One request descriptor entry's value.
#[derive(Clone, Copy)]
enum Value<'a> {
    Bytes(&'a [u8]),
    /// An address masked to its first `len` bits, written `addr/len` when compared.
    Masked(IpAddr, u8),
}

/// A request descriptor: up to `MAX_ACTIONS` entries, borrowed.
pub struct Generated<'a> {
    entries: [(&'a str, Value<'a>); MAX_ACTIONS],
    len: usize,
}

impl Policy {
    /// Envoy's `populateDescriptors` for one policy: `None` when an action could not
    /// produce its entry (a missing header without `skip_if_absent`). `addr` is the
    /// formatted remote address, shared by every policy of the request.
    pub fn generate<'a>(&'a self, src: &Source<'a>, addr: &'a str) -> Option<Generated<'a>> {
        let mut g = Generated {
            entries: [("", Value::Bytes(b"")); MAX_ACTIONS],
            len: 0,
        };
        for a in &self.actions {
            let entry = match a {
                Action::RequestHeaders {
                    header,
                    key,
                    skip_if_absent,
                } => match src
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(header))
                {
                    Some(h) => (key.as_str(), Value::Bytes(h.value)),
                    None if *skip_if_absent => continue,
                    None => return None,
                },
                Action::GenericKey { key, value } => (key.as_str(), Value::Bytes(value.as_bytes())),
                Action::RemoteAddress => ("remote_address", Value::Bytes(addr.as_bytes())),
                Action::MaskedRemoteAddress { v4, v6 } => {
                    let len = if src.remote.is_ipv4() { *v4 } else { *v6 };
                    ("masked_remote_address", Value::Masked(src.remote, len))
                }
                Action::DestinationCluster => ("destination_cluster", Value::Bytes(src.cluster?)),
                Action::HeaderValueMatch {
                    key,
                    value,
                    expect,
                    headers,
                } => {
                    let all = headers.iter().all(|m| {
                        let values = src
                            .headers
                            .iter()
                            .filter(|h| h.name.eq_ignore_ascii_case(&m.name))
                            .map(|h| h.value);
                        header_matches_values(m, values)
                    });
                    if all != *expect {
                        return None;
                    }
                    (key.as_str(), Value::Bytes(value.as_bytes()))
                }
                Action::QueryValueMatch {
                    key,
                    value,
                    expect,
                    params,
                } => {
                    if params.iter().all(|m| query_matches(m, src.query)) != *expect {
                        return None;
                    }
                    (key.as_str(), Value::Bytes(value.as_bytes()))
                }
            };
            let slot = g.entries.get_mut(g.len)?;
            *slot = entry;
            g.len += 1;
        }
        Some(g)
    }
}

impl Generated<'_> {
    /// True if the configured descriptor `entries` are exactly these, in order.
    pub fn equals(&self, entries: &[(String, String)]) -> bool {
        let mine = self.entries.get(..self.len).unwrap_or_default();
        mine.len() == entries.len()
            && mine.iter().zip(entries).all(|((k, v), (ck, cv))| {
                *k == ck.as_str()
                    && match v {
                        Value::Bytes(b) => *b == cv.as_bytes(),
                        Value::Masked(ip, len) => {
                            let mut buf = [0u8; 56];
                            format_masked(*ip, *len, &mut buf) == cv.as_str()
                        }
                    }
            })
    }
}

/// The remote address as Envoy writes it (`addressAsString`), into `buf`.
pub fn format_addr(ip: IpAddr, buf: &mut [u8; 48]) -> &str {
    use std::io::Write;
    let len = {
        let mut cur = std::io::Cursor::new(&mut buf[..]);
        let _ = write!(cur, "{ip}");
        cur.position() as usize
    };
    std::str::from_utf8(buf.get(..len).unwrap_or_default()).unwrap_or_default()
}

/// Envoy's `CidrRange::asString` of the address masked to `len` bits: `addr/len`.
pub fn format_masked(ip: IpAddr, len: u8, buf: &mut [u8; 56]) -> &str {
    use std::io::Write;
    let masked: IpAddr = match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let mask = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            IpAddr::V6((bits & mask).into())
        }
    };
    let n = {
        let mut cur = std::io::Cursor::new(&mut buf[..]);
        let _ = write!(cur, "{masked}/{len}");
        cur.position() as usize
    };
    std::str::from_utf8(buf.get(..n).unwrap_or_default()).unwrap_or_default()
}

/// For configs checked without the config builder (unit tests): no matcher is built.
#[cfg(test)]
pub(crate) struct NoMatchers;

#[cfg(test)]
impl Matchers for NoMatchers {
    fn header(&mut self, _: &str, _: &RawHeaderMatch) -> Option<HeaderMatch> {
        None
    }
    fn query(&mut self, _: &str, _: &RawQueryParameterMatch) -> Option<QueryParameterMatch> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies(yaml: &str) -> (Vec<Policy>, Vec<(String, String)>) {
        let raw: Vec<RawRateLimit> = serde_yaml::from_str(yaml).unwrap();
        let mut errors = Vec::new();
        (build(&raw, "rl", &mut errors, &mut NoMatchers), errors)
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn descriptors_are_generated_as_envoy_does() {
        let (p, errors) = policies(
            "- actions: [{generic_key: {descriptor_value: api}}, {request_headers: {header_name: X-User, descriptor_key: user}}]\n\
             - actions: [{request_headers: {header_name: x-opt, descriptor_key: o, skip_if_absent: true}}, {remote_address: {}}]\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let headers = [httparse::Header {
            name: "x-user",
            value: b"alice",
        }];
        let src = Source {
            headers: &headers,
            query: "",
            remote: "10.0.0.1".parse().unwrap(),
            cluster: None,
        };
        let mut buf = [0; 48];
        let addr = format_addr(src.remote, &mut buf);
        let g = p[0].generate(&src, addr).unwrap();
        assert!(g.equals(&pairs(&[("generic_key", "api"), ("user", "alice")])));
        assert!(!g.equals(&pairs(&[("generic_key", "api")])));
        let g = p[1].generate(&src, addr).unwrap();
        assert!(g.equals(&pairs(&[("remote_address", "10.0.0.1")])));
        // A missing header without skip_if_absent: no descriptor at all.
        let none = Source {
            headers: &[],
            query: "",
            remote: src.remote,
            cluster: None,
        };
        assert!(p[0].generate(&none, addr).is_none());
    }

    #[test]
    fn masked_addresses_and_the_destination_cluster() {
        let (p, errors) = policies(
            "- actions: [{masked_remote_address: {v4_prefix_mask_len: 24, v6_prefix_mask_len: 64}}]\n\
             - actions: [{masked_remote_address: {}}, {destination_cluster: {}}]\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let src = |ip: &str, cluster: Option<&'static [u8]>| Source {
            headers: &[],
            query: "",
            remote: ip.parse().unwrap(),
            cluster,
        };
        let s = src("10.1.2.3", Some(b"backend"));
        let g = p[0].generate(&s, "").unwrap();
        assert!(g.equals(&pairs(&[("masked_remote_address", "10.1.2.0/24")])));
        let g = p[1].generate(&s, "").unwrap();
        assert!(g.equals(&pairs(&[
            ("masked_remote_address", "10.1.2.3/32"),
            ("destination_cluster", "backend")
        ])));
        let s6 = src("2001:db8::1:2", None);
        let g = p[0].generate(&s6, "").unwrap();
        assert!(g.equals(&pairs(&[("masked_remote_address", "2001:db8::/64")])));
        // No route entry: no destination cluster, no descriptor.
        assert!(p[1].generate(&s6, "").is_none());
        let mut buf = [0; 56];
        assert_eq!(
            format_masked("10.1.2.3".parse().unwrap(), 0, &mut buf),
            "0.0.0.0/0"
        );
        let (_, errors) =
            policies("- actions: [{masked_remote_address: {v4_prefix_mask_len: 33}}]\n");
        assert_eq!(
            errors[0].0,
            "rl[0].actions[0].masked_remote_address.v4_prefix_mask_len"
        );
    }

    #[test]
    fn bad_policies_name_the_field() {
        let (_, errors) = policies(
            "- actions: [{generic_key: {descriptor_value: ''}}, {}]\n- stage: 11\n  actions: []\n",
        );
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "rl[0].actions[0].generic_key.descriptor_value",
                "rl[0].actions[1]",
                "rl[1].actions",
                "rl[1].stage",
            ]
        );
    }
}
