//! The files a TLS config reads, as the rotation watch sees them: each file's stamp,
//! taken before it is read. Control side only (`runtime/tls_watch.rs` compares the
//! stamps a snapshot recorded with the files now; no worker touches a file).

use std::os::unix::fs::MetadataExt;

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
