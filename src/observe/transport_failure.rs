//! Why a connection to an upstream failed, for `%UPSTREAM_TRANSPORT_FAILURE_REASON%`.
//!
//! The upstream request path classifies the connect's `io::Error` once, when a connect
//! fails (never on a request that got its connection), into a `Copy` value the stream
//! record keeps; the access log renders it in Envoy 1.40's words:
//!
//! - a refused or unreachable TCP connect: `delayed connect error: <strerror>` (Envoy's
//!   connection's failure reason);
//! - a TLS handshake failure: BoringSSL's error queue as Envoy prints it,
//!   `TLS_error:|<packed code>:SSL routines:OPENSSL_internal:<REASON>:TLS_error_end`.
//!   Outrigger's TLS is rustls, not BoringSSL: the failures with a BoringSSL reason of
//!   the same meaning (a certificate that does not verify, a peer that does not speak
//!   TLS, a handshake alert from the peer) get that reason and its code, so a query on
//!   `CERTIFICATE_VERIFY_FAILED` finds both proxies' lines; Envoy's detail after the
//!   reason (OpenSSL's `X509_verify_cert` text) is not imitated. Other TLS failures
//!   name rustls's kind of error in the same frame.
//!
//! As Envoy's formatter does, spaces are written as `_`. A connect that timed out, and
//! an HTTP/2 connection's own failures, have no reason (`-`), as in Envoy.

use std::io;

/// BoringSSL's `ERR_LIB_SSL << 24`: the packed code of an SSL-library reason.
const SSL_LIB: u32 = 16 << 24;
/// BoringSSL's `SSL_AD_REASON_OFFSET`: a received alert's reason is this plus the alert.
const ALERT_OFFSET: u32 = 1000;

/// A classified connect failure (plain data; rendering allocates nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    /// The TCP connect failed with this `errno`.
    Connect(i32),
    /// A TLS failure with BoringSSL's reason of the same meaning: its packed code.
    Tls { code: u32, reason: &'static str },
    /// Another TLS failure: rustls's kind of error.
    TlsOther(&'static str),
}

impl TransportFailure {
    /// The failure behind a connect's error, if it has a reason Envoy would log.
    pub fn of(e: &io::Error) -> Option<TransportFailure> {
        if let Some(t) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return Some(tls(t));
        }
        match e.raw_os_error() {
            Some(n) if n != libc::ETIMEDOUT => Some(TransportFailure::Connect(n)),
            _ => None,
        }
    }

    /// Appends Envoy's rendering (spaces as `_`).
    pub fn render(self, out: &mut Vec<u8>) {
        let under = |out: &mut Vec<u8>, s: &[u8]| {
            out.extend(s.iter().map(|&b| if b == b' ' { b'_' } else { b }));
        };
        match self {
            TransportFailure::Connect(n) => {
                under(out, b"delayed connect error: ");
                let mut buf = [0u8; 128];
                under(out, strerror(n, &mut buf));
            }
            TransportFailure::Tls { code, reason } => {
                out.extend_from_slice(b"TLS_error:|");
                crate::http::h1::encode::push_u64(out, u64::from(code));
                out.extend_from_slice(b":SSL_routines:OPENSSL_internal:");
                out.extend_from_slice(reason.as_bytes());
                out.extend_from_slice(b":TLS_error_end");
            }
            TransportFailure::TlsOther(kind) => {
                out.extend_from_slice(b"TLS_error:|");
                under(out, kind.as_bytes());
                out.extend_from_slice(b":TLS_error_end");
            }
        }
    }
}

/// The C library's text for `errno` `n`, in `buf` (empty if it has none).
fn strerror(n: i32, buf: &mut [u8; 128]) -> &[u8] {
    // SAFETY: the buffer is valid for its length; the XSI strerror_r writes a
    // NUL-terminated string within it (truncated if need be) and we stop at the NUL.
    let rc = unsafe { libc::strerror_r(n, buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return &[];
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    buf.get(..end).unwrap_or_default()
}

fn packed(reason_code: u32, reason: &'static str) -> TransportFailure {
    TransportFailure::Tls {
        code: SSL_LIB + reason_code,
        reason,
    }
}

/// rustls's error, as BoringSSL would name the same failure.
fn tls(e: &rustls::Error) -> TransportFailure {
    use rustls::{AlertDescription as A, Error as E, InvalidMessage as M};
    match e {
        E::InvalidCertificate(_) => packed(125, "CERTIFICATE_VERIFY_FAILED"),
        // Not a TLS record (an HTTP server answering a ClientHello, say).
        E::InvalidMessage(M::InvalidContentType | M::UnknownProtocolVersion) => {
            packed(247, "WRONG_VERSION_NUMBER")
        }
        E::AlertReceived(a) => {
            let reason = match a {
                A::HandshakeFailure => "SSLV3_ALERT_HANDSHAKE_FAILURE",
                A::BadCertificate => "SSLV3_ALERT_BAD_CERTIFICATE",
                A::CertificateUnknown => "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
                A::UnknownCA => "TLSV1_ALERT_UNKNOWN_CA",
                A::DecryptError => "TLSV1_ALERT_DECRYPT_ERROR",
                A::ProtocolVersion => "TLSV1_ALERT_PROTOCOL_VERSION",
                A::InternalError => "TLSV1_ALERT_INTERNAL_ERROR",
                A::CertificateRequired => "TLSV1_CERTIFICATE_REQUIRED",
                A::NoApplicationProtocol => "TLSV1_ALERT_NO_APPLICATION_PROTOCOL",
                _ => return TransportFailure::TlsOther("alert received"),
            };
            packed(ALERT_OFFSET + u32::from(u8::from(*a)), reason)
        }
        E::InvalidMessage(_) => TransportFailure::TlsOther("invalid message"),
        E::PeerIncompatible(_) => TransportFailure::TlsOther("peer incompatible"),
        E::PeerMisbehaved(_) => TransportFailure::TlsOther("peer misbehaved"),
        E::NoCertificatesPresented => TransportFailure::TlsOther("no certificates presented"),
        _ => TransportFailure::TlsOther("handshake failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: TransportFailure) -> String {
        let mut out = Vec::new();
        f.render(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn refused_connect_reads_as_envoys() {
        let e = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let f = TransportFailure::of(&e).unwrap();
        assert_eq!(text(f), "delayed_connect_error:_Connection_refused");
        let t = io::Error::from_raw_os_error(libc::ETIMEDOUT);
        assert_eq!(TransportFailure::of(&t), None);
        assert_eq!(TransportFailure::of(&io::ErrorKind::TimedOut.into()), None);
    }

    #[test]
    fn tls_failures_take_boringssls_codes() {
        let wrap = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        let cert = wrap(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert_eq!(
            text(TransportFailure::of(&cert).unwrap()),
            "TLS_error:|268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:TLS_error_end"
        );
        let plain = wrap(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType,
        ));
        assert_eq!(
            text(TransportFailure::of(&plain).unwrap()),
            "TLS_error:|268435703:SSL_routines:OPENSSL_internal:WRONG_VERSION_NUMBER:TLS_error_end"
        );
        let alert = wrap(rustls::Error::AlertReceived(
            rustls::AlertDescription::HandshakeFailure,
        ));
        assert_eq!(
            text(TransportFailure::of(&alert).unwrap()),
            "TLS_error:|268436496:SSL_routines:OPENSSL_internal:SSLV3_ALERT_HANDSHAKE_FAILURE:TLS_error_end"
        );
        let other = wrap(rustls::Error::PeerMisbehaved(
            rustls::PeerMisbehaved::TooManyEmptyFragments,
        ));
        assert_eq!(
            text(TransportFailure::of(&other).unwrap()),
            "TLS_error:|peer_misbehaved:TLS_error_end"
        );
    }
}
