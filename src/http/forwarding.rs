//! Forwarding headers, one policy for every protocol path: what the proxy does with
//! `x-forwarded-for` and `x-forwarded-proto`, and which address it trusts as the client.
//!
//! The rules are Envoy's (`use_remote_address`, `xff_num_trusted_hops`,
//! `skip_xff_append` on the HTTP connection manager):
//!
//! - `use_remote_address: true` (the sidecar default): the peer is appended to XFF
//!   (unless `skip_xff_append`). The trusted client is the peer, or, with N trusted hops,
//!   the Nth address from the right of the incoming XFF. `x-forwarded-proto` is
//!   overwritten with the connection's scheme unless the previous hop is trusted (N > 0)
//!   and set one.
//! - `use_remote_address: false` (behind a trusted proxy): XFF passes unchanged; the
//!   trusted client is the (N+1)th address from the right of XFF; an incoming
//!   `x-forwarded-proto` is kept, and set when absent.
//!
//! Not modelled: Envoy appends its node's address instead of the peer's when the peer
//! is a loopback address; Outrigger always appends the peer.
//!
//! The encoders (HTTP/1 `h1::encode`, the HTTP/2 translations) ask this module and
//! write the result; nothing here allocates.

use std::net::IpAddr;

use crate::config::{CidrRange, Forwarding};

/// What to write upstream for one request, and who the client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Append this address to `x-forwarded-for` (the incoming values are kept in front).
    pub append: Option<IpAddr>,
    /// Replace any incoming `x-forwarded-proto` with the connection's scheme; when false
    /// an incoming value is kept (and the scheme is written only if there was none).
    pub overwrite_proto: bool,
    /// The client address the proxy trusts (for logs and, later, policy), if known.
    pub client: Option<IpAddr>,
    /// The downstream connection is TLS: the scheme written is `https` (set by the
    /// caller, which knows the connection).
    pub tls: bool,
}

impl Decision {
    /// The connection's scheme, for `x-forwarded-proto`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}

/// Decides for a request from `peer` whose `x-forwarded-for` values, in order, are
/// `xff` (each may hold a comma-separated list).
pub fn decide<'a, I>(cfg: &Forwarding, peer: IpAddr, xff: I) -> Decision
where
    I: Iterator<Item = &'a [u8]> + Clone,
{
    let hops = cfg.xff_num_trusted_hops;
    if cfg.use_remote_address {
        let from_xff = if hops > 0 {
            nth_from_right(xff, hops - 1)
        } else {
            None
        };
        Decision {
            append: (!cfg.skip_xff_append).then_some(peer),
            overwrite_proto: hops == 0,
            client: Some(from_xff.unwrap_or(peer)),
            tls: false,
        }
    } else {
        Decision {
            append: None,
            overwrite_proto: false,
            client: nth_from_right(xff, hops),
            tls: false,
        }
    }
}

/// Whether a request from `peer` with these `x-forwarded-for` values is internal
/// (Envoy's `ConnectionManagerUtility::mutateRequestHeaders`): before the proxy appends
/// to it, XFF must name a single client, and that client must be in `internal`. With
/// `use_remote_address` the request must come without XFF and the peer is that client;
/// without it, XFF must hold exactly one address and no hop be trusted. Nothing is
/// scanned when no range is configured (Envoy 1.40's default: no client is internal).
pub fn is_internal<'a, I>(cfg: &Forwarding, internal: &[CidrRange], peer: IpAddr, xff: I) -> bool
where
    I: Iterator<Item = &'a [u8]> + Clone,
{
    if internal.is_empty() {
        return false;
    }
    let client = if cfg.use_remote_address {
        if xff.clone().next().is_some() {
            return false;
        }
        Some(peer)
    } else {
        let single = xff.flat_map(|value| value.split(|&b| b == b',')).try_fold(
            None,
            |one: Option<&[u8]>, e| match one {
                None => Ok(Some(e)),
                Some(_) => Err(()),
            },
        );
        match single {
            Ok(Some(e)) if cfg.xff_num_trusted_hops == 0 => {
                std::str::from_utf8(super::h1::head::trim(e))
                    .ok()
                    .and_then(|s| s.parse().ok())
            }
            _ => None,
        }
    };
    client.is_some_and(|c| internal.iter().any(|r| r.contains(c)))
}

/// The address `skip` entries from the right end of the comma-separated list spread
/// over `values`; `None` when the list is shorter or that entry is not an IP address.
fn nth_from_right<'a, I>(values: I, skip: u32) -> Option<IpAddr>
where
    I: Iterator<Item = &'a [u8]> + Clone,
{
    let entries = |v: I| {
        v.flat_map(|value| value.split(|&b| b == b','))
            .map(super::h1::head::trim)
    };
    let total = entries(values.clone()).count();
    let index = total
        .checked_sub(1)?
        .checked_sub(usize::try_from(skip).ok()?)?;
    let entry = entries(values).nth(index)?;
    std::str::from_utf8(entry).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cfg(use_remote_address: bool, hops: u32, skip: bool) -> Forwarding {
        Forwarding {
            use_remote_address,
            xff_num_trusted_hops: hops,
            skip_xff_append: skip,
            ..Forwarding::SIDECAR
        }
    }

    #[test]
    fn sidecar_default_appends_the_peer_and_trusts_it() {
        let xff: [&[u8]; 1] = [b"192.0.2.10, 203.0.113.1"];
        let d = decide(
            &Forwarding::default(),
            ip("198.51.100.2"),
            xff.iter().copied(),
        );
        assert_eq!(d.append, Some(ip("198.51.100.2")));
        assert!(d.overwrite_proto);
        assert_eq!(d.client, Some(ip("198.51.100.2")));
    }

    #[test]
    fn trusted_hops_pick_the_client_from_the_right_of_xff() {
        // Envoy's documented example: one trusted hop, the client is 203.0.113.1.
        let xff: [&[u8]; 1] = [b"192.0.2.10, 203.0.113.1"];
        let d = decide(
            &cfg(true, 1, false),
            ip("198.51.100.2"),
            xff.iter().copied(),
        );
        assert_eq!(d.client, Some(ip("203.0.113.1")));
        assert_eq!(d.append, Some(ip("198.51.100.2")));
        assert!(!d.overwrite_proto);
        // Values split over two headers count as one list.
        let split: [&[u8]; 2] = [b"192.0.2.10", b" 203.0.113.1 "];
        let d = decide(
            &cfg(true, 2, false),
            ip("198.51.100.2"),
            split.iter().copied(),
        );
        assert_eq!(d.client, Some(ip("192.0.2.10")));
        // Too few entries, or garbage: fall back to the peer.
        let d = decide(
            &cfg(true, 3, false),
            ip("198.51.100.2"),
            split.iter().copied(),
        );
        assert_eq!(d.client, Some(ip("198.51.100.2")));
        let bad: [&[u8]; 1] = [b"not-an-ip"];
        let d = decide(
            &cfg(true, 1, false),
            ip("198.51.100.2"),
            bad.iter().copied(),
        );
        assert_eq!(d.client, Some(ip("198.51.100.2")));
    }

    #[test]
    fn behind_a_trusted_proxy_xff_passes_unchanged() {
        let xff: [&[u8]; 1] = [b"192.0.2.10, 203.0.113.1"];
        let d = decide(
            &cfg(false, 0, false),
            ip("198.51.100.2"),
            xff.iter().copied(),
        );
        assert_eq!(d.append, None);
        assert!(!d.overwrite_proto);
        assert_eq!(d.client, Some(ip("203.0.113.1")));
        let d = decide(
            &cfg(false, 1, false),
            ip("198.51.100.2"),
            xff.iter().copied(),
        );
        assert_eq!(d.client, Some(ip("192.0.2.10")));
        let none: [&[u8]; 0] = [];
        let d = decide(
            &cfg(false, 0, false),
            ip("198.51.100.2"),
            none.iter().copied(),
        );
        assert_eq!(d.client, None);
    }

    #[test]
    fn skip_xff_append_keeps_the_header_as_it_came() {
        let none: [&[u8]; 0] = [];
        let d = decide(
            &cfg(true, 0, true),
            ip("198.51.100.2"),
            none.iter().copied(),
        );
        assert_eq!(d.append, None);
        assert_eq!(d.client, Some(ip("198.51.100.2")));
    }

    #[test]
    fn internal_needs_a_single_client_in_the_ranges() {
        let ranges = [CidrRange::new(ip("10.0.0.0"), 8).unwrap()];
        let v = |xs: &[&'static str]| xs.iter().map(|x| x.as_bytes()).collect::<Vec<_>>();
        let edge = cfg(true, 0, false);
        let peer = ip("10.1.2.3");
        assert!(is_internal(&edge, &ranges, peer, v(&[]).into_iter()));
        assert!(!is_internal(
            &edge,
            &ranges,
            peer,
            v(&["10.9.9.9"]).into_iter()
        ));
        assert!(!is_internal(
            &edge,
            &ranges,
            ip("192.0.2.1"),
            v(&[]).into_iter()
        ));
        assert!(!is_internal(&edge, &[], peer, v(&[]).into_iter()));
        let trusted = cfg(false, 0, false);
        assert!(is_internal(
            &trusted,
            &ranges,
            ip("192.0.2.1"),
            v(&[" 10.0.0.5 "]).into_iter()
        ));
        assert!(!is_internal(
            &trusted,
            &ranges,
            peer,
            v(&["10.0.0.5, 10.0.0.6"]).into_iter()
        ));
        assert!(!is_internal(
            &trusted,
            &ranges,
            peer,
            v(&["10.0.0.5", "10.0.0.6"]).into_iter()
        ));
        assert!(!is_internal(&trusted, &ranges, peer, v(&[]).into_iter()));
        assert!(!is_internal(
            &cfg(false, 1, false),
            &ranges,
            peer,
            v(&["10.0.0.5"]).into_iter()
        ));
    }
}
