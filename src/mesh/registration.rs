//! The registration endpoints of the admin port (`registry.rs` says what they do):
//! `PUT` and `DELETE /workloads/NAMESPACE/NAME`, with the caller's token checked. With
//! `--etcd` the registration is written to etcd under a lease (every replica applies it
//! from its watch, and etcd expires it); otherwise it is kept here.

use super::plane::Plane;
use super::registry;

/// A plain-text answer: (status, body).
pub type Reply = (u16, String);

fn text(status: u16, msg: &str) -> Reply {
    (status, format!("{msg}\n"))
}

pub async fn handle(
    plane: &Plane,
    method: &str,
    route: &str,
    query: &str,
    token: Option<&str>,
    body: &[u8],
) -> Reply {
    let (ns, name) = match registry::target(route) {
        Ok(t) => t,
        Err(e) => return text(404, &e),
    };
    let denied = |e: String| text(if token.is_none() { 401 } else { 403 }, &e);
    match method {
        "PUT" => {
            let ttl = match registry::ttl(query) {
                Ok(t) => t,
                Err(e) => return text(400, &e),
            };
            let mut spec = match registry::spec(body) {
                Ok(s) => s,
                Err(e) => return text(400, &e),
            };
            match plane.authenticate(token, &ns, spec.service_account.as_deref()) {
                Ok(Some(id)) => {
                    spec.service_account.get_or_insert(id.service_account);
                }
                Ok(None) => {}
                Err(e) => return denied(e),
            }
            let written = match plane.registry_store.clone() {
                None => plane.register(&ns, &name, spec, ttl),
                Some(etcd) => {
                    if let Err(e) = plane.check_registration(&ns, &name, &spec) {
                        return text(409, &e);
                    }
                    let key = registry::etcd_key(&etcd.prefix, &ns, &name);
                    let value = registry::etcd_value(&spec, ttl);
                    let r = crate::rt::blocking("outrigger-etcd", move || {
                        etcd.register(&key, &value, ttl)
                    })
                    .await;
                    match r {
                        Some(Ok(w)) => Ok(w),
                        Some(Err(e)) => return text(503, &e),
                        None => return text(503, "etcd: the call did not complete"),
                    }
                }
            };
            match written {
                Ok(true) => {
                    tracing::info!(workload = %format!("{ns}/{name}"), "workload registered");
                    text(201, "registered")
                }
                Ok(false) => text(200, "renewed"),
                Err(e) => text(409, &e),
            }
        }
        "DELETE" => {
            let sa = plane
                .registry
                .borrow()
                .get(&ns, &name)
                .and_then(|w| w.service_account.clone());
            if let Err(e) = plane.authenticate(token, &ns, sa.as_deref()) {
                return denied(e);
            }
            let removed = match plane.registry_store.clone() {
                None => plane.deregister(&ns, &name),
                Some(etcd) => {
                    let key = registry::etcd_key(&etcd.prefix, &ns, &name);
                    match crate::rt::blocking("outrigger-etcd", move || etcd.delete(&key)).await {
                        Some(Ok(d)) => d,
                        Some(Err(e)) => return text(503, &e),
                        None => return text(503, "etcd: the call did not complete"),
                    }
                }
            };
            if removed {
                tracing::info!(workload = %format!("{ns}/{name}"), "workload deregistered");
                text(200, "deregistered")
            } else {
                text(404, "not registered")
            }
        }
        _ => text(405, "PUT or DELETE"),
    }
}
