//! `outrigger control`: the control plane (istiod's role) for Outrigger and Envoy
//! sidecars. It reads Istio's resources from a directory, translates them into each
//! proxy's listeners, routes, clusters and endpoints, and serves them over ADS (state
//! of the world and delta). It runs on one executor of the project's runtime, apart
//! from any proxy: nothing here is on a request path. docs/control-plane.md is the
//! user's guide.
//!
//! | file | what |
//! |---|---|
//! | `istio.rs` | the Istio kinds read, field by field; errors name the file and field |
//! | `model.rs` | the checked mesh and its lookups (Sidecar for a workload, DestinationRule for a host) |
//! | `translate.rs` | one proxy's view as Envoy v3 resources, istiod's names and defaults |
//! | `authz.rs` | AuthorizationPolicy to the inbound listeners' RBAC filters |
//! | `lb_kinds.rs`, `hashing.rs` | DestinationRule consistent hashing: ring hash or Maglev clusters, the routes' hash policies |
//! | `policy.rs` | route policies (fault, mirror, redirect, rewrite, CORS) and cluster policies (connection pool, outlier detection) |
//! | `plane.rs` | the served mesh, its generation, each proxy's sent/ACKed/NACKed versions |
//! | `ads.rs` | the gRPC ADS server: SotW and delta |
//! | `source.rs` | the directory or etcd: load, watch, debounce, refuse a bad change |
//! | `etcd.rs` | etcd's v3 JSON gateway: list and watch the prefix |
//! | `admin.rs` | `/ready`, `/proxies`, `/config_dump?node=ID` |
//! | `ca.rs`, `tokens.rs` | the CA (root, workload certificates) and the bootstrap tokens |
//! | `mtls_kinds.rs`, `peer_auth.rs` | PeerAuthentication and DestinationRule TLS as read; the mode of a port and the mTLS contexts |
//! | `selector.rs` | the security API's `matchLabels` |
//! | `boot.rs` | a sidecar's bootstrap from `outrigger run --control` |
//! | `capture.rs` | a proxy's view; capture mode: istiod's 15001/15006 virtual listeners for an intercepted pod |
//! | `egress.rs` | the Sidecar's egress listeners: the services a proxy sees, per port, bound or virtual |
//! | `xds_tls.rs` | xDS over TLS (istiod's 15012) with a serving certificate from the mesh CA |
//! | `registry.rs`, `registration.rs` | workloads registered over HTTP with TTL heartbeats |
//! | `status_page.rs` | the HTML status page on the admin port (`/`) |

pub mod admin;
pub mod ads;
pub mod authz;
pub mod boot;
pub mod ca;
pub mod capture;
pub mod egress;
pub mod etcd;
pub mod hashing;
pub mod istio;
pub mod lb_kinds;
pub mod model;
pub mod mtls_kinds;
pub mod peer_auth;
pub mod plane;
pub mod policy;
pub mod registration;
pub mod registry;
pub mod selector;
pub mod source;
pub mod status_page;
pub mod tokens;
pub mod translate;
pub mod xds_tls;

use std::net::SocketAddr;
use std::path::PathBuf;

pub const USAGE: &str = "\
outrigger control: the mesh's control plane (Istio resources in, xDS out)

USAGE:
  outrigger control (--dir DIR | --etcd http://IP:PORT [--etcd-prefix KEY])
                    [--xds HOST:PORT] [--xds-tls HOST:PORT [--xds-name NAME,...]]
                    [--admin HOST:PORT]
                    [--tokens FILE] [--ca-dir DIR] [--trust-domain NAME] [--cert-ttl DURATION]
  outrigger control (--dir DIR | --etcd ...) --check

--dir DIR        Istio resources (ServiceEntry, WorkloadEntry, Sidecar, VirtualService,
                 DestinationRule, AuthorizationPolicy, PeerAuthentication) in *.yaml files; watched,
                 a change applies after 100 ms of quiet
--xds HOST:PORT  the ADS server (gRPC, plaintext; default 127.0.0.1:15010); it sends
                 certificates (their keys) only to loopback peers
--xds-tls HOST:PORT  the ADS server over TLS too (istiod's 15012), with a serving
                 certificate from the mesh CA; certificates go to any peer on it
--xds-name NAME,...  the DNS names in that certificate (default istiod.istio-system.svc)
--admin HOST:PORT  /ready, /proxies, /config_dump?node=ID (default 127.0.0.1:15014)
--tokens FILE    bootstrap tokens (token, namespace, serviceAccount): a proxy showing one
                 gets a certificate for that identity over SDS; with this set, a stream
                 without a valid token is refused. Without it, no proxy gets a certificate
--ca-dir DIR     the mesh root (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem);
                 generated and written there when absent (default: generated in memory)
--trust-domain NAME  the SPIFFE trust domain (default cluster.local)
--cert-ttl DURATION  workload certificates' lifetime, renewed half-way (default 24h)
--etcd URL       read the resources from etcd instead (v3 API, its client URL): each key
                 under the prefix holds what a file would; watched. Control planes on
                 one etcd serve one mesh
--etcd-prefix KEY  the root of the keys (default /outrigger/): resources under KEYmesh/,
                 registered workloads under KEYregistry/
--check          check the resources and exit (0: valid; 1: every error, by file and field)
Docs: docs/control-plane.md";

/// Where the resources come from.
pub enum Store {
    Dir(PathBuf),
    /// The resources' prefix, and the registrations'.
    Etcd(etcd::Etcd, etcd::Etcd),
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Dir(d) => write!(f, "{}", d.display()),
            Store::Etcd(e, _) => write!(f, "etcd http://{}{}", e.addr, e.prefix),
        }
    }
}

pub struct Options {
    pub store: Store,
    pub tokens: Option<PathBuf>,
    pub ca_dir: Option<PathBuf>,
    pub trust_domain: String,
    pub cert_ttl: std::time::Duration,
    pub xds: SocketAddr,
    pub xds_tls: Option<SocketAddr>,
    pub xds_names: Vec<String>,
    pub admin: SocketAddr,
    pub check: bool,
}

pub fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut dir = None;
    let mut etcd_url = None;
    let mut etcd_prefix = etcd::DEFAULT_PREFIX.to_string();
    let mut xds = SocketAddr::from(([127, 0, 0, 1], 15010));
    let mut xds_tls = None;
    let mut xds_names = vec![xds_tls::DEFAULT_NAME.to_string()];
    let mut admin = SocketAddr::from(([127, 0, 0, 1], 15014));
    let mut check = false;
    let mut tokens = None;
    let mut ca_dir = None;
    let mut trust_domain = "cluster.local".to_string();
    let mut cert_ttl = std::time::Duration::from_secs(24 * 3600);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = |n: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{n} needs a value"))
        };
        match flag.as_str() {
            "--dir" | "-d" => dir = Some(PathBuf::from(value("--dir")?)),
            "--etcd" => etcd_url = Some(value("--etcd")?),
            "--etcd-prefix" => etcd_prefix = value("--etcd-prefix")?,
            "--xds" => {
                let v = value("--xds")?;
                xds = v
                    .parse()
                    .map_err(|_| format!("--xds: `{v}` is not HOST:PORT"))?;
            }
            "--xds-tls" => {
                let v = value("--xds-tls")?;
                xds_tls = Some(
                    v.parse()
                        .map_err(|_| format!("--xds-tls: `{v}` is not HOST:PORT"))?,
                );
            }
            "--xds-name" => {
                let v = value("--xds-name")?;
                xds_names = v.split(',').map(str::to_string).collect();
                if let Some(bad) = xds_names.iter().find(|n| !dns_name(n)) {
                    return Err(format!("--xds-name: `{bad}` is not a DNS name"));
                }
            }
            "--admin" => {
                let v = value("--admin")?;
                admin = v
                    .parse()
                    .map_err(|_| format!("--admin: `{v}` is not HOST:PORT"))?;
            }
            "--check" => check = true,
            "--tokens" => tokens = Some(PathBuf::from(value("--tokens")?)),
            "--ca-dir" => ca_dir = Some(PathBuf::from(value("--ca-dir")?)),
            "--trust-domain" => {
                trust_domain = value("--trust-domain")?;
                let ok = !trust_domain.is_empty()
                    && trust_domain
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
                if !ok {
                    return Err(format!(
                        "--trust-domain: `{trust_domain}` is not a trust domain (letters, digits, `-`, `.`, `_`)"
                    ));
                }
            }
            "--cert-ttl" => {
                let v = value("--cert-ttl")?;
                cert_ttl = crate::config::duration::parse_duration(&v)
                    .map_err(|e| format!("--cert-ttl: {e}"))?;
                if cert_ttl < std::time::Duration::from_secs(2) {
                    return Err(format!("--cert-ttl: `{v}` is shorter than 2s"));
                }
            }
            f => return Err(format!("unknown argument `{f}`\n\n{USAGE}")),
        }
    }
    let store = match (dir, etcd_url) {
        (Some(d), None) => Store::Dir(d),
        (None, Some(url)) => {
            let root = if etcd_prefix.ends_with('/') {
                etcd_prefix
            } else {
                format!("{etcd_prefix}/")
            };
            Store::Etcd(
                etcd::Etcd::new(&url, &format!("{root}mesh/"))?,
                etcd::Etcd::new(&url, &format!("{root}registry/"))?,
            )
        }
        (Some(_), Some(_)) => return Err("--dir and --etcd: one source, not both".into()),
        (None, None) => return Err(format!("control needs --dir DIR or --etcd URL\n\n{USAGE}")),
    };
    Ok(Options {
        store,
        tokens,
        ca_dir,
        trust_domain,
        cert_ttl,
        xds,
        xds_tls,
        xds_names,
        admin,
        check,
    })
}

/// A DNS name as a certificate holds it: dot-separated labels of letters, digits and
/// `-` (a leading `*.` wildcard allowed).
fn dns_name(n: &str) -> bool {
    let n = n.strip_prefix("*.").unwrap_or(n);
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Runs the control plane; returns the process's exit code.
pub fn main(args: &[String]) -> u8 {
    let o = match parse_args(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let loaded = match &o.store {
        Store::Dir(d) => source::load(d).map(|f| (0, f)),
        Store::Etcd(e, _) => source::load_etcd(e),
    };
    let (revision, files) = match loaded {
        Ok(f) => f,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("{}: {} errors", o.store, errors.len());
            return 1;
        }
    };
    let tokens = match o.tokens.as_deref().map(tokens::Tokens::load).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("--tokens: {e}");
            return 1;
        }
    };
    let Ok(mesh) = model::Mesh::build(files.clone()) else {
        return 1; // load() built it already
    };
    if o.check {
        println!(
            "{}: ok ({} ServiceEntries, {} WorkloadEntries, {} Sidecars, {} VirtualServices, {} DestinationRules, {} AuthorizationPolicies, {} PeerAuthentications)",
            o.store,
            mesh.services.len(),
            mesh.workloads.len(),
            mesh.sidecars.len(),
            mesh.virtual_services.len(),
            mesh.destination_rules.len(),
            mesh.authorization_policies.len(),
            mesh.peer_authentications.len()
        );
        return 0;
    }
    let bind = |a: SocketAddr| -> Result<socket2::Socket, String> {
        let s = socket2::Socket::new(socket2::Domain::for_address(a), socket2::Type::STREAM, None)
            .map_err(|e| format!("{a}: {e}"))?;
        let _ = s.set_reuse_address(true);
        s.bind(&a.into())
            .map_err(|e| format!("cannot bind {a}: {e}"))?;
        s.listen(1024).map_err(|e| format!("{a}: {e}"))?;
        s.set_nonblocking(true).map_err(|e| format!("{a}: {e}"))?;
        Ok(s)
    };
    let (xds, admin) = match (bind(o.xds), bind(o.admin)) {
        (Ok(x), Ok(a)) => (x, a),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let xds_tls = match o.xds_tls.map(bind).transpose() {
        Ok(s) => s.map(|s| (s, o.xds_names.clone())),
        Err(e) => {
            eprintln!("--xds-tls: {e}");
            return 1;
        }
    };
    tracing::info!(
        xds = %o.xds,
        xds_tls = ?o.xds_tls,
        admin = %o.admin,
        source = %o.store,
        services = mesh.services.len(),
        "control plane started"
    );
    let ca = match ca::Ca::open(o.ca_dir.as_deref(), &o.trust_domain, o.cert_ttl) {
        Ok(ca) => ca,
        Err(e) => {
            eprintln!("--ca-dir: {e}");
            return 1;
        }
    };
    let store = o.store;
    let ca_dir = o.ca_dir.clone();
    let started =
        crate::rt::executor::LocalExecutorBuilder::new(crate::rt::executor::Placement::Unbound)
            .name("outrigger-mesh")
            .spawn(move || async move {
                let registry = match &store {
                    Store::Etcd(_, r) => Some(r.clone()),
                    Store::Dir(_) => None,
                };
                let plane = plane::Plane::new(files, ca, tokens, registry)?;
                serve(plane, (store, revision), ca_dir, (xds, xds_tls), admin).await
            });
    match started.map(|h| h.join()) {
        Ok(Ok(Ok(()))) => 0,
        Ok(Ok(Err(e))) => {
            eprintln!("{e}");
            1
        }
        Ok(Err(e)) => {
            eprintln!("the control plane's executor ended: {e}");
            1
        }
        Err(e) => {
            eprintln!("cannot start the control plane's executor: {e}");
            1
        }
    }
}

async fn serve(
    plane: std::rc::Rc<plane::Plane>,
    (store, revision): (Store, i64),
    ca_dir: Option<PathBuf>,
    (xds, xds_tls): (socket2::Socket, Option<(socket2::Socket, Vec<String>)>),
    admin: socket2::Socket,
) -> Result<(), String> {
    let xds = crate::rt::net::listener_from(xds).map_err(|e| format!("xDS listener: {e}"))?;
    if let Some((socket, names)) = xds_tls {
        let l =
            crate::rt::net::listener_from(socket).map_err(|e| format!("xDS TLS listener: {e}"))?;
        let cert = std::rc::Rc::new(xds_tls::ServingCert::new(names));
        let p = plane.clone();
        crate::rt::spawn_detached(async move {
            loop {
                match l.accept().await {
                    Ok(c) => crate::rt::spawn_detached(xds_tls::serve_connection(
                        p.clone(),
                        cert.clone(),
                        c,
                    )),
                    Err(e) => {
                        tracing::warn!("xDS TLS accept: {e}");
                        crate::rt::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    let admin = crate::rt::net::listener_from(admin).map_err(|e| format!("admin listener: {e}"))?;
    match store {
        Store::Dir(dir) => crate::rt::spawn_detached(source::watch(dir, plane.clone())),
        Store::Etcd(e, r) => {
            use source::Prefix;
            crate::rt::spawn_detached(source::watch_etcd(e, plane.clone(), revision, Prefix::Mesh));
            crate::rt::spawn_detached(source::watch_etcd(r, plane.clone(), -1, Prefix::Registry));
        }
    }
    if let Some(d) = ca_dir {
        crate::rt::spawn_detached(source::watch_ca(d, plane.clone()));
    }
    let p = plane.clone();
    crate::rt::spawn_detached(async move { p.renew_certificates().await });
    let p = plane.clone();
    crate::rt::spawn_detached(async move { p.expire_registrations().await });
    let p = plane.clone();
    crate::rt::spawn_detached(async move {
        loop {
            match admin.accept().await {
                Ok(c) => crate::rt::spawn_detached(admin::serve_connection(p.clone(), c)),
                Err(e) => {
                    tracing::warn!("admin accept: {e}");
                    crate::rt::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    loop {
        match xds.accept().await {
            Ok(c) => crate::rt::spawn_detached(ads::serve_plaintext(plane.clone(), c)),
            Err(e) => {
                tracing::warn!("xDS accept: {e}");
                crate::rt::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
