//! A certificate's subject as OpenSSL prints it with `XN_FLAG_RFC2253`, which is what
//! Envoy (BoringSSL) puts in `x-forwarded-client-cert`'s `Subject="..."` and matches
//! RBAC's `principal_name` against: the RDNs last first, joined by `,` (`+` inside a
//! multi-valued RDN), attribute types by their short names (`CN`, `O`, ...; dotted OID
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
    let mut rdns = Vec::new();
    while !d.is_empty() {
        let rdn = tlv(d).filter(|t| t.tag == SET)?;
        d = rdn.rest;
        rdns.push(rdn.body);
    }
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let mut a = *rdn;
        let mut first = true;
        while !a.is_empty() {
            let atv = tlv(a).filter(|t| t.tag == SEQUENCE)?;
            a = atv.rest;
            if !first {
                out.push('+');
            }
            first = false;
            let oid = tlv(atv.body).filter(|t| t.tag == OID)?;
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
            "1.2.3.4=#0C0178,OU=a\\+b+CN=\\ caf\\C3\\A9\\ ,O=Acme\\, Inc,C=US"
        );
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
