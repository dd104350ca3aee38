//! A test PKI made at test time (rcgen): a CA, server and client certificates with
//! DNS and SPIFFE URI SANs, written as PEM files into a test directory. Nothing here
//! is committed as a file; every key lives only as long as its test.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A certificate authority that signs leaves.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
}

/// A leaf's files.
#[derive(Clone)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What a leaf says about itself.
pub struct LeafSpec<'a> {
    pub dns: &'a [&'a str],
    pub uris: &'a [&'a str],
    pub client: bool,
    pub expired: bool,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = p.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// Writes the CA certificate to `dir/name`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.pem).unwrap();
        path
    }

    /// A leaf signed by this CA, written as `dir/name.pem` and `dir/name.key`.
    pub fn leaf(&self, dir: &Path, name: &str, spec: LeafSpec<'_>) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        for d in spec.dns {
            p.subject_alt_names
                .push(SanType::DnsName((*d).try_into().unwrap()));
        }
        for u in spec.uris {
            p.subject_alt_names
                .push(SanType::URI((*u).try_into().unwrap()));
        }
        p.extended_key_usages = vec![if spec.client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        if spec.expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        let leaf = Leaf {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&leaf.cert, cert.pem()).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        leaf
    }
}

/// A server leaf for `dns` names.
pub fn server(dns: &'static [&'static str]) -> LeafSpec<'static> {
    LeafSpec {
        dns,
        uris: &[],
        client: false,
        expired: false,
    }
}

/// A client leaf with one URI SAN (a SPIFFE ID).
pub fn client(uri: &str) -> LeafSpec<'_> {
    LeafSpec {
        dns: &[],
        uris: std::slice::from_ref(Box::leak(Box::new(uri))),
        client: true,
        expired: false,
    }
}
