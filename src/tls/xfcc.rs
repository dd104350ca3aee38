//! The proxy's own element of `x-forwarded-client-cert` for a mutual-TLS connection,
//! in Envoy's format: `By=<our URI SAN>;Hash=<sha256 of the client certificate>`, then
//! the parts `set_current_client_cert_details` asks for, in Envoy's order: `Cert="..."`
//! and `Chain="..."` (URL-encoded PEM), `Subject="..."` (RFC 2253), `URI=<first URI
//! SAN>` and one `DNS=<name>` per DNS SAN. Made once per connection (the connection
//! manager caches it in `TlsInfo`); `http/xfcc.rs` decides per request what to do with
//! the header.

use std::fmt::Write;
use std::rc::Rc;

use super::config::CertDetails;
use super::info::TlsInfo;
use super::subject::subject;

/// This connection's element for `details`, made on first use and kept in `info`.
pub fn cached_element(info: &TlsInfo, details: CertDetails) -> Rc<str> {
    if let Ok(c) = info.xfcc.try_borrow() {
        if let Some((_, e)) = c.as_ref().filter(|(d, _)| *d == details) {
            return e.clone();
        }
    }
    let e: Rc<str> = element(info, details).into();
    if let Ok(mut c) = info.xfcc.try_borrow_mut() {
        *c = Some((details, e.clone()));
    }
    e
}

/// The element for the peer of `info` (which presented a certificate).
pub fn element(info: &TlsInfo, d: CertDetails) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(by) = &info.local_uri_san {
        parts.push(format!("By={by}"));
    }
    let leaf = info.peer_chain.first();
    if let Some(h) = leaf.and_then(|c| sha256_hex(c)) {
        parts.push(format!("Hash={h}"));
    }
    if d.cert {
        if let Some(c) = leaf {
            parts.push(format!(
                "Cert=\"{}\"",
                url_encoded_pem(std::slice::from_ref(c))
            ));
        }
    }
    if d.chain && !info.peer_chain.is_empty() {
        parts.push(format!("Chain=\"{}\"", url_encoded_pem(&info.peer_chain)));
    }
    if d.subject {
        // The key stays even when the subject is empty, as in Envoy.
        let s = leaf.and_then(|c| subject(c)).unwrap_or_default();
        parts.push(format!("Subject=\"{s}\""));
    }
    if d.uri {
        parts.push(format!(
            "URI={}",
            info.peer.uri.first().map_or("", String::as_str)
        ));
    }
    if d.dns {
        for n in &info.peer.dns {
            parts.push(format!("DNS={n}"));
        }
    }
    parts.join(";")
}

/// Lower-case hex of the SHA-256 of `der`, through rustls's crypto provider.
fn sha256_hex(der: &[u8]) -> Option<String> {
    let rustls::SupportedCipherSuite::Tls13(suite) =
        rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256
    else {
        return None;
    };
    let digest = suite.common.hash_provider.hash(der);
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    Some(out)
}

/// The certificates as PEM (64-column base64, as OpenSSL writes them), with Envoy's
/// URL escapes: newline, space, `+`, `/` and `=`.
fn url_encoded_pem(certs: &[Vec<u8>]) -> String {
    let mut pem = String::new();
    for c in certs {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64(c);
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    let mut out = String::with_capacity(pem.len() * 5 / 4);
    for ch in pem.chars() {
        match ch {
            '\n' => out.push_str("%0A"),
            ' ' => out.push_str("%20"),
            '+' => out.push_str("%2B"),
            '/' => out.push_str("%2F"),
            '=' => out.push_str("%3D"),
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |v: u32| char::from(ALPHABET.get((v & 63) as usize).copied().unwrap_or(b'='));
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        out.push(if chunk.len() > 1 { sym(n >> 6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(n) } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads_as_rfc_4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn the_hash_is_sha256_in_lower_case_hex() {
        assert_eq!(
            sha256_hex(b"abc").unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn pem_is_url_encoded_as_envoy_does() {
        let s = url_encoded_pem(&[vec![0xfb, 0xff]]);
        assert_eq!(
            s,
            "-----BEGIN%20CERTIFICATE-----%0A%2B%2F8%3D%0A-----END%20CERTIFICATE-----%0A"
        );
    }
}
