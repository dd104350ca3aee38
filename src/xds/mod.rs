//! The xDS client: one ADS stream (state of the world or delta) to the management server
//! named by the bootstrap, on the control executor. Control plane only: nothing here is
//! on the request path; an accepted update becomes a snapshot that the control executor
//! publishes to the workers exactly as a reload does.
//!
//! | file | what |
//! |---|---|
//! | `grpc.rs` | one gRPC stream over the h2 crate on a glommio socket (no tokio runtime) |
//! | `state.rs` | the resources held, versions, warming, rejected updates, `/config_dump` |
//! | `session.rs` | the protocol: subscriptions in Envoy's order, ACK/NACK, SotW and delta |
//! | `watched.rs` | the names each subscription asks for; forgetting what nothing watches |
//! | `persist.rs` | the last-known-good file in the state directory |
//! | `reload.rs` | SIGHUP and `POST /reload`: the static resources again, the dynamic ones kept |

pub mod grpc;
pub mod persist;
pub mod reload;
pub mod session;
pub mod state;
pub mod watched;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::Snapshot;
use state::Store;

/// What the xDS client needs from the control executor.
pub trait Publish {
    /// Publishes a snapshot to the workers (binding new listeners first); an error (a
    /// socket that will not bind) means the update is rejected.
    fn apply(&self, s: Snapshot) -> impl std::future::Future<Output = Result<u64, String>>;
    /// The `/config_dump` to serve from now on.
    fn set_dump(&self, dump: serde_json::Value);
    /// The initial fetch is complete (or timed out): `/ready` may turn 200.
    fn set_initialized(&self);
    /// The management server: the endpoints of the ADS cluster and its TLS.
    fn ads_cluster(&self, cluster: &str) -> AdsCluster;
}

/// Where the ADS stream goes: the ADS cluster's endpoints, and its upstream TLS
/// context when it has one (xDS over TLS, istiod's port 15012).
#[derive(Default)]
pub struct AdsCluster {
    pub addrs: Vec<SocketAddr>,
    pub tls: Option<std::sync::Arc<crate::tls::client::ClientTls>>,
}

/// The client's state shared by its tasks.
pub struct Client {
    pub store: RefCell<Store>,
    pub state_dir: Option<PathBuf>,
    /// The first CDS and LDS responses have been handled and nothing warms any more.
    pub initialized: Cell<bool>,
    /// A stream is open (or opening): its loop ends the initial fetches that time out.
    pub streaming: Cell<bool>,
}

/// How often the initial-fetch clock looks again while nothing is pending (a
/// subscription made later starts its own clock).
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Runs the client for the life of the process: connect, stream, and on any failure
/// reconnect after a jittered exponential backoff (Envoy's: 500 ms doubling to 30 s,
/// each wait drawn at random below the current bound), resubscribing to everything.
pub async fn run<P: Publish + 'static>(control: Rc<P>, client: Rc<Client>) {
    client.store.borrow_mut().track_pending(Instant::now());
    {
        // The initial fetch clocks run whether or not a stream is up (Envoy's start
        // with the subscription): while none is, this task ends the fetches that time
        // out; while one is, the stream's loop does (one publisher at a time).
        let c = control.clone();
        let cl = client.clone();
        crate::rt::spawn_local(async move {
            loop {
                if cl.streaming.get() {
                    crate::rt::sleep(IDLE_TICK).await;
                    continue;
                }
                let next = cl.store.borrow().next_deadline();
                let wait = next.map_or(IDLE_TICK, |d| {
                    d.saturating_duration_since(Instant::now()).min(IDLE_TICK)
                });
                crate::rt::sleep(wait).await;
                // A stream may have opened meanwhile; then its loop does this.
                if !cl.streaming.get() {
                    session::tick(&*c, &cl).await;
                }
            }
        })
        .detach();
    }
    control.set_dump(client.store.borrow().dump());
    let mut backoff = Backoff::new();
    let mut attempt = 0usize;
    loop {
        let (cluster, delta) = {
            let s = client.store.borrow();
            (s.boot.ads_cluster.clone(), s.boot.delta)
        };
        let ads = control.ads_cluster(&cluster);
        let result = match ads.addrs.get(attempt % ads.addrs.len().max(1)) {
            None => Err(format!("the ADS cluster `{cluster}` has no endpoints")),
            Some(addr) => {
                client.streaming.set(true);
                let to = grpc::Target {
                    addr: *addr,
                    tls: ads.tls.as_deref(),
                };
                let r = session::run(&*control, &client, to, delta, &mut backoff).await;
                client.streaming.set(false);
                r
            }
        };
        attempt = attempt.wrapping_add(1);
        let wait = backoff.next();
        match result {
            Ok(()) => tracing::warn!(
                "xDS: stream closed by the management server; reconnecting in {wait:?}"
            ),
            Err(e) => tracing::warn!("xDS: {e}; reconnecting in {wait:?}"),
        }
        crate::rt::sleep(wait).await;
    }
}

/// Jittered exponential backoff (Envoy's `JitteredExponentialBackOffStrategy`).
pub struct Backoff {
    bound: Duration,
    seed: u64,
}

const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

impl Backoff {
    fn new() -> Backoff {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        Backoff {
            bound: BACKOFF_BASE,
            seed,
        }
    }

    /// A response arrived: the next failure waits from the base again.
    pub fn reset(&mut self) {
        self.bound = BACKOFF_BASE;
    }

    fn next(&mut self) -> Duration {
        // xorshift64: jitter needs no cryptographic randomness.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let bound_ms = self.bound.as_millis().max(1) as u64;
        let wait = Duration::from_millis(self.seed % bound_ms);
        self.bound = (self.bound * 2).min(BACKOFF_MAX);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_below_a_doubling_bound_and_resets() {
        let mut b = Backoff::new();
        let mut bound = BACKOFF_BASE;
        for _ in 0..12 {
            assert!(b.next() < bound);
            bound = (bound * 2).min(BACKOFF_MAX);
        }
        assert_eq!(b.bound, BACKOFF_MAX);
        b.reset();
        assert!(b.next() < BACKOFF_BASE);
    }
}
