#!/usr/bin/env python3
"""The control plane's figures (issue 15): `outrigger control` with many services and
many connected proxies, and how long a change takes to reach a request.

    loadtest/.venv/bin/python loadtest/control_plane.py [--services 1000] [--proxies 100]
        [--pushes 10] [--certs] [--out docs/benchmarks/runs/DATE-control-plane]

What it does, all on loopback:
  - writes a mesh: SERVICES ServiceEntries (`svc-I.mesh`, port 8000, HTTP, STATIC, one
    endpoint: a small upstream in this process), one Sidecar for the simulated proxies
    (egress port 8000, every host) and one each for a real Outrigger and a real Envoy
    1.40 sidecar (their outbound listener on 127.0.0.31:8000 and 127.0.0.32:8000);
  - starts `outrigger control` (target/release/outrigger) on it, then PROXIES simulated
    proxies: ADS state-of-the-world streams (grpcio, one channel each) that ask for
    clusters and listeners, then for every EDS cluster's endpoints and the route table,
    and ACK every response; then the two real sidecars on the same control plane;
  - measures the time until every simulated proxy ACKed all four types, the control
    plane's CPU and memory (RSS) while idle and per push;
  - PUSHES times: writes a VirtualService for `svc-0.mesh` whose route `/push-N` answers
    418 (fault abort); from the write, times when every simulated proxy has the new
    route table, and when the first request to `/push-N` gets 418 through the Outrigger
    sidecar and through the Envoy sidecar (probed every 2 ms).

With --certs the control plane runs its CA (`--tokens`): every simulated proxy and
both sidecars show a bootstrap token on their stream, and each simulated proxy also
subscribes to its two SDS secrets (`default`, `ROOTCA`), so the first sync includes
issuing 100 certificates.

The simulated proxies receive and ACK what a sidecar receives; they apply nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc   # noqa: E402
from google.protobuf import message_factory   # noqa: E402

from lib import tools   # noqa: E402
from lib.util import REPO, WORK, cpu_seconds, free_port, http, kill, rss_bytes, spawn, wait_until   # noqa: E402
from lib.xds_server import CLUSTER, ENDPOINT, LISTENER, ROUTE, SERVICE, load_pool   # noqa: E402

SVC_PORT = 8000
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):   # noqa: N802
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a):
        pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass   # a probe that gave up on its connection


def mesh_files(d: Path, services: int, up_port: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for f in d.glob("*.yaml"):
        f.unlink()
    docs = []
    for i in range(services):
        docs.append(f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: svc-{i}, namespace: mesh}}
spec:
  hosts: [svc-{i}.mesh]
  ports: [{{number: {SVC_PORT}, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {up_port}}}}}]
""")
    (d / "services.yaml").write_text("---\n".join(docs))
    side = []
    for name, bind in (("sim", "127.0.0.1"), ("or", "127.0.0.31"), ("envoy", "127.0.0.32")):
        side.append(f"""apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {name}, namespace: mesh}}
spec:
  workloadSelector: {{labels: {{app: {name}}}}}
  egress: [{{port: {{number: {SVC_PORT}, protocol: HTTP, name: http}}, bind: {bind}, captureMode: NONE, hosts: ['*/*']}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: mesh}}
spec: {{address: {bind}, labels: {{app: {name}}}}}
""")
    (d / "sidecars.yaml").write_text("---\n".join(side))


def push_file(d: Path, n: int) -> None:
    text = f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc-0, namespace: mesh}}
spec:
  hosts: [svc-0.mesh]
  http:
  - match: [{{uri: {{prefix: /push-{n}}}}}]
    fault: {{abort: {{httpStatus: 418}}}}
    route: [{{destination: {{host: svc-0.mesh}}}}]
  - route: [{{destination: {{host: svc-0.mesh}}}}]
"""
    tmp = d / ".vs.tmp"
    tmp.write_text(text)
    os.replace(tmp, d / "vs.yaml")


class SimProxy:
    """One simulated sidecar: an ADS stream that asks for and ACKs everything."""

    def __init__(self, msgs, addr: str, node: str, token: str | None = None) -> None:
        self.msgs, self.node, self.token = msgs, node, token
        self.channel = grpc.insecure_channel(addr, options=[
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.max_receive_message_length", 64 << 20)])
        self.out: queue.Queue = queue.Queue()
        self.versions: dict[str, tuple[str, float]] = {}   # type -> (version, received at)
        self.names: dict[str, list[str]] = {}              # type -> the names asked for
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def request(self, type_url, names=(), version="", nonce=""):
        r = self.msgs.Request(type_url=type_url, version_info=version, response_nonce=nonce,
                              resource_names=list(names))
        r.node.id = self.node
        # No WorkloadEntry names the simulated proxies: their labels come with the node,
        # as a pod's do, and select their Sidecar.
        r.node.metadata.update({"NAMESPACE": "mesh", "LABELS": {"app": "sim"}})
        self.out.put(r)

    def requests(self):
        while True:
            r = self.out.get()
            if r is None:
                return
            yield r

    def run(self):
        call = self.channel.stream_stream(
            f"/{SERVICE}/StreamAggregatedResources",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=self.msgs.Response.FromString)
        if self.token:
            self.names[SECRET] = ["default", "ROOTCA"]
            self.request(SECRET, self.names[SECRET])
        self.request(CLUSTER)
        self.request(LISTENER)
        metadata = [("authorization", f"Bearer {self.token}")] if self.token else None
        try:
            for resp in call(self.requests(), metadata=metadata):
                now = time.monotonic()
                with self.lock:
                    self.versions[resp.type_url] = (resp.version_info, now)
                self.request(resp.type_url, self.names.get(resp.type_url, ()),
                             resp.version_info, resp.nonce)
                if resp.type_url == CLUSTER and ENDPOINT not in self.names:
                    eds = [self.msgs.Cluster.FromString(a.value).name for a in resp.resources]
                    self.names[ENDPOINT] = [n for n in eds if n.startswith("outbound|")]
                    self.request(ENDPOINT, self.names[ENDPOINT])
                if resp.type_url == LISTENER and ROUTE not in self.names:
                    self.names[ROUTE] = [f"127.0.0.1_{SVC_PORT}"]   # the Sidecar's listener
                    self.request(ROUTE, self.names[ROUTE])
        except grpc.RpcError:
            pass

    def start(self):
        self.thread.start()

    def version(self, t):
        with self.lock:
            return self.versions.get(t)


class Msgs:
    def __init__(self, pool):
        cls = lambda n: message_factory.GetMessageClass(pool.FindMessageTypeByName(n))  # noqa: E731
        self.Request = cls("envoy.service.discovery.v3.DiscoveryRequest")
        self.Response = cls("envoy.service.discovery.v3.DiscoveryResponse")
        self.Cluster = cls("envoy.config.cluster.v3.Cluster")


def bootstrap(node: str, admin: int, xds: int, token: str | None = None) -> str:
    meta = f", initial_metadata: [{{key: authorization, value: 'Bearer {token}'}}]" if token else ""
    return f"""node: {{id: {node}, cluster: mesh}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
dynamic_resources:
  ads_config: {{api_type: GRPC, transport_api_version: V3, grpc_services: [{{envoy_grpc: {{cluster_name: xds}}{meta}}}]}}
  lds_config: {{ads: {{}}, resource_api_version: V3}}
  cds_config: {{ads: {{}}, resource_api_version: V3}}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: xds
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {xds}}}}}}}}}]}}]
"""


def status_of(addr: str, path: str) -> int | None:
    import http.client
    try:
        c = http.client.HTTPConnection(addr, SVC_PORT, timeout=1)
        c.request("GET", path, headers={"Host": "svc-0.mesh"})
        s = c.getresponse().status
        c.close()
        return s
    except OSError:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--proxies", type=int, default=100)
    ap.add_argument("--pushes", type=int, default=10)
    ap.add_argument("--certs", action="store_true",
                    help="run the CA: tokens on every stream, certificates over SDS")
    ap.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    a = ap.parse_args()

    binary = REPO / "target" / "release" / "outrigger"
    if not binary.exists():
        print("build target/release/outrigger first: cargo build --release", file=sys.stderr)
        return 2
    envoy = tools._envoy_binary()
    work = WORK / "control-plane"
    work.mkdir(parents=True, exist_ok=True)
    msgs = Msgs(load_pool(str(tools.envoy_descriptors())))

    up = QuietServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=up.serve_forever, daemon=True).start()
    mesh = work / "mesh"
    mesh_files(mesh, a.services, up.server_address[1])

    xds, admin = free_port(), free_port()
    token = (lambda who: f"token-{who}-0123456789") if a.certs else (lambda who: None)
    extra = []
    if a.certs:
        # One token per proxy (namespace mesh, service account sim), as per pod.
        whos = [f"sim-{i}" for i in range(a.proxies)] + ["or", "envoy"]
        (work / "tokens.yaml").write_text("".join(
            f"- {{token: {token(w)}, namespace: mesh, serviceAccount: sim}}\n" for w in whos))
        extra = ["--tokens", str(work / "tokens.yaml")]
    procs = []
    try:
        cp = spawn([str(binary), "control", "--dir", str(mesh), "--xds", f"127.0.0.1:{xds}",
                    "--admin", f"127.0.0.1:{admin}", *extra], work / "control.log")
        procs.append(cp)
        wait_until(lambda: http("GET", f"http://127.0.0.1:{admin}/ready")[0] == 200, 60,
                   "the control plane", cp, work / "control.log")
        load_cpu = cpu_seconds(cp.pid)

        t0 = time.monotonic()
        sims = [SimProxy(msgs, f"127.0.0.1:{xds}", f"sim-{i}.mesh", token(f"sim-{i}"))
                for i in range(a.proxies)]
        types = (CLUSTER, ENDPOINT, LISTENER, ROUTE) + ((SECRET,) if a.certs else ())
        for s in sims:
            s.start()

        def synced():
            return all(all(s.version(t) for t in types) for s in sims)
        wait_until(synced, 120, "every simulated proxy's first responses", cp,
                   work / "control.log")
        sync_s = time.monotonic() - t0
        sync_cpu = cpu_seconds(cp.pid) - load_cpu

        sidecars = {}
        ob = work / "or.yaml"
        ob.write_text(bootstrap("or.mesh", free_port(), xds, token("or")))
        procs.append(spawn([str(binary), "run", "-c", str(ob), "--concurrency", "1"],
                           work / "or.log"))
        sidecars["outrigger"] = "127.0.0.31"
        if envoy:
            eb = work / "envoy.yaml"
            eb.write_text(bootstrap("envoy.mesh", free_port(), xds, token("envoy")))
            procs.append(spawn([envoy, "-c", str(eb), "--concurrency", "1",
                                "--disable-hot-restart", "--log-level", "error"],
                               work / "envoy.log"))
            sidecars["envoy"] = "127.0.0.32"
        for who, host in sidecars.items():
            wait_until(lambda h=host: status_of(h, "/warm") == 200, 60, f"the {who} sidecar")

        idle_cpu0, idle_t0 = cpu_seconds(cp.pid), time.monotonic()
        time.sleep(5)
        idle_cpu = (cpu_seconds(cp.pid) - idle_cpu0) / (time.monotonic() - idle_t0)
        rss_idle = rss_bytes(cp.pid)

        pushes = []
        for n in range(1, a.pushes + 1):
            before = {s.node: s.version(ROUTE)[0] for s in sims}
            cpu0 = cpu_seconds(cp.pid)
            t = time.monotonic()
            push_file(mesh, n)
            reached = {}
            deadline = t + 10
            pending = set(sidecars)
            all_sims = None
            while time.monotonic() < deadline and (pending or all_sims is None):
                for who in list(pending):
                    if status_of(sidecars[who], f"/push-{n}") == 418:
                        reached[who] = time.monotonic() - t
                        pending.discard(who)
                if all_sims is None and all(s.version(ROUTE)[0] != before[s.node] for s in sims):
                    all_sims = max(s.version(ROUTE)[1] for s in sims) - t
                time.sleep(0.002)
            time.sleep(1.0)   # let the push finish before reading its CPU
            pushes.append({"push": n, "all_simulated_s": all_sims, **{f"{k}_s": v for k, v in reached.items()},
                           "control_cpu_s": cpu_seconds(cp.pid) - cpu0})
            print(json.dumps(pushes[-1]), flush=True)
        rss_after = rss_bytes(cp.pid)
    finally:
        for p in reversed(procs):
            kill(p)
        up.shutdown()

    def med(key):
        v = [p[key] for p in pushes if p.get(key) is not None]
        return statistics.median(v) if v else None

    result = {
        "services": a.services, "proxies": a.proxies, "pushes": a.pushes, "certs": a.certs,
        "initial_sync_s": sync_s, "initial_sync_cpu_s": sync_cpu,
        "idle_cpu_fraction": idle_cpu, "rss_idle_bytes": rss_idle, "rss_after_bytes": rss_after,
        "median_all_simulated_s": med("all_simulated_s"),
        "median_outrigger_s": med("outrigger_s"), "median_envoy_s": med("envoy_s"),
        "median_push_cpu_s": med("control_cpu_s"), "pushes_detail": pushes,
    }
    certs = " (CA on: tokens, a certificate per proxy over SDS)" if a.certs else ""
    md = f"""# Control plane: {a.services} services, {a.proxies} simulated proxies, {a.pushes} pushes{certs}

| figure | value |
|---|---|
| first sync of {a.proxies} proxies (all {len(types)} types ACKed) | {sync_s:.2f} s, control-plane CPU {sync_cpu:.2f} s |
| control-plane CPU while idle | {idle_cpu * 100:.2f}% of a core |
| control-plane RSS idle / after the pushes | {rss_idle / 2**20:.1f} / {rss_after / 2**20:.1f} MiB |
| VirtualService change -> every simulated proxy has the new route table (median) | {_ms(result['median_all_simulated_s'])} |
| VirtualService change -> first request through the Outrigger sidecar sees it (median) | {_ms(result['median_outrigger_s'])} |
| VirtualService change -> first request through the Envoy 1.40 sidecar sees it (median) | {_ms(result['median_envoy_s'])} |
| control-plane CPU per push (median) | {_ms(result['median_push_cpu_s'])} |
"""
    print(md)
    if a.out:
        Path(a.out + ".json").write_text(json.dumps(result, indent=2) + "\n")
        Path(a.out + ".md").write_text(md)
    return 0


def _ms(v):
    return "—" if v is None else f"{v * 1000:.0f} ms"


if __name__ == "__main__":
    sys.exit(main())
