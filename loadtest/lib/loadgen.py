"""Load generators: wrk (closed loop), oha (open loop), h2load (HTTP/2 closed
loop) and a small idle-connection holder. All of them target 127.0.0.1 only and
are bounded."""

from __future__ import annotations

import errno
import json
import re
import selectors
import socket
import time

from . import capture, tls
from .util import CONFIGS, WORK, HarnessError, run


def _assert_loopback(url: str, netns: list | None = None) -> None:
    # h1-captured's client runs in its own network namespace, where nginx's veth
    # address is the captured destination (lib/capture.py).
    if netns and url.startswith(f"http://{capture.HOST_IP}:"):
        return
    if not url.startswith(("http://127.0.0.1:", "https://127.0.0.1:")):
        raise HarnessError(f"refusing to send load to {url}: loopback only")


def _result(tool, requests, duration_s, nbytes, errors, lat_us, non2xx, raw_tail=""):
    return {
        "tool": tool, "requests": int(requests), "duration_s": duration_s,
        "rps": requests / duration_s if duration_s > 0 else 0.0,
        "bytes": int(nbytes), "errors": errors,
        "socket_errors": sum(v for k, v in errors.items() if k != "status"),
        "non2xx": int(non2xx), "lat_us": lat_us, "raw_tail": raw_tail,
    }


def wrk(tools, url: str, conns: int, duration: int, cpus: str,
        body_bytes: int = 0, path: str = "/", env: dict | None = None,
        headers: tuple = (), netns: list | None = None) -> dict:
    """Closed loop: `conns` keep-alive connections as fast as they go. `env`: the
    TLS client environment (tls.TlsFiles.client_env) for an https:// URL: the
    result then has the shim's handshake counts. `headers`: extra request headers
    ("Connection: close": wrk reconnects after every response). `netns`: the
    command prefix that runs wrk in h1-captured's network namespace."""
    _assert_loopback(url, netns)
    threads = max(1, min(len(cpus.split(",")), conns))
    hdrs = [a for h in headers for a in ("-H", h)]
    cmd = [*(netns or []), "taskset", "-c", cpus, tools["wrk"], "-t", str(threads), "-c", str(conns),
           "-d", f"{duration}s", "--timeout", "5s", *hdrs,
           "-s", str(CONFIGS / "wrk-report.lua"), url + path]
    if body_bytes:
        cmd += ["--", str(body_bytes)]
    res = run(cmd, timeout=duration + 30, check=False, env=env)
    line = next((l for l in res.stdout.splitlines() if l.startswith("WRK_JSON ")), None)
    if res.returncode != 0 or line is None:
        raise HarnessError(f"wrk failed ({res.returncode}): "
                           f"{(res.stderr or res.stdout).strip()[-300:]}")
    d = json.loads(line[len("WRK_JSON "):])
    errors = {k: int(d[k]) for k in ("connect", "read", "write", "timeout", "status")}
    lat = {k: d[k] for k in ("p50", "p90", "p99", "p999", "max", "mean")}
    # wrk counts 4xx/5xx as "status" errors; the upstream never answers 3xx.
    out = _result("wrk", d["requests"], d["duration_us"] / 1e6, d["bytes"], errors,
                  lat, errors["status"], res.stdout.strip()[-400:])
    if env:
        out["tls_client"] = tls.client_counts(res.stderr or "")
    return out


def oha(tools, url: str, rate: int, conns: int, duration: int, cpus: str,
        tls_args: tuple = (), body_bytes: int = 0) -> dict:
    """Open loop: `rate` requests/s on `conns` connections, latency measured
    from each request's scheduled start (--latency-correction). rate 0: closed
    loop, as fast as the connections go. `tls_args`: --cacert/--cert/--key.
    `body_bytes`: POST a body of that many bytes (with its Content-Length)."""
    _assert_loopback(url)
    pace = ["-q", str(rate), "--latency-correction"] if rate else []
    if body_bytes:
        pace += ["-m", "POST", "-d", "x" * body_bytes]
    cmd = ["taskset", "-c", cpus, tools["oha"], "--no-tui", "--output-format", "json",
           "-z", f"{duration}s", "-c", str(conns), *pace, *map(str, tls_args),
           "--wait-ongoing-requests-after-deadline", url + "/"]
    res = run(cmd, timeout=duration + 60, check=False)
    try:
        d = json.loads(res.stdout)
    except json.JSONDecodeError:
        raise HarnessError(f"oha failed ({res.returncode}): "
                           f"{(res.stderr or res.stdout).strip()[-300:]}")
    summary = d.get("summary", {})
    codes = {int(k): int(v) for k, v in (d.get("statusCodeDistribution") or {}).items()}
    errs = d.get("errorDistribution") or {}
    ok = sum(v for k, v in codes.items() if 200 <= k < 300)
    non2xx = sum(v for k, v in codes.items() if not 200 <= k < 300)
    pct = d.get("latencyPercentiles") or {}
    sec = lambda key: (pct.get(key) or 0.0) * 1e6   # noqa: E731  seconds -> us
    lat = {"p50": sec("p50"), "p90": sec("p90"), "p99": sec("p99"), "p999": sec("p99.9"),
           "max": (summary.get("slowest") or 0) * 1e6,
           "mean": (summary.get("average") or 0) * 1e6}
    total_s = summary.get("total") or float(duration)
    errors = {"other": sum(int(v) for v in errs.values()), "status": non2xx}
    out = _result("oha", ok + non2xx, total_s, summary.get("sizePerSec", 0) * total_s,
                  errors, lat, non2xx, json.dumps(errs)[:400])
    out["rate"] = rate
    return out


_H2_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def _percentile(sorted_xs: list, q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_xs:
        return 0.0
    rank = max(1, -(-len(sorted_xs) * q // 100))   # ceil(n * q / 100)
    return float(sorted_xs[int(min(rank, len(sorted_xs))) - 1])


def h2load(tools, url: str, conns: int, streams: int, duration: int, cpus: str,
           requests: int = 0, h1: bool = False) -> dict:
    """HTTP/2 over cleartext with prior knowledge (h2load's default for http://):
    `conns` connections with up to `streams` concurrent streams each, closed
    loop for `duration` seconds, or for exactly `requests` requests when given
    (`duration` then only bounds the wait). `h1`: HTTP/1.1 keep-alive instead,
    one request at a time per connection (streams=1). h2load itself prints only
    min/max/mean/sd of the request time, so the percentiles come from its
    per-request log (--log-file: one row per finished request with its status and
    the microseconds from the stream's start to the end of its response)."""
    _assert_loopback(url)
    threads = max(1, min(len(cpus.split(",")), conns))
    log_file = WORK / "h2load-requests.tsv"
    log_file.unlink(missing_ok=True)
    amount = ["-n", str(requests)] if requests else ["-D", str(duration)]
    cmd = ["taskset", "-c", cpus, tools["h2load"], "-t", str(threads), "-c", str(conns),
           "-m", str(streams), *amount, *(["--h1"] if h1 else []),
           f"--log-file={log_file}", url + "/"]
    res = run(cmd, timeout=duration + 30, check=False)
    out = res.stdout
    fin = re.search(r"^finished in ([\d.]+)(s|ms|us), ([\d.]+) req/s", out, re.M)
    req = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                    r"(\d+) failed, (\d+) errored, (\d+) timeout", out, re.M)
    codes = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out, re.M)
    traffic = re.search(r"^traffic: .*?\((\d+)\) total", out, re.M)
    if not (fin and req and codes):
        log_file.unlink(missing_ok=True)
        raise HarnessError(f"h2load failed ({res.returncode}): "
                           f"{(res.stderr or out).strip()[-300:]}")
    duration_s = float(fin.group(1)) * _H2_UNITS[fin.group(2)]
    total, started, done, succeeded, failed, errored, timeout = map(int, req.groups())
    n2xx, n3xx, n4xx, n5xx = map(int, codes.groups())
    # Per-request rows: start (us since epoch), status (-1: failed stream), us.
    lat, statuses = [], {}
    try:
        with open(log_file) as fh:
            for line in fh:
                cols = line.split("\t")
                if len(cols) >= 3:
                    statuses[cols[1]] = statuses.get(cols[1], 0) + 1
                    lat.append(int(cols[2]))
    except OSError:
        pass
    finally:
        log_file.unlink(missing_ok=True)
    lat.sort()
    pct = {"p50": _percentile(lat, 50), "p90": _percentile(lat, 90),
           "p99": _percentile(lat, 99), "p999": _percentile(lat, 99.9),
           "max": float(lat[-1]) if lat else 0.0,
           "mean": sum(lat) / len(lat) if lat else 0.0}
    # h2load counts a finished stream as "succeeded" whatever its status, and
    # counts status codes when the response head arrives (so a response still
    # in flight at the end may be in "2xx" but not in "done"): the non-2xx
    # count is the larger of its 3xx-5xx counts and the log's non-2xx rows.
    non2xx = max(n3xx + n4xx + n5xx,
                 sum(v for k, v in statuses.items() if not k.startswith("2")))
    errors = {"failed": failed, "errored": errored, "timeout": timeout, "status": non2xx}
    result = _result("h2load", done, duration_s, int(traffic.group(1)) if traffic else 0,
                     errors, pct, non2xx, out.strip()[-600:])
    # "failed" already includes the errored and timed-out streams.
    result["socket_errors"] = max(failed, errored + timeout)
    result["rps"] = float(fin.group(3))
    result["h2"] = {"total": total, "started": started, "done": done,
                    "succeeded": succeeded, "status_2xx": n2xx, "status_3xx": n3xx,
                    "status_4xx": n4xx, "status_5xx": n5xx, "log_rows": len(lat),
                    "log_statuses": statuses, "streams": streams}
    return result


class IdleHolder:
    """Opens `n` keep-alive connections, sends one GET on each (at most
    `window` in flight), checks each answer is 200, then keeps them open."""

    def __init__(self, port: int, n: int, window: int = 64, timeout: float = 60) -> None:
        self.port, self.n, self.window, self.timeout = port, n, window, timeout
        self.socks: list[socket.socket] = []
        self.ok = 0
        self.failed = 0

    def open(self) -> None:
        req = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n".encode()
        sel = selectors.DefaultSelector()
        deadline = time.monotonic() + self.timeout
        started = 0
        inflight: dict[socket.socket, bytearray] = {}
        try:
            while (started < self.n or inflight) and time.monotonic() < deadline:
                while started < self.n and len(inflight) < self.window:
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.setblocking(False)
                    err = s.connect_ex(("127.0.0.1", self.port))
                    if err not in (0, errno.EINPROGRESS):
                        s.close()
                        self.failed += 1
                    else:
                        inflight[s] = bytearray()
                        self.socks.append(s)
                        sel.register(s, selectors.EVENT_WRITE)
                    started += 1
                for key, mask in sel.select(timeout=0.5):
                    s = key.fileobj
                    if mask & selectors.EVENT_WRITE:
                        try:
                            s.send(req)
                        except OSError:
                            self._done(sel, inflight, s, False)
                            continue
                        sel.modify(s, selectors.EVENT_READ)
                    else:
                        self._read(sel, inflight, s)
        finally:
            for s in list(inflight):
                self._done(sel, inflight, s, False)
            sel.close()

    def _read(self, sel, inflight, s) -> None:
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._done(sel, inflight, s, False)
            return
        buf = inflight[s]
        buf += data
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(buf[:head_end]).decode("latin-1").lower()
        length = 0
        for line in head.split("\r\n")[1:]:
            if line.startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        if len(buf) >= head_end + 4 + length:
            self._done(sel, inflight, s, head.startswith("http/1.1 200"))

    def _done(self, sel, inflight, s, ok: bool) -> None:
        sel.unregister(s)
        inflight.pop(s, None)
        if ok:
            self.ok += 1
        else:
            self.failed += 1

    def alive(self) -> int:
        """Connections still open (peer has not closed them)."""
        n = 0
        for s in self.socks:
            try:
                data = s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                n += 1 if data else 0
            except BlockingIOError:
                n += 1
            except OSError:
                pass
        return n

    def close(self) -> None:
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        self.socks = []
