//! Proof that the HTTP/1 connection manager's own code allocates nothing per keep-alive
//! request, measured on in-memory streams.
//!
//! A counting global allocator (per thread) wraps the system allocator for this test
//! binary. `listener::serve` (chain selection, then `conn::serve`) runs over in-memory
//! streams: a client sending N keep-alive GETs (no body) routed to one HTTP/1.1 cluster, and an upstream answering each with a small
//! Content-Length response on one pooled connection; no access log. Serving 1010
//! requests must allocate exactly as often as serving 10: set-up costs the same, and the
//! requests in between cost nothing.
//!
//! Not covered: the executor. glommio's reactor allocates a poll `Source` when a socket
//! read or write would block, which a real socket does between requests, so requests on
//! real sockets do allocate there; that cost shows up in the load tests. Also not
//! covered: request bodies, access logging, HTTP/2.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};

use super::io::Io;
use super::view::{ConnSlot, WorkerView};
use crate::config::parse_str;
use crate::observe::stats::{ClusterStats, ListenerStats};
use crate::upstream::cluster::ClusterState;
use crate::upstream::Connector;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

const REQUEST: &[u8] =
    b"GET /api/items?id=7 HTTP/1.1\r\nHost: svc.local\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n";
const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Type: text/plain\r\n\r\nhello world\n";

/// The client side: `left` copies of REQUEST, then end of stream. Counts response bytes.
struct Client {
    left: usize,
    pos: usize,
    received: Rc<Cell<usize>>,
}

impl AsyncRead for Client {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.left == 0 {
            return Poll::Ready(Ok(0));
        }
        let n = (REQUEST.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&REQUEST[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == REQUEST.len() {
            self.pos = 0;
            self.left -= 1;
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Client {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.received.set(self.received.get() + buf.len());
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Io for Client {
    fn set_read_timeout(&self, _: Option<Duration>) {}
    fn set_write_timeout(&self, _: Option<Duration>) {}
}

/// The upstream side: answers each complete request head with RESPONSE.
struct Upstream {
    pending: usize,
    pos: usize,
    head_bytes: usize,
}

impl AsyncRead for Upstream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.pending == 0 {
            return Poll::Ready(Ok(0));
        }
        let n = (RESPONSE.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&RESPONSE[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == RESPONSE.len() {
            self.pos = 0;
            self.pending -= 1;
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Upstream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        // Each write the proxy makes here is one whole request head.
        assert!(buf.ends_with(b"\r\n\r\n"));
        self.head_bytes += buf.len();
        self.pending += 1;
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Io for Upstream {
    fn set_read_timeout(&self, _: Option<Duration>) {}
    fn set_write_timeout(&self, _: Option<Duration>) {}
}

struct MemConnector {
    connects: Cell<usize>,
}

impl Connector for MemConnector {
    type Conn = Upstream;
    async fn connect(&self, _: SocketAddr, _: Duration) -> std::io::Result<Upstream> {
        self.connects.set(self.connects.get() + 1);
        Ok(Upstream {
            pending: 0,
            pos: 0,
            head_bytes: 0,
        })
    }
}

const CONFIG: &str = "
listeners:
  - { name: l, address: 127.0.0.1, port: 1, route_table: t }
route_tables:
  - name: t
    virtual_hosts:
      - name: svc
        domains: [svc.local]
        routes:
          - match: { prefix: /api/ }
            cluster: c
clusters:
  - name: c
    endpoints: [{ address: 127.0.0.1, port: 2 }]
";

/// `CONFIG` with every header the proxy can add itself (`proxy_headers`), as a
/// bootstrap has them by Envoy's defaults.
fn config_with_own_headers() -> String {
    CONFIG.replace(
        "route_table: t }",
        "route_table: t,
      proxy_headers: { date: true, server_header_transformation: overwrite,
        envoy_headers: true, sanitize_envoy_headers: true, generate_request_id: true } }",
    )
}

/// `CONFIG` with an RBAC filter whose rules allow the request after trying a header,
/// a path, a source CIDR and the remote address from `x-forwarded-for`, and shadow
/// rules that deny it.
fn config_with_rbac() -> String {
    CONFIG.replace(
        "route_table: t }",
        "route_table: t,
      http_filters: [{ name: authz, rbac: {
        rules: { action: ALLOW, policies: {
          a-header: { permissions: [{ header: { name: x-admin, present_match: true } }],
                      principals: [{ any: true }] },
          b-path: { permissions: [{ and_rules: { rules: [
                      { url_path: { path: { prefix: /api/ } } },
                      { header: { name: ':method', string_match: { exact: GET } } } ] } }],
                    principals: [{ or_ids: { ids: [
                      { remote_ip: { address_prefix: 192.0.2.0, prefix_len: 24 } },
                      { source_ip: { address_prefix: 10.0.0.0, prefix_len: 8 } } ] } }] } } },
        shadow_rules: { action: DENY, policies: {
          all: { permissions: [{ any: true }], principals: [{ any: true }] } } } } }] }",
    )
}

/// `CONFIG` with a local rate limit that admits everything: the shared bucket, a
/// descriptor from the filter's own `rate_limits` (a header and a generic key) with its
/// own bucket, and the `x-ratelimit-*` headers.
fn config_with_local_ratelimit() -> String {
    CONFIG.replace(
        "route_table: t }",
        "route_table: t,
      http_filters: [{ name: rl, local_ratelimit: {
        stat_prefix: rl, enable_x_ratelimit_headers: true,
        token_bucket: { max_tokens: 4000000000, tokens_per_fill: 4000000000, fill_interval: 1s },
        filter_enabled: { default_value: { numerator: 100 } },
        filter_enforced: { default_value: { numerator: 100 } },
        rate_limits: [{ actions: [
          { request_headers: { header_name: user-agent, descriptor_key: ua } },
          { generic_key: { descriptor_value: api } } ] }],
        descriptors: [{ entries: [{ key: ua, value: bench }, { key: generic_key, value: api }],
          token_bucket: { max_tokens: 4000000000, tokens_per_fill: 4000000000, fill_interval: 1s } }] } }] }",
    )
}

/// Serves `requests` keep-alive requests on one connection; returns (allocations, bytes
/// the client received, upstream connects).
fn serve(requests: usize) -> (u64, usize, usize) {
    serve_with(CONFIG, requests)
}

fn serve_with(config: &str, requests: usize) -> (u64, usize, usize) {
    let (view, connector) = view_of(config);
    let received = Rc::new(Cell::new(0));
    let client = Client {
        left: requests,
        pos: 0,
        received: received.clone(),
    };
    let peer: SocketAddr = "10.1.2.3:4567".parse().unwrap();
    let slot = Rc::new(ConnSlot::default());
    let local: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let before = allocs();
    futures_lite::future::block_on(crate::listener::serve(
        client,
        local,
        peer,
        view.clone(),
        0,
        slot,
    ));
    let after = allocs();
    assert_eq!(view.listener_stats[0].rq_class[1].get(), requests as u64);
    (after - before, received.get(), connector.connects.get())
}

/// A worker's view of `config`, on in-memory upstream connections.
fn view_of(config: &str) -> (Rc<WorkerView<MemConnector>>, Rc<MemConnector>) {
    let snapshot = Arc::new(parse_str(config).unwrap());
    let connector = Rc::new(MemConnector {
        connects: Cell::new(0),
    });
    let view = Rc::new(WorkerView {
        clusters: vec![Rc::new(ClusterState::new(
            snapshot.clusters[0].clone(),
            Rc::new(ClusterStats::default()),
            1,
        ))],
        selectors: snapshot
            .listeners
            .iter()
            .map(|l| crate::listener::select::ChainSelector::build(l).unwrap())
            .collect(),
        listener_stats: vec![Rc::new(ListenerStats::default())],
        counters: snapshot.counters.iter().map(|_| Rc::default()).collect(),
        route_stats: snapshot.route_stats.iter().map(|_| Rc::default()).collect(),
        access_logs: vec![vec![None]],
        lives: vec![vec![Rc::default()]],
        connector: connector.clone(),
        draining: Rc::new(Cell::new(false)),
        bufs: Rc::new(crate::http::buf::BufPool::new(8192, 16)),
        latest: Rc::default(),
        hooks: Rc::default(),
        snapshot,
    });
    (view, connector)
}

/// What a connection holds for its life stays small (issue 12, step 5): the task's
/// future and the HTTP/1 protocol's future hold no request's state, which runs in
/// memory lent while it runs (`rt::recycle`), nor the set-up's or another protocol's.
/// On in-memory streams; the bounds leave room for growth, not for the request path
/// (11 KiB) or the TLS handshake inlined again.
#[test]
fn a_connection_holds_no_request_state_for_its_life() {
    let (view, _) = view_of(CONFIG);
    let client = || Client {
        left: 1,
        pos: 0,
        received: Rc::default(),
    };
    let peer: SocketAddr = "10.1.2.3:4567".parse().unwrap();
    let local: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let slot = Rc::new(ConnSlot::default());
    let task = crate::listener::serve(client(), local, peer, view.clone(), 0, slot.clone());
    let at = crate::http::view::ChainRef {
        listener: 0,
        chain: 0,
    };
    let rbuf = crate::http::buf::ReadBuf::new(0);
    let h1 = crate::http::conn::serve(client(), rbuf, (peer, local), view, at, slot);
    let (task, h1) = (std::mem::size_of_val(&task), std::mem::size_of_val(&h1));
    eprintln!("task {task} bytes, HTTP/1 protocol {h1} bytes");
    assert!(task <= 512, "a connection's task future is {task} bytes");
    assert!(h1 <= 1536, "an HTTP/1 connection's future is {h1} bytes");
}

#[test]
fn conn_manager_allocates_nothing_per_keep_alive_get_on_in_memory_streams() {
    // Warm up lazily initialised statics (tracing callsites and the like).
    serve(2);
    let (small, small_bytes, small_connects) = serve(10);
    let (large, large_bytes, large_connects) = serve(1010);
    assert_eq!(small_connects, 1);
    assert_eq!(
        large_connects, 1,
        "the upstream connection is pooled and reused"
    );
    assert_eq!(
        large_bytes,
        small_bytes * 101,
        "every request got its response"
    );
    assert_eq!(
        large,
        small,
        "1000 extra requests allocated {} times",
        large as i64 - small as i64
    );
}

/// The same with `date`, `server`, the router's `x-envoy-*` headers, the sanitizing and
/// `x-request-id` on: still nothing per request.
#[test]
fn own_headers_allocate_nothing_per_keep_alive_get() {
    let config = config_with_own_headers();
    serve_with(&config, 2);
    let (small, small_bytes, _) = serve_with(&config, 10);
    let (large, large_bytes, large_connects) = serve_with(&config, 1010);
    assert_eq!(large_connects, 1);
    // The headers are there (x-envoy-upstream-service-time varies in length).
    let (_, plain_bytes, _) = serve(10);
    assert!(
        small_bytes > plain_bytes + 10 * 60,
        "{small_bytes} {plain_bytes}"
    );
    // Every request carried them: the same bytes per request, give or take the
    // service time's digits (a loaded machine makes the 10-request run's slower).
    assert!(
        large_bytes + 1010 * 4 >= small_bytes * 101,
        "{large_bytes} {small_bytes}"
    );
    assert_eq!(
        large,
        small,
        "1000 extra requests allocated {} times",
        large as i64 - small as i64
    );
}

/// A request that passes an RBAC filter (policies tried, shadow rules counted) costs no
/// allocation either.
#[test]
fn rbac_allocates_nothing_per_keep_alive_get() {
    let config = config_with_rbac();
    serve_with(&config, 2);
    let (small, small_bytes, _) = serve_with(&config, 10);
    let (large, large_bytes, large_connects) = serve_with(&config, 1010);
    assert_eq!(large_connects, 1);
    assert_eq!(large_bytes, small_bytes * 101, "every request was allowed");
    assert_eq!(
        large,
        small,
        "1000 extra requests allocated {} times",
        large as i64 - small as i64
    );
}

/// A request the local rate limit admits (descriptors generated, a token from a lease
/// of each shared bucket, counted, `x-ratelimit-*` stamped) costs no allocation either.
#[test]
fn local_ratelimit_allocates_nothing_per_keep_alive_get() {
    let config = config_with_local_ratelimit();
    serve_with(&config, 2);
    let (small, small_bytes, _) = serve_with(&config, 10);
    let (large, large_bytes, large_connects) = serve_with(&config, 1010);
    assert_eq!(large_connects, 1);
    assert_eq!(large_bytes, small_bytes * 101, "every request was allowed");
    assert_eq!(
        large,
        small,
        "1000 extra requests allocated {} times",
        large as i64 - small as i64
    );
}

/// A request that passes the fault filter untouched (its draws miss) and the CORS
/// filter (the route has a policy, the request no `Origin`) costs no allocation.
#[test]
fn fault_and_cors_allocate_nothing_when_they_do_not_act() {
    let config = CONFIG
        .replace(
            "route_table: t }",
            "route_table: t,
      http_filters: [
        { name: faults, fault: {
            delay: { fixed_delay: 1s, percentage: { numerator: 0 } },
            abort: { http_status: 503, percentage: { numerator: 0 } },
            headers: [{ name: ':method', exact_match: GET }] } },
        { name: cors, cors: {} } ] }",
        )
        .replace(
            "cluster: c\n",
            "cluster: c
            per_filter_config:
              cors: { cors: { allow_origin_string_match: [{ exact: 'https://a.test' }],
                              allow_credentials: true } }\n",
        );
    serve_with(&config, 2);
    let (small, small_bytes, _) = serve_with(&config, 10);
    let (large, large_bytes, _) = serve_with(&config, 1010);
    assert_eq!(large_bytes, small_bytes * 101, "every request was proxied");
    assert_eq!(
        large,
        small,
        "1000 extra requests allocated {} times",
        large as i64 - small as i64
    );
}

/// Tracing configured but the requests not sampled (0%): the context is still read,
/// decided and written upstream (`traceparent`, B3, a marked request id), and nothing
/// is allocated per request.
#[test]
fn unsampled_tracing_allocates_nothing_per_keep_alive_get() {
    let config = CONFIG.replace(
        "route_table: t }",
        "route_table: t,
      proxy_headers: { generate_request_id: true },
      tracing: { collector_cluster: c, random_sampling: 0,
        propagation: [w3c, b3, b3_single] } }",
    );
    serve_with(&config, 2);
    let (small, small_bytes, _) = serve_with(&config, 10);
    let (large, large_bytes, large_connects) = serve_with(&config, 1010);
    assert_eq!(large_connects, 1);
    assert!(large_bytes >= small_bytes * 101);
    assert_eq!(
        large,
        small,
        "1000 extra requests allocated {} times",
        large as i64 - small as i64
    );
}

/// Istio's metrics on (the record keeps the Host and the cluster, the stream is counted
/// into its series): the first request makes the series, the rest allocate nothing.
#[test]
fn istio_stats_allocate_nothing_per_keep_alive_get() {
    let config = CONFIG.replace(
        "route_table: t }",
        "route_table: t,
      istio_stats: { reporter: destination, workload: { name: w, namespace: ns } } }",
    );
    serve_with(&config, 2);
    let (small, small_bytes, _) = serve_with(&config, 10);
    let (large, large_bytes, large_connects) = serve_with(&config, 1010);
    assert_eq!(large_connects, 1);
    assert_eq!(large_bytes, small_bytes * 101, "every request was proxied");
    assert_eq!(
        large,
        small,
        "1000 extra requests allocated {} times",
        large as i64 - small as i64
    );
}

/// A route that keeps stats (`stat_prefix`: its counters and `upstream_rq_time`, the
/// per-route stats of `observe::route_stats`) costs no allocation per request either.
#[test]
fn route_stats_allocate_nothing_per_keep_alive_get() {
    let config = CONFIG.replace(
        "            cluster: c\n",
        "            cluster: c\n            stat_prefix: api\n",
    );
    assert!(config.contains("stat_prefix"));
    serve_with(&config, 2);
    let (small, _, _) = serve_with(&config, 10);
    let (large, _, connects) = serve_with(&config, 1010);
    assert_eq!(connects, 1);
    assert_eq!(
        large,
        small,
        "1000 extra requests allocated {} times",
        large as i64 - small as i64
    );
}
