//! The ADS server: `StreamAggregatedResources` (state of the world) and
//! `DeltaAggregatedResources` (incremental) over gRPC on HTTP/2 (the h2 crate on the
//! control executor's sockets, as the proxy's xDS client is), for Outrigger and Envoy
//! sidecars alike.
//!
//! The protocol as istiod and go-control-plane serve it:
//! - a stream's first request carries the node; its id places the proxy in the mesh;
//! - a request whose nonce is not the last one sent for its type is stale and ignored;
//! - one with `error_detail` is a NACK: recorded, nothing is resent until the mesh
//!   changes; one repeating the last version sent is an ACK;
//! - the first request of a type, or a change of the names it asks for, is answered;
//! - a change of the mesh sends every subscribed type whose resources changed, clusters
//!   and endpoints before listeners and routes; the assignments of the clusters sent
//!   go again with the next endpoints, changed or not (`Stream::endpoints_again`:
//!   Envoy warms a changed cluster until it has them).
//!
//! Listeners and clusters are sent whole (wildcard); routes and endpoints as asked by
//! name. In delta, each resource has its own version, and one that went away is
//! listed in `removed_resources`.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, Resource,
};
use envoy_types::pb::google::protobuf::{value::Kind, Any};
use h2::{RecvStream, SendStream};
use prost::Message;

use super::plane::{set_version, Encoded, EncodedView, Plane, Secrets};
use super::tokens::Identity;
use super::translate::{Proxy, SECRET, TYPES};
use crate::http::grpc_frame::{self, encode_frame, next_frame};

const SOTW: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// The largest request accepted from a proxy.
const MAX_MESSAGE: usize = 4 << 20;

/// Serves one accepted plaintext connection until the peer goes. Certificates (their
/// private keys) are sent on it only to a loopback peer: others get theirs over TLS
/// (`xds_tls.rs`), as istiod serves none on its plaintext port.
pub async fn serve_plaintext(plane: Rc<Plane>, tcp: crate::rt::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
    let keys = tcp.peer_addr().is_ok_and(|a| a.ip().is_loopback());
    serve_connection(plane, tcp, keys).await
}

/// Serves one accepted connection until the peer goes; `keys`: certificates may be
/// sent on it.
pub async fn serve_connection<T>(plane: Rc<Plane>, io: T, keys: bool)
where
    T: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + 'static,
{
    let mut conn = match h2::server::Builder::new()
        .max_frame_size(1 << 20)
        .handshake::<_, Bytes>(crate::http::io::TokioIo::new(io))
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!("xDS connection: HTTP/2 handshake: {e}");
            return;
        }
    };
    while let Some(next) = conn.accept().await {
        let (req, respond) = match next {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("xDS connection ended: {e}");
                return;
            }
        };
        crate::rt::spawn_detached(stream(plane.clone(), req, respond, keys));
    }
}

async fn stream(
    plane: Rc<Plane>,
    req: http::Request<RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    keys: bool,
) {
    let path = req.uri().path().to_string();
    if path != SOTW && path != DELTA {
        let r = http::Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .header("grpc-status", "12")
            .header("grpc-message", "not served by this control plane")
            .body(());
        if let Ok(r) = r {
            let _ = respond.send_response(r, true);
        }
        return;
    }
    let ok = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(());
    let Ok(ok) = ok else { return };
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(super::tokens::bearer)
        .map(str::to_string);
    let Ok(send) = respond.send_response(ok, false) else {
        return;
    };
    let mut s = Stream {
        plane,
        token,
        identity: None,
        keys,
        denied: false,
        recv: Incoming {
            body: req.into_body(),
            buf: BytesMut::new(),
        },
        send,
        proxy: None,
        endpoints_again: BTreeSet::new(),
    };
    let end = if path == SOTW {
        s.sotw().await
    } else {
        s.delta().await
    };
    if let Some(p) = &s.proxy {
        s.plane
            .with_proxy(&p.id, |st| st.streams = st.streams.saturating_sub(1));
    }
    let (status, message) = match end {
        Ok(()) => ("0", String::new()),
        Err(e) if s.denied => ("16", e),
        Err(e) => {
            tracing::debug!("xDS stream ended: {e}");
            ("3", e)
        }
    };
    let mut t = http::HeaderMap::new();
    t.insert("grpc-status", http::HeaderValue::from_static(status));
    if let Ok(m) = http::HeaderValue::from_str(&message) {
        if !message.is_empty() {
            t.insert("grpc-message", m);
        }
    }
    let _ = s.send.send_trailers(t);
}

/// A `DiscoveryResponse` as a gRPC message, written from the view's encoded resources
/// (each copied once, into the frame, not cloned into an `Any` first).
fn sotw_frame(version: &str, type_url: &str, nonce: &str, resources: &[&Encoded]) -> Bytes {
    use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
    // A length-delimited field of `n` bytes.
    let field_len =
        |tag: u32, n: usize| prost::encoding::key_len(tag) + encoded_len_varint(n as u64) + n;
    let any_len = |e: &Encoded| field_len(1, type_url.len()) + field_len(2, e.bytes.len());
    let mut len =
        field_len(1, version.len()) + field_len(4, type_url.len()) + field_len(5, nonce.len());
    for e in resources {
        len += field_len(2, any_len(e));
    }
    let mut out = BytesMut::with_capacity(grpc_frame::PREFIX + len);
    grpc_frame::put_prefix(len, &mut out);
    let put = |tag: u32, b: &[u8], out: &mut BytesMut| {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(b.len() as u64, out);
        out.extend_from_slice(b);
    };
    put(1, version.as_bytes(), &mut out);
    for e in resources {
        encode_key(2, WireType::LengthDelimited, &mut out);
        encode_varint(any_len(e) as u64, &mut out);
        put(1, type_url.as_bytes(), &mut out);
        put(2, &e.bytes, &mut out);
    }
    put(4, type_url.as_bytes(), &mut out);
    put(5, nonce.as_bytes(), &mut out);
    out.freeze()
}

struct Incoming {
    body: RecvStream,
    buf: BytesMut,
}

impl Incoming {
    /// The next message; `None` when the proxy ended the stream. Cancel-safe: the only
    /// wait is for the next DATA frame, and a frame read is buffered before returning.
    async fn next<M: Message + Default>(&mut self) -> Result<Option<M>, String> {
        loop {
            if let Some(frame) = next_frame(&mut self.buf, MAX_MESSAGE)? {
                return M::decode(frame)
                    .map(Some)
                    .map_err(|e| format!("malformed request: {e}"));
            }
            match self.body.data().await {
                Some(Ok(chunk)) => {
                    let _ = self.body.flow_control().release_capacity(chunk.len());
                    self.buf.extend_from_slice(&chunk);
                }
                Some(Err(e)) => return Err(format!("stream: {e}")),
                None => return Ok(None),
            }
        }
    }
}

/// The resources of one type a stream may send.
enum Held {
    View(Rc<EncodedView>, String),
    Secrets(Option<Rc<Secrets>>),
}

static NONE: BTreeMap<String, Encoded> = BTreeMap::new();

impl Held {
    fn get(&self) -> &BTreeMap<String, Encoded> {
        match self {
            Held::View(v, t) => v.get(t.as_str()).unwrap_or(&NONE),
            Held::Secrets(s) => s.as_deref().unwrap_or(&NONE),
        }
    }
}

/// A stream's subscriptions by type URL.
type Subs<S> = BTreeMap<String, S>;

/// The most types one stream may subscribe to: a peer naming type after type would
/// otherwise grow the stream's state without end (xDS has a dozen types).
const MAX_TYPES: usize = 32;

/// Whether `type_url` is new to the stream; an error past `MAX_TYPES`.
fn new_type<S>(subs: &Subs<S>, type_url: &str) -> Result<bool, String> {
    if subs.contains_key(type_url) {
        return Ok(false);
    }
    if subs.len() >= MAX_TYPES {
        return Err(format!(
            "more than {MAX_TYPES} resource types on one stream"
        ));
    }
    Ok(true)
}

enum Event<M> {
    Request(Result<Option<M>, String>),
    Changed,
}

struct Stream {
    plane: Rc<Plane>,
    /// The bearer token the stream was opened with.
    token: Option<String>,
    /// Whom the token stands for (a certificate is issued for it).
    identity: Option<Identity>,
    /// Certificates may go out on this stream (TLS, or a loopback peer).
    keys: bool,
    /// The stream was refused for its token (UNAUTHENTICATED).
    denied: bool,
    recv: Incoming,
    send: SendStream<Bytes>,
    proxy: Option<Proxy>,
    /// The clusters sent since endpoints last went: their assignments (each named as
    /// its cluster) go with the next endpoints even if unchanged. Envoy warms a changed
    /// EDS cluster until a `ClusterLoadAssignment` for it arrives; without this it
    /// waits out its `initial_fetch_timeout` (15 s) before the new cluster serves, as
    /// istiod's pushes avoid. In state of the world it asks again with the version it
    /// has (an ACK, but for this), and any cluster sent makes the whole next response
    /// due; in delta it asks for nothing (its subscribed names stay the same), and the
    /// named assignments are added to the next one.
    endpoints_again: BTreeSet<String>,
}

/// A state-of-the-world subscription: the names asked for (empty: all), and what was
/// last sent.
#[derive(Default)]
struct Sub {
    names: BTreeSet<String>,
    version: String,
    nonce: String,
}

/// A delta subscription: the names asked for (wildcard: all), and the version of each
/// resource the proxy has.
#[derive(Default)]
struct DeltaSub {
    wildcard: bool,
    names: BTreeSet<String>,
    has: BTreeMap<String, String>,
    nonce: String,
}

impl Stream {
    async fn next_event<M: Message + Default>(&mut self, seen: u64) -> Event<M> {
        let plane = self.plane.clone();
        let req = async { Event::Request(self.recv.next::<M>().await) };
        let changed = async {
            plane.changed(seen).await;
            Event::Changed
        };
        futures_lite::future::or(req, changed).await
    }

    /// The proxy from the stream's first request's node.
    fn place(&mut self, node: Option<&Node>) -> Result<(), String> {
        if self.proxy.is_some() {
            return Ok(());
        }
        let node = node.ok_or("the stream's first request has no node")?;
        if node.id.is_empty() {
            return Err("the node has no id".into());
        }
        let meta = node.metadata.as_ref();
        let text = |k: &str| match meta?.fields.get(k)?.kind.as_ref()? {
            Kind::StringValue(s) => Some(s.clone()),
            _ => None,
        };
        let mut labels = BTreeMap::new();
        if let Some(Kind::StructValue(l)) = meta
            .and_then(|m| m.fields.get("LABELS"))
            .and_then(|v| v.kind.as_ref())
        {
            for (k, v) in &l.fields {
                if let Some(Kind::StringValue(s)) = &v.kind {
                    labels.insert(k.clone(), s.clone());
                }
            }
        }
        let mesh = self.plane.mesh();
        let mut p = Proxy::identify(&mesh, &node.id, text("NAMESPACE").as_deref(), labels);
        p.capture = text("INTERCEPTION_MODE").as_deref() == Some("REDIRECT");
        let service_account = mesh
            .workload(&node.id)
            .and_then(|(_, w)| w.service_account.as_deref());
        match self
            .plane
            .authenticate(self.token.as_deref(), &p.namespace, service_account)
        {
            Ok(id) => {
                if id.is_some() && !self.keys {
                    tracing::warn!(node = %node.id, "no certificate over plaintext xDS from another host: connect to the control plane's --xds-tls port");
                }
                // Without a certificate it is treated as a proxy without one.
                p.authenticated = id.is_some() && self.keys;
                self.identity = id.filter(|_| self.keys);
            }
            Err(e) => {
                tracing::warn!(node = %p.id, "xDS stream refused: {e}");
                self.denied = true;
                return Err(format!("not authenticated: {e}"));
            }
        }
        let spiffe = self.identity.as_ref().map(|id| {
            super::ca::spiffe_id(&self.plane.trust_domain, &id.namespace, &id.service_account)
        });
        self.plane.with_proxy(&p.id, |st| {
            st.streams += 1;
            st.namespace = p.namespace.clone();
            st.labels = p.labels.clone();
            st.identity = spiffe;
        });
        tracing::info!(node = %p.id, namespace = %p.namespace, "proxy connected");
        self.proxy = Some(p);
        Ok(())
    }

    fn proxy(&self) -> Result<&Proxy, String> {
        self.proxy.as_ref().ok_or_else(|| "no node".to_string())
    }

    /// The resources of `type_url` the proxy may have: its view's, or for secrets its
    /// own certificate and the trust bundle (none without an identity).
    fn resources(&self, type_url: &str) -> Result<Held, String> {
        let proxy = self.proxy()?;
        if type_url != SECRET {
            return Ok(Held::View(self.plane.view(proxy), type_url.to_string()));
        }
        Ok(Held::Secrets(match &self.identity {
            Some(id) => Some(self.plane.secrets(&proxy.id, id)?),
            None => None,
        }))
    }

    /// Re-places the proxy after a mesh change (its WorkloadEntry may have changed).
    fn replace_proxy(&mut self) {
        if let Some(p) = &self.proxy {
            let mesh = self.plane.mesh();
            let mut again = Proxy::identify(&mesh, &p.id, Some(&p.namespace), p.labels.clone());
            again.authenticated = p.authenticated;
            again.capture = p.capture;
            self.proxy = Some(again);
        }
    }

    async fn sotw(&mut self) -> Result<(), String> {
        let mut subs: BTreeMap<String, Sub> = BTreeMap::new();
        self.serve(
            &mut subs,
            |r: &DiscoveryRequest| r.node.as_ref(),
            Self::sotw_request,
            |s, t, sub| s.sotw_send(t, sub, false),
        )
        .await
    }

    /// The stream's loop, either protocol: each request handled in turn, and on a
    /// change of the mesh every subscribed type looked at again, in push order.
    async fn serve<R: Message + Default, S>(
        &mut self,
        subs: &mut Subs<S>,
        node: fn(&R) -> Option<&Node>,
        on_request: fn(&mut Self, &mut Subs<S>, R) -> Result<(), String>,
        on_change: fn(&mut Self, &str, &mut S) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut seen = self.plane.generation();
        loop {
            match self.next_event::<R>(seen).await {
                Event::Request(Err(e)) => return Err(e),
                Event::Request(Ok(None)) => return Ok(()),
                Event::Request(Ok(Some(r))) => {
                    self.place(node(&r))?;
                    on_request(self, subs, r)?;
                }
                Event::Changed => {
                    seen = self.plane.generation();
                    self.replace_proxy();
                    // Secrets first: a renewed certificate is all most changes carry.
                    for t in std::iter::once(SECRET).chain(TYPES) {
                        if let Some(sub) = subs.get_mut(t) {
                            on_change(self, t, sub)?;
                        }
                    }
                }
            }
        }
    }

    fn sotw_request(
        &mut self,
        subs: &mut BTreeMap<String, Sub>,
        r: DiscoveryRequest,
    ) -> Result<(), String> {
        let id = self.proxy()?.id.clone();
        let first = new_type(subs, &r.type_url)?;
        let sub = subs.entry(r.type_url.clone()).or_default();
        if !first && r.response_nonce != sub.nonce {
            return Ok(()); // stale: an answer to a response since replaced
        }
        if let Some(e) = &r.error_detail {
            self.plane
                .record_nack(&id, &r.type_url, &sub.version, &e.message);
            return Ok(());
        }
        let names: BTreeSet<String> = r
            .resource_names
            .iter()
            .filter(|n| n.as_str() != "*")
            .cloned()
            .collect();
        // Envoy asks for a changed cluster's endpoints again with the version it has:
        // an ACK, unless clusters went out since endpoints last did (`endpoints_again`).
        let due = r.type_url == super::translate::ENDPOINT && !self.endpoints_again.is_empty();
        if !first && !due && r.version_info == sub.version && names == sub.names {
            self.plane.with_proxy(&id, |st| {
                st.acked.insert(r.type_url.clone(), r.version_info.clone());
            });
            return Ok(());
        }
        sub.names = names;
        self.sotw_send(&r.type_url, sub, true)
    }

    /// Sends the type's resources if they differ from the last sent (or `always`).
    fn sotw_send(&mut self, type_url: &str, sub: &mut Sub, always: bool) -> Result<(), String> {
        let held = self.resources(type_url)?;
        let all = held.get();
        let proxy = self.proxy()?;
        // Listeners and clusters are sent whole; the others as asked by name.
        let whole = matches!(
            type_url,
            super::translate::LISTENER | super::translate::CLUSTER
        );
        let chosen: Vec<_> = all
            .values()
            .filter(|e| whole || sub.names.is_empty() || sub.names.contains(&e.name))
            .collect();
        let version = set_version(chosen.iter().copied());
        let due = type_url == super::translate::ENDPOINT && !self.endpoints_again.is_empty();
        if !always && !due && version == sub.version {
            return Ok(());
        }
        let nonce = self.plane.nonce();
        let frame = sotw_frame(&version, type_url, &nonce, &chosen);
        let id = proxy.id.clone();
        self.send
            .send_data(frame, false)
            .map_err(|e| format!("send: {e}"))?;
        sub.version = version.clone();
        sub.nonce = nonce;
        match type_url {
            super::translate::CLUSTER => {
                let names = chosen.iter().map(|e| e.name.clone());
                self.endpoints_again.extend(names);
            }
            super::translate::ENDPOINT => self.endpoints_again.clear(),
            _ => {}
        }
        self.plane.with_proxy(&id, |st| {
            st.sent.insert(type_url.to_string(), version);
        });
        Ok(())
    }

    async fn delta(&mut self) -> Result<(), String> {
        let mut subs: BTreeMap<String, DeltaSub> = BTreeMap::new();
        self.serve(
            &mut subs,
            |r: &DeltaDiscoveryRequest| r.node.as_ref(),
            Self::delta_request,
            Self::delta_send,
        )
        .await
    }

    fn delta_request(
        &mut self,
        subs: &mut BTreeMap<String, DeltaSub>,
        r: DeltaDiscoveryRequest,
    ) -> Result<(), String> {
        let id = self.proxy()?.id.clone();
        let first = new_type(subs, &r.type_url)?;
        let sub = subs.entry(r.type_url.clone()).or_default();
        if first {
            // A first request naming nothing (or `*`) subscribes to everything.
            sub.wildcard = r.resource_names_subscribe.is_empty()
                || r.resource_names_subscribe.iter().any(|n| n == "*");
            sub.has = r.initial_resource_versions.clone().into_iter().collect();
        }
        if !r.response_nonce.is_empty() {
            if r.response_nonce != sub.nonce {
                return Ok(()); // stale
            }
            if let Some(e) = &r.error_detail {
                // Delta has no version per type: the NACKed response's nonce stands in.
                self.plane
                    .record_nack(&id, &r.type_url, &r.response_nonce, &e.message);
                return Ok(());
            }
            let sent = self
                .plane
                .proxies
                .borrow()
                .get(&id)
                .and_then(|s| s.sent.get(&r.type_url).cloned());
            if let Some(v) = sent {
                self.plane.with_proxy(&id, |st| {
                    st.acked.insert(r.type_url.clone(), v);
                });
            }
        }
        let mut changed = first;
        for n in &r.resource_names_subscribe {
            if n == "*" {
                changed |= !sub.wildcard;
                sub.wildcard = true;
            } else if sub.names.insert(n.clone()) {
                // Asked again after a reconnect: it is sent unless the versions match.
                changed = true;
            }
        }
        for n in &r.resource_names_unsubscribe {
            if n == "*" {
                sub.wildcard = false;
            }
            sub.names.remove(n);
            sub.has.remove(n);
        }
        if changed {
            self.delta_send(&r.type_url, sub)?;
        }
        Ok(())
    }

    /// Sends what the proxy lacks of its subscription: resources new or changed, and
    /// the names it has that are gone. Nothing when nothing differs, except the first
    /// answer of a type, which is always sent (Envoy waits for it).
    fn delta_send(&mut self, type_url: &str, sub: &mut DeltaSub) -> Result<(), String> {
        let again = match type_url {
            super::translate::ENDPOINT => std::mem::take(&mut self.endpoints_again),
            _ => BTreeSet::new(),
        };
        let held = self.resources(type_url)?;
        let all = held.get();
        let id = self.proxy()?.id.clone();
        let wanted = |n: &String| sub.wildcard || sub.names.contains(n);
        let mut resources = Vec::new();
        for (name, e) in all {
            if wanted(name) && (sub.has.get(name) != Some(&e.version) || again.contains(name)) {
                resources.push(Resource {
                    name: name.clone(),
                    version: e.version.clone(),
                    resource: Some(Any {
                        type_url: type_url.to_string(),
                        value: e.bytes.clone(),
                    }),
                    ..Default::default()
                });
            }
        }
        let removed: Vec<String> = sub
            .has
            .keys()
            .filter(|n| !all.contains_key(*n) || !wanted(n))
            .cloned()
            .collect();
        // A name asked for that does not exist is reported removed once, so that the
        // proxy stops waiting for it.
        let missing: Vec<String> = sub
            .names
            .iter()
            .filter(|n| !all.contains_key(*n) && !sub.has.contains_key(*n))
            .cloned()
            .collect();
        let first = sub.nonce.is_empty();
        if resources.is_empty() && removed.is_empty() && !first {
            return Ok(());
        }
        for r in &resources {
            sub.has.insert(r.name.clone(), r.version.clone());
        }
        if type_url == super::translate::CLUSTER {
            self.endpoints_again
                .extend(resources.iter().map(|r| r.name.clone()));
        }
        for n in &removed {
            sub.has.remove(n);
        }
        let version = set_version(all.values());
        let nonce = self.plane.nonce();
        let mut removed_all = removed;
        if first {
            removed_all.extend(missing);
        }
        let resp = DeltaDiscoveryResponse {
            system_version_info: version.clone(),
            resources,
            type_url: type_url.to_string(),
            removed_resources: removed_all,
            nonce: nonce.clone(),
            ..Default::default()
        };
        self.send
            .send_data(encode_frame(&resp), false)
            .map_err(|e| format!("send: {e}"))?;
        sub.nonce = nonce;
        self.plane.with_proxy(&id, |st| {
            st.sent.insert(type_url.to_string(), version);
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;

    #[test]
    fn a_written_response_decodes_as_prost_encodes_it() {
        let big = Encoded {
            name: "b".into(),
            version: "2".into(),
            bytes: vec![7; 300],
        };
        let small = Encoded {
            name: "a".into(),
            version: "1".into(),
            bytes: vec![1, 2, 3],
        };
        let frame = sotw_frame(
            "v9",
            super::super::translate::CLUSTER,
            "n4",
            &[&small, &big],
        );
        let want = DiscoveryResponse {
            version_info: "v9".into(),
            resources: [&small, &big]
                .iter()
                .map(|e| Any {
                    type_url: super::super::translate::CLUSTER.into(),
                    value: e.bytes.clone(),
                })
                .collect(),
            type_url: super::super::translate::CLUSTER.into(),
            nonce: "n4".into(),
            ..Default::default()
        };
        assert_eq!(frame, encode_frame(&want));
    }
}
