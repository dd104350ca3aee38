//! Last-known-good configuration: every accepted xDS update is written to the state
//! directory (a temporary file, fsync, rename: a crash leaves the old file or the new
//! one, never half of one), and read back at start so that the proxy serves it at once
//! when the management server cannot be reached. Control plane only.
//!
//! The file is four length-delimited `DeltaDiscoveryResponse` messages, one per type:
//! `system_version_info` is the type's accepted version, each `Resource` carries a
//! resource's name, version and payload. Reading it runs every resource through the
//! same checks as a response from the server.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, Resource};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

use super::state::{Incoming, Kind, Store};

const FILE: &str = "xds-last-known-good.pb";

/// The largest state file read back (a bound against a corrupt or foreign file).
const MAX_FILE: u64 = 256 << 20;

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Writes what `store` holds now. Errors are logged: the proxy goes on serving.
pub fn save(dir: &Path, store: &Store) {
    let mut out = Vec::new();
    for k in Kind::ALL {
        let t = &store.types[k as usize];
        let resources = t
            .meta
            .iter()
            .filter_map(|(name, m)| {
                let value = encode(store, k, name)?;
                Some(Resource {
                    name: name.clone(),
                    version: m.version.clone(),
                    resource: Some(Any {
                        type_url: k.type_url(),
                        value,
                    }),
                    ..Default::default()
                })
            })
            .collect();
        let msg = DeltaDiscoveryResponse {
            system_version_info: t.version.clone(),
            type_url: k.type_url(),
            resources,
            ..Default::default()
        };
        if msg.encode_length_delimited(&mut out).is_err() {
            return;
        }
    }
    if let Err(e) = write_atomic(dir, &out) {
        tracing::error!(
            "xDS: cannot save the last-known-good config in {}: {e}",
            dir.display()
        );
    }
}

fn encode(store: &Store, k: Kind, name: &str) -> Option<Vec<u8>> {
    let d = &store.dynamic;
    Some(match k {
        Kind::Listener => d.listeners.get(name)?.encode_to_vec(),
        Kind::Cluster => d.clusters.get(name)?.encode_to_vec(),
        Kind::Route => d.routes.get(name)?.encode_to_vec(),
        Kind::Endpoint => d.endpoints.get(name)?.encode_to_vec(),
        Kind::Secret => d.secrets.get(name)?.encode_to_vec(),
    })
}

fn write_atomic(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    {
        // Owner only: the file holds the secrets (private keys) delivered over SDS.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path(dir))?;
    // The rename itself is durable once the directory is synced.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Loads the saved state into `store`; `Ok(false)` when there is none. A file that does
/// not decode or check is an error, and `store` is left as it was.
pub fn load(dir: &Path, store: &mut Store) -> Result<bool, String> {
    let p = path(dir);
    let meta = match std::fs::metadata(&p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("{}: {e}", p.display())),
    };
    if meta.len() > MAX_FILE {
        return Err(format!("{}: larger than {MAX_FILE} bytes", p.display()));
    }
    let bytes = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    let mut buf = bytes.as_slice();
    let mut updates = Vec::new();
    while !buf.is_empty() {
        let m = DeltaDiscoveryResponse::decode_length_delimited(&mut buf)
            .map_err(|e| format!("{}: {e}", p.display()))?;
        updates.push(m);
    }
    // Clusters and endpoints first, so that listeners find their clusters.
    for m in updates {
        let Some(k) = Kind::from_url(&m.type_url) else {
            continue;
        };
        let resources = m
            .resources
            .into_iter()
            .filter_map(|r| {
                Some(Incoming {
                    name: Some(r.name),
                    version: Some(r.version),
                    any: r.resource?,
                })
            })
            .collect();
        let prepared = store
            .prepare(
                k,
                &m.system_version_info,
                resources,
                Vec::new(),
                false,
                None,
            )
            .map_err(|e| format!("{}: {e}", p.display()))?;
        store.commit(prepared);
    }
    Ok(true)
}
