"""The upstream (nginx) and the peers: direct, outrigger (and outrigger-base with
--baseline), envoy, haproxy.

Every proxy is started under `taskset -c PROXY_CPUS` with the same worker
count, from a template in loadtest/configs/ rendered into loadtest/.work/.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import time
from pathlib import Path

from . import util, xds
from .util import CONFIGS, HarnessError, http, kill, log, render, spawn, wait_until

BODY = b"hello world\n"
BLOBS = {"64k": 64 * 1024, "1m": 1024 * 1024}
TLS_KINDS = ("tls", "mtls")   # the TLS listeners of config "tls": server-only, mutual
# What the handshakes negotiated, in Envoy's stat names (Outrigger's /stats uses them too).
NEGOTIATED = ("versions", "ciphers", "curves")


class Settings:
    def __init__(self, tools, work: Path, workers: int, proxy_cpus: str,
                 client_cpus: str, tls=None) -> None:
        self.tools, self.work, self.workers = tools, work, workers
        self.proxy_cpus, self.client_cpus = proxy_cpus, client_cpus
        self.tls = tls   # tls.TlsFiles when a TLS scenario is selected, else None
        self.capture = None   # capture.Netns when h1-captured is selected


def _tls_snippets(s: Settings, name: str, ports: dict, one) -> str:
    """One TLS listener per kind (tls, mtls) from a template: `one(kind, port)`
    returns its filled text."""
    if s.tls is None:
        raise HarnessError("TLS config asked for, but the TLS files were not prepared")
    return "".join(one(kind, ports[kind]) for kind in TLS_KINDS)


def _snippet(name: str, values: dict) -> str:
    """A template fragment (comment lines dropped) with placeholders filled."""
    lines = [l for l in (CONFIGS / name).read_text().splitlines(keepends=True)
             if not l.startswith("#")]
    text = "".join(lines)
    for k, v in values.items():
        text = text.replace("{{" + k + "}}", str(v))
    return text


def envoy_bootstrap(s: Settings, upstream, port: int, admin_port: int, out: Path,
                    route_source: str, config: str = "", tls_ports: dict | None = None,
                    ab_port: int = 0) -> Path:
    """envoy.yaml rendered into `out`: the Envoy peer's config, and with
    config "policy" the bootstrap both Envoy and Outrigger run for h1-policy (and
    "wasm" for the `wasm` scenario)."""
    filters = _snippet("envoy-policy-filters.yaml", {}) if config == "policy" else ""
    if config == "wasm":
        # The `wasm` scenario: the proxy-wasm add-header filter (Envoy on V8, Outrigger on wasmtime).
        filters = _snippet("envoy-wasm-filter.yaml", {})
    extra_endpoints = ""
    if config in ("ext-proc", "ext-proc-streamed", "ext-proc-streamed-request"):
        # ext-proc: the ext_proc filter, its processor (lib/ext_proc_server.py) and
        # the processor's HTTP/2 cluster; ext-proc-streamed sends the response body
        # too, ext-proc-streamed-request the request body.
        upstream.ensure_ext_proc()
        modes = {"response_body_mode": "NONE", "request_body_mode": "NONE"}
        if config == "ext-proc-streamed":
            modes["response_body_mode"] = "STREAMED"
        if config == "ext-proc-streamed-request":
            modes["request_body_mode"] = "STREAMED"
        filters = _snippet("envoy-ext-proc-filter.yaml", modes)
        extra_endpoints = _snippet("envoy-ext-proc-cluster.yaml",
                                   {"ext_proc_port": upstream.ext_proc_port})
    if config == "ext-authz":
        # ext-authz: one gRPC Check per request to an allow-all service (the test's
        # tests/authz/authz.py), on the client CPUs like the rest of the load side.
        upstream.ensure_authz()
        filters = _snippet("envoy-ext-authz-filter.yaml", {})
        extra_endpoints += _snippet("envoy-ext-authz-cluster.yaml",
                                    {"authz_port": upstream.authz_port})
    if config == "flaky":
        # h1-flaky: a second, bad endpoint (nginx's flaky server: 20% 503) and a
        # retry policy on 5xx; Envoy's other retry defaults (back-off 25 ms base).
        route_source = route_source.replace(
            "route: { cluster: backend }",
            "route: { cluster: backend, retry_policy: { retry_on: 5xx, num_retries: 2 } }")
        extra_endpoints = (
            "              - endpoint:\n"
            "                  address:\n"
            "                    socket_address: { address: 127.0.0.1, port_value: "
            f"{upstream.flaky_port} }}\n")
    template = CONFIGS / "envoy.yaml"
    if config in ("traced", "traced-ab"):
        # h1-traced: the connection manager traces every request (100% random
        # sampling, a request id generated for it: Envoy traces only requests with
        # a UUID id) and exports over OTLP/HTTP to the suite's collector.
        upstream.ensure_collector()
        extra_endpoints += _snippet("envoy-tracing-cluster.yaml",
                                    {"otel_port": upstream.otel_port})
        tracing = _snippet("envoy-tracing.yaml", {"otel_port": upstream.otel_port})
        untraced = "                generate_request_id: false\n"
        text = template.read_text()
        if config == "traced":
            text = text.replace(untraced, tracing)
        else:
            # h1-traced-ab: the plain listener, and beside it (on `ab_port`) the same
            # listener traced: one process serves both, so an A/B of the two is not
            # confounded by differences between processes.
            block = text[text.index("    - name: ingress\n"):text.index("{{extra_listeners}}")]
            traced = (block.replace("    - name: ingress\n", "    - name: traced\n")
                      .replace("{{port}}", "{{ab_port}}")
                      .replace("stat_prefix: ingress", "stat_prefix: traced")
                      .replace(untraced, tracing))
            text = text.replace("{{extra_listeners}}", traced + "{{extra_listeners}}")
        template = out.with_name(out.name + ".template")
        template.write_text(text)
    listeners = ""
    if config == "tls":
        listeners = _tls_snippets(s, "envoy", tls_ports, lambda kind, p: _snippet(
            "envoy-tls-listener.yaml",
            {"name": kind, "port": p, "cert": s.tls.cert, "key": s.tls.key,
             "require_client": "              require_client_certificate: true\n"
             if kind == "mtls" else "",
             "validation": "                validation_context:\n"
             f"                  trusted_ca: {{ filename: {s.tls.ca} }}\n"
             if kind == "mtls" else ""}))
    return render(template, out,
                  {"admin_port": admin_port, "port": port, "ab_port": ab_port,
                   "upstream_port": upstream.port,
                   "route_source": route_source.rstrip("\n"), "http_filters": filters,
                   "extra_endpoints": extra_endpoints, "extra_listeners": listeners})


class Upstream:
    """nginx with `return 200` and static blobs, pinned to the client CPUs.
    The proxies talk HTTP/1.1 to `port`; `h2_port` (same server block) speaks
    h2c with prior knowledge, for the no-proxy baseline of h2-streams only."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        self.port, self.h2_port = util.free_port(), util.free_port()
        self.flaky_port = util.free_port()   # h1-flaky's bad endpoint
        # TLS scenarios' no-proxy baseline: nginx itself over TLS and mTLS.
        self.tls_ports = {k: util.free_port() for k in TLS_KINDS} if s.tls else {}
        self.proc = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.h2_url = f"http://127.0.0.1:{self.h2_port}"
        # h1-traced's OTLP/HTTP collector (lib/collector.py), started on first use.
        self.otel_port, self.collector = util.free_port(), None
        # ext-proc's external processor (lib/ext_proc_server.py), started on first use.
        self.ext_proc_port, self.ext_proc = util.free_port(), None
        # ext-authz's authorization service (tests/authz/authz.py), started on first use.
        self.authz_port, self.authz = util.free_port(), None

    def ensure_ext_proc(self) -> None:
        """The ext_proc processor (grpcio, from loadtest/.venv), pinned to the client
        CPUs like the rest of the load side; ready once its port accepts."""
        if self.ext_proc is not None and self.ext_proc.poll() is None:
            return
        logp = self.s.work / "ext_proc.log"
        python = util.REPO / "loadtest" / ".venv" / "bin" / "python"
        # -P: without the script's directory on sys.path, where lib/xds.py would shadow
        # the `xds` package that xds-protos' generated modules import.
        self.ext_proc = spawn(["taskset", "-c", self.s.client_cpus, str(python), "-P",
                               Path(__file__).with_name("ext_proc_server.py"),
                               self.ext_proc_port], logp)
        util.wait_listening(self.ext_proc_port, 20, "ext_proc processor", self.ext_proc, logp)

    def ensure_authz(self) -> None:
        """The allow-all gRPC authorization service (grpcio, xds-protos)."""
        if self.authz is not None and self.authz.poll() is None:
            return
        logp = self.s.work / "authz.log"
        root = Path(__file__).resolve().parents[2]
        # The venv tests/run fills (grpcio, xds-protos), not the harness's Python.
        python = root / "loadtest" / ".venv" / "bin" / "python"
        script = root / "tests" / "authz" / "authz.py"
        self.authz = spawn(["taskset", "-c", self.s.client_cpus, python, script,
                            "--allow-all", "--grpc-port", str(self.authz_port),
                            "--workers", "16"], logp)
        util.wait_listening(self.authz_port, 15, "ext_authz service", self.authz, logp)

    def ensure_collector(self) -> None:
        """The OTLP sink, pinned to the client CPUs like the rest of the load side."""
        if self.collector is not None and self.collector.poll() is None:
            return
        logp = self.s.work / "collector.log"
        self.collector = spawn(["taskset", "-c", self.s.client_cpus, sys.executable,
                                Path(__file__).with_name("collector.py"), self.otel_port],
                               logp)
        wait_until(lambda: self.spans() is not None, 10, "OTLP collector",
                   self.collector, logp)

    def spans(self) -> int | None:
        """Spans the collector received so far (None: not answering)."""
        status, body = http("GET", f"http://127.0.0.1:{self.otel_port}/count", timeout=2)
        try:
            return int(json.loads(body)["spans"]) if status == 200 else None
        except (ValueError, KeyError, TypeError):
            return None

    def settled_spans(self, limit: float = 8.0) -> int | None:
        """The span count once it stops moving (batches still on their way from
        the proxy's exporter arrive first), within `limit` seconds."""
        deadline, last, same = time.monotonic() + limit, self.spans(), 0
        while time.monotonic() < deadline and same < 3:
            time.sleep(0.25)
            now = self.spans()
            same = same + 1 if now == last else 0
            last = now
        return last

    def start(self) -> None:
        work = self.s.work
        www = work / "www" / "blob"
        www.mkdir(parents=True, exist_ok=True)
        for name, size in BLOBS.items():
            path = www / name
            if not path.exists() or path.stat().st_size != size:
                path.write_bytes(bytes(i % 251 for i in range(size)))
        for d in ("nginx-body", "nginx-proxy", "nginx-fastcgi", "nginx-uwsgi", "nginx-scgi"):
            (work / d).mkdir(exist_ok=True)
        tls_servers = ""
        if self.s.tls:
            t = self.s.tls
            tls_servers = _tls_snippets(self.s, "nginx", self.tls_ports, lambda kind, p: _snippet(
                "nginx-tls.conf",
                {"port": p, "cert": t.cert, "key": t.key,
                 "verify": f"        ssl_client_certificate {t.ca};\n"
                           "        ssl_verify_client on;\n" if kind == "mtls" else ""}))
        conf = render(CONFIGS / "nginx.conf", work / "nginx.conf",
                      {"workers": len(self.s.client_cpus.split(",")), "work": work,
                       "port": self.port, "h2_port": self.h2_port,
                       "flaky_port": self.flaky_port, "tls_servers": tls_servers,
                       # h1-captured: the proxy in the namespace reaches nginx here.
                       "capture_listen": f"        listen {self.s.capture.host_ip}:"
                                         f"{self.port} backlog=4096;\n"
                                         if self.s.capture else ""})
        logp = work / "nginx.log"
        self.proc = spawn(["taskset", "-c", self.s.client_cpus, self.s.tools["nginx"],
                           "-c", conf, "-e", work / "nginx-error.log"], logp)
        wait_until(lambda: http("GET", self.url + "/")[0] == 200, 10,
                   "upstream nginx", self.proc, logp)

    def service_pids(self) -> list[int]:
        """The scenario services that are running (OTLP collector, ext_proc processor,
        ext_authz service): part of the run, not other load on the machine."""
        return [p.pid for p in (self.collector, self.ext_proc, self.authz)
                if p is not None and p.poll() is None]

    def counters(self) -> tuple[int, int]:
        """nginx's (connections accepted, requests) totals from stub_status;
        (-1, -1) if unreadable. The status request itself is counted."""
        status, body = http("GET", self.url + "/__upstream_status")
        m = re.search(rb"\n\s*(\d+)\s+\d+\s+(\d+)", body or b"") if status == 200 else None
        return (int(m.group(1)), int(m.group(2))) if m else (-1, -1)

    def stop(self) -> None:
        kill(self.proc)
        self.proc = None
        kill(self.collector)
        self.collector = None
        kill(self.ext_proc)
        self.ext_proc = None
        kill(self.authz)
        self.authz = None


class Peer:
    """Base class. `pid` is the process whose tree is measured (None: direct)."""

    name = "?"
    is_proxy = True

    def __init__(self, s: Settings, upstream: Upstream) -> None:
        self.s, self.upstream = s, upstream
        self.proc = None
        # Fixed for the whole suite run, so every restart uses the same command.
        self.port, self.admin_port = util.free_port(), util.free_port()
        self.tls_ports = {k: util.free_port() for k in TLS_KINDS} if s.tls else {}
        self.ab_port = util.free_port()   # config "traced-ab": the traced listener
        self.start_cmd: list = []
        self.xds = None   # config "xds": this process's management server (lib/xds.py)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ab_url(self) -> str:
        """Config "traced-ab": the listener with the tracing block."""
        return f"http://127.0.0.1:{self.ab_port}"

    @property
    def h2_url(self) -> str:
        """Where h2-streams sends h2c with prior knowledge: every proxy takes it
        on its one listener (detected by the connection preface)."""
        return self.url

    def tls_url(self, kind: str) -> str:
        """The TLS (`tls`) or mutual TLS (`mtls`) listener of config "tls"."""
        return f"https://127.0.0.1:{self.tls_ports[kind]}"

    def tls_stats(self, kind: str) -> dict | None:
        """The server's own count of TLS handshakes on listener `kind` and how many
        resumed a session: {'handshakes', 'resumed'}; None where not available."""
        return None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def log_path(self) -> Path:
        return self.s.work / f"{self.name}.log"

    def start(self, churn: bool = False, config: str = "") -> None:
        self.log_path.write_text("")
        if config == "xds":   # the management server first: the proxy boots from it
            self.xds = xds.Mgmt(self.s, self.port, self.upstream.port, self.name)
            self.xds.start()
        self.start_cmd = ["taskset", "-c", self.s.proxy_cpus] + self.command(churn, config)
        self.proc = spawn(self.start_cmd, self.log_path)
        wait_until(self.ready, 30, f"{self.name} start", self.proc, self.log_path)
        # End to end: a request through the proxy reaches the upstream.
        status, body = http("GET", self.url + "/")
        if status != 200 or body != BODY:
            raise HarnessError(f"{self.name}: GET / through the proxy gave {status} "
                               f"{body[:80]!r}, expected 200 {BODY!r}")

    def ready(self) -> bool:
        return http("GET", self.url + "/", timeout=1)[0] == 200

    def stop(self) -> None:
        kill(self.proc, grace=5)
        self.proc = None
        if self.xds:
            self.xds.stop()
            self.xds = None

    def command(self, churn: bool, config: str = "") -> list:
        raise NotImplementedError

    # Config churn: swap(i) replaces the config with variant i % 2 and asks the
    # proxy to apply it; returns (ok, note). applied() counts what took effect.
    def swap(self, i: int) -> tuple[bool, str]:
        raise NotImplementedError

    def applied(self) -> int:
        return -1


class Direct(Peer):
    """No proxy: the client talks to the upstream; the physical floor."""

    name = "direct"
    is_proxy = False

    def start(self, churn: bool = False, config: str = "") -> None:
        self.port = self.upstream.port

    @property
    def h2_url(self) -> str:
        return self.upstream.h2_url

    def tls_url(self, kind: str) -> str:
        return f"https://127.0.0.1:{self.upstream.tls_ports[kind]}"

    @property
    def pid(self):
        return None

    def stop(self) -> None:
        pass


class Outrigger(Peer):
    """`binary` names the build in Tools: outrigger (target/release), outrigger-base
    (--baseline), or their alloc-count builds, all run with the same template and
    flags; each instance renders its own config file."""

    name = "outrigger"

    def __init__(self, s: Settings, upstream: Upstream, name: str = "outrigger",
                 binary: str | None = None) -> None:
        super().__init__(s, upstream)
        self.name, self.binary = name, binary or name

    def config_values(self, variant: int, config: str = "") -> dict:
        extra = ('          - match: { prefix: "/churn-b" }\n'
                 '            cluster: backend\n') if variant else ""
        listeners = ""
        if config == "tls":
            t = self.s.tls
            listeners = _tls_snippets(self.s, "outrigger", self.tls_ports,
                                      lambda kind, p: _snippet("outrigger-tls.yaml", {
                                          "name": kind, "port": p, "cert": t.cert,
                                          "key": t.key,
                                          "client_auth": _snippet("outrigger-mtls-auth.yaml",
                                                                  {"ca": t.ca})
                                          if kind == "mtls" else ""}))
        return {"admin_port": self.admin_port, "port": self.port,
                "upstream_port": self.upstream.port, "extra_routes": extra,
                "extra_listeners": listeners}

    def command(self, churn: bool, config: str = "") -> list:
        if config == "xds":   # the same bootstrap as the Envoy peer's
            conf = self.xds.bootstrap(self.admin_port, self.s.work / f"{self.name}-xds.yaml")
            return [self.s.tools[self.binary], "run", "-c", conf,
                    "--concurrency", self.s.workers]
        if config in ("policy", "bootstrap", "flaky", "traced", "traced-ab", "ext-proc",
                      "ext-proc-streamed", "ext-proc-streamed-request", "ext-authz", "wasm"):
            # The same Envoy bootstrap as the Envoy peer's, on this peer's ports.
            routes = _snippet("envoy-routes.yaml", Envoy.route_values(0, 24))
            conf = envoy_bootstrap(self.s, self.upstream, self.port, self.admin_port,
                                   self.s.work / f"{self.name}-policy.yaml", routes, config,
                                   ab_port=self.ab_port)
            return [self.s.tools[self.binary], "run", "-c", conf,
                    "--concurrency", self.s.workers]
        self.conf = render(CONFIGS / "outrigger.yaml", self.s.work / f"{self.name}.yaml",
                           self.config_values(0, config))
        return [self.s.tools[self.binary], "run", "-c", self.conf,
                "--concurrency", self.s.workers]

    def ready(self) -> bool:
        admin = f"http://127.0.0.1:{self.admin_port}"
        return http("GET", admin + "/ready", timeout=1)[0] == 200

    def tls_stats(self, kind: str) -> dict | None:
        status, body = http("GET", f"http://127.0.0.1:{self.admin_port}/stats", timeout=5)
        try:
            listeners = json.loads(body)["listeners"] if status == 200 else []
            ssl = next(l for l in listeners if l.get("name") == kind)["ssl"]
            tables = {t: {k: int(v) for k, v in (ssl.get(t) or {}).items()}
                      for t in NEGOTIATED}
            return {"handshakes": int(ssl["handshake"]), "resumed": int(ssl["session_reused"]),
                    **tables}
        except (ValueError, KeyError, TypeError, StopIteration):
            return None

    def swap(self, i: int) -> tuple[bool, str]:
        render(CONFIGS / "outrigger.yaml", self.conf, self.config_values(i % 2))
        status, body = http("POST", f"http://127.0.0.1:{self.admin_port}/reload",
                            timeout=5, body=b"")
        self._applied = getattr(self, "_applied", 0) + (status == 200)
        return status == 200, f"POST /reload -> {status} {body[:100]!r}"

    def applied(self) -> int:
        return getattr(self, "_applied", 0)


class Envoy(Peer):
    name = "envoy"

    @staticmethod
    def route_values(variant: int, indent: int) -> dict:
        pad = " " * indent
        extra = (f'{pad}- match: {{ prefix: "/churn-b" }}\n'
                 f'{pad}  route: {{ cluster: backend }}\n') if variant else ""
        return {"extra_routes": extra, "version": variant}

    def command(self, churn: bool, config: str = "") -> list:
        work = self.s.work
        if config == "xds":
            conf = self.xds.bootstrap(self.admin_port, work / "envoy-xds.yaml")
            return [self.s.tools["envoy"], "-c", conf, "--concurrency", self.s.workers,
                    "--disable-hot-restart", "--log-level", "warn"]
        if churn:
            self.rds_dir = work / "envoy-rds"
            self.rds_dir.mkdir(exist_ok=True)
            self.swap_file(0)
            source = _snippet("envoy-rds.yaml", {"rds_dir": self.rds_dir})
        else:
            source = _snippet("envoy-routes.yaml", self.route_values(0, 24))
        conf = envoy_bootstrap(self.s, self.upstream, self.port, self.admin_port,
                               work / "envoy.yaml", source, config, self.tls_ports,
                               self.ab_port)
        return [self.s.tools["envoy"], "-c", conf, "--concurrency", self.s.workers,
                "--disable-hot-restart", "--log-level", "warn"]

    def ready(self) -> bool:
        status, _ = http("GET", f"http://127.0.0.1:{self.admin_port}/ready", timeout=1)
        return status == 200

    def tls_stats(self, kind: str) -> dict | None:
        status, body = http("GET", f"http://127.0.0.1:{self.admin_port}/stats"
                                   f"?filter=^listener\\.{kind}\\.ssl\\.", timeout=5)
        text = (body or b"").decode(errors="replace") if status == 200 else ""
        hs = re.search(rf"^listener\.{kind}\.ssl\.handshake: (\d+)", text, re.M)
        rs = re.search(rf"^listener\.{kind}\.ssl\.session_reused: (\d+)", text, re.M)
        if not (hs and rs):
            return None
        tables = {t: {m.group(1): int(m.group(2)) for m in re.finditer(
            rf"^listener\.{kind}\.ssl\.{t}\.(\S+): (\d+)", text, re.M)} for t in NEGOTIATED}
        return {"handshakes": int(hs.group(1)), "resumed": int(rs.group(1)), **tables}

    def swap_file(self, i: int) -> None:
        vals = self.route_values(i % 2, 10)
        vals["version"] = i
        # render() writes a temporary file and renames it over the old one: the
        # `mv` swap Envoy's watched_directory expects.
        render(CONFIGS / "envoy-rds-main.yaml", self.rds_dir / "envoy-rds-main.yaml", vals)

    def swap(self, i: int) -> tuple[bool, str]:
        self.swap_file(i)
        return True, "mv envoy-rds-main.yaml"

    def applied(self) -> int:
        status, body = http("GET", f"http://127.0.0.1:{self.admin_port}/stats"
                                   "?filter=rds.main.update_success")
        m = re.search(rb"update_success: (\d+)", body or b"") if status == 200 else None
        return int(m.group(1)) - 1 if m else -1   # minus the initial load


class HAProxy(Peer):
    name = "haproxy"

    def config(self, variant: int, tls: bool = False) -> None:
        extra = "    use_backend backend if { path_beg /churn-b }\n" if variant else ""
        frontends = global_extra = ""
        if tls:
            t = self.s.tls
            frontends = _tls_snippets(self.s, "haproxy", self.tls_ports, lambda kind, p: _snippet(
                "haproxy-tls.cfg",
                {"name": kind, "port": p, "bundle": t.bundle,
                 "verify": f" ca-file {t.ca} verify required" if kind == "mtls" else ""}))
            # `show stat` on this socket: each TLS frontend's ssl_sess (full
            # handshakes) and ssl_reused_sess (resumed ones).
            global_extra = f"    stats socket {self.stats_sock} mode 600 level user\n"
        render(CONFIGS / "haproxy.cfg", self.s.work / "haproxy.cfg",
               {"workers": self.s.workers, "port": self.port,
                "upstream_port": self.upstream.port, "extra_rules": extra,
                "global_extra": global_extra, "tls_frontends": frontends})

    @property
    def stats_sock(self) -> Path:
        return self.s.work / "haproxy-stats.sock"

    def tls_stats(self, kind: str) -> dict | None:
        try:
            out = self._ask(self.stats_sock, "show stat")
        except OSError:
            return None
        lines = out.splitlines()
        if not lines or not lines[0].startswith("# "):
            return None
        cols = lines[0][2:].split(",")
        for line in lines[1:]:
            row = dict(zip(cols, line.split(",")))
            if row.get("pxname") == kind and row.get("svname") == "FRONTEND":
                try:
                    full, reused = int(row["ssl_sess"]), int(row["ssl_reused_sess"])
                except (KeyError, ValueError):
                    return None
                return {"handshakes": full + reused, "resumed": reused}
        return None

    def command(self, churn: bool, config: str = "") -> list:
        if config not in ("", "tls"):
            raise HarnessError(f"haproxy has no `{config}` config")
        self.config(0, config == "tls")
        self.tls_config = config == "tls"
        cmd = [self.s.tools["haproxy"], "-db", "-f", self.s.work / "haproxy.cfg"]
        self.master_sock = None
        if churn:   # master-worker mode, reloaded through the master CLI socket
            self.master_sock = self.s.work / "haproxy-master.sock"
            self.master_sock.unlink(missing_ok=True)
            cmd[1:1] = ["-W", "-S", self.master_sock]
        return cmd

    def ready(self) -> bool:
        if self.master_sock and self._worker_pids() is None:
            return False
        return super().ready()

    def _master(self, command: str) -> str:
        return self._ask(self.master_sock, command)

    @staticmethod
    def _ask(sock_path: Path, command: str) -> str:
        """One command on a CLI socket; the answer ends with an empty line
        (the master may keep the connection open after it)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(str(sock_path))
            s.sendall(command.encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n\n"):
                try:
                    data = s.recv(65536)
                except socket.timeout:
                    break
                if not data:
                    break
                buf += data
            return buf.decode(errors="replace")

    def _worker_pids(self) -> set[str] | None:
        try:
            out = self._master("show proc")
        except OSError:     # the master is re-executing itself during a reload
            return None
        return set(re.findall(r"^(\d+)\s+worker", out, re.M))

    def swap(self, i: int) -> tuple[bool, str]:
        before, deadline = self._worker_pids(), time.monotonic() + 2
        while before is None and time.monotonic() < deadline:
            time.sleep(0.05)
            before = self._worker_pids()
        if before is None:
            return False, "master CLI not answering"
        self.config(i % 2, getattr(self, "tls_config", False))
        self._master("reload")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            new = (self._worker_pids() or before) - before
            if new:
                self._applied = getattr(self, "_applied", 0) + 1
                return True, f"new worker {sorted(new)}"
            time.sleep(0.05)
        return False, "no new worker after reload"

    def applied(self) -> int:
        return getattr(self, "_applied", 0)


class OutriggerBase(Outrigger):
    """Outrigger built at the --baseline revision: a peer like the others, for
    ratios of outrigger against it in the same run."""

    def __init__(self, s: Settings, upstream: Upstream) -> None:
        super().__init__(s, upstream, "outrigger-base")


class OutriggerNs(Outrigger):
    """h1-captured: Outrigger in the scenario's network namespace as a sidecar
    (lib/capture.py), measured on its direct port; `OutriggerCaptured` measures the
    same process through the capture. Runs only in scenarios that name it."""

    only_named = True

    def __init__(self, s: Settings, upstream: Upstream) -> None:
        super().__init__(s, upstream, "outrigger-ns", "outrigger")
        self.netns = s.capture
        self.capture_port, self.svc_port = util.free_port(), util.free_port()

    @property
    def netns_prefix(self) -> list:
        return self.netns.exec_prefix()

    def command(self, churn: bool, config: str = "") -> list:
        self.conf = render(CONFIGS / "outrigger-captured.yaml",
                           self.s.work / f"{self.name}.yaml",
                           {"admin_port": self.admin_port, "port": self.port,
                            "capture_port": self.capture_port, "svc_port": self.svc_port,
                            "host_ip": self.netns.host_ip,
                            "upstream_port": self.upstream.port})
        uid = self.netns.proxy_uid
        return self.netns_prefix + ["setpriv", "--reuid", uid, "--regid", uid,
                                    "--clear-groups", self.s.tools[self.binary], "run",
                                    "-c", self.conf, "--concurrency", self.s.workers]

    def start(self, churn: bool = False, config: str = "") -> None:
        self.netns.install_rules(self.s.tools[self.binary], self.capture_port)
        self.log_path.write_text("")
        self.start_cmd = ["taskset", "-c", self.s.proxy_cpus] + self.command(churn, config)
        self.proc = spawn(self.start_cmd, self.log_path)
        wait_until(self.ready, 30, f"{self.name} start", self.proc, self.log_path)
        self.netns.check(self.name, self.url + "/", BODY)

    def ready(self) -> bool:
        return self.netns.curl(f"http://127.0.0.1:{self.admin_port}/ready", 1)[0] == 200


class OutriggerCaptured(Peer):
    """h1-captured: the `outrigger-ns` process again, reached through the capture
    (a connection to nginx's veth address on the virtual port, which iptables
    redirects to the capture port). Starts and stops nothing itself."""

    name = "outrigger-captured"
    only_named = True

    def __init__(self, s: Settings, upstream: Upstream, ns: OutriggerNs) -> None:
        super().__init__(s, upstream)
        self.ns = ns

    @property
    def host_peer(self) -> OutriggerNs:
        """The peer whose process this one measures (kept running for it by
        `--fresh`, which restarts every peer for each run)."""
        return self.ns

    @property
    def netns_prefix(self) -> list:
        return self.ns.netns_prefix

    @property
    def url(self) -> str:
        return f"http://{self.ns.netns.host_ip}:{self.ns.svc_port}"

    @property
    def proc(self):
        return self.ns.proc

    @proc.setter
    def proc(self, _value) -> None:   # Peer.__init__; the process is outrigger-ns's
        pass

    def start(self, churn: bool = False, config: str = "") -> None:
        if self.ns.proc is None:
            raise HarnessError("outrigger-ns (the process measured here) is not running")
        self.ns.netns.check(self.name, self.url + "/", BODY)

    def stop(self) -> None:
        pass


PEERS = {"direct": Direct, "outrigger": Outrigger, "outrigger-base": OutriggerBase,
         "envoy": Envoy, "haproxy": HAProxy}
