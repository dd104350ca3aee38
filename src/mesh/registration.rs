//! The registration endpoints of the admin port (`registry.rs` says what they do):
//! `PUT` and `DELETE /workloads/NAMESPACE/NAME`, with the caller's token checked.

use super::admin::response;
use super::plane::Plane;
use super::registry;

pub fn handle(
    plane: &Plane,
    method: &str,
    route: &str,
    query: &str,
    token: Option<&str>,
    body: &[u8],
) -> Vec<u8> {
    let text = |status: u16, msg: &str| response(status, "text/plain", &format!("{msg}\n"));
    let (ns, name) = match registry::target(route) {
        Ok(t) => t,
        Err(e) => return text(404, &e),
    };
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
                Err(e) => return text(if token.is_none() { 401 } else { 403 }, &e),
            }
            match plane.register(&ns, &name, spec, ttl) {
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
                return text(if token.is_none() { 401 } else { 403 }, &e);
            }
            if plane.deregister(&ns, &name) {
                tracing::info!(workload = %format!("{ns}/{name}"), "workload deregistered");
                text(200, "deregistered")
            } else {
                text(404, "not registered")
            }
        }
        _ => text(405, "PUT or DELETE"),
    }
}
