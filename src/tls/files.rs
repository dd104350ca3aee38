//! The files a TLS config reads, as the rotation watch sees them: each file's stamp,
//! taken before it is read. Control side only (`runtime/tls_watch.rs` compares the
//! stamps a snapshot recorded with the files now; no worker touches a file).

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

/// What tells a file changed without reading it: modification time, size and inode,
/// through symlinks, so an edit in place, a file renamed over the old one (Envoy's
/// "moved to") and a Kubernetes-style `..data` symlink swap all count.
pub type Stamp = (std::time::SystemTime, u64, u64);

/// Files and their stamps as recorded when a config was built (`None`: the file could
/// not be read then).
pub type Watched = Vec<(String, Option<Stamp>)>;

/// The stamp of `path` now (`None`: it cannot be read).
pub fn stamp(path: &str) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// PEM given inline instead of in a file (an Envoy data source's `inline_string` or
/// `inline_bytes`, in a bootstrap or an SDS secret). Never printed: it may be a key.
#[derive(Clone, PartialEq, Eq)]
pub struct InlinePem(pub Arc<[u8]>);

impl fmt::Debug for InlinePem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<inline>")
    }
}

/// The PEM of a data source: `inline` if given, else the file `path` (control side).
pub fn pem(path: &str, inline: &Option<InlinePem>) -> Result<Vec<u8>, String> {
    match inline {
        Some(i) => Ok(i.0.to_vec()),
        None => std::fs::read(path).map_err(|e| format!("cannot read `{path}`: {e}")),
    }
}
