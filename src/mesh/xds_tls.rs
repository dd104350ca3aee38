//! xDS over TLS (istiod's port 15012): the ADS server behind a TLS handshake, with a
//! serving certificate the mesh CA issues to the control plane itself (DNS SANs,
//! `istiod.istio-system.svc` by default), so that a sidecar trusting the mesh root
//! (`run --control ... --control-ca root-cert.pem`, or an Envoy bootstrap's
//! `transport_socket` on its xDS cluster) knows it talks to the control plane, and the
//! workload keys sent over SDS travel encrypted. Proxies still authenticate with their
//! bearer token, as istiod's do with theirs; no client certificate is asked for.
//!
//! The certificate lives as long as a workload's (`--cert-ttl`) and is replaced, for
//! the handshakes that follow, half-way through its life or when the CA changes (a
//! root rotation); connections already open keep theirs.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::ServerConfig;

use super::ca::Ca;
use super::plane::Plane;
use crate::tls::stream::TlsStream;

/// istiod's serving name.
pub const DEFAULT_NAME: &str = "istiod.istio-system.svc";

/// A handshake not done by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The control plane's serving certificate, issued on first use.
pub struct ServingCert {
    names: Vec<String>,
    current: RefCell<Option<Current>>,
}

struct Current {
    ca: Rc<Ca>,
    config: Arc<ServerConfig>,
    renew_at: SystemTime,
}

impl ServingCert {
    pub fn new(names: Vec<String>) -> ServingCert {
        ServingCert {
            names,
            current: RefCell::new(None),
        }
    }

    /// The config for the next handshake: the current one, or one with a new
    /// certificate when it is half-way through its life or the CA changed.
    pub fn config(&self, plane: &Plane) -> Result<Arc<ServerConfig>, String> {
        let ca = plane.ca();
        if let Some(c) = &*self.current.borrow() {
            if Rc::ptr_eq(&c.ca, &ca) && SystemTime::now() < c.renew_at {
                return Ok(c.config.clone());
            }
        }
        let issued = ca.issue_server(&self.names)?;
        let chain =
            crate::tls::server::pem_certs("serving certificate", issued.chain_pem.as_bytes())?;
        let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
            .map_err(|e| format!("serving key: {e}"))?;
        let mut config = ServerConfig::builder_with_provider(crate::tls::params::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| format!("serving certificate: {e}"))?;
        // gRPC: HTTP/2 by ALPN (a client that offers none is served too).
        config.alpn_protocols = vec![b"h2".to_vec()];
        let config = Arc::new(config);
        tracing::info!(names = ?self.names, serial = %issued.serial, "xDS serving certificate issued");
        *self.current.borrow_mut() = Some(Current {
            ca,
            config: config.clone(),
            renew_at: issued.renew_at(),
        });
        Ok(config)
    }
}

/// Serves one accepted connection: the TLS handshake, then ADS with certificates.
pub async fn serve_connection(
    plane: Rc<Plane>,
    cert: Rc<ServingCert>,
    tcp: crate::rt::net::TcpStream,
) {
    let _ = tcp.set_nodelay(true);
    let peer = tcp.peer_addr().ok();
    let config = match cert.config(&plane) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("xDS over TLS: no serving certificate: {e}");
            return;
        }
    };
    let session = match rustls::ServerConnection::new(config) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("xDS over TLS: {e}");
            return;
        }
    };
    let mut tls = TlsStream::new(tcp, session, &[]);
    let shake = async { Some(tls.handshake().await) };
    let expire = async {
        crate::rt::sleep(HANDSHAKE_TIMEOUT).await;
        None
    };
    match futures_lite::future::or(shake, expire).await {
        Some(Ok(())) => super::ads::serve_connection(plane, tls, true).await,
        Some(Err(e)) => tracing::debug!(?peer, "xDS over TLS: handshake: {e}"),
        None => tracing::debug!(?peer, "xDS over TLS: handshake timed out"),
    }
}
