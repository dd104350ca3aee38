//! One ADS stream, state of the world or delta, as Envoy runs it. Control plane only.
//!
//! - Subscriptions go out in Envoy's order: CDS first; EDS (the EDS clusters' service
//!   names) once clusters are known; LDS once CDS has answered or its initial fetch
//!   timed out, and every new cluster has its endpoints or its initial fetch timed out; RDS (the route configuration names the listeners'
//!   connection managers need) once listeners are known. A change in the names needed
//!   sends a new request (SotW: the full list; delta: what to add and drop).
//! - The node goes on every request, or only on the stream's first one with
//!   `set_node_on_first_message_only`.
//! - Each response's resources are checked one by one: what passes becomes a snapshot
//!   published to the workers; a response with no refused resource is ACKed (SotW: its
//!   `version_info` and nonce; delta: its nonce), one with any is NACKed (SotW: the
//!   previous `version_info`) with an `error_detail` naming each refused resource and
//!   field, the refused ones keeping their previous version (Envoy's behaviour).
//! - On a new stream, SotW requests carry the last accepted version of each type and
//!   delta requests the versions held (`initial_resource_versions`).

use std::collections::BTreeSet;
use std::time::Instant;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status;

use super::grpc::Stream;
use super::state::{Incoming, Kind};
use super::{persist, Backoff, Client, Publish};

const SOTW: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// gRPC status INTERNAL, which Envoy puts in a NACK's `error_detail`.
const INTERNAL: i32 = 13;

/// A response of either protocol, normalised.
struct Response {
    type_url: String,
    version: String,
    nonce: String,
    resources: Vec<Incoming>,
    removed: Vec<String>,
}

enum Event {
    Message(Result<Option<Response>, String>),
    Timer,
}

struct Session<'a> {
    stream: Stream,
    client: &'a Client,
    delta: bool,
    /// No request has gone out on this stream yet.
    first: bool,
}

/// Runs one stream until it fails or the server closes it.
pub async fn run<P: Publish>(
    control: &P,
    client: &Client,
    to: super::grpc::Target<'_>,
    delta: bool,
    backoff: &mut Backoff,
) -> Result<(), String> {
    let addr = to.addr;
    let (authority, headers) = {
        let s = client.store.borrow();
        (s.boot.ads_cluster.clone(), s.boot.initial_metadata.clone())
    };
    let path = if delta { DELTA } else { SOTW };
    let stream = Stream::open(to, &authority, path, &headers).await?;
    tracing::info!(%addr, delta, "xDS: stream open");
    {
        let mut s = client.store.borrow_mut();
        for k in Kind::ALL {
            let t = s.ty(k);
            t.sent = None;
            t.nonce.clear();
        }
    }
    let mut sess = Session {
        stream,
        client,
        delta,
        first: true,
    };
    sess.subscribe()?;
    loop {
        let deadline = client.store.borrow().next_deadline();
        let event = match deadline {
            None => Event::Message(sess.recv().await),
            Some(d) => {
                let msg = async { Event::Message(sess.recv().await) };
                let timer = async {
                    crate::rt::sleep(d.saturating_duration_since(Instant::now())).await;
                    Event::Timer
                };
                futures_lite::future::or(msg, timer).await
            }
        };
        match event {
            Event::Message(Ok(Some(r))) => {
                backoff.reset();
                sess.handle(control, r).await?;
            }
            Event::Message(Ok(None)) => return Ok(()),
            Event::Message(Err(e)) => return Err(e),
            Event::Timer => {}
        }
        tick(control, client).await;
        sess.subscribe()?;
    }
}

/// Ends the initial fetches whose timeout has passed (publishing what is held then),
/// starts the clocks of the subscriptions now due, and turns `/ready` when the initial
/// fetch is over.
pub async fn tick<P: Publish>(control: &P, client: &Client) {
    let expired = client.store.borrow_mut().expire(Instant::now());
    if expired {
        rebuild(control, client).await;
    }
    client.store.borrow_mut().track_pending(Instant::now());
    check_initialized(control, client);
}

/// Publishes what is held after a warming timeout (a cluster without endpoints, an
/// empty route configuration).
async fn rebuild<P: Publish>(control: &P, client: &Client) {
    let built = client.store.borrow_mut().rebuild();
    match built {
        Ok((snapshot, listeners, clusters)) => {
            if let Err(e) = control.apply(snapshot).await {
                tracing::error!("xDS: cannot apply the config after a fetch timeout: {e}");
                return;
            }
            let mut s = client.store.borrow_mut();
            s.dynamic.active_listeners = listeners;
            s.dynamic.active_clusters = clusters;
            s.accept_routes();
            control.set_dump(s.dump());
        }
        Err(e) => tracing::error!("xDS: config after a fetch timeout is invalid: {e}"),
    }
}

fn check_initialized<P: Publish>(control: &P, client: &Client) {
    if client.initialized.get() {
        return;
    }
    let s = client.store.borrow();
    // Envoy's server initialisation: the cluster manager (CDS, then the new clusters'
    // EDS), then LDS and the listeners' RDS and SDS, each done at its first response or
    // when its own initial fetch timeout passes (a zero one waits for ever).
    if s.fetched(Kind::Cluster) && s.fetched(Kind::Listener) && s.nothing_pending() {
        drop(s);
        client.initialized.set(true);
        control.set_initialized();
        tracing::info!("xDS: initial fetch complete");
    }
}

impl Session<'_> {
    async fn recv(&mut self) -> Result<Option<Response>, String> {
        if self.delta {
            let Some(r) = self.stream.recv::<DeltaDiscoveryResponse>().await? else {
                return Ok(None);
            };
            Ok(Some(Response {
                type_url: r.type_url,
                version: r.system_version_info,
                nonce: r.nonce,
                resources: r
                    .resources
                    .into_iter()
                    .filter_map(|res| {
                        // A resource without a body only refreshes its TTL.
                        Some(Incoming {
                            name: Some(res.name),
                            version: Some(res.version),
                            any: res.resource?,
                        })
                    })
                    .collect(),
                removed: r.removed_resources,
            }))
        } else {
            let Some(r) = self.stream.recv::<DiscoveryResponse>().await? else {
                return Ok(None);
            };
            Ok(Some(Response {
                type_url: r.type_url,
                version: r.version_info,
                nonce: r.nonce,
                resources: r
                    .resources
                    .into_iter()
                    .map(|any| Incoming {
                        name: None,
                        version: None,
                        any,
                    })
                    .collect(),
                removed: Vec::new(),
            }))
        }
    }

    /// Checks, applies and answers one response.
    async fn handle<P: Publish>(&mut self, control: &P, r: Response) -> Result<(), String> {
        let Some(k) = Kind::from_url(&r.type_url) else {
            // Envoy ignores a type it did not subscribe to.
            tracing::warn!(
                "xDS: ignoring a response of unsubscribed type `{}`",
                r.type_url
            );
            return Ok(());
        };
        let client = self.client;
        client.store.borrow_mut().ty(k).nonce = r.nonce.clone();
        let full_set = !self.delta && k.wildcard();
        // SotW RDS, EDS and SDS take only the names asked for: a server reads an empty
        // `resource_names` as the wildcard, which only CDS and LDS mean by it.
        let asked = (!self.delta && !k.wildcard()).then(|| {
            client.store.borrow().types[k as usize]
                .sent
                .clone()
                .unwrap_or_default()
        });
        if asked.as_ref().is_some_and(BTreeSet::is_empty) {
            let mut s = client.store.borrow_mut();
            s.ty(k).received = true;
            if r.resources.is_empty() {
                // Envoy takes the version of an empty answer to an empty list and
                // sends nothing back: nothing is watched.
                s.ty(k).version = r.version;
                return Ok(());
            }
            // Envoy: "Ignoring unwatched type URL"; the request that follows keeps the
            // version held (no ACK of what was not asked for).
            tracing::warn!(type_url = %r.type_url, "xDS: ignoring resources nobody asked for");
            drop(s);
            return self.answer(k, &r.nonce, None);
        }
        let started = Instant::now();
        let prepared = client.store.borrow_mut().prepare(
            k,
            &r.version,
            r.resources,
            r.removed,
            full_set,
            asked.as_ref(),
        );
        let built = started.elapsed();
        let outcome = match prepared {
            Ok(mut p) => match p.snapshot.take() {
                Some(snapshot) => match control.apply(snapshot).await {
                    Ok(v) => {
                        let partial = p.error_detail();
                        let mut s = client.store.borrow_mut();
                        s.commit(p);
                        // A listener or cluster gone takes its RDS or EDS resource.
                        s.forget_unwatched();
                        s.track_pending(Instant::now());
                        if let Some(dir) = &client.state_dir {
                            persist::save(dir, &s);
                        }
                        // How long the whole snapshot took to build from the held
                        // resources, and to reach the workers.
                        tracing::info!(
                            type_url = %r.type_url,
                            version = %r.version,
                            snapshot = v,
                            build_ms = built.as_millis() as u64,
                            apply_ms = (started.elapsed() - built).as_millis() as u64,
                            "xDS: update accepted"
                        );
                        // Some resources were refused: the others apply, as in Envoy,
                        // and the response is NACKed.
                        match partial {
                            Some(detail) => Err(detail),
                            None => Ok(()),
                        }
                    }
                    Err(e) => Err(client.store.borrow_mut().reject(p, e)),
                },
                None => Err(client.store.borrow_mut().reject(p, "no snapshot".into())),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = &outcome {
            tracing::warn!(type_url = %r.type_url, version = %r.version, "xDS: update rejected: {e}");
        }
        {
            let mut s = client.store.borrow_mut();
            s.ty(k).received = true;
            control.set_dump(s.dump());
        }
        let detail = outcome.err().map(|message| Status {
            code: INTERNAL,
            message,
            details: Vec::new(),
        });
        self.answer(k, &r.nonce, detail)
    }

    /// The ACK (no `detail`) or NACK of a response of type `k`.
    fn answer(&mut self, k: Kind, nonce: &str, detail: Option<Status>) -> Result<(), String> {
        let node = self.node();
        let s = self.client.store.borrow();
        let t = &s.types[k as usize];
        if self.delta {
            let req = DeltaDiscoveryRequest {
                node,
                type_url: k.type_url(),
                response_nonce: nonce.to_string(),
                error_detail: detail,
                ..Default::default()
            };
            drop(s);
            self.stream.send(&req)
        } else {
            // An ACK carries the version just accepted, a NACK the one still in force:
            // both are the type's accepted version now.
            let req = DiscoveryRequest {
                version_info: t.version.clone(),
                node,
                resource_names: t.sent.iter().flatten().cloned().collect(),
                type_url: k.type_url(),
                response_nonce: nonce.to_string(),
                error_detail: detail,
                ..Default::default()
            };
            drop(s);
            self.stream.send(&req)
        }
    }

    fn node(&mut self) -> Option<envoy_types::pb::envoy::config::core::v3::Node> {
        let s = self.client.store.borrow();
        let send = self.first || !s.boot.set_node_on_first_message_only;
        self.first = false;
        send.then(|| s.boot.node.clone())
    }

    /// Sends the requests whose subscriptions are due or changed, in Envoy's order.
    fn subscribe(&mut self) -> Result<(), String> {
        for k in Kind::ALL {
            let (due, wanted, sent) = {
                let s = self.client.store.borrow();
                // CDS "fetched" includes its initial fetch timing out: Envoy's cluster
                // manager then finishes initialising and LDS starts even though the
                // server never answered CDS.
                let fetched = |k: Kind| s.fetched(k);
                let due = match k {
                    Kind::Cluster => true,
                    Kind::Endpoint => fetched(Kind::Cluster),
                    Kind::Listener => fetched(Kind::Cluster) && s.clusters_warm(),
                    Kind::Route => fetched(Kind::Listener),
                    // Envoy asks for a secret when a cluster or listener that needs it
                    // is created.
                    Kind::Secret => fetched(Kind::Cluster),
                };
                (due, s.wanted(k), s.types[k as usize].sent.clone())
            };
            if !due || sent.as_ref() == Some(&wanted) {
                continue;
            }
            // A named type with nothing to watch sends nothing until it has.
            if !k.wildcard() && wanted.is_empty() && sent.is_none() {
                continue;
            }
            let node = self.node();
            if self.delta {
                self.send_delta(k, node, &wanted, sent.as_ref())?;
            } else {
                let s = self.client.store.borrow();
                let t = &s.types[k as usize];
                let req = DiscoveryRequest {
                    version_info: t.version.clone(),
                    node,
                    resource_names: wanted.iter().cloned().collect(),
                    type_url: k.type_url(),
                    response_nonce: t.nonce.clone(),
                    ..Default::default()
                };
                drop(s);
                self.stream.send(&req)?;
            }
            self.client.store.borrow_mut().ty(k).sent = Some(wanted);
        }
        Ok(())
    }

    fn send_delta(
        &mut self,
        k: Kind,
        node: Option<envoy_types::pb::envoy::config::core::v3::Node>,
        wanted: &BTreeSet<String>,
        sent: Option<&BTreeSet<String>>,
    ) -> Result<(), String> {
        let s = self.client.store.borrow();
        let t = &s.types[k as usize];
        let mut req = DeltaDiscoveryRequest {
            node,
            type_url: k.type_url(),
            ..Default::default()
        };
        match sent {
            None => {
                req.resource_names_subscribe = wanted.iter().cloned().collect();
                // What is held already, so the server sends only what changed.
                req.initial_resource_versions = t
                    .meta
                    .iter()
                    .filter(|(n, _)| k.wildcard() || wanted.contains(*n))
                    .map(|(n, m)| (n.clone(), m.version.clone()))
                    .collect();
            }
            Some(sent) => {
                req.resource_names_subscribe = wanted.difference(sent).cloned().collect();
                req.resource_names_unsubscribe = sent.difference(wanted).cloned().collect();
            }
        }
        drop(s);
        self.stream.send(&req)
    }
}
