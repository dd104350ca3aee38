//! Certificate rotation: the control executor notices that a TLS file of the running
//! config changed and reloads the config, so new handshakes use the new certificate
//! while live connections keep the session (and config) they started with. The files
//! are those of listeners' and clusters' TLS: certificates, keys, CA bundles, and the
//! SDS files of an Envoy bootstrap (a new secret in the file, or a file it names
//! changing, is the same reload: the bootstrap is translated again, SDS files and all).
//!
//! It polls file stamps (mtime, size and inode) every [`POLL`] on the control executor, and only
//! while the running config has TLS files: no inotify thread, nothing on the workers,
//! and an idle proxy without TLS still arms no timer. A reload that is refused (a
//! half-written pair: the new certificate with the old key) is not retried until a file
//! changes again.

use std::time::Duration;

use crate::config::Snapshot;
use crate::tls::files::{stamp, Stamp};

/// How often the files are checked while TLS is configured.
pub const POLL: Duration = Duration::from_secs(1);

/// The stamps of every TLS file the snapshot read, as recorded when it was built.
fn recorded(s: &Snapshot) -> impl Iterator<Item = &(String, Option<Stamp>)> {
    let downstream = s
        .listeners
        .iter()
        .flat_map(|l| l.chains())
        .filter_map(|(_, c)| c.tls.as_ref())
        .flat_map(|t| t.stamps.iter());
    let upstream = s
        .clusters
        .iter()
        .flat_map(|c| {
            c.tls
                .iter()
                .chain(c.endpoint_tls.iter().flat_map(|(_, t)| t))
        })
        .flat_map(|t| t.stamps.iter());
    downstream.chain(upstream)
}

/// True if the snapshot has TLS files to watch.
pub fn watches(s: &Snapshot) -> bool {
    recorded(s).next().is_some()
}

/// The files' stamps now, if any differs from what the snapshot read.
pub fn changed(s: &Snapshot) -> Option<Vec<Option<Stamp>>> {
    let now: Vec<Option<Stamp>> = recorded(s).map(|(path, _)| stamp(path)).collect();
    let differs = recorded(s).zip(&now).any(|((_, then), now)| then != now);
    differs.then_some(now)
}
