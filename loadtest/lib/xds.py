"""The xds-churn scenario: a management server per proxy (lib/xds_server.py, in
loadtest/.venv's Python with grpcio), the bootstrap both Outrigger and Envoy run
(configs/xds-bootstrap.yaml), and the churner that pushes a new route and cluster
every second and times how long each push takes to reach a request."""

from __future__ import annotations

import http.client as httpclient
import json
import statistics
import threading
import time
from pathlib import Path

from .util import CONFIGS, HarnessError, http, kill, render, spawn, wait_until, free_port

SERVER = Path(__file__).with_name("xds_server.py")
# How long a push may take to reach a request before it counts as not reached.
REACH_LIMIT = 5.0
# Pause between two probes of the new route (bounds the probe load to ~500 req/s).
PROBE_GAP = 0.002


class Mgmt:
    """One management server, for one proxy process (started before it, stopped
    with it)."""

    def __init__(self, s, listener_port: int, upstream_port: int, name: str) -> None:
        self.s, self.name = s, name
        self.port, self.control = free_port(), free_port()
        self.listener_port, self.upstream_port = listener_port, upstream_port
        self.proc = None

    @property
    def log_path(self) -> Path:
        return self.s.work / f"{self.name}-xds.log"

    def start(self) -> None:
        t = self.s.tools
        self.log_path.write_text("")
        self.proc = spawn(["taskset", "-c", self.s.client_cpus, t["xds-python"], SERVER,
                           "--descriptors", t["xds-descriptors"], "--port", self.port,
                           "--control", self.control, "--listener-port", self.listener_port,
                           "--upstream-port", self.upstream_port], self.log_path)
        wait_until(lambda: self.status() is not None, 20, "xDS management server",
                   self.proc, self.log_path)

    def stop(self) -> None:
        kill(self.proc)
        self.proc = None

    def status(self) -> dict | None:
        status, body = http("GET", f"http://127.0.0.1:{self.control}/status", timeout=2)
        try:
            return json.loads(body) if status == 200 else None
        except ValueError:
            return None

    def push(self) -> tuple[int, float]:
        """A new version of every changed type, sent to every stream: (version,
        CLOCK_MONOTONIC time of the send, comparable with this process's clock)."""
        status, body = http("POST", f"http://127.0.0.1:{self.control}/push", timeout=5,
                            body=b"")
        if status != 200:
            raise HarnessError(f"xDS push failed: {status} {body[:100]!r}")
        d = json.loads(body)
        return int(d["version"]), float(d["at"])

    def bootstrap(self, admin_port: int, out: Path) -> Path:
        """The bootstrap both peers run: ADS (state of the world) to this server."""
        return render(CONFIGS / "xds-bootstrap.yaml", out,
                      {"admin_port": admin_port, "xds_port": self.port})


class Prober:
    """GET on one keep-alive connection to the proxy (a new one after an error)."""

    def __init__(self, port: int) -> None:
        self.port, self.conn = port, None

    def status(self, path: str) -> int | None:
        try:
            if self.conn is None:
                self.conn = httpclient.HTTPConnection("127.0.0.1", self.port, timeout=2)
            self.conn.request("GET", path)
            r = self.conn.getresponse()
            r.read()
            if r.getheader("connection", "").lower() == "close":
                self.close()
            return r.status
        except (OSError, httpclient.HTTPException):
            self.close()
            return None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class XdsChurner:
    """Every second: push, then probe `/xds-N` until it answers 200 (the new route
    to the new cluster, warm) and record push -> first 200 on the new route."""

    def __init__(self, peer) -> None:
        self.peer, self.mgmt = peer, peer.xds
        self.count, self.reached, self.times, self.notes = 0, 0, [], []
        self.last_status: dict[int, int] = {}   # status of the probes before the 200
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        probe = Prober(self.peer.port)
        next_at = time.monotonic() + 1.0
        try:
            while not self._stop.wait(max(0.0, next_at - time.monotonic())):
                # One push a second; a push that took longer to reach a request
                # delays the next one rather than overlapping it.
                next_at = max(next_at + 1.0, time.monotonic())
                try:
                    n, at = self.mgmt.push()
                except (HarnessError, OSError, ValueError) as exc:
                    self.notes.append(str(exc)[:200])
                    continue
                path, deadline = f"/xds-{n}", at + REACH_LIMIT
                while time.monotonic() < deadline and not self._stop.is_set():
                    code = probe.status(path)
                    if code == 200:
                        self.count += 1
                        self.reached += 1
                        self.times.append(time.monotonic() - at)
                        break
                    self.last_status[code or 0] = self.last_status.get(code or 0, 0) + 1
                    time.sleep(PROBE_GAP)
                else:
                    # A push still on its way when the run ends is not counted.
                    if not self._stop.is_set():
                        self.count += 1
                        self.notes.append(f"push {n}: {path} not 200 within {REACH_LIMIT} s")
        finally:
            probe.close()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=REACH_LIMIT + 5)

    def results(self) -> dict:
        """The run's figures: pushes, how many reached a request, the times (ms),
        and the server's count of NACKs and of the RDS pushes the proxy ACKed."""
        st = self.mgmt.status() or {}
        times = sorted(t * 1000 for t in self.times)
        rds_acks = (st.get("acks") or {}).get(
            "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", {})
        return {"pushes": self.count, "pushes_reached": self.reached,
                "push_to_route_ms": [round(t, 2) for t in times],
                "push_to_route_p50_ms": statistics.median(times) if times else None,
                "push_to_route_max_ms": times[-1] if times else None,
                "probe_statuses_before": {str(k): v for k, v in self.last_status.items()},
                "nacks": len(st.get("nacks") or []), "nack_notes": (st.get("nacks") or [])[:3],
                # RDS versions the proxy ACKed, the initial one (version 0) aside.
                "rds_acked": sum(1 for v in rds_acks if not v.endswith("-0")), "xds_streams_opened": st.get("opened"),
                "push_notes": self.notes[:3]}
