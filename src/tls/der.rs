//! Reads the subject alternative names (DNS and URI) out of a DER certificate, for SAN
//! matching and the SPIFFE ID. webpki validates the chain but does not hand out URI
//! SANs, and a whole X.509 parser is more than two fields need.
//!
//! The certificate is peer input (already chain-verified when this runs, but that is
//! no reason to trust its encoding): every length is checked, nothing is indexed, and
//! anything malformed yields no names.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

/// One DER element: its tag and contents; `rest` is what follows it.
pub(super) struct Tlv<'a> {
    pub tag: u8,
    pub body: &'a [u8],
    pub rest: &'a [u8],
}

/// Splits the first element off `d`. Only single-byte tags and definite lengths up to
/// four length bytes (DER allows nothing else in a certificate).
pub(super) fn tlv(d: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, d) = d.split_first()?;
    let (&first, mut d) = d.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, rest) = d.split_at_checked(count)?;
        d = rest;
        bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    let (body, rest) = d.split_at_checked(len)?;
    Some(Tlv { tag, body, rest })
}

pub(super) const SEQUENCE: u8 = 0x30;
pub(super) const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
/// `[3] EXPLICIT Extensions` in TBSCertificate.
const EXTENSIONS: u8 = 0xa3;
/// subjectAltName, 2.5.29.17.
const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];
/// GeneralName choices (implicit, primitive).
const DNS_NAME: u8 = 0x82;
const URI: u8 = 0x86;

/// A certificate's subject alternative names of the two kinds the proxy matches, and
/// its subject (RFC 2253, `tls::subject`; filled by `info::TlsInfo::of`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sans {
    pub dns: Vec<String>,
    pub uri: Vec<String>,
    pub subject: String,
}

impl Sans {
    /// The SPIFFE ID: the URI SAN with the `spiffe://` scheme (a SPIFFE SVID has one).
    pub fn spiffe_id(&self) -> Option<&str> {
        self.uri.iter().map(String::as_str).find(|u| {
            u.get(..9)
                .is_some_and(|s| s.eq_ignore_ascii_case("spiffe://"))
        })
    }
}

/// The DNS and URI SANs of `cert` (empty if it has none or is malformed).
pub fn sans(cert: &[u8]) -> Sans {
    let mut out = Sans::default();
    if let Some(ext) = san_extension(cert) {
        let mut d = ext;
        while let Some(t) = tlv(d) {
            d = t.rest;
            // SANs are IA5Strings; a DNS name or URI is visible ASCII. Anything else
            // (control characters included, which would forge access-log lines) is not
            // a name we match or log.
            let text = || {
                t.body
                    .iter()
                    .all(|b| b.is_ascii_graphic())
                    .then(|| String::from_utf8_lossy(t.body).into_owned())
            };
            match t.tag {
                DNS_NAME => out.dns.extend(text()),
                URI => out.uri.extend(text()),
                _ => {}
            }
        }
    }
    out
}

/// The contents of the subjectAltName extension (the SEQUENCE OF GeneralName's body).
fn san_extension(cert: &[u8]) -> Option<&[u8]> {
    let cert = tlv(cert).filter(|t| t.tag == SEQUENCE)?;
    let tbs = tlv(cert.body).filter(|t| t.tag == SEQUENCE)?;
    // version [0], serial, signature, issuer, validity, subject, spki, then the
    // optional [1] [2] unique IDs and [3] extensions: find [3] among the fields.
    let mut d = tbs.body;
    let exts = loop {
        let t = tlv(d)?;
        if t.tag == EXTENSIONS {
            break t.body;
        }
        d = t.rest;
    };
    let list = tlv(exts).filter(|t| t.tag == SEQUENCE)?;
    let mut d = list.body;
    while let Some(ext) = tlv(d) {
        d = ext.rest;
        let oid = tlv(ext.body).filter(|t| t.tag == OID)?;
        if oid.body != SAN_OID {
            continue;
        }
        let mut value = tlv(oid.rest)?;
        if value.tag == BOOLEAN {
            value = tlv(value.rest)?;
        }
        if value.tag != OCTET_STRING {
            return None;
        }
        return tlv(value.body)
            .filter(|t| t.tag == SEQUENCE)
            .map(|t| t.body);
    }
    None
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn lengths_that_overrun_yield_nothing() {
        assert!(tlv(&[0x30, 0x05, 1, 2]).is_none());
        assert!(tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_none());
        assert!(tlv(&[0x30]).is_none());
        assert!(tlv(&[0x30, 0x81]).is_none());
        assert_eq!(sans(&[]), Sans::default());
        assert_eq!(sans(&[0x30, 0x82, 0xff, 0xff]), Sans::default());
    }

    #[test]
    fn any_truncation_or_byte_flip_of_a_structure_never_panics() {
        // A hand-built certificate-shaped structure with a SAN extension.
        let names = [
            &[0x82, 3, b'a', b'.', b'b'][..],
            &[0x86, 6, b's', b'p', b'i', b'f', b'f', b'e'][..],
        ]
        .concat();
        let wrap = |tag: u8, body: &[u8]| {
            let mut v = vec![tag, body.len() as u8];
            v.extend_from_slice(body);
            v
        };
        let octets = wrap(OCTET_STRING, &wrap(SEQUENCE, &names));
        let ext = wrap(SEQUENCE, &[wrap(OID, SAN_OID), octets].concat());
        let exts = wrap(EXTENSIONS, &wrap(SEQUENCE, &ext));
        let tbs = wrap(SEQUENCE, &[wrap(0x02, &[1]), exts].concat());
        let cert = wrap(SEQUENCE, &tbs);
        let s = sans(&cert);
        assert_eq!(s.dns, vec!["a.b"]);
        assert_eq!(s.uri, vec!["spiffe"]);
        for cut in 0..cert.len() {
            let _ = sans(&cert[..cut]);
        }
        for i in 0..cert.len() {
            for b in [0u8, 0x7f, 0x80, 0x84, 0xff] {
                let mut c = cert.clone();
                c[i] = b;
                let _ = sans(&c);
            }
        }
    }
}
