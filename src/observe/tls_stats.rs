//! TLS counters of one listener on one core, with Envoy's names (`ssl.handshake`,
//! `ssl.connection_error`, `ssl.fail_verify_*`, `ssl.no_certificate`,
//! `ssl.session_reused`, `ssl.versions.*`, `ssl.ciphers.*`, `ssl.curves.*`). Plain cells
//! like the other per-core stats; the version, cipher and curve tables are a handful of
//! entries each. What a handshake did is read from rustls by `tls::stats`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use serde::Serialize;

/// How a handshake failed, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The client sent no certificate where one is required (`fail_verify_no_cert`).
    NoCert,
    /// The client certificate's SANs matched none allowed (`fail_verify_san`).
    San,
    /// The client certificate did not verify: unknown CA, expired, bad signature
    /// (`fail_verify_error`).
    Verify,
    /// Anything else: a malformed or unacceptable hello, no common suite, a reset
    /// (`connection_error`).
    Other,
}

/// What a completed handshake negotiated, by Envoy's names.
pub struct Handshake {
    pub resumed: bool,
    pub client_certificate: bool,
    pub version: Option<&'static str>,
    pub cipher: Option<&'static str>,
    pub curve: Option<&'static str>,
}

/// Plain per-core cells (observe::stats's `Counter` would make the two modules depend
/// on each other).
#[derive(Default)]
pub struct TlsStats {
    pub handshake: Cell<u64>,
    pub connection_error: Cell<u64>,
    pub fail_verify_error: Cell<u64>,
    pub fail_verify_san: Cell<u64>,
    pub fail_verify_no_cert: Cell<u64>,
    /// Successful handshakes without a client certificate.
    pub no_certificate: Cell<u64>,
    /// Handshakes that resumed a session (a ticket or a session ID).
    pub session_reused: Cell<u64>,
    versions: RefCell<Vec<(&'static str, u64)>>,
    ciphers: RefCell<Vec<(&'static str, u64)>>,
    curves: RefCell<Vec<(&'static str, u64)>>,
}

fn inc(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

fn bump(table: &RefCell<Vec<(&'static str, u64)>>, name: Option<&'static str>) {
    let Some(name) = name else { return };
    let mut t = table.borrow_mut();
    match t.iter_mut().find(|(n, _)| *n == name) {
        Some((_, c)) => *c += 1,
        None => t.push((name, 1)),
    }
}

impl TlsStats {
    /// A completed handshake.
    pub fn handshake_done(&self, h: Handshake) {
        inc(&self.handshake);
        if h.resumed {
            inc(&self.session_reused);
        }
        if !h.client_certificate {
            inc(&self.no_certificate);
        }
        bump(&self.versions, h.version);
        bump(&self.ciphers, h.cipher);
        bump(&self.curves, h.curve);
    }

    pub fn failed(&self, f: Failure) {
        inc(match f {
            Failure::NoCert => &self.fail_verify_no_cert,
            Failure::San => &self.fail_verify_san,
            Failure::Verify => &self.fail_verify_error,
            Failure::Other => &self.connection_error,
        });
    }

    pub fn report(&self) -> TlsReport {
        let table = |t: &RefCell<Vec<(&'static str, u64)>>| {
            t.borrow()
                .iter()
                .map(|(n, c)| (n.to_string(), *c))
                .collect()
        };
        TlsReport {
            handshake: self.handshake.get(),
            connection_error: self.connection_error.get(),
            fail_verify_error: self.fail_verify_error.get(),
            fail_verify_san: self.fail_verify_san.get(),
            fail_verify_no_cert: self.fail_verify_no_cert.get(),
            no_certificate: self.no_certificate.get(),
            session_reused: self.session_reused.get(),
            versions: table(&self.versions),
            ciphers: table(&self.ciphers),
            curves: table(&self.curves),
        }
    }
}

/// A listener's `ssl.*` counters (`/stats`: `listeners[].ssl`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TlsReport {
    pub handshake: u64,
    pub connection_error: u64,
    pub fail_verify_error: u64,
    pub fail_verify_san: u64,
    pub fail_verify_no_cert: u64,
    pub no_certificate: u64,
    pub session_reused: u64,
    pub versions: BTreeMap<String, u64>,
    pub ciphers: BTreeMap<String, u64>,
    pub curves: BTreeMap<String, u64>,
}

impl TlsReport {
    pub fn merge(&mut self, o: TlsReport) {
        self.handshake += o.handshake;
        self.connection_error += o.connection_error;
        self.fail_verify_error += o.fail_verify_error;
        self.fail_verify_san += o.fail_verify_san;
        self.fail_verify_no_cert += o.fail_verify_no_cert;
        self.no_certificate += o.no_certificate;
        self.session_reused += o.session_reused;
        for (mine, theirs) in [
            (&mut self.versions, o.versions),
            (&mut self.ciphers, o.ciphers),
            (&mut self.curves, o.curves),
        ] {
            for (k, v) in theirs {
                *mine.entry(k).or_default() += v;
            }
        }
    }
}
