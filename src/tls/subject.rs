//! A certificate's subject as OpenSSL prints it with `XN_FLAG_RFC2253`, which is what
//! Envoy (BoringSSL) puts in `x-forwarded-client-cert`'s `Subject="..."` and matches
//! RBAC's `principal_name` against: the RDNs last first, joined by `,` (`+` inside a
//! multi-valued RDN, whose attributes come last first too), attribute types by their short names (`CN`, `O`, ...; dotted OID
//! otherwise), string values with RFC 2253 escapes and bytes above 0x7F as `\XX`, and
//! values of other types (or of an unknown attribute) as `#` and the hex of their DER.
//!
//! The certificate is peer input: every length is checked and nothing is indexed.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::fmt::Write;

use super::der::{tlv, OID, SEQUENCE};

const SET: u8 = 0x31;
/// Tags of the string types printed as text.
const UTF8: u8 = 0x0c;
const PRINTABLE: u8 = 0x13;
const T61: u8 = 0x14;
const IA5: u8 = 0x16;
const UNIVERSAL: u8 = 0x1c;
const BMP: u8 = 0x1e;

/// The subject of DER certificate `cert`, or `None` if it cannot be read.
pub fn subject(cert: &[u8]) -> Option<String> {
    let cert = tlv(cert).filter(|t| t.tag == SEQUENCE)?;
    let tbs = tlv(cert.body).filter(|t| t.tag == SEQUENCE)?;
    // [0] version (optional), serial, signature, issuer, validity, subject.
    let mut d = tbs.body;
    let first = tlv(d)?;
    if first.tag == 0xa0 {
        d = first.rest;
    }
    for _ in 0..4 {
        d = tlv(d)?.rest;
    }
    let name = tlv(d).filter(|t| t.tag == SEQUENCE)?;
    format_name(name.body)
}

/// Formats the body of a `Name` (a SEQUENCE OF RelativeDistinguishedName).
fn format_name(mut d: &[u8]) -> Option<String> {
    // Every attribute with the index of its RDN, in DER order: OpenSSL's
    // `XN_FLAG_DN_REV` reverses this whole list (inside a multi-valued RDN too).
    let mut atvs = Vec::new();
    let mut set = 0usize;
    while !d.is_empty() {
        let rdn = tlv(d).filter(|t| t.tag == SET)?;
        d = rdn.rest;
        let mut a = rdn.body;
        while !a.is_empty() {
            let atv = tlv(a).filter(|t| t.tag == SEQUENCE)?;
            a = atv.rest;
            atvs.push((set, atv.body));
        }
        set += 1;
    }
    let mut out = String::new();
    let mut prev = None;
    for (set, body) in atvs.iter().rev() {
        match prev {
            Some(p) if p == *set => out.push('+'),
            Some(_) => out.push(','),
            None => {}
        }
        prev = Some(*set);
        let oid = tlv(body).filter(|t| t.tag == OID)?;
        let value = tlv(oid.rest)?;
        let whole = oid
            .rest
            .get(..oid.rest.len().checked_sub(value.rest.len())?)?;
        match short_name(oid.body) {
            Some(n) => out.push_str(n),
            None => out.push_str(&dotted(oid.body)?),
        }
        out.push('=');
        match text(value.tag, value.body).filter(|_| short_name(oid.body).is_some()) {
            Some(chars) => escape(&mut out, &chars),
            None => {
                out.push('#');
                for b in whole {
                    let _ = write!(out, "{b:02X}");
                }
            }
        }
    }
    Some(out)
}

/// The value of a string type as Unicode scalar values; `None` for other types.
fn text(tag: u8, body: &[u8]) -> Option<Vec<char>> {
    match tag {
        UTF8 => std::str::from_utf8(body).ok().map(|s| s.chars().collect()),
        PRINTABLE | T61 | IA5 => Some(body.iter().map(|&b| char::from(b)).collect()),
        BMP => body
            .chunks(2)
            .map(|c| match c {
                [a, b] => char::from_u32(u32::from(u16::from_be_bytes([*a, *b]))),
                _ => None,
            })
            .collect(),
        UNIVERSAL => body
            .chunks(4)
            .map(|c| match c {
                [a, b, x, y] => char::from_u32(u32::from_be_bytes([*a, *b, *x, *y])),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// Appends `chars` with OpenSSL's RFC 2253 escaping: `,+"\<>;` escaped, a leading `#`
/// or space and a trailing space escaped, control characters and every UTF-8 byte
/// above 0x7F as `\XX`.
fn escape(out: &mut String, chars: &[char]) {
    let last = chars.len().saturating_sub(1);
    for (i, &c) in chars.iter().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
            out.push(c);
        } else if c.is_ascii_control() || !c.is_ascii() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "\\{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
}

/// OpenSSL's short names of the attribute types a certificate subject uses.
fn short_name(oid: &[u8]) -> Option<&'static str> {
    const X520: [u8; 2] = [0x55, 0x04];
    if let Some((prefix, [n])) = oid.split_at_checked(2) {
        if prefix == X520 {
            return Some(match n {
                3 => "CN",
                4 => "SN",
                5 => "serialNumber",
                6 => "C",
                7 => "L",
                8 => "ST",
                9 => "street",
                10 => "O",
                11 => "OU",
                12 => "title",
                13 => "description",
                15 => "businessCategory",
                17 => "postalCode",
                41 => "name",
                42 => "GN",
                43 => "initials",
                44 => "generationQualifier",
                46 => "dnQualifier",
                65 => "pseudonym",
                _ => return None,
            });
        }
    }
    match oid {
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => Some("emailAddress"),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => Some("DC"),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => Some("UID"),
        _ => None,
    }
}

/// The dotted form of an OID's contents.
fn dotted(oid: &[u8]) -> Option<String> {
    let (&first, rest) = oid.split_first()?;
    let mut out = format!(
        "{}.{}",
        (first / 40).min(2),
        first - 40 * (first / 40).min(2)
    );
    let mut n: u64 = 0;
    for &b in rest {
        n = n.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            let _ = write!(out, ".{n}");
            n = 0;
        }
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn wrap(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag, body.len() as u8];
        v.extend_from_slice(body);
        v
    }

    fn atv(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        wrap(SEQUENCE, &[wrap(OID, oid), wrap(tag, value)].concat())
    }

    fn cert_with(name: &[u8]) -> Vec<u8> {
        let alg = wrap(SEQUENCE, &wrap(OID, &[0x2a, 0x03]));
        let tbs = [
            wrap(0xa0, &wrap(0x02, &[2])),
            wrap(0x02, &[1]),
            alg.clone(),
            wrap(SEQUENCE, &[]),
            wrap(SEQUENCE, &[]),
            wrap(SEQUENCE, name),
        ]
        .concat();
        wrap(SEQUENCE, &wrap(SEQUENCE, &tbs))
    }

    #[test]
    fn rdns_come_last_first_with_short_names_and_escapes() {
        let name = [
            wrap(SET, &atv(&[0x55, 4, 6], PRINTABLE, b"US")),
            wrap(SET, &atv(&[0x55, 4, 10], UTF8, b"Acme, Inc")),
            wrap(
                SET,
                &[
                    atv(&[0x55, 4, 11], UTF8, b"a+b"),
                    atv(&[0x55, 4, 3], UTF8, " caf\u{e9} ".as_bytes()),
                ]
                .concat(),
            ),
            wrap(SET, &atv(&[0x2a, 0x03, 0x04], UTF8, b"x")),
        ]
        .concat();
        assert_eq!(
            subject(&cert_with(&name)).unwrap(),
            "1.2.3.4=#0C0178,CN=\\ caf\\C3\\A9\\ +OU=a\\+b,O=Acme\\, Inc,C=US"
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
        assert_eq!(subject(&der).unwrap(), WANT);
    }

    #[test]
    fn truncations_never_panic() {
        let name = wrap(SET, &atv(&[0x55, 4, 3], UTF8, b"client"));
        let cert = cert_with(&name);
        assert_eq!(subject(&cert).unwrap(), "CN=client");
        for cut in 0..cert.len() {
            let _ = subject(&cert[..cut]);
        }
        for i in 0..cert.len() {
            let mut c = cert.clone();
            c[i] ^= 0xff;
            let _ = subject(&c);
        }
    }
}
