//! A certificate's subject as Envoy shows it (`subjectPeerCertificate`: BoringSSL's
//! `X509_NAME_print_ex` with `XN_FLAG_RFC2253`), for RBAC's `authenticated` principal,
//! which falls back to it after the URI and DNS SANs. Read when a TLS connection is
//! set up (`info::TlsInfo::of`), once per connection.
//!
//! The form: the attributes last first (inside a multi-valued RDN too), `,` between
//! RDNs and `+` inside one; each attribute
//! by its short name (`CN`, `O`, ... below; an attribute without one by its dotted OID
//! and its DER encoding in hex, `1.2.3=#0c0161`); string values converted to UTF-8
//! with `,+"\<>;` escaped by a backslash, a leading `#` or space and a trailing space
//! too, and control and non-ASCII bytes as `\XX`; a value of a non-string type as
//! `#` and its DER in hex.
//!
//! The certificate is peer input: every length is checked, nothing is indexed, and a
//! malformed subject gives an empty string.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::fmt::Write;

use super::der::{tlv, SEQUENCE};

const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// BoringSSL's short names of the attribute types a subject commonly has.
const SHORT_NAMES: &[(&[u8], &str)] = &[
    (&[0x55, 0x04, 0x03], "CN"),
    (&[0x55, 0x04, 0x04], "SN"),
    (&[0x55, 0x04, 0x05], "serialNumber"),
    (&[0x55, 0x04, 0x06], "C"),
    (&[0x55, 0x04, 0x07], "L"),
    (&[0x55, 0x04, 0x08], "ST"),
    (&[0x55, 0x04, 0x09], "street"),
    (&[0x55, 0x04, 0x0a], "O"),
    (&[0x55, 0x04, 0x0b], "OU"),
    (&[0x55, 0x04, 0x0c], "title"),
    (&[0x55, 0x04, 0x0d], "description"),
    (&[0x55, 0x04, 0x11], "postalCode"),
    (&[0x55, 0x04, 0x2a], "GN"),
    (&[0x55, 0x04, 0x2b], "initials"),
    (&[0x55, 0x04, 0x2c], "generationQualifier"),
    (&[0x55, 0x04, 0x2e], "dnQualifier"),
    (&[0x55, 0x04, 0x41], "pseudonym"),
    (&[0x55, 0x04, 0x61], "organizationIdentifier"),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01],
        "emailAddress",
    ),
    (
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19],
        "DC",
    ),
    (
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01],
        "UID",
    ),
];

/// The subject of the DER certificate `cert` in RFC 2253 form (empty if malformed).
pub fn subject(cert: &[u8]) -> String {
    subject_name(cert).and_then(format_name).unwrap_or_default()
}

/// The subject Name's contents (the SEQUENCE OF RDN's body).
fn subject_name(cert: &[u8]) -> Option<&[u8]> {
    let cert = tlv(cert).filter(|t| t.tag == SEQUENCE)?;
    let tbs = tlv(cert.body).filter(|t| t.tag == SEQUENCE)?;
    // [0] version (optional), serial, signature, issuer, validity, subject.
    let mut t = tlv(tbs.body)?;
    if t.tag == 0xa0 {
        t = tlv(t.rest)?;
    }
    for _ in 0..4 {
        t = tlv(t.rest)?;
    }
    (t.tag == SEQUENCE).then_some(t.body)
}

fn format_name(mut rdns: &[u8]) -> Option<String> {
    // Every attribute with the index of its RDN, in DER order.
    let mut entries: Vec<(usize, String)> = Vec::new();
    let mut set_index = 0;
    while !rdns.is_empty() {
        let set = tlv(rdns).filter(|t| t.tag == SET)?;
        rdns = set.rest;
        let mut d = set.body;
        while !d.is_empty() {
            let atv = tlv(d).filter(|t| t.tag == SEQUENCE)?;
            d = atv.rest;
            let oid = tlv(atv.body).filter(|t| t.tag == OID)?;
            let value = tlv(oid.rest)?;
            let whole = oid
                .rest
                .get(..oid.rest.len().checked_sub(value.rest.len())?)?;
            let mut e = String::new();
            match SHORT_NAMES.iter().find(|(o, _)| *o == oid.body) {
                Some((_, name)) => {
                    e.push_str(name);
                    e.push('=');
                    match text(value.tag, value.body) {
                        Some(chars) => escape(&chars, &mut e),
                        None => hex(whole, &mut e),
                    }
                }
                None => {
                    dotted(oid.body, &mut e)?;
                    e.push('=');
                    hex(whole, &mut e);
                }
            }
            entries.push((set_index, e));
        }
        set_index += 1;
    }
    // BoringSSL's `XN_FLAG_DN_REV` reverses the whole list of attributes (inside a
    // multi-valued RDN too); `+` joins those of one RDN, `,` the RDNs.
    let mut out = String::new();
    let mut prev = None;
    for (set, e) in entries.iter().rev() {
        match prev {
            Some(p) if p == *set => out.push('+'),
            Some(_) => out.push(','),
            None => {}
        }
        out.push_str(e);
        prev = Some(*set);
    }
    Some(out)
}

/// The characters of a string value, by its ASN.1 type (`None`: not a string type).
fn text(tag: u8, b: &[u8]) -> Option<Vec<char>> {
    let chunks = |n: usize| -> Option<Vec<char>> {
        if !b.len().is_multiple_of(n) {
            return None;
        }
        b.chunks(n)
            .map(|c| char::from_u32(c.iter().fold(0u32, |v, &x| (v << 8) | u32::from(x))))
            .collect()
    };
    match tag {
        // UTF8String.
        0x0c => std::str::from_utf8(b).ok().map(|s| s.chars().collect()),
        // Numeric, Printable, T61 (as Latin-1, BoringSSL's reading), IA5, Visible.
        0x12 | 0x13 | 0x14 | 0x16 | 0x1a => Some(b.iter().map(|&x| char::from(x)).collect()),
        // UniversalString, BMPString.
        0x1c => chunks(4),
        0x1e => chunks(2),
        _ => None,
    }
}

/// RFC 2253 escaping of a value, as BoringSSL's `do_esc_char` with
/// `ASN1_STRFLGS_RFC2253` (its UTF-8 bytes above 0x7f and control bytes as `\XX`).
fn escape(chars: &[char], out: &mut String) {
    let last = chars.len().saturating_sub(1);
    for (i, c) in chars.iter().enumerate() {
        let mut utf8 = [0u8; 4];
        for &b in c.encode_utf8(&mut utf8).as_bytes() {
            let first_esc = i == 0 && (b == b'#' || b == b' ');
            let last_esc = i == last && b == b' ';
            if !(0x20..0x7f).contains(&b) {
                let _ = write!(out, "\\{b:02X}");
            } else if first_esc || last_esc || b",+\"\\<>;".contains(&b) {
                out.push('\\');
                out.push(char::from(b));
            } else {
                out.push(char::from(b));
            }
        }
    }
}

/// `#` and the DER encoding in hex (lower case, as BoringSSL's `do_dump`).
fn hex(der: &[u8], out: &mut String) {
    out.push('#');
    for b in der {
        let _ = write!(out, "{b:02x}");
    }
}

/// An OID in dotted form.
fn dotted(oid: &[u8], out: &mut String) -> Option<()> {
    let mut arcs = Vec::new();
    let mut v: u64 = 0;
    for &b in oid {
        v = v.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(v);
            v = 0;
        }
    }
    let (&first, rest) = arcs.split_first()?;
    let (a, b) = match first {
        0..=39 => (0, first),
        40..=79 => (1, first - 40),
        _ => (2, first - 80),
    };
    let _ = write!(out, "{a}.{b}");
    for r in rest {
        let _ = write!(out, ".{r}");
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with_subject(dn: rcgen::DistinguishedName) -> Vec<u8> {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn rfc2253_last_rdn_first_with_escapes() {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "US");
        dn.push(rcgen::DnType::OrganizationName, "Acme, Inc.");
        dn.push(rcgen::DnType::CommonName, " spaced#");
        assert_eq!(
            subject(&cert_with_subject(dn)),
            "CN=\\ spaced#,O=Acme\\, Inc.,C=US"
        );
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "caf\u{e9}");
        dn.push(
            rcgen::DnType::CustomDnType(vec![1, 2, 3, 4]),
            rcgen::DnValue::Utf8String("x".into()),
        );
        assert_eq!(
            subject(&cert_with_subject(dn)),
            "1.2.3.4=#0c0178,CN=caf\\C3\\A9"
        );
    }

    /// A self-signed certificate made by `openssl req -utf8 -subj` with a multi-valued
    /// RDN and characters to escape; `openssl x509 -nameopt RFC2253` prints `WANT`.
    const OPENSSL_DER: &str = concat!(
        "308202653082020ba00302010202146d0718839f8b01be82f35d6d0a9dacc30874db7e300a06082a",
        "8648ce3d040302308187310b3009060355040613025553311f300a060355040b0c03523b44301106",
        "0355040a0c0a41636d652c20496e632e3111300f06035504030c0820737061636564233114301206",
        "092a864886f70d01090116056140622e6331173015060a0992268993f22c64011916076578616d70",
        "6c653115301306035504030c0c636166c3a9203c783e227122301e170d3236313230313133323331",
        "385a170d3236313230323133323331385a308187310b3009060355040613025553311f300a060355",
        "040b0c03523b443011060355040a0c0a41636d652c20496e632e3111300f06035504030c08207370",
        "61636564233114301206092a864886f70d01090116056140622e6331173015060a0992268993f22c",
        "64011916076578616d706c653115301306035504030c0c636166c3a9203c783e2271223059301306",
        "072a8648ce3d020106082a8648ce3d030107034200047b1e565099475fbca42b0d898347c3eb3250",
        "e48eb359f06d0862d5aa13446ff7032a0a20f3ccfc54c6ddc73aeaccb84342c4391feb2dd9a78fe1",
        "9a56dbefda90a3533051301d0603551d0e041604146ddc006d808f57d3288e18f0e605d6e8ed9f90",
        "22301f0603551d230418301680146ddc006d808f57d3288e18f0e605d6e8ed9f9022300f0603551d",
        "130101ff040530030101ff300a06082a8648ce3d0403020348003045022036cee3eb877a43eb7855",
        "ad5477edc80cb4842d57ff40cf869f7d009414f3cc3b022100f0f518985ca61e2cc7634ec24f8903",
        "d9f95d2ded1c02d047acff2d183b7b372f",
    );
    const WANT: &str = r#"CN=caf\C3\A9 \<x\>\"q\",DC=example,emailAddress=a@b.c,CN=\ spaced#,O=Acme\, Inc.+OU=R\;D,C=US"#;

    #[test]
    fn as_openssl_prints_it() {
        let der: Vec<u8> = OPENSSL_DER
            .as_bytes()
            .chunks(2)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
            .collect();
        assert_eq!(subject(&der), WANT);
    }

    #[test]
    fn malformed_certificates_give_nothing() {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "a");
        let der = cert_with_subject(dn);
        for cut in 0..der.len() {
            let _ = subject(der.get(..cut).unwrap_or_default());
        }
        assert_eq!(subject(b""), "");
    }
}
