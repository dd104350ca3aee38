//! The mesh's certificate authority (Citadel's part): a root, generated or supplied,
//! that signs each workload's certificate with its SPIFFE ID
//! (`spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT`).
//!
//! Files, as Istio's plug-in CA names them, in `--ca-dir`:
//! - `ca-cert.pem`, `ca-key.pem`: the signing certificate and its key;
//! - `root-cert.pem`: the trust bundle sent to every proxy (`ROOTCA`): one root, or
//!   the old and the new during a root rotation (the overlap bundle);
//! - `cert-chain.pem`: the chain from the signing certificate up, appended to each
//!   workload certificate (optional: the signing certificate alone).
//!
//! Without the files, a root is generated (ECDSA P-256, ten years) and written there,
//! so a restart keeps it; without `--ca-dir` it lives in memory only. Workload keys are
//! ECDSA P-256 too (istiod's ECC option), made here: a sidecar has no agent to make
//! its own key and a CSR, so the key travels in the SDS response.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};

/// A generated root's lifetime (istiod's self-signed root: ten years).
const ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How far back a certificate's validity starts, for clocks a little behind.
const BACKDATE: Duration = Duration::from_secs(60);

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// Appended after each workload certificate.
    chain_pem: String,
    /// The trust bundle (`ROOTCA`).
    pub roots_pem: String,
    pub trust_domain: String,
    /// Workload certificates' lifetime.
    pub ttl: Duration,
}

/// One workload certificate and its key.
pub struct Issued {
    pub spiffe_id: String,
    /// The certificate followed by the chain to the root.
    pub chain_pem: String,
    pub key_pem: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub serial: String,
}

impl Issued {
    /// When it is replaced: half-way through its life (istio-agent's default grace
    /// ratio, 0.5).
    pub fn renew_at(&self) -> SystemTime {
        let life = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_before + life / 2
    }
}

impl Ca {
    /// The CA from `dir`'s files, or a new root (written to `dir` when given).
    pub fn open(dir: Option<&Path>, trust_domain: &str, ttl: Duration) -> Result<Ca, String> {
        if let Some(d) = dir {
            let cert = d.join("ca-cert.pem");
            if cert.exists() {
                return Ca::load(d, trust_domain, ttl);
            }
        }
        let (issuer, cert_pem) = generate_root(trust_domain)?;
        if let Some(d) = dir {
            write_root(d, &cert_pem, &issuer.key().serialize_pem())?;
            tracing::info!(dir = %d.display(), "generated a mesh root");
        } else {
            tracing::warn!(
                "generated a mesh root in memory (no --ca-dir): a restart makes a new one"
            );
        }
        Ok(Ca {
            issuer,
            chain_pem: cert_pem.clone(),
            roots_pem: cert_pem,
            trust_domain: trust_domain.to_string(),
            ttl,
        })
    }

    /// The CA from `d`'s files (`ca-cert.pem` and `ca-key.pem` required).
    pub fn load(d: &Path, trust_domain: &str, ttl: Duration) -> Result<Ca, String> {
        let read = |name: &str| {
            let p = d.join(name);
            fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))
        };
        let cert_pem = read("ca-cert.pem")?;
        let key = KeyPair::from_pem(&read("ca-key.pem")?)
            .map_err(|e| format!("{}: {e}", d.join("ca-key.pem").display()))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
            .map_err(|e| format!("{}: {e}", d.join("ca-cert.pem").display()))?;
        let optional = |name: &str| d.join(name).exists().then(|| read(name)).transpose();
        let roots_pem = optional("root-cert.pem")?.unwrap_or_else(|| cert_pem.clone());
        let chain_pem = optional("cert-chain.pem")?.unwrap_or_else(|| cert_pem.clone());
        if !roots_pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(format!(
                "{}: holds no certificate",
                d.join("root-cert.pem").display()
            ));
        }
        Ok(Ca {
            issuer,
            chain_pem,
            roots_pem,
            trust_domain: trust_domain.to_string(),
            ttl,
        })
    }

    /// The SPIFFE ID of a service account.
    pub fn spiffe_id(&self, namespace: &str, service_account: &str) -> String {
        spiffe_id(&self.trust_domain, namespace, service_account)
    }

    /// A new key and certificate for `spiffe_id`, valid for the CA's TTL.
    pub fn issue(&self, spiffe_id: &str) -> Result<Issued, String> {
        let uri = spiffe_id
            .to_string()
            .try_into()
            .map_err(|e| format!("{spiffe_id}: {e}"))?;
        self.sign(spiffe_id, vec![SanType::URI(uri)])
    }

    /// The control plane's own serving certificate (xDS over TLS): DNS SANs `names`,
    /// as istiod's `istiod.istio-system.svc`.
    pub fn issue_server(&self, names: &[String]) -> Result<Issued, String> {
        let mut sans = Vec::new();
        for n in names {
            let dns = n.clone().try_into().map_err(|e| format!("{n}: {e}"))?;
            sans.push(SanType::DnsName(dns));
        }
        self.sign(&names.join(","), sans)
    }

    /// A new key and certificate for `sans`, valid for the CA's TTL; `label` names it.
    fn sign(&self, label: &str, sans: Vec<SanType>) -> Result<Issued, String> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
        let now = SystemTime::now();
        let not_before = now.checked_sub(BACKDATE).unwrap_or(now);
        let not_after = now + self.ttl;
        let mut p = CertificateParams::default();
        // Istio's certificates: no subject, the identity in a critical SAN.
        p.distinguished_name = DistinguishedName::new();
        p.subject_alt_names = sans;
        p.not_before = not_before.into();
        p.not_after = not_after.into();
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let serial = random_serial();
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        p.use_authority_key_identifier_extension = true;
        let cert = p
            .signed_by(&key, &self.issuer)
            .map_err(|e| format!("signing {label}: {e}"))?;
        let mut chain_pem = cert.pem();
        if !chain_pem.ends_with('\n') {
            chain_pem.push('\n');
        }
        chain_pem.push_str(&self.chain_pem);
        Ok(Issued {
            spiffe_id: label.to_string(),
            chain_pem,
            key_pem: key.serialize_pem(),
            not_before,
            not_after,
            serial: serial.iter().map(|b| format!("{b:02x}")).collect(),
        })
    }
}

pub fn spiffe_id(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")
}

fn generate_root(trust_domain: &str) -> Result<(Issuer<'static, KeyPair>, String), String> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let now = SystemTime::now();
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, trust_domain);
    dn.push(DnType::CommonName, "Outrigger mesh root");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = now.checked_sub(BACKDATE).unwrap_or(now).into();
    p.not_after = (now + ROOT_TTL).into();
    p.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    let cert = p
        .self_signed(&key)
        .map_err(|e| format!("generating the root: {e}"))?;
    Ok((Issuer::new(p, key), cert.pem()))
}

fn write_root(d: &Path, cert_pem: &str, key_pem: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    let write = |name: &str, text: &str, mode: u32| {
        let p = d.join(name);
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&p)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    write("ca-key.pem", key_pem, 0o600)?;
    write("ca-cert.pem", cert_pem, 0o644)?;
    write("root-cert.pem", cert_pem, 0o644)?;
    write("cert-chain.pem", cert_pem, 0o644)
}

/// 16 random bytes, positive as a DER integer.
fn random_serial() -> [u8; 16] {
    let mut s = [0u8; 16];
    for b in &mut s {
        *b = fastrand::u8(..);
    }
    s[0] &= 0x7f;
    s[0] |= 0x01;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_root_signs_a_workload_certificate_with_its_spiffe_id() {
        let ca = Ca::open(None, "cluster.local", Duration::from_secs(3600)).unwrap();
        let id = ca.spiffe_id("demo", "frontend");
        assert_eq!(id, "spiffe://cluster.local/ns/demo/sa/frontend");
        let issued = ca.issue(&id).unwrap();
        assert_eq!(issued.chain_pem.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(issued.key_pem.contains("PRIVATE KEY"));
        let life = issued.not_after.duration_since(issued.not_before).unwrap();
        assert_eq!(life, Duration::from_secs(3600) + BACKDATE);
        assert!(issued.renew_at() > issued.not_before && issued.renew_at() < issued.not_after);
    }

    #[test]
    fn a_root_written_to_the_directory_is_loaded_again() {
        let d = std::env::temp_dir().join(format!("outrigger-ca-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        let first = Ca::open(Some(&d), "example.org", Duration::from_secs(60)).unwrap();
        let again = Ca::open(Some(&d), "example.org", Duration::from_secs(60)).unwrap();
        assert_eq!(first.roots_pem, again.roots_pem);
        assert!(again.issue("spiffe://example.org/ns/a/sa/b").is_ok());
        let _ = fs::remove_dir_all(&d);
    }
}
