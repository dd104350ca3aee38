"""Scenario definitions (see docs/benchmarks/README.md) and how each is run."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from . import allocs, loadgen, syscalls, util
from .util import HarnessError, log
from .xds import XdsChurner

NOISY_PCT = 10.0   # other processes above this % of one CPU during a run: flagged
# syscalls per request measured
SYSCALL_KINDS = ("closed", "open", "body", "h2", "tls-hs", "tls-ka")
TLS_KINDS = ("tls-hs", "tls-ka")   # handshakes on new connections; keep-alive over TLS


@dataclass
class Scenario:
    name: str
    kind: str            # closed | open | body | idle | churn | xds | h2 | flaky | tls-hs | tls-ka | ab | skip
    title: str
    measures: str
    conns: int = 0
    streams: int = 0     # h2: concurrent streams per connection
    duration: int = 5
    rate: int = 0
    body_req: int = 0    # request body bytes (POST)
    path: str = "/"      # e.g. /blob/1m for large responses
    idle_conns: int = 0
    skip: str = ""
    proxies_only: bool = False   # no direct baseline (nothing to measure)
    tools: tuple = ("wrk",)
    # The proxies' config for this scenario: "" is the plain one-route config;
    # "policy" adds the HTTP filters of h1-policy (peers.POLICY). Proxies restart
    # for each scenario, so a scenario's config never leaks into the next.
    config: str = ""
    only: tuple = ()     # the peers that run it (empty: all that are selected)
    tls: str = ""        # TLS scenarios: the listener, "tls" or "mtls" (mutual)
    resume: bool = False  # tls-hs: resume sessions (True) or full handshakes only
    # The scenario this one is compared with, round by round (an A/B pair: the same load
    # with and without one feature). When both are selected they run interleaved: in
    # each round every peer runs the base and then this one (the order alternating by
    # round), restarted with each config, so that the VM's drift over the minutes
    # between two scenarios does not enter their per-round difference.
    base: str = ""


# Outrigger's span exporter thread (src/observe/trace/export.rs).
EXPORTER = "outrigger-trace"

SCENARIOS = [
    Scenario("h1-closed-32", "closed", "HTTP/1.1 closed loop, 32 connections",
             "max requests/s, latency, proxy CPU per request", conns=32),
    Scenario("h1-closed-128", "closed", "HTTP/1.1 closed loop, 128 connections",
             "max requests/s, latency, proxy CPU per request", conns=128),
    Scenario("h1-open-1k", "open", "HTTP/1.1 open loop, 1k rps, 16 connections",
             "latency added over no proxy at a fixed rate", conns=16, rate=1000,
             tools=("oha",)),
    Scenario("h1-open-5k", "open", "HTTP/1.1 open loop, 5k rps, 16 connections",
             "latency added over no proxy at a fixed rate", conns=16, rate=5000,
             tools=("oha",)),
    Scenario("h1-open-10k", "open", "HTTP/1.1 open loop, 10k rps, 16 connections",
             "latency added over no proxy at a fixed rate", conns=16, rate=10000,
             tools=("oha",)),
    Scenario("body-req-64k", "body", "POST with a 64 KiB request body, 16 connections",
             "body throughput, CPU per GB, peak RSS", conns=16, duration=3,
             body_req=64 * 1024),
    Scenario("body-req-1m", "body", "POST with a 1 MiB request body, 16 connections",
             "body throughput, CPU per GB, peak RSS", conns=16, duration=3,
             body_req=1024 * 1024),
    Scenario("body-resp-64k", "body", "GET of a 64 KiB response, 16 connections",
             "body throughput, CPU per GB, peak RSS", conns=16, duration=3,
             path="/blob/64k"),
    Scenario("body-resp-1m", "body", "GET of a 1 MiB response, 16 connections",
             "body throughput, CPU per GB, peak RSS", conns=16, duration=3,
             path="/blob/1m"),
    Scenario("idle-conns", "idle", "5000 idle keep-alive connections",
             "RSS per idle connection (each made one request), idle RSS",
             idle_conns=5000, proxies_only=True, tools=()),
    Scenario("config-churn", "churn", "Config replaced every second under load, 32 connections",
             "requests/s and errors while the config is swapped and reloaded",
             conns=32, duration=8, proxies_only=True),
    Scenario("xds-churn", "xds", "A new route and a new cluster pushed over ADS every "
             "second under load, 32 connections (the same bootstrap and management "
             "server shape for Outrigger and Envoy)",
             "failed requests while xDS updates apply, and the time from a push to the "
             "first request served on its new route", conns=32, duration=8,
             config="xds", proxies_only=True, only=("outrigger", "envoy")),
    Scenario("h1-bootstrap", "closed", "HTTP/1.1 closed loop, 32 connections, the Envoy "
             "bootstrap without policy filters (Outrigger runs Envoy's config)",
             "the plain route as Envoy's bootstrap configures it: the base of h1-policy",
             conns=32, config="bootstrap", proxies_only=True, only=("outrigger", "envoy")),
    Scenario("h1-policy", "closed", "HTTP/1.1 closed loop, 32 connections, with RBAC, "
             "local rate limit (not limiting) and header mutation",
             "CPU per request that the three policy filters add over h1-bootstrap",
             conns=32, config="policy", proxies_only=True, only=("outrigger", "envoy")),
    # The external services (Python, on the client CPUs) answer about 2,000 to 3,000
    # calls/s, so a closed loop would run each proxy at the service's pace rather than
    # its own, and CPU per request would mix the filter with the wake-ups of a slow
    # loop. Open loop at a rate both services keep up with, against the same bootstrap
    # at the same rate without the filter (h1-bootstrap-1k), separates the filter.
    Scenario("h1-bootstrap-1k", "open", "HTTP/1.1 open loop, 1k rps, 16 connections, the "
             "Envoy bootstrap without filters (the base of ext-proc and ext-authz)",
             "CPU per request at 1k rps without an extension", conns=16, rate=1000,
             tools=("oha",), config="bootstrap", proxies_only=True,
             only=("outrigger", "envoy")),
    Scenario("ext-proc", "open", "HTTP/1.1 open loop, 1k rps, 16 connections, each "
             "request's headers sent to an external processor (ext_proc over gRPC) that "
             "answers CONTINUE",
             "CPU per request that ext_proc adds over h1-bootstrap-1k (the processor's own "
             "CPU, on the client CPUs, not counted)", conns=16, rate=1000, tools=("oha",),
             config="ext-proc", proxies_only=True, base="h1-bootstrap-1k",
             only=("outrigger", "envoy")),
    Scenario("ext-proc-streamed", "open", "HTTP/1.1 open loop, 1k rps, 16 connections, "
             "each request's headers and its response body (STREAMED: each piece in a "
             "message, on to the client as the processor answers) sent to the external "
             "processor, which answers CONTINUE",
             "CPU per request that ext_proc with a streamed response body adds over "
             "h1-bootstrap-1k (the processor's own CPU, on the client CPUs, not counted)",
             conns=16, rate=1000, tools=("oha",), config="ext-proc-streamed",
             proxies_only=True, base="h1-bootstrap-1k", only=("outrigger", "envoy")),
    Scenario("h1-bootstrap-1k-post", "open", "HTTP/1.1 open loop, 1k rps, 16 "
             "connections, each a POST with a 16 KiB body, the Envoy bootstrap without "
             "filters (the base of ext-proc-streamed-request)",
             "CPU per request at 1k rps of a 16 KiB upload without an extension",
             conns=16, rate=1000, body_req=16 * 1024, tools=("oha",), config="bootstrap",
             proxies_only=True, only=("outrigger", "envoy")),
    Scenario("ext-proc-streamed-request", "open", "HTTP/1.1 open loop, 1k rps, 16 "
             "connections, each a POST with a 16 KiB body whose headers and body "
             "(STREAMED: each piece in a message, on upstream as the processor answers) "
             "go to the external processor, which answers CONTINUE",
             "CPU per request that ext_proc with a streamed request body adds over "
             "h1-bootstrap-1k-post (the processor's own CPU, on the client CPUs, not "
             "counted)", conns=16, rate=1000, body_req=16 * 1024, tools=("oha",),
             config="ext-proc-streamed-request", proxies_only=True,
             base="h1-bootstrap-1k-post", only=("outrigger", "envoy")),
    Scenario("ext-authz", "open", "HTTP/1.1 open loop, 1k rps, 16 connections, every "
             "request checked by an external authorization service over gRPC (allows all)",
             "CPU per request that the ext_authz filter adds over h1-bootstrap-1k (the "
             "proxy's side of one Check call; the service runs on the client CPUs)",
             conns=16, rate=1000, tools=("oha",), config="ext-authz", proxies_only=True,
             base="h1-bootstrap-1k", only=("outrigger", "envoy")),
    Scenario("wasm", "closed", "HTTP/1.1 closed loop, 32 connections, one proxy-wasm "
             "filter (the tests' add-header module: two request headers, one response "
             "header; Envoy on V8, Outrigger on wasmtime)",
             "CPU per request that a proxy-wasm filter adds over h1-bootstrap",
             conns=32, config="wasm", proxies_only=True, only=("outrigger", "envoy")),
    Scenario("h1-traced", "closed", "HTTP/1.1 closed loop, 32 connections, every request "
             "traced (100% sampling), spans exported over OTLP/HTTP to a collector",
             "CPU per request that tracing adds over h1-closed-32 (and h1-bootstrap), "
             "exporter thread included", conns=32, config="traced", proxies_only=True,
             only=("outrigger", "envoy")),
    # The closed-loop pair above is confounded: the collector shares the client CPUs,
    # so the traced loop runs slower, and a proxy serving fewer requests per wake-up
    # pays more CPU per request. At one fixed rate that both proxies sustain traced,
    # the proxy's CPU per request differs by tracing alone.
    Scenario("h1-bootstrap-5k", "open", "HTTP/1.1 open loop, 5k rps, 16 connections, the "
             "Envoy bootstrap without tracing (the base of h1-traced-5k)",
             "CPU per request at 5k rps without tracing", conns=16, rate=5000,
             tools=("oha",), config="bootstrap", proxies_only=True,
             only=("outrigger", "envoy")),
    Scenario("h1-traced-5k", "open", "HTTP/1.1 open loop, 5k rps, 16 connections, every "
             "request traced (100% sampling), spans exported over OTLP/HTTP to a collector",
             "CPU per request that tracing adds over h1-bootstrap-5k at the same rate, "
             "exporter thread included", conns=16, rate=5000, tools=("oha",),
             config="traced", proxies_only=True, base="h1-bootstrap-5k",
             only=("outrigger", "envoy")),
    # The pair above runs two processes; processes differ by more than tracing
    # costs. One process with both listeners, loaded in alternate 2 s segments,
    # measures tracing alone (Runner.measure_ab).
    Scenario("h1-traced-ab", "ab", "HTTP/1.1 open loop, 5k rps, 16 connections, one "
             "process with two listeners: the Envoy bootstrap's plain one and the same "
             "with its tracing block (100% sampling, OTLP/HTTP to a collector), loaded "
             "in alternate 2 s segments",
             "CPU per request that tracing adds (traced segments minus plain ones, the "
             "exporter thread included)", conns=16, rate=5000, duration=20,
             tools=("oha",), config="traced-ab", proxies_only=True,
             only=("outrigger", "envoy")),
    # At 5k requests/s every request is served on a wake-up of its own and CPU per
    # request swings by +-15 us between rounds, far more than tracing adds. 20k is
    # closer to the closed loop (several requests per wake-up) while every proxy
    # that runs it sustains it traced: Envoy, at about 8k traced, does not, so this
    # pair is Outrigger's alone.
    Scenario("h1-bootstrap-20k", "open", "HTTP/1.1 open loop, 20k rps, 32 connections, the "
             "Envoy bootstrap without tracing (the base of h1-traced-20k)",
             "CPU per request at 20k rps without tracing", conns=32, rate=20000,
             tools=("oha",), config="bootstrap", proxies_only=True, only=("outrigger",)),
    Scenario("h1-traced-20k", "open", "HTTP/1.1 open loop, 20k rps, 32 connections, every "
             "request traced (100% sampling), spans exported over OTLP/HTTP to a collector",
             "CPU per request that tracing adds over h1-bootstrap-20k at the same rate, "
             "exporter thread included", conns=32, rate=20000, tools=("oha",),
             config="traced", proxies_only=True, base="h1-bootstrap-20k",
             only=("outrigger",)),
    # The 20k pair above runs two processes too, and its rounds spread by more than
    # the bar (3.6, 8.1, -1.9 us in the run of 2026-12-06 10:52): the same rate in
    # one process, alternate segments.
    Scenario("h1-traced-ab-20k", "ab", "HTTP/1.1 open loop, 20k rps, 32 connections, one "
             "process with two listeners: the Envoy bootstrap's plain one and the same "
             "with its tracing block (100% sampling, OTLP/HTTP to a collector), loaded "
             "in alternate 2 s segments",
             "CPU per request that tracing adds at 20k rps (traced segments minus plain "
             "ones, the exporter thread included)", conns=32, rate=20000, duration=20,
             tools=("oha",), config="traced-ab", proxies_only=True, only=("outrigger",)),
    Scenario("h1-flaky", "flaky", "HTTP/1.1 open loop, 2k rps, 16 connections, two "
             "endpoints, one answering 503 to one request in five, retry_on 5xx",
             "client-visible success rate and latency with retries (Envoy bootstrap for both)",
             conns=16, rate=2000, tools=("oha",), config="flaky", proxies_only=True,
             only=("outrigger", "envoy")),
    Scenario("h1-captured", "closed", "HTTP/1.1 closed loop, 32 connections, through "
             "transparent interception (iptables REDIRECT + original destination, in a "
             "network namespace) against the same proxy's direct port",
             "what the capture costs: requests/s, latency, CPU per request "
             "(outrigger-captured vs outrigger-ns, one process)",
             conns=32, proxies_only=True, only=("outrigger-ns", "outrigger-captured")),
    Scenario("h2-streams", "h2", "HTTP/2 (h2c), 4 connections x 100 streams",
             "requests/s, latency, proxy CPU per request (HTTP/2 downstream, "
             "HTTP/1.1 keep-alive upstream)", conns=4, streams=100, tools=("h2load",)),
    Scenario("tls-handshakes", "tls-hs", "TLS 1.3 full handshakes: a new connection for "
             "every request, 16 connections, no session resumption",
             "handshakes/s, proxy CPU per handshake (with its one proxied request)",
             conns=16, tools=("wrk",), config="tls", tls="tls", resume=False),
    Scenario("tls-resume", "tls-hs", "TLS 1.3 resumed handshakes: a new connection for "
             "every request, 16 connections, each resuming the last session (ticket)",
             "handshakes/s, proxy CPU per resumed handshake, resumption ratio",
             conns=16, tools=("wrk",), config="tls", tls="tls", resume=True),
    Scenario("tls-keepalive", "tls-ka", "HTTP/1.1 keep-alive over TLS 1.3, 32 connections",
             "requests/s, latency, proxy CPU per request over TLS", conns=32,
             tools=("wrk",), config="tls", tls="tls"),
    Scenario("mtls-keepalive", "tls-ka", "HTTP/1.1 keep-alive over mutual TLS 1.3, "
             "32 connections (oha: the client with a client certificate)",
             "requests/s, latency, proxy CPU per request over mTLS", conns=32,
             tools=("oha",), config="tls", tls="mtls"),
]
BY_NAME = {s.name: s for s in SCENARIOS}


@dataclass
class Run:
    scenario: str
    peer: str
    round: int
    valid: bool = True
    reasons: list = field(default_factory=list)
    data: dict = field(default_factory=dict)

    def invalid(self, reason: str) -> None:
        self.valid = False
        self.reasons.append(reason)


class Runner:
    def __init__(self, settings, upstream, peers: dict, rounds: int, quick: bool,
                 duration: int | None) -> None:
        self.s, self.upstream, self.peers = settings, upstream, peers
        self.rounds, self.quick, self.duration = rounds, quick, duration
        self.start_errors: dict[str, str] = {}   # peer -> why it failed to start
        self.idle_rss: dict[str, list] = {}      # peer -> RSS right after start
        self.unavailable: dict[str, str] = {}    # peer -> why it cannot run at all
        # Syscall counting (see syscalls.probe): mode and the perf/strace binary.
        self.sys_mode, self.sys_tool = "off", None
        # Untimed extra measurements after a scenario's rounds, by scenario and peer.
        self.alloc_peers: dict = {}    # reported peer name -> its alloc-count build
        self.allocs: dict[str, dict] = {}
        self.strace: dict[str, dict] = {}
        self.extra_errors: list[str] = []
        # Every peer restarted for each round of every scenario (`--fresh`).
        self.fresh = False

    def seconds(self, sc: Scenario) -> int:
        if self.quick:   # churn needs at least one reload (or push) inside the run
            return 3 if sc.kind == "xds" else 2 if sc.kind == "churn" else 1
        return self.duration or sc.duration

    # -- peer lifetime -------------------------------------------------------
    def start(self, peer, churn=False, sc: Scenario | None = None) -> bool:
        if peer.name in self.unavailable:
            self.start_errors[peer.name] = self.unavailable[peer.name]
            return False
        try:
            peer.start(churn=churn, config=sc.config if sc else "")
            if peer.pid:   # idle RSS: right after start-up, before any load
                # The headline's figure is the peer's own config's; starts with another
                # config (Outrigger on Envoy's bootstrap: 61-67 MiB) are kept apart.
                config = sc.config if sc else ""
                key = f"{peer.name} ({config})" if config else peer.name
                self.idle_rss.setdefault(key, []).append(util.rss_bytes(peer.pid))
                if not churn:   # for attaching a profiler by hand
                    log(f"  {peer.name}: pid {peer.pid}")
            if not self.quick:   # warm-up: pools, caches, page faults
                if sc is not None and sc.kind == "h2":   # the HTTP/2 code path
                    loadgen.h2load(self.s.tools, peer.h2_url, sc.conns, sc.streams, 1,
                                   self.s.client_cpus)
                elif sc is not None and sc.kind in TLS_KINDS:   # the TLS listener
                    self.load(sc, peer, 1)
                else:
                    loadgen.wrk(self.s.tools, peer.url, 16, 1, self.s.client_cpus,
                                netns=getattr(peer, "netns_prefix", None))
                if sc is not None and sc.kind == "ab":   # the second listener too
                    loadgen.wrk(self.s.tools, peer.ab_url, 16, 1, self.s.client_cpus)
        except HarnessError as exc:
            peer.stop()
            self.start_errors[peer.name] = str(exc).splitlines()[0][:300]
            log(f"  {peer.name}: failed to start: {self.start_errors[peer.name]}")
            return False
        return True

    def peers_of(self, sc: Scenario) -> list:
        """The selected peers that run `sc`."""
        # A peer marked only_named (h1-captured's) runs only where a scenario names it;
        # outrigger-base (--baseline) runs wherever outrigger does.
        only = sc.only + (("outrigger-base",) if "outrigger" in sc.only else ())
        return [p for p in self.peers.values() if (p.is_proxy or not sc.proxies_only)
                and (p.name in only if getattr(p, "only_named", False)
                     else not only or p.name in only)]

    def run_group(self, group: list[Scenario]) -> list[Run]:
        """A base scenario and those compared with it (`Scenario.base`), interleaved:
        in each round every peer runs each of them in turn, restarted with each one's
        config, the order reversed every other round. Two scenarios run one after the
        other are minutes apart, and this VM's CPU per request drifts over minutes by
        more than some of the differences measured (tracing's 2 µs at 5k requests/s)."""
        if len(group) == 1:
            return self.run(group[0])
        peers = [p for p in self.peers.values() if any(p in self.peers_of(sc) for sc in group)]
        runs = []
        try:
            for r in range(1, self.rounds + 1):
                for p in peers:
                    for sc in (group if r % 2 else group[::-1]):
                        if p not in self.peers_of(sc):
                            continue
                        log(f"{sc.name}: start {p.name}")
                        runs.append(self.one_run(sc, p, r, self.start(p, sc=sc)))
                        p.stop()
            for sc in group:
                if self.sys_mode == "strace" and sc.kind in SYSCALL_KINDS:
                    up = [p for p in self.peers_of(sc) if self.start(p, sc=sc)]
                    try:
                        self.strace_samples(sc, [p for p in up if p.pid])
                    finally:
                        for p in up:
                            p.stop()
        finally:
            for p in peers:
                p.stop()
        for sc in group:
            if sc.name in allocs.SCENARIOS:
                self.measure_allocs(sc)
        return runs

    def run(self, sc: Scenario) -> list[Run]:
        peers = self.peers_of(sc)
        # A new process for every run: what these kinds measure, or asked (`--fresh`).
        fresh = self.fresh or sc.kind in ("idle", "churn", "xds")
        runs, up = [], set()
        try:
            if not fresh:
                for p in peers:
                    log(f"{sc.name}: start {p.name}")
                    if self.start(p, sc=sc):
                        up.add(p.name)
            for r in range(1, self.rounds + 1):
                order = round_order(peers, r)
                for i, p in enumerate(order):
                    if fresh:
                        if self.start(p, churn=sc.kind == "churn", sc=sc):
                            up.add(p.name)
                        else:
                            up.discard(p.name)
                    runs.append(self.one_run(sc, p, r, p.name in up))
                    if fresh:
                        # A process another peer of this round measures too
                        # (`outrigger-captured` is `outrigger-ns` reached through the
                        # capture) stops after that peer's run, not before it.
                        later = order[i + 1:]
                        for q in (p, getattr(p, "host_peer", None)):
                            if q is not None and not any(
                                    getattr(o, "host_peer", None) is q for o in later):
                                q.stop()
            if self.sys_mode == "strace" and sc.kind in SYSCALL_KINDS:
                self.strace_samples(sc, [p for p in peers if p.name in up and p.pid])
        finally:
            for p in peers:
                p.stop()
        if sc.name in allocs.SCENARIOS:
            self.measure_allocs(sc)
        return runs

    def one_run(self, sc: Scenario, p, r: int, up: bool) -> Run:
        """Round `r` of `sc` on `p`, measured if `p` is up, logged either way."""
        run = Run(sc.name, p.name, r)
        if up:
            self.measure(sc, p, run)
        else:
            run.invalid(f"did not start: {self.start_errors.get(p.name, '?')}")
        log(f"{sc.name} round {r}/{self.rounds} {p.name}: {summary(run)}")
        return run

    # -- untimed extras: strace sample, allocations per request --------------
    def strace_samples(self, sc: Scenario, peers) -> None:
        secs = 1 if self.quick else 2
        for p in peers:
            log(f"{sc.name}: strace sample of {p.name} ({secs} s, not timed)")
            try:
                res = syscalls.strace_sample(self.sys_tool, p.pid, self.s.work,
                                             self.s.client_cpus,
                                             lambda: self.load(sc, p, secs))
            except HarnessError as exc:
                res = {"error": str(exc).splitlines()[0][:300]}
                self.extra_errors.append(f"{sc.name} {p.name}: {res['error']}")
            self.strace.setdefault(sc.name, {})[p.name] = res

    def measure_allocs(self, sc: Scenario) -> None:
        for name, peer in self.alloc_peers.items():
            if name not in self.peers:
                continue
            if isinstance(peer, str):   # why this peer has no alloc-count build
                log(f"{sc.name}: allocations per request of {name} skipped: {peer}")
                res = {"skipped": peer}
            else:
                log(f"{sc.name}: allocations per request, {peer.name} (not timed)")
                try:
                    res = allocs.measure(self.s, peer, sc, self.quick)
                except HarnessError as exc:
                    res = {"error": str(exc).splitlines()[0][:300]}
                    self.extra_errors.append(f"{sc.name} allocations {name}: {res['error']}")
                    log(f"  {res['error']}")
            self.allocs.setdefault(sc.name, {})[name] = res

    def load(self, sc: Scenario, p, secs: int) -> dict:
        """The scenario's load generator against `p` for `secs` seconds."""
        if sc.kind in ("open", "flaky"):
            return loadgen.oha(self.s.tools, p.url, sc.rate, sc.conns, secs,
                               self.s.client_cpus, body_bytes=sc.body_req)
        if sc.kind == "h2":
            return loadgen.h2load(self.s.tools, p.h2_url, sc.conns, sc.streams, secs,
                                  self.s.client_cpus)
        if sc.kind == "tls-hs":   # wrk opens a new connection after each `close`
            return loadgen.wrk(self.s.tools, p.tls_url(sc.tls), sc.conns, secs,
                               self.s.client_cpus, env=self.s.tls.client_env(sc.resume),
                               headers=("Connection: close",))
        if sc.kind == "tls-ka" and "oha" in sc.tools:   # closed loop, client certificate
            t = self.s.tls
            return loadgen.oha(self.s.tools, p.tls_url(sc.tls), 0, sc.conns, secs,
                               self.s.client_cpus,
                               ("--cacert", t.ca, "--cert", t.client_cert, "--key",
                                t.client_key))
        if sc.kind == "tls-ka":
            return loadgen.wrk(self.s.tools, p.tls_url(sc.tls), sc.conns, secs,
                               self.s.client_cpus, env=self.s.tls.client_env())
        return loadgen.wrk(self.s.tools, p.url, sc.conns, secs, self.s.client_cpus,
                           sc.body_req, sc.path, netns=getattr(p, "netns_prefix", None))

    # -- one process, two listeners: plain and traced ------------------------
    def measure_ab(self, sc: Scenario, p, run: Run) -> None:
        """h1-traced-ab: the same load in short segments, alternately on the peer's
        plain listener and on its traced one (config "traced-ab"), in one process.
        Each segment's CPU is the process's time on CPU (schedstat, every thread, the
        exporter included) over the requests oha completed; a pair is a plain and a
        traced segment side by side (their order alternating), and the traced one's
        CPU per request minus the plain one's is tracing's cost in that pair. Whole
        runs of one config against another differ from process to process by more
        than tracing costs (docs/tracing.md); segments of one process share its
        state, and what is left between them is the VM's noise. Latency is the last
        traced segment's."""
        secs = 1 if self.quick else max(2, self.seconds(sc) // 10)
        pairs = 1 if self.quick else max(1, self.seconds(sc) // (2 * secs))
        pid = p.pid
        spans0 = self.upstream.settled_spans()
        side = {"plain": {"cpu": 0.0, "req": 0}, "traced": {"cpu": 0.0, "req": 0}}
        diffs, exporter, last = [], 0.0, {}
        pids = [pid, self.upstream.proc.pid, *self.upstream.service_pids()]
        snap0 = util.cpu_snapshot(pids)
        for i in range(pairs):
            per = {}
            for name in (("plain", "traced") if i % 2 == 0 else ("traced", "plain")):
                url = p.url if name == "plain" else p.ab_url
                cpu0, exp0 = util.sched_seconds(pid), util.sched_seconds(pid, EXPORTER)
                res = loadgen.oha(self.s.tools, url, sc.rate, sc.conns, secs,
                                  self.s.client_cpus)
                cpu1, exp1 = util.sched_seconds(pid), util.sched_seconds(pid, EXPORTER)
                if not res["requests"]:
                    raise HarnessError(f"{name} segment {i + 1}: zero requests")
                exporter += exp1 - exp0
                per[name] = (cpu1 - cpu0) * 1e6 / res["requests"]
                side[name]["cpu"] += cpu1 - cpu0
                side[name]["req"] += res["requests"]
                if name == "traced":
                    last = res
            diffs.append(per["traced"] - per["plain"])
        snap1 = util.cpu_snapshot(pids)
        spans1 = self.upstream.settled_spans()
        d = run.data
        d.update({k: last[k] for k in ("tool", "lat_us") if k in last})
        d["other_cpu_pct"], d["steal_pct"] = util.other_load(snap0, snap1)
        plain = side["plain"]["cpu"] * 1e6 / side["plain"]["req"]
        traced = side["traced"]["cpu"] * 1e6 / side["traced"]["req"]
        secs_total = secs * pairs
        d.update({
            "requests": side["traced"]["req"], "duration_s": secs_total,
            "rps": side["traced"]["req"] / secs_total,
            "cpu_us_per_req": traced, "plain_cpu_us_per_req": plain,
            "added_us_per_req": traced - plain, "pair_diffs": diffs,
            "exporter_us_per_req": exporter * 1e6 / side["traced"]["req"] if exporter else None,
        })
        if spans0 is not None and spans1 is not None:
            d["spans"] = spans1 - spans0
            d["spans_per_req"] = d["spans"] / side["traced"]["req"]

    # -- one measured run ----------------------------------------------------
    def measure(self, sc: Scenario, p, run: Run) -> None:
        pid, secs, perf = p.pid, self.seconds(sc), None
        traced = sc.config == "traced" and bool(pid)
        if pid and p.proc.poll() is not None:
            run.invalid(f"process exited (code {p.proc.returncode})")
            return
        try:
            if sc.kind == "idle":
                self.measure_idle(sc, p, run)
                return
            if sc.kind == "ab":
                self.measure_ab(sc, p, run)
                return
            churn = Churner(p) if sc.kind == "churn" else \
                XdsChurner(p) if sc.kind == "xds" else None
            # The proxy, the upstream and the scenario's services (their CPU is not
            # other load; the proxy's own CPU is read separately).
            pids = [pid, self.upstream.proc.pid, *self.upstream.service_pids()]
            # The servers' TLS counters are read through their admin ports, outside
            # the window of the CPU and syscall readings.
            tls0 = p.tls_stats(sc.tls) if sc.tls else None
            # Spans exported so far (the warm-up's), once the collector has them.
            spans0 = self.upstream.settled_spans() if sc.config == "traced" else None
            perf, perf_note = self.perf_start(sc, pid)
            snap0 = util.cpu_snapshot(pids)
            (acc0, up0), cpu0 = self.upstream.counters(), util.cpu_times(pid) if pid else (0, 0)
            # Outrigger's span exporter is a thread of its own: its CPU is read apart.
            exp0 = util.thread_cpu_seconds(pid, EXPORTER) if traced else 0.0
            if churn:
                churn.start()
            try:
                res = self.load(sc, p, secs)
            finally:
                if churn:
                    churn.stop()
            cpu1 = util.cpu_times(pid) if pid else (0, 0)
            exp1 = util.thread_cpu_seconds(pid, EXPORTER) if traced else 0.0
            acc1, up1 = self.upstream.counters()
            snap1 = util.cpu_snapshot(pids)
            nsys, perf_note = self.perf_stop(perf, perf_note)
            tls1 = p.tls_stats(sc.tls) if sc.tls else None
            spans1 = self.upstream.settled_spans() if sc.config == "traced" else None
        except HarnessError as exc:
            if perf:
                perf.close()
            run.invalid(str(exc).splitlines()[0][:300])
            return
        d = run.data
        if perf_note:
            d["syscalls_note"] = perf_note
        d.update(res)
        d["other_cpu_pct"], d["steal_pct"] = util.other_load(snap0, snap1)
        # nginx's counter includes the status request itself: minus one.
        d["forwarded"] = up1 - up0 - 1 if up0 >= 0 and up1 >= 0 else None
        # Connections the upstream accepted (minus the status request's own):
        # shows whether the peer reuses its upstream connections.
        d["upstream_conns"] = acc1 - acc0 - 1 if acc0 >= 0 and acc1 >= 0 else None
        if pid:
            user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
            d["cpu_s"] = user + system
            d["cpu_us_per_req"] = d["cpu_s"] * 1e6 / res["requests"] if res["requests"] else None
            d["kernel_share"] = system / d["cpu_s"] if d["cpu_s"] > 0 else None
            if nsys is not None:
                d["syscalls"] = nsys
                d["syscalls_per_req"] = nsys / res["requests"] if res["requests"] else None
            d["peak_rss"] = util.peak_rss_bytes(pid)
            d["rss"] = util.rss_bytes(pid)
        if sc.body_req or sc.path != "/":
            size = sc.body_req or BLOB_SIZES[sc.path]
            d["body_bytes"] = size
            d["mb_per_s"] = res["requests"] * size / res["duration_s"] / 1e6
            if pid and res["requests"]:
                d["cpu_s_per_gb"] = d["cpu_s"] / (res["requests"] * size / 1e9)
        if sc.tls:
            self.tls_figures(sc, run, res, tls0, tls1)
        if sc.config == "traced":
            d["spans"] = spans1 - spans0 if spans0 is not None and spans1 is not None \
                else None
            d["spans_per_req"] = d["spans"] / res["requests"] \
                if d["spans"] is not None and res["requests"] else None
            if exp1 > 0 and res["requests"]:
                d["exporter_cpu_us_per_req"] = (exp1 - exp0) * 1e6 / res["requests"]
        if sc.kind == "xds":
            d.update(churn.results())
            d["errors_total"] = res["non2xx"] + res["socket_errors"]
        elif churn:
            d["swaps"], d["swaps_ok"] = churn.count, churn.ok
            d["applied"] = p.applied()
            d["swap_notes"] = churn.notes[:3]
            d["errors_total"] = res["non2xx"] + res["socket_errors"]
        self.verify(sc, p, run, res)
        if pid:
            d["threads"] = util.thread_count(pid)
            escaped = util.pinning_escapes(pid, util.cpu_list(self.s.proxy_cpus))
            if escaped:
                run.invalid(f"threads not pinned to the proxy CPUs: {escaped[:5]}")
        if pid and p.proc.poll() is not None:
            run.invalid(f"process exited during the run (code {p.proc.returncode})")

    def perf_start(self, sc: Scenario, pid: int | None):
        """perf stat attached to the proxy's processes, counting from now; a
        perf failure is noted on the run, never made the run's failure."""
        if not (pid and self.sys_mode == "perf" and sc.kind in SYSCALL_KINDS):
            return None, None
        perf = syscalls.PerfStat(self.sys_tool, self.sys_mode, util.tree_pids(pid),
                                 self.s.client_cpus, self.s.work)
        try:
            perf.enable()
            return perf, None
        except (HarnessError, OSError) as exc:
            perf.close()
            return None, f"perf: {str(exc).splitlines()[0][:200]}"

    @staticmethod
    def perf_stop(perf, note):
        if perf is None:
            return None, note
        try:
            n = perf.disable()
            return n, None if n is not None else "perf counted nothing"
        except (HarnessError, OSError) as exc:
            return None, f"perf: {str(exc).splitlines()[0][:200]}"

    def verify(self, sc: Scenario, p, run: Run, res: dict) -> None:
        d = run.data
        if res["requests"] == 0:
            run.invalid("zero requests")
            return
        if sc.kind == "churn":
            # Errors are the result here, not a harness failure; the reloads must work.
            if d["swaps_ok"] < d["swaps"]:
                run.invalid(f"{d['swaps'] - d['swaps_ok']} of {d['swaps']} reloads failed: "
                            f"{d['swap_notes']}")
            elif 0 <= d["applied"] < d["swaps"] and p.name == "envoy":
                run.invalid(f"Envoy applied {d['applied']} of {d['swaps']} route updates")
            if d["swaps"] == 0:
                run.invalid("no reload happened during the run")
            return
        if sc.kind == "xds":
            # Failed requests and push times are the result; the pushes must happen,
            # be accepted and reach a request.
            if d["pushes"] == 0:
                run.invalid("no push happened during the run")
            if d["nacks"]:
                run.invalid(f"{d['nacks']} NACKs: {d['nack_notes']}")
            if d["pushes_reached"] < d["pushes"]:
                run.invalid(f"{d['pushes'] - d['pushes_reached']} of {d['pushes']} pushes "
                            f"never reached a request: {d['push_notes']}")
            return
        if sc.kind == "flaky":
            # The 503s that got through are the result, and retries make the
            # upstream see more requests than the client sent.
            d["success"] = 1 - res["non2xx"] / res["requests"]
            if d["forwarded"] is not None:
                d["tries_per_req"] = d["forwarded"] / res["requests"]
            if res["socket_errors"]:
                run.invalid(f"socket errors {res['errors']}")
            if res["rps"] < 0.95 * sc.rate:
                run.invalid(f"rate not sustained: {res['rps']:.0f} of {sc.rate} rps")
            return
        if res["non2xx"]:
            run.invalid(f"{res['non2xx']} non-2xx responses")
        if res["socket_errors"]:
            run.invalid(f"socket errors {res['errors']}")
        if sc.kind == "h2":
            self.verify_h2(sc, run, res["h2"])
        if sc.tls:
            self.verify_tls(sc, run)
        if sc.config == "traced":
            self.verify_spans(sc, run)
        # Requests in flight when the client stops may or may not have reached
        # the upstream: at most one per connection (HTTP/1.1) or per stream (h2).
        lo, hi = res["requests"], res["requests"] + sc.conns * max(1, sc.streams) + 2
        if d["forwarded"] is not None and not lo <= d["forwarded"] <= hi:
            run.invalid(f"upstream saw {d['forwarded']} requests, client counted "
                        f"{res['requests']}")
        if sc.kind == "open" and res["rps"] < 0.95 * sc.rate:
            run.invalid(f"rate not sustained: {res['rps']:.0f} of {sc.rate} rps")

    @staticmethod
    def tls_figures(sc: Scenario, run: Run, res: dict, tls0, tls1) -> None:
        """Handshakes and resumptions during the run, as the client (the shim in
        wrk) and the server (its own stats) counted them; handshakes/s and CPU
        per handshake."""
        d = run.data
        t = {"client": res.get("tls_client")}
        if tls0 and tls1:
            t["server"] = {k: tls1[k] - tls0[k] for k in ("handshakes", "resumed")}
            # What the run's handshakes negotiated (Outrigger and Envoy count it).
            seen = [name for table in ("versions", "ciphers", "curves")
                    for name, n in (tls1.get(table) or {}).items()
                    if n > (tls0.get(table) or {}).get(name, 0)]
            if seen:
                d["tls_negotiated"] = " ".join(seen)
        d["tls"] = t
        # The server's count where it has one (nginx has none: the client's).
        src = t.get("server") or t.get("client")
        if src:
            d["handshakes"] = src["handshakes"]
            d["resumed_ratio"] = src["resumed"] / src["handshakes"] if src["handshakes"] \
                else None
            if sc.kind == "tls-hs":
                d["handshakes_per_s"] = src["handshakes"] / res["duration_s"] \
                    if res["duration_s"] else None
                if d.get("cpu_s") is not None and src["handshakes"]:
                    d["cpu_us_per_handshake"] = d["cpu_s"] * 1e6 / src["handshakes"]

    @staticmethod
    def verify_tls(sc: Scenario, run: Run) -> None:
        """Resumption really off (full handshakes) or really on (resumed), by the
        client's count and the server's; one handshake per request when each
        request has its own connection."""
        d, t = run.data, run.data.get("tls", {})
        if not t.get("client") and "oha" not in sc.tools:
            run.invalid("the TLS client shim reported no handshake count")
        for side in ("client", "server"):
            c = t.get(side)
            if not c:
                continue
            hs, rs = c["handshakes"], c["resumed"]
            if sc.kind == "tls-hs":
                # wrk reconnects after every response; a handshake may be cut
                # short when the run ends (one per connection).
                if not d["requests"] <= hs + sc.conns or hs > d["requests"] + sc.conns:
                    run.invalid(f"{side} counted {hs} handshakes for {d['requests']} "
                                "requests (expected one each)")
                if not sc.resume and rs:
                    run.invalid(f"{side}: {rs} of {hs} handshakes resumed a session "
                                "(expected full handshakes only)")
                # Each connection's first handshake is a full one.
                if sc.resume and rs < 0.9 * (hs - sc.conns):
                    run.invalid(f"{side}: only {rs} of {hs} handshakes resumed a session")
            elif hs > 2 * sc.conns:   # keep-alive: about one handshake per connection
                run.invalid(f"{side} counted {hs} handshakes on {sc.conns} keep-alive "
                            "connections")

    def verify_spans(self, sc: Scenario, run: Run) -> None:
        """One span per request reached the collector: requests in flight when the
        client stopped add up to one per connection, and each exporter may still
        hold a partial batch (Envoy's 5 spans, flushed after 5 s) per worker, as may
        the warm-up's before the run."""
        d, n = run.data, run.data["requests"]
        if d.get("spans") is None:
            run.invalid("the OTLP collector did not answer")
            return
        slack = 5 * int(self.s.workers) + 5
        if not n - slack <= d["spans"] <= n + sc.conns + slack:
            run.invalid(f"the collector got {d['spans']} spans for {n} requests")

    @staticmethod
    def verify_h2(sc: Scenario, run: Run, h: dict) -> None:
        """h2load's own counts must agree with each other and with its log."""
        if h["succeeded"] != h["done"]:
            run.invalid(f"h2load: {h['done']} done but {h['succeeded']} succeeded")
        if h["log_rows"] != h["done"]:
            run.invalid(f"h2load log has {h['log_rows']} rows for {h['done']} requests "
                        "(latency percentiles incomplete)")
        if not 0 <= h["started"] - h["done"] <= sc.conns * sc.streams:
            run.invalid(f"h2load: {h['started']} started, {h['done']} done "
                        f"(more than {sc.conns * sc.streams} in flight)")

    def measure_idle(self, sc: Scenario, p, run: Run) -> None:
        n = 300 if self.quick else sc.idle_conns
        time.sleep(0.5)
        before = util.rss_bytes(p.pid)
        holder = loadgen.IdleHolder(p.port, n)
        try:
            holder.open()
            time.sleep(1.0 if self.quick else 2.0)
            after, alive = util.rss_bytes(p.pid), holder.alive()
            peak = util.peak_rss_bytes(p.pid)
        finally:
            holder.close()
        d = run.data
        d.update({"idle_conns": n, "ok": holder.ok, "alive": alive, "rss_before": before,
                  "rss": after, "peak_rss": peak, "requests": holder.ok,
                  "rss_per_conn": (after - before) / alive if alive else None})
        if holder.ok == 0:
            run.invalid("zero requests")
        elif holder.ok < n or alive < n:
            run.invalid(f"{holder.ok} of {n} answered 200, {alive} still open")


BLOB_SIZES = {"/blob/64k": 64 * 1024, "/blob/1m": 1024 * 1024}


class Churner:
    """Replaces the peer's config every second while the load runs."""

    def __init__(self, peer) -> None:
        self.peer, self.count, self.ok, self.notes = peer, 0, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        i = 0
        while not self._stop.wait(1.0):
            i += 1
            try:
                ok, note = self.peer.swap(i)
            except Exception as exc:   # report, keep going
                ok, note = False, f"{type(exc).__name__}: {exc}"
            self.count += 1
            self.ok += ok
            if not ok:
                self.notes.append(note)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def round_order(peers: list, r: int) -> list:
    """Round `r`'s order of `peers`: rotated by one place each round, so no peer runs
    first in every round, and of two peers next to each other each runs first in some
    round (a by-hand A/B on this VM read two builds, equal in the suite, 14% apart with
    the same one first in every round, and 2% apart the other way with the order
    reversed). Fixed when a peer measures another's process (`host_peer`), which must
    be up before it."""
    if not peers or any(getattr(p, "host_peer", None) is not None for p in peers):
        return peers
    k = (r - 1) % len(peers)
    return peers[k:] + peers[:k]


def summary(run: Run) -> str:
    d = run.data
    parts = []
    if "rss_per_conn" in d and d["rss_per_conn"] is not None:
        parts.append(f"{d['rss_per_conn'] / 1024:.1f} KiB/conn, {d['ok']} conns")
    if "rps" in d:
        parts.append(f"{d['rps']:,.0f} rps")
        parts.append(f"p99 {d['lat_us']['p99'] / 1000:.2f} ms")
    if d.get("cpu_us_per_req") is not None:
        parts.append(f"{d['cpu_us_per_req']:.1f} us CPU/req")
    if d.get("kernel_share") is not None:
        parts.append(f"{d['kernel_share'] * 100:.0f}% kernel")
    if d.get("spans") is not None:
        parts.append(f"{d['spans']} spans")
    if d.get("syscalls_per_req") is not None:
        parts.append(f"{d['syscalls_per_req']:.2f} syscalls/req")
    if "mb_per_s" in d:
        parts.append(f"{d['mb_per_s']:.0f} MB/s")
    if d.get("handshakes_per_s") is not None:
        parts.append(f"{d['handshakes_per_s']:,.0f} handshakes/s")
    if d.get("cpu_us_per_handshake") is not None:
        parts.append(f"{d['cpu_us_per_handshake']:.1f} us CPU/handshake")
    if any((d.get("tls") or {}).values()):
        parts.append("resumed " + ", ".join(
            f"{side} {c['resumed']}/{c['handshakes']}" for side, c in d["tls"].items() if c))
    if "pushes" in d:
        p50, top = d.get("push_to_route_p50_ms"), d.get("push_to_route_max_ms")
        ms = lambda v: "-" if v is None else f"{v:.1f}"   # noqa: E731
        parts.append(f"{d['pushes_reached']}/{d['pushes']} pushes reached, "
                     f"push->route p50 {ms(p50)} ms max {ms(top)} ms, "
                     f"{d['errors_total']} failed requests")
    if "swaps" in d:
        parts.append(f"{d['swaps_ok']}/{d['swaps']} reloads, {d['errors_total']} errors")
    if d.get("other_cpu_pct", 0) > NOISY_PCT:
        parts.append(f"NOISY: other processes used {d['other_cpu_pct']:.0f}% of a CPU")
    status = "ok" if run.valid else "INVALID: " + "; ".join(run.reasons)
    return ", ".join(parts + [f"[{status}]"])
