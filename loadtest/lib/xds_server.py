#!/usr/bin/env python3
"""The xds-churn scenario's management server: state-of-the-world ADS over gRPC
(grpcio), one process per proxy under test, run with loadtest/.venv's Python.

    xds_server.py --descriptors types.bin --port P --control C \
                  --listener-port L --upstream-port U

The Envoy v3 messages come from a file-descriptor set (the one the envoy-types
crate ships, which Outrigger itself is built against; lib/xds.py finds it with
`cargo metadata`): classes are made at start-up from the descriptors, so no
generated code and no .proto files are needed. Resources are written in proto3
JSON, as the Rust tests write theirs (tests/xds_server/resources.rs).

What is served, at version N (N = 0 at start, +1 per push):
  LDS  `main` on 127.0.0.1:L -> RDS `main` (unchanged by pushes)
  CDS  `backend` (EDS), and from N = 1 on `svc-N` (EDS): each push adds a new
       cluster and removes the previous push's
  EDS  `backend` and `svc-N` -> the upstream 127.0.0.1:U
  RDS  `main`: path `/xds-N` -> `svc-N`, prefix `/` -> `backend`
A push sends CDS, then EDS, then RDS (Envoy's make-before-break order for ADS),
to every stream, each type with its new version. The load goes to `/` and never
changes cluster; `/xds-N` answers 200 only once the proxy has the push's route
and the new cluster is warm (before: 404, or 503 while the cluster warms).

Control, on 127.0.0.1:C (HTTP/1.1, JSON):
  POST /push   -> {"version": N, "at": CLOCK_MONOTONIC seconds of the send}
  GET  /status -> {"version", "streams", "acks": {type: {version: at}}, "nacks": [...]}
Behaves as go-control-plane's snapshot cache in the cases used here: a stream's
first request of a type (or a change of its resource names) gets the current
resources; an ACK or NACK gets nothing back. Loopback only; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

T = "type.googleapis.com/"
LISTENER = T + "envoy.config.listener.v3.Listener"
CLUSTER = T + "envoy.config.cluster.v3.Cluster"
ENDPOINT = T + "envoy.config.endpoint.v3.ClusterLoadAssignment"
ROUTE = T + "envoy.config.route.v3.RouteConfiguration"
ORDER = [CLUSTER, ENDPOINT, LISTENER, ROUTE]   # the ADS order of a push
WILDCARD = (CLUSTER, LISTENER)                 # SotW: every resource, whatever the names
HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "envoy.extensions.filters.http.router.v3.Router"
SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"


def load_pool(path: str) -> descriptor_pool.DescriptorPool:
    """A pool of every file in the set, each added after its dependencies."""
    with open(path, "rb") as f:
        fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    by_name = {fd.name: fd for fd in fds.file}
    pool, done = descriptor_pool.DescriptorPool(), set()

    def add(name: str) -> None:
        if name in done:
            return
        done.add(name)
        fd = by_name.get(name)
        if fd is None:   # a well-known type the set leaves out: protobuf's own copy
            fd = descriptor_pb2.FileDescriptorProto()
            descriptor_pool.Default().FindFileByName(name).CopyToProto(fd)
        for dep in fd.dependency:
            add(dep)
        pool.AddSerializedFile(fd.SerializeToString())

    for name in by_name:
        add(name)
    return pool


class Messages:
    def __init__(self, pool) -> None:
        self.pool = pool
        cls = lambda n: message_factory.GetMessageClass(pool.FindMessageTypeByName(n))  # noqa: E731
        self.Request = cls("envoy.service.discovery.v3.DiscoveryRequest")
        self.Response = cls("envoy.service.discovery.v3.DiscoveryResponse")
        self.Any = cls("google.protobuf.Any")

    def encode(self, type_url: str, value: dict):
        """A resource in proto3 JSON -> an Any holding its bytes."""
        msg = message_factory.GetMessageClass(
            self.pool.FindMessageTypeByName(type_url[len(T):]))()
        json_format.ParseDict(value, msg, descriptor_pool=self.pool)
        return self.Any(type_url=type_url, value=msg.SerializeToString())


def eds_cluster(name: str) -> dict:
    # Circuit breakers out of the way, as in configs/envoy.yaml.
    limits = {"max_connections": 1000000000, "max_pending_requests": 1000000000,
              "max_requests": 1000000000, "max_retries": 1000000000}
    return {"name": name, "type": "EDS", "connect_timeout": "1s", "lb_policy": "ROUND_ROBIN",
            "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}},
            "circuit_breakers": {"thresholds": [dict(limits, priority="DEFAULT"),
                                                dict(limits, priority="HIGH")]}}


def resources(n: int, listener_port: int, upstream_port: int) -> dict:
    """type URL -> {name: proto3 JSON} at version n."""
    clusters = ["backend"] + ([f"svc-{n}"] if n else [])
    routes = ([{"match": {"path": f"/xds-{n}"}, "route": {"cluster": f"svc-{n}"}}] if n else []) \
        + [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]
    listener = {
        "name": "main",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": listener_port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": T + HCM, "stat_prefix": "ingress", "codec_type": "AUTO",
                "generate_request_id": False,
                "rds": {"config_source": {"ads": {}, "resource_api_version": "V3"},
                        "route_config_name": "main"},
                "http_filters": [{"name": "envoy.filters.http.router",
                                  "typed_config": {"@type": T + ROUTER,
                                                   "dynamic_stats": False}}]}}]}]}
    endpoint = lambda c: {"cluster_name": c, "endpoints": [{"lb_endpoints": [{  # noqa: E731
        "endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                    "port_value": upstream_port}}}}]}]}
    return {
        LISTENER: {"main": listener},
        CLUSTER: {c: eds_cluster(c) for c in clusters},
        ENDPOINT: {c: endpoint(c) for c in clusters},
        ROUTE: {"main": {"name": "main", "virtual_hosts": [
            {"name": "all", "domains": ["*"], "routes": routes}]}},
    }


class State:
    """The current version of every type, the open streams, and what was ACKed."""

    def __init__(self, msgs: Messages, listener_port: int, upstream_port: int) -> None:
        self.msgs, self.lport, self.uport = msgs, listener_port, upstream_port
        self.lock = threading.Lock()
        self.version, self.by_type, self.type_version = -1, {}, {}
        self.streams: list[Stream] = []
        self.nonce = 0
        self.acks: dict[str, dict[str, float]] = {t: {} for t in ORDER}
        self.nacks: list[dict] = []
        self.opened = 0

    def next_version(self) -> tuple[int, float]:
        """Version N of every type that changed, sent to every stream; returns N and
        the CLOCK_MONOTONIC time at which its responses were queued."""
        with self.lock:
            n = self.version + 1
            new = resources(n, self.lport, self.uport)
            for t in ORDER:
                enc = {name: self.msgs.encode(t, v) for name, v in new[t].items()}
                # A type whose resources did not change keeps its version.
                if self.by_type.get(t) is None or \
                        {k: a.value for k, a in enc.items()} != \
                        {k: a.value for k, a in self.by_type[t].items()}:
                    self.by_type[t], self.type_version[t] = enc, f"{t.rsplit('.', 1)[1]}-{n}"
            self.version = n
            streams = list(self.streams)
        at = time.monotonic()
        for s in streams:
            s.wake()
        return n, at


class Stream:
    """One ADS stream: requests in on a reader thread, responses out of a queue."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.subs: dict[str, list] = {}     # type -> resource names subscribed
        self.sent: dict[str, str] = {}      # type -> version last sent
        self.nonces: dict[str, str] = {}    # nonce -> version it carried
        self.out: queue.Queue = queue.Queue()
        self.lock = threading.Lock()

    def on_request(self, r) -> None:
        t, now = r.type_url, time.monotonic()
        with self.lock:
            with self.state.lock:
                if r.HasField("error_detail"):
                    self.state.nacks.append({"type": t, "version": r.version_info,
                                             "detail": r.error_detail.message[:300]})
                elif r.response_nonce and self.nonces.get(r.response_nonce) == r.version_info:
                    self.state.acks.setdefault(t, {}).setdefault(r.version_info, now)
            names = list(r.resource_names)
            if not r.response_nonce or self.subs.get(t) != names:
                self.sent.pop(t, None)   # a new subscription: answer it
            self.subs[t] = names
        self.wake()

    def wake(self) -> None:
        """Sends every subscribed type whose version this stream has not had."""
        with self.lock, self.state.lock:
            for t in ORDER:
                if t not in self.subs or t not in self.state.type_version:
                    continue
                v = self.state.type_version[t]
                if self.sent.get(t) == v:
                    continue
                names = self.subs[t]
                if t not in WILDCARD and not names:
                    continue
                items = [a for name, a in sorted(self.state.by_type[t].items())
                         if t in WILDCARD or name in names]
                self.state.nonce += 1
                nonce = str(self.state.nonce)
                self.nonces[nonce] = v
                self.sent[t] = v
                self.out.put(self.state.msgs.Response(version_info=v, resources=items,
                                                      type_url=t, nonce=nonce))


def ads_handler(state: State):
    def handle(requests, context):
        s = Stream(state)
        with state.lock:
            state.streams.append(s)
            state.opened += 1

        def read() -> None:
            try:
                for r in requests:
                    s.on_request(r)
            except grpc.RpcError:
                pass
            s.out.put(None)

        threading.Thread(target=read, daemon=True).start()
        try:
            while context.is_active():
                try:
                    item = s.out.get(timeout=0.5)
                except queue.Empty:
                    continue
                if item is None:
                    return
                yield item
        finally:
            with state.lock:
                state.streams.remove(s)

    m = state.msgs
    return grpc.method_handlers_generic_handler(SERVICE, {
        "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
            handle, request_deserializer=m.Request.FromString,
            response_serializer=lambda r: r.SerializeToString())})


def control_server(state: State, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _json(self, value) -> None:
            body = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:   # noqa: N802
            if self.path != "/push":
                self.send_error(404)
                return
            n, at = state.next_version()
            self._json({"version": n, "at": at})

        def do_GET(self) -> None:   # noqa: N802
            if self.path != "/status":
                self.send_error(404)
                return
            with state.lock:
                self._json({"version": state.version, "streams": len(state.streams),
                            "opened": state.opened, "acks": state.acks,
                            "nacks": state.nacks[-20:]})

        def log_message(self, *args) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--descriptors", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--control", type=int, required=True)
    ap.add_argument("--listener-port", type=int, required=True)
    ap.add_argument("--upstream-port", type=int, required=True)
    a = ap.parse_args()
    state = State(Messages(load_pool(a.descriptors)), a.listener_port, a.upstream_port)
    state.next_version()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((ads_handler(state),))
    if server.add_insecure_port(f"127.0.0.1:{a.port}") == 0:
        raise SystemExit(f"cannot listen on 127.0.0.1:{a.port}")
    server.start()
    control_server(state, a.control)
    print(f"xds_server: ADS on 127.0.0.1:{a.port}, control on 127.0.0.1:{a.control}",
          flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(0.5)


if __name__ == "__main__":
    main()
