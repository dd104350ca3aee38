//! The tls_inspector listener filter's decision (Envoy's
//! `envoy.filters.listener.tls_inspector`): from a connection's first bytes, is it a
//! TLS ClientHello, and if so, which server name (SNI) and application protocols
//! (ALPN) does it ask for? Filter chain selection matches on those
//! (`server_names`, `transport_protocol: tls`, `application_protocols`).
//!
//! Nothing is consumed: the bytes stay in the connection's read buffer and the TLS
//! session of the chosen chain reads them first. A hello may span several records;
//! it is read up to `MAX_CLIENT_HELLO` bytes (Envoy's limit), past which the connection
//! is closed. Anything that is not a well-formed ClientHello is "not TLS": the
//! connection goes on as `raw_buffer`, as Envoy's does. Every length is checked; a
//! malformed hello never panics.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

/// Envoy closes a connection whose ClientHello is larger than this.
pub const MAX_CLIENT_HELLO: usize = 64 * 1024;

pub const TLS: &str = "tls";

/// What the ClientHello asks for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The SNI host name, lower case; empty without one.
    pub server_name: String,
    /// The ALPN protocols, in the client's order (those that are UTF-8).
    pub alpn: Vec<String>,
    /// The cipher suites offered, in the client's order (a listener that prefers its
    /// own TLS 1.2 order picks by them: `tls::ServerTls::config_for`).
    pub cipher_suites: Vec<u16>,
    /// TLS 1.3 is among the versions offered (`supported_versions`).
    pub tls13: bool,
}

impl Hello {
    /// No hello: nothing offered.
    pub fn none() -> &'static Hello {
        static NONE: Hello = Hello {
            server_name: String::new(),
            alpn: Vec::new(),
            cipher_suites: Vec::new(),
            tls13: false,
        };
        &NONE
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detected {
    NeedMore,
    Tls(Hello),
    NotTls,
    /// A TLS hello past `MAX_CLIENT_HELLO`: close.
    TooLarge,
}

const HANDSHAKE: u8 = 0x16;
const CLIENT_HELLO: u8 = 0x01;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
const TLS13: u16 = 0x0304;

/// A cursor over peer bytes: every read is checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, b) = self.0.split_at_checked(n)?;
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }
    fn u24(&mut self) -> Option<usize> {
        let b = self.take(3)?;
        Some(
            usize::from(*b.first()?) << 16 | usize::from(*b.get(1)?) << 8 | usize::from(*b.get(2)?),
        )
    }
    /// A vector with a 1- or 2-byte length.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// Decides from the bytes read so far.
pub fn inspect(data: &[u8]) -> Detected {
    // Record header: content type, legacy version (major 3), length.
    match data {
        [] => return Detected::NeedMore,
        [t, ..] if *t != HANDSHAKE => return Detected::NotTls,
        [_, v, ..] if *v != 3 => return Detected::NotTls,
        _ => {}
    }
    // Gather the handshake message out of consecutive handshake records.
    let mut records = Reader(data);
    let mut msg: Vec<u8> = Vec::new();
    loop {
        let Some(header) = records.take(5) else {
            return Detected::NeedMore;
        };
        let mut h = Reader(header);
        let (t, major, _minor, len) = match (h.u8(), h.u8(), h.u8(), h.u16()) {
            (Some(t), Some(ma), Some(mi), Some(l)) => (t, ma, mi, usize::from(l)),
            _ => return Detected::NeedMore,
        };
        if t != HANDSHAKE || major != 3 || len == 0 || len > 16384 + 2048 {
            return Detected::NotTls;
        }
        let Some(fragment) = records.take(len) else {
            return if data.len() > MAX_CLIENT_HELLO {
                Detected::TooLarge
            } else {
                Detected::NeedMore
            };
        };
        msg.extend_from_slice(fragment);
        let mut m = Reader(&msg);
        match (m.u8(), m.u24()) {
            (Some(CLIENT_HELLO), Some(n)) if n + 4 > MAX_CLIENT_HELLO => return Detected::TooLarge,
            (Some(CLIENT_HELLO), Some(n)) => {
                if let Some(body) = m.take(n) {
                    return match client_hello(body) {
                        Some(h) => Detected::Tls(h),
                        None => Detected::NotTls,
                    };
                }
            }
            (Some(_), _) => return Detected::NotTls,
            _ => {}
        }
    }
}

/// The SNI and ALPN of a ClientHello body; `None` if it is malformed.
fn client_hello(body: &[u8]) -> Option<Hello> {
    let mut r = Reader(body);
    let (major, _) = (r.u8()?, r.u8()?);
    if major != 3 {
        return None;
    }
    r.take(32)?; // random
    r.vec8()?; // legacy session id
    let suites = r.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return None;
    }
    r.vec8()?; // compression methods
    let mut hello = Hello {
        cipher_suites: suites
            .chunks_exact(2)
            .filter_map(|c| Some(u16::from_be_bytes([*c.first()?, *c.get(1)?])))
            .collect(),
        ..Hello::default()
    };
    if r.0.is_empty() {
        return Some(hello); // no extensions
    }
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let mut data = Reader(exts.vec16()?);
        match kind {
            EXT_SERVER_NAME => {
                let mut list = Reader(data.vec16()?);
                while !list.0.is_empty() {
                    let name_type = list.u8()?;
                    let name = list.vec16()?;
                    // host_name (0); the first one counts.
                    if name_type == 0 && hello.server_name.is_empty() {
                        let name = std::str::from_utf8(name).ok()?;
                        hello.server_name = name.to_ascii_lowercase();
                    }
                }
            }
            EXT_ALPN => {
                let mut list = Reader(data.vec16()?);
                while !list.0.is_empty() {
                    let p = list.vec8()?;
                    if let Ok(p) = std::str::from_utf8(p) {
                        hello.alpn.push(p.to_string());
                    }
                }
            }
            // Read only to choose a config (`tls::ServerTls::config_for`): a malformed
            // list is left to the handshake, as before this extension was read, and
            // does not make the hello "not TLS".
            EXT_SUPPORTED_VERSIONS => {
                let mut list = Reader(data.vec8().unwrap_or_default());
                while let Some(v) = list.u16() {
                    hello.tls13 |= v == TLS13;
                }
            }
            _ => {}
        }
    }
    Some(hello)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn vec16(b: &[u8]) -> Vec<u8> {
        let mut v = (b.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(b);
        v
    }

    /// A ClientHello with the given SNI and ALPN, in records of at most `split` bytes.
    fn hello(sni: Option<&str>, alpn: &[&str], split: usize) -> Vec<u8> {
        let mut exts = Vec::new();
        if let Some(s) = sni {
            let mut entry = vec![0u8];
            entry.extend(vec16(s.as_bytes()));
            exts.extend([0, 0]);
            exts.extend(vec16(&vec16(&entry)));
        }
        if !alpn.is_empty() {
            let mut list = Vec::new();
            for p in alpn {
                list.push(p.len() as u8);
                list.extend_from_slice(p.as_bytes());
            }
            exts.extend([0, 16]);
            exts.extend(vec16(&vec16(&list)));
        }
        exts.extend([0, 43, 0, 5, 4, 3, 4, 3, 3]); // supported_versions: 1.3, 1.2
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.extend([0]); // session id
        body.extend(vec16(&[0x13, 0x01, 0xc0, 0x2b]));
        body.extend([1, 0]);
        body.extend(vec16(&exts));
        let mut msg = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
        msg.extend(body);
        let mut out = Vec::new();
        for chunk in msg.chunks(split) {
            out.extend([0x16, 3, 1]);
            out.extend(vec16(chunk));
        }
        out
    }

    #[test]
    fn reads_sni_and_alpn() {
        let h = hello(Some("API.Example.com"), &["h2", "http/1.1"], 16384);
        let want = Hello {
            server_name: "api.example.com".into(),
            alpn: vec!["h2".into(), "http/1.1".into()],
            cipher_suites: vec![0x1301, 0xc02b],
            tls13: true,
        };
        assert_eq!(inspect(&h), Detected::Tls(want.clone()));
        // A hello split over records, read byte by byte.
        let h = hello(Some("API.Example.com"), &["h2", "http/1.1"], 7);
        for cut in 0..h.len() {
            assert_eq!(inspect(&h[..cut]), Detected::NeedMore, "at {cut}");
        }
        assert_eq!(inspect(&h), Detected::Tls(want));
        assert_eq!(
            inspect(&hello(None, &[], 100)),
            Detected::Tls(Hello {
                cipher_suites: vec![0x1301, 0xc02b],
                tls13: true,
                ..Hello::default()
            })
        );
    }

    #[test]
    fn not_tls() {
        assert_eq!(inspect(b"GET / HTTP/1.1\r\n"), Detected::NotTls);
        assert_eq!(inspect(b"\x16\x02"), Detected::NotTls);
        assert_eq!(inspect(b""), Detected::NeedMore);
        assert_eq!(inspect(&[0x16, 3, 1]), Detected::NeedMore);
        // A handshake record that holds a ServerHello.
        assert_eq!(inspect(&[0x16, 3, 3, 0, 4, 2, 0, 0, 0]), Detected::NotTls);
    }

    #[test]
    fn too_large() {
        let mut h = vec![0x16, 3, 1, 0x40, 0x00, 1, 0x01, 0x00, 0x00];
        h.resize(5 + 0x4000, 0);
        assert_eq!(inspect(&h), Detected::TooLarge);
    }

    #[test]
    fn no_byte_flip_or_truncation_panics() {
        let h = hello(Some("a.example.com"), &["h2"], 40);
        for i in 0..h.len() {
            let _ = inspect(&h[..i]);
            for b in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut c = h.clone();
                c[i] = b;
                let _ = inspect(&c);
            }
        }
    }
}
