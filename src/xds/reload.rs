//! SIGHUP, `POST /reload` and a changed TLS file with a bootstrap that has
//! `dynamic_resources`: the bootstrap file is read again and its static resources
//! (listeners, clusters, admin aside) are published together with the dynamic resources
//! the xDS client holds, as if the management server had sent them again. What the ADS
//! stream was opened with (`node`, `dynamic_resources`) is kept for the life of the
//! process: a reload that changes it is refused, and nothing changes (Envoy has no
//! reload; it reads its bootstrap once).

use super::{Client, Publish};
use crate::config::xds::{xds_bootstrap, XdsBootstrap};

/// Reloads from `text`, the bootstrap file as it is now.
pub async fn reload<P: Publish>(control: &P, client: &Client, text: &str) -> Result<u64, String> {
    let Some(new) = xds_bootstrap(text).map_err(|e| e.to_string())? else {
        return Err(
            "the bootstrap no longer has dynamic_resources (ADS): leaving xDS takes a restart; \
             the running config is kept"
                .into(),
        );
    };
    if let Some(field) = stream_change(&client.store.borrow().boot, &new) {
        return Err(format!(
            "`{field}` changed: what the ADS stream was opened with takes effect only on \
             restart; the running config is kept"
        ));
    }
    let old = std::mem::replace(&mut client.store.borrow_mut().boot, new);
    let published = async {
        let built = client.store.borrow_mut().rebuild();
        let (snapshot, listeners, clusters) = built?;
        let version = control.apply(snapshot).await?;
        Ok::<_, String>((version, listeners, clusters))
    }
    .await;
    let mut s = client.store.borrow_mut();
    match published {
        Ok((version, listeners, clusters)) => {
            s.dynamic.active_listeners = listeners;
            s.dynamic.active_clusters = clusters;
            s.accept_routes();
            control.set_dump(s.dump());
            Ok(version)
        }
        Err(e) => {
            s.boot = old;
            Err(e)
        }
    }
}

/// The first field of what the ADS stream depends on that differs.
fn stream_change(old: &XdsBootstrap, new: &XdsBootstrap) -> Option<&'static str> {
    if old.node != new.node {
        return Some("node");
    }
    if old.json.get("dynamic_resources") != new.json.get("dynamic_resources")
        || old.ads_cluster != new.ads_cluster
        || old.initial_metadata != new.initial_metadata
        || old.delta != new.delta
        || old.set_node_on_first_message_only != new.set_node_on_first_message_only
        || old.cds_fetch_timeout != new.cds_fetch_timeout
        || old.lds_fetch_timeout != new.lds_fetch_timeout
    {
        return Some("dynamic_resources");
    }
    None
}
