//! A management server for the xDS tests: envoy-types' tonic ADS service on a tokio
//! runtime of its own, state of the world and delta, behaving as go-control-plane's
//! snapshot cache does in the cases the tests use: a stream's first request of a type
//! (or a change of its names) gets the current resources, every change is pushed, and
//! an ACK or NACK gets nothing back. Every request is recorded for the assertions.

pub mod resources;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use envoy_types::pb::google::protobuf::Any;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
#[allow(dead_code)] // tests/xds_sds.rs only
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub stream: u64,
    pub type_url: String,
    pub version_info: String,
    pub nonce: String,
    pub names: Vec<String>,
    pub initial_versions: BTreeMap<String, String>,
    pub error: Option<String>,
    pub node_id: Option<String>,
}

#[derive(Default)]
struct Resources {
    /// type URL -> name -> (version, payload)
    by_type: BTreeMap<String, BTreeMap<String, (String, Vec<u8>)>>,
    /// type URL -> version of the whole set (state of the world)
    type_version: BTreeMap<String, String>,
    counter: u64,
}

struct Shared {
    resources: Mutex<Resources>,
    changed: watch::Sender<u64>,
    seen: Mutex<Vec<Seen>>,
    streams: Mutex<u64>,
    nonces: Mutex<u64>,
    /// Types the server never answers (a server without CDS, say).
    silent: Mutex<BTreeSet<String>>,
}

impl Shared {
    fn nonce(&self) -> String {
        let mut n = self.nonces.lock().unwrap();
        *n += 1;
        format!("n{n}")
    }

    fn is_silent(&self, type_url: &str) -> bool {
        self.silent.lock().unwrap().contains(type_url)
    }

    fn record(&self, s: Seen) {
        self.seen.lock().unwrap().push(s);
    }
}

/// The server; dropping it stops it (its streams end with the runtime).
pub struct Mgmt {
    shared: Arc<Shared>,
    pub addr: SocketAddr,
    rt: Option<tokio::runtime::Runtime>,
    /// The listening socket, held across a stop so that no other test takes the port
    /// meanwhile: while stopped, connections wait in the backlog, unanswered.
    socket: std::net::TcpListener,
}

impl Mgmt {
    pub fn start() -> Mgmt {
        let (changed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            resources: Mutex::default(),
            changed,
            seen: Mutex::default(),
            streams: Mutex::new(0),
            nonces: Mutex::new(0),
            silent: Mutex::default(),
        });
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let mut m = Mgmt {
            shared,
            addr: socket.local_addr().unwrap(),
            rt: None,
            socket,
        };
        m.serve();
        m
    }

    fn serve(&mut self) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let std_listener = self.socket.try_clone().unwrap();
        let listener = {
            let _guard = rt.enter();
            tokio::net::TcpListener::from_std(std_listener).unwrap()
        };
        let svc = AggregatedDiscoveryServiceServer::new(Ads(self.shared.clone()));
        rt.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let svc = hyper_util::service::TowerToHyperService::new(svc.clone());
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
                });
            }
        });
        self.rt = Some(rt);
    }

    /// Stops the server: its streams and connections end; new ones wait unanswered.
    pub fn stop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_millis(100));
        }
    }

    /// Starts it again on the same address, with the same resources.
    pub fn restart(&mut self) {
        self.stop();
        self.serve();
    }

    /// Sets resources (name, protobuf bytes) of a type and pushes them.
    pub fn set(&self, type_url: &str, items: &[(&str, Vec<u8>)]) {
        self.change(|r| {
            let v = format!("v{}", r.counter);
            let m = r.by_type.entry(type_url.to_string()).or_default();
            for (name, bytes) in items {
                m.insert(name.to_string(), (v.clone(), bytes.clone()));
            }
            r.type_version.insert(type_url.to_string(), v);
        });
    }

    pub fn remove(&self, type_url: &str, name: &str) {
        self.change(|r| {
            let v = format!("v{}", r.counter);
            if let Some(m) = r.by_type.get_mut(type_url) {
                m.remove(name);
            }
            r.type_version.insert(type_url.to_string(), v);
        });
    }

    fn change(&self, f: impl FnOnce(&mut Resources)) {
        let n = {
            let mut r = self.shared.resources.lock().unwrap();
            r.counter += 1;
            f(&mut r);
            r.counter
        };
        self.shared.changed.send_replace(n);
    }

    /// From now on the server answers no request of this type.
    #[allow(dead_code)] // tests/xds_initial_fetch.rs only
    pub fn silence(&self, type_url: &str) {
        self.shared
            .silent
            .lock()
            .unwrap()
            .insert(type_url.to_string());
    }

    /// The version the server gives the current set of a type.
    pub fn version(&self, type_url: &str) -> String {
        let r = self.shared.resources.lock().unwrap();
        r.type_version.get(type_url).cloned().unwrap_or_default()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

impl Drop for Mgmt {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Ads(Arc<Shared>);

type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = Out<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Out<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        req: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let shared = self.0.clone();
        let id = next_stream(&shared);
        let mut input = req.into_inner();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            // type URL -> (names subscribed, version last sent)
            let mut subs: BTreeMap<String, (Vec<String>, String)> = BTreeMap::new();
            let mut changed = shared.changed.subscribe();
            loop {
                tokio::select! {
                    r = input.next() => {
                        let Some(Ok(r)) = r else { return };
                        shared.record(Seen {
                            stream: id,
                            type_url: r.type_url.clone(),
                            version_info: r.version_info.clone(),
                            nonce: r.response_nonce.clone(),
                            names: r.resource_names.clone(),
                            initial_versions: BTreeMap::new(),
                            error: r.error_detail.as_ref().map(|e| e.message.clone()),
                            node_id: r.node.as_ref().map(|n| n.id.clone()),
                        });
                        let prev = subs.get(&r.type_url).map(|s| s.0.clone());
                        let fresh = r.response_nonce.is_empty() || prev.as_ref() != Some(&r.resource_names);
                        let e = subs.entry(r.type_url.clone()).or_insert((Vec::new(), String::new()));
                        e.0 = r.resource_names.clone();
                        if fresh {
                            e.1 = String::from("-");
                        }
                    }
                    c = changed.changed() => { if c.is_err() { return } }
                }
                for (t, (names, sent)) in subs.iter_mut() {
                    if shared.is_silent(t) {
                        continue;
                    }
                    let (version, resources) = {
                        let res = shared.resources.lock().unwrap();
                        let v = res.type_version.get(t).cloned().unwrap_or_default();
                        let all = res.by_type.get(t).cloned().unwrap_or_default();
                        let list: Vec<Any> = all
                            .into_iter()
                            .filter(|(n, _)| names.is_empty() || names.contains(n))
                            .map(|(_, (_, b))| Any {
                                type_url: t.clone(),
                                value: b,
                            })
                            .collect();
                        (v, list)
                    };
                    if *sent == version {
                        continue;
                    }
                    *sent = version.clone();
                    let resp = DiscoveryResponse {
                        version_info: version,
                        resources,
                        type_url: t.clone(),
                        nonce: shared.nonce(),
                        ..Default::default()
                    };
                    if tx.send(Ok(resp)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        req: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let shared = self.0.clone();
        let id = next_stream(&shared);
        let mut input = req.into_inner();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            // type URL -> (wildcard, names, name -> version the client has)
            let mut subs: BTreeMap<String, (bool, BTreeSet<String>, BTreeMap<String, String>)> =
                BTreeMap::new();
            let mut changed = shared.changed.subscribe();
            loop {
                tokio::select! {
                    r = input.next() => {
                        let Some(Ok(r)) = r else { return };
                        shared.record(Seen {
                            stream: id,
                            type_url: r.type_url.clone(),
                            version_info: String::new(),
                            nonce: r.response_nonce.clone(),
                            names: r.resource_names_subscribe.clone(),
                            initial_versions: r.initial_resource_versions.clone().into_iter().collect(),
                            error: r.error_detail.as_ref().map(|e| e.message.clone()),
                            node_id: r.node.as_ref().map(|n| n.id.clone()),
                        });
                        let new = !subs.contains_key(&r.type_url);
                        let e = subs.entry(r.type_url.clone()).or_default();
                        if new {
                            e.0 = r.resource_names_subscribe.is_empty()
                                || r.resource_names_subscribe.iter().any(|n| n == "*");
                            e.2 = r.initial_resource_versions.clone().into_iter().collect();
                        }
                        e.1.extend(r.resource_names_subscribe.iter().cloned());
                        for n in &r.resource_names_unsubscribe {
                            e.1.remove(n);
                            e.2.remove(n);
                        }
                    }
                    c = changed.changed() => { if c.is_err() { return } }
                }
                for (t, (wildcard, names, has)) in subs.iter_mut() {
                    if shared.is_silent(t) {
                        continue;
                    }
                    let all = {
                        let res = shared.resources.lock().unwrap();
                        res.by_type.get(t).cloned().unwrap_or_default()
                    };
                    let mut resources = Vec::new();
                    for (n, (v, b)) in &all {
                        if (*wildcard || names.contains(n)) && has.get(n) != Some(v) {
                            has.insert(n.clone(), v.clone());
                            resources.push(Resource {
                                name: n.clone(),
                                version: v.clone(),
                                resource: Some(Any {
                                    type_url: t.clone(),
                                    value: b.clone(),
                                }),
                                ..Default::default()
                            });
                        }
                    }
                    let removed: Vec<String> = has
                        .keys()
                        .filter(|n| !all.contains_key(*n))
                        .cloned()
                        .collect();
                    for n in &removed {
                        has.remove(n);
                    }
                    if resources.is_empty() && removed.is_empty() {
                        continue;
                    }
                    let resp = DeltaDiscoveryResponse {
                        system_version_info: String::new(),
                        resources,
                        type_url: t.clone(),
                        removed_resources: removed,
                        nonce: shared.nonce(),
                        ..Default::default()
                    };
                    if tx.send(Ok(resp)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn next_stream(shared: &Shared) -> u64 {
    let mut s = shared.streams.lock().unwrap();
    *s += 1;
    *s
}
