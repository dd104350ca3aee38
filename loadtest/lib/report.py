"""Markdown report, raw JSON and SVG charts from the runs of one suite run."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

from . import svg
from .scenarios import BY_NAME, NOISY_PCT, SCENARIOS, SYSCALL_KINDS
from .util import REPO

PCTS = [("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9")]
MiB = 1024 * 1024


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


class Data:
    def __init__(self, runs) -> None:
        self.runs = runs

    def of(self, sc, peer, valid=True):
        return [r for r in self.runs if r.scenario == sc and r.peer == peer
                and (r.valid or not valid)]

    def peers(self, sc):
        seen = []
        for r in self.runs:
            if r.scenario == sc and r.peer not in seen:
                seen.append(r.peer)
        return seen

    def median(self, sc, peer, key):
        return med([key(r.data) for r in self.of(sc, peer)])

    def ratio(self, sc, peer, key, base="envoy"):
        """Median over rounds of peer/base, pairing runs of the same round."""
        b = {r.round: key(r.data) for r in self.of(sc, base)}
        xs = [key(r.data) / b[r.round] for r in self.of(sc, peer)
              if b.get(r.round) and key(r.data) is not None]
        return med(xs)

    def added(self, sc, peer, key, base="direct"):
        """Median over rounds of peer - base (latency added over no proxy)."""
        b = {r.round: key(r.data) for r in self.of(sc, base)}
        xs = [key(r.data) - b[r.round] for r in self.of(sc, peer)
              if b.get(r.round) is not None and key(r.data) is not None]
        return med(xs)


def lat(p):
    return lambda d: d["lat_us"][p] if "lat_us" in d else None


def get(k):
    return lambda d: d.get(k)


def f_ms(us):
    return "—" if us is None else f"{us / 1000:.2f}"


def f_num(v, nd=0):
    return "—" if v is None else f"{v:,.{nd}f}"


def f_ratio(v):
    return "—" if v is None else f"{v:.2f}×"


def f_mib(b):
    return "—" if b is None else f"{b / MiB:.1f}"


def table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def valid_cell(data, sc, peer):
    all_runs, ok = data.of(sc, peer, valid=False), data.of(sc, peer)
    cell = f"{len(ok)}/{len(all_runs)}"
    return cell if len(ok) == len(all_runs) else f"**{cell} (INVALID runs)**"


def f_pct(v):
    return "—" if v is None else f"{v * 100:.0f}%"


def f_resumed(data, sc, peer, side):
    """Resumed / all handshakes over the peer's valid runs, as `side` (client:
    the shim in wrk; server: the proxy's own stats) counted them."""
    hs = rs = 0
    for r in data.of(sc, peer, valid=False):
        c = (r.data.get("tls") or {}).get(side)
        if c:
            hs, rs = hs + c["handshakes"], rs + c["resumed"]
    return f"{rs / hs * 100:.1f}% of {hs:,}" if hs else "—"


def f_negotiated(data, sc, peer):
    """Version, suite and group the server's stats saw (Outrigger, Envoy)."""
    seen = sorted({r.data["tls_negotiated"] for r in data.of(sc, peer, valid=False)
                   if r.data.get("tls_negotiated")})
    return "; ".join(seen) or "—"


def extra_columns(data: Data, name: str, ctx: dict):
    """Columns shown only where measured (so older raw data re-renders as it
    was): kernel share and syscalls per request of each run, and the untimed
    strace sample and allocations per request. -> (headers, peer -> cells)."""
    sc, cols = BY_NAME[name], []
    runs = [r for r in data.runs if r.scenario == name]
    if sc.kind not in SYSCALL_KINDS:
        return [], lambda p: []
    if any(r.data.get("kernel_share") is not None for r in runs):
        cols.append(("kernel share", lambda p: f_pct(data.median(name, p, get("kernel_share")))))
    if any(r.data.get("syscalls_per_req") is not None for r in runs):
        cols.append(("syscalls/req", lambda p: f_num(
            data.median(name, p, get("syscalls_per_req")), 2)))
    strace = (ctx.get("strace") or {}).get(name)
    if strace:
        cols.append(("syscalls/req (strace sample)",
                     lambda p: f_num((strace.get(p) or {}).get("per_req"), 2)))
    al = (ctx.get("allocs") or {}).get(name)
    if al:
        cols.append(("allocs/req", lambda p: f_num((al.get(p) or {}).get("per_req"), 2)))
    return [h for h, _ in cols], lambda p: [f(p) for _, f in cols]


def scenario_table(data: Data, name: str, ctx: dict) -> str:
    sc = BY_NAME[name]
    rows = []
    extra_heads, extra = extra_columns(data, name, ctx)
    for p in data.peers(name):
        v = valid_cell(data, name, p)
        m = lambda key: data.median(name, p, key)   # noqa: E731
        rt = lambda key: f_ratio(data.ratio(name, p, key)) if p != "envoy" else "1.00×"  # noqa
        if sc.kind == "tls-hs":
            rows.append([p, v, f_num(m(get("handshakes_per_s"))), rt(get("handshakes_per_s")),
                         f_ms(m(lat("p50"))), f_ms(m(lat("p99"))),
                         f_num(m(get("cpu_us_per_handshake")), 1),
                         rt(get("cpu_us_per_handshake")),
                         f_resumed(data, name, p, "client"), f_resumed(data, name, p, "server"),
                         f_mib(m(get("peak_rss"))), f_negotiated(data, name, p)])
        elif sc.kind == "tls-ka":
            rows.append([p, v, f_num(m(get("rps"))), rt(get("rps"))]
                        + [f_ms(m(lat(k))) for k, _ in PCTS]
                        + [f_num(m(get("cpu_us_per_req")), 1), rt(get("cpu_us_per_req")),
                           f_mib(m(get("peak_rss"))), rt(get("peak_rss")),
                           f_num(m(lambda d: ((d.get("tls") or {}).get("server") or {})
                                   .get("handshakes"))), f_negotiated(data, name, p)])
        elif sc.kind in ("closed", "h2"):
            rows.append([p, v, f_num(m(get("rps"))), rt(get("rps"))]
                        + [f_ms(m(lat(k))) for k, _ in PCTS]
                        + [f_num(m(get("cpu_us_per_req")), 1), rt(get("cpu_us_per_req")),
                           f_mib(m(get("peak_rss"))), rt(get("peak_rss"))])
        elif sc.kind == "open":
            rows.append([p, v, f_num(m(get("rps")))] + [f_ms(m(lat(k))) for k, _ in PCTS]
                        + [f_ms(data.added(name, p, lat(k))) if p != "direct" else "—"
                           for k in ("p50", "p99", "p999")]
                        + [f_num(m(get("cpu_us_per_req")), 1), rt(get("cpu_us_per_req"))])
        elif sc.kind == "ab":
            diffs = [x for r in data.of(name, p) for x in r.data.get("pair_diffs") or []]
            rows.append([p, v, f_num(m(get("plain_cpu_us_per_req")), 1),
                         f_num(m(get("cpu_us_per_req")), 1),
                         f_num(m(get("added_us_per_req")), 2), f_num(med(diffs), 2),
                         f"{min(diffs):.1f} to {max(diffs):.1f}" if diffs else "—",
                         f_num(m(get("exporter_us_per_req")), 2),
                         f_num(m(get("spans_per_req")), 3), f_num(m(get("rps"))),
                         f_ms(m(lat("p99")))])
        elif sc.kind == "flaky":
            rows.append([p, v, f_num(m(get("rps"))),
                         f"{m(get('success')) * 100:.3f}%" if m(get("success")) is not None
                         else "—",
                         f_num(m(get("tries_per_req")), 3)]
                        + [f_ms(m(lat(k))) for k, _ in PCTS]
                        + [f_num(m(get("cpu_us_per_req")), 1), rt(get("cpu_us_per_req"))])
        elif sc.kind == "body":
            rows.append([p, v, f_num(m(get("mb_per_s"))), rt(get("mb_per_s")),
                         f_ms(m(lat("p50"))), f_ms(m(lat("p99"))),
                         f_num(m(get("cpu_s_per_gb")), 2), rt(get("cpu_s_per_gb")),
                         f_mib(m(get("peak_rss"))), rt(get("peak_rss"))])
        elif sc.kind == "idle":
            rows.append([p, v, f_mib(m(get("rss_before"))), f_mib(m(get("rss"))),
                         f_num(m(lambda d: d["rss_per_conn"] / 1024
                                 if d.get("rss_per_conn") is not None else None), 1),
                         rt(get("rss_per_conn"))])
        elif sc.kind == "churn":
            reloads = [f"{r.data.get('swaps_ok', 0)}/{r.data.get('swaps', 0)}"
                       for r in data.of(name, p, valid=False) if r.data]
            errors = [f_num(r.data.get("errors_total"))
                      for r in data.of(name, p, valid=False) if r.data]
            rows.append([p, v, f_num(m(get("rps"))), rt(get("rps")), f_ms(m(lat("p99"))),
                         ", ".join(reloads) or "—", ", ".join(errors) or "—",
                         f_num(m(get("cpu_us_per_req")), 1)])
        elif sc.kind == "xds":
            per_run = lambda f: ", ".join(f(r.data) for r in data.of(name, p, valid=False)  # noqa: E731
                                          if r.data and "pushes" in r.data) or "—"
            rows.append([p, v, f_num(m(get("rps"))), f_ms(m(lat("p99"))),
                         per_run(lambda d: f_num(d.get("errors_total"))),
                         per_run(lambda d: f"{d['pushes_reached']}/{d['pushes']}"),
                         f_num(m(get("push_to_route_p50_ms")), 1),
                         f_num(m(get("push_to_route_max_ms")), 1),
                         per_run(lambda d: f"{d.get('rds_acked')}/{d['nacks']}"),
                         f_num(m(get("cpu_us_per_req")), 1)])
    heads = {
        "closed": ["peer", "valid", "req/s", "req/s vs Envoy", "p50 ms", "p90 ms", "p99 ms",
                   "p99.9 ms", "CPU µs/req", "CPU vs Envoy", "peak RSS MiB",
                   "RSS vs Envoy"],
        "open": ["peer", "valid", "achieved req/s", "p50 ms", "p90 ms", "p99 ms",
                 "p99.9 ms", "added p50 ms", "added p99 ms", "added p99.9 ms",
                 "CPU µs/req", "CPU vs Envoy"],
        "flaky": ["peer", "valid", "achieved req/s", "success (2xx)", "upstream tries/req",
                  "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "CPU µs/req", "CPU vs Envoy"],
        "body": ["peer", "valid", "body MB/s", "MB/s vs Envoy", "p50 ms", "p99 ms",
                 "CPU s/GB", "CPU vs Envoy", "peak RSS MiB", "RSS vs Envoy"],
        "idle": ["peer", "valid", "RSS before MiB", f"RSS with {sc.idle_conns} conns MiB",
                 "KiB per conn", "vs Envoy"],
        "churn": ["peer", "valid", "req/s", "req/s vs Envoy", "p99 ms",
                  "reloads ok/done per run", "errors per run (non-2xx + socket)",
                  "CPU µs/req"],
        "xds": ["peer", "valid", "req/s", "p99 ms", "failed requests per run "
                "(non-2xx + socket)", "pushes reaching a request / done, per run",
                "push → first request on the new route, p50 ms",
                "push → first request, max ms", "RDS versions ACKed / NACKs, per run",
                "CPU µs/req"],
    }
    heads["h2"] = heads["closed"]   # h2load is a closed loop too
    heads["ab"] = ["peer", "valid", "plain CPU µs/req", "traced CPU µs/req", "added µs/req",
                   "added, median pair", "pairs' range", "exporter µs/req", "spans/req",
                   "traced req/s", "traced p99 ms"]
    heads["tls-hs"] = ["peer", "valid", "handshakes/s", "vs Envoy", "p50 ms", "p99 ms",
                       "CPU µs/handshake", "CPU vs Envoy", "resumed (client)",
                       "resumed (server)", "peak RSS MiB", "negotiated (server stats)"]
    heads["tls-ka"] = heads["closed"] + ["handshakes (server)", "negotiated (server stats)"]
    if extra_heads:
        rows = [row + extra(row[0]) for row in rows]
    return table(heads[sc.kind] + extra_heads, rows)


BASE = "outrigger-base"


def _base_keys(kind: str):
    """(value, formatter, higher is worse) for throughput, CPU and p99."""
    if kind == "body":
        return [(get("mb_per_s"), f_num, False),
                (get("cpu_s_per_gb"), lambda v: f_num(v, 2), True), (lat("p99"), f_ms, True)]
    return [(get("rps"), f_num, False), (get("cpu_us_per_req"), lambda v: f_num(v, 1), True),
            (lat("p99"), f_ms, True)]


def baseline_section(data: Data, ctx: dict) -> list[str]:
    """outrigger against outrigger-base (--baseline), scenario by scenario."""
    names = [s.name for s in SCENARIOS if s.kind != "idle"
             and any(r.scenario == s.name and r.peer == BASE for r in data.runs)]
    if not names:
        return []
    b = ctx.get("baseline") or {}
    rows = []
    exporter = lambda d: d.get("exporter_cpu_us_per_req")  # noqa: E731
    traced = any(data.median(n, p, exporter) is not None
                 for n in names for p in ("outrigger", BASE))
    for name in names:
        row = [name]
        for key, fmt, worse_up in _base_keys(BY_NAME[name].kind):
            r = data.ratio(name, "outrigger", key, base=BASE)
            cell = f_ratio(r)
            if r is not None and (r > 1.05 if worse_up else r < 0.95):
                cell = f"**{cell}**"
            row += [fmt(data.median(name, "outrigger", key)),
                    fmt(data.median(name, BASE, key)), cell]
        al = (ctx.get("allocs") or {}).get(name)
        row.append(" / ".join(f_num((al.get(p) or {}).get("per_req"), 2)
                              for p in ("outrigger", BASE)) if al else "—")
        if traced:
            ex = [data.median(name, p, exporter) for p in ("outrigger", BASE)]
            row.append(" / ".join(f_num(x, 2) for x in ex) if any(
                x is not None for x in ex) else "—")
        rows.append(row)
    heads = ["scenario"]
    for lab in ("req/s (bodies: MB/s)", "CPU µs/req (bodies: s/GB)", "p99 ms"):
        heads += [lab, "base", "ratio"]
    return ["## Outrigger against its baseline", "",
            f"`outrigger-base` is Outrigger built at `{b.get('subject', '?')}` "
            f"(`--baseline {b.get('rev', '?')}`), run with the same config template and "
            "flags, in the same interleaved rounds. Medians over rounds; *ratio* is "
            "outrigger / outrigger-base, the median of per-round ratios; **bold**: more "
            "than 5% worse. The idle-connection scenario is in its own table below.", "",
            table(heads + ["allocs/req (outrigger / base)"]
                  + (["exporter µs/req (outrigger / base)"] if traced else []), rows), ""]


def policy_section(data: Data) -> list[str]:
    """What h1-policy's filters add to each proxy's CPU per request over the
    same Envoy bootstrap without them (h1-bootstrap) in the same run (issue
    bar: at most 1 µs for Outrigger). Runs without h1-bootstrap compare with
    h1-closed-32, whose Outrigger config is the native one."""
    policy = "h1-policy"
    plain = "h1-bootstrap" if any(r.scenario == "h1-bootstrap" for r in data.runs) \
        else "h1-closed-32"
    peers = [p for p in data.peers(policy) if data.of(plain, p)]
    if not peers:
        return []
    cpu = get("cpu_us_per_req")
    rows = []
    for p in peers:
        # Rounds of the two scenarios are separate starts of the proxy; pair
        # them by round number, as everything else here is.
        b = {r.round: cpu(r.data) for r in data.of(plain, p)}
        xs = [cpu(r.data) - b[r.round] for r in data.of(policy, p)
              if b.get(r.round) is not None and cpu(r.data) is not None]
        added = med(xs)
        rows.append([p, f_num(data.median(plain, p, cpu), 1),
                     f_num(data.median(policy, p, cpu), 1), f_num(added, 2),
                     f_num(data.median(policy, p, get("rps"))),
                     f_ms(data.median(policy, p, lat("p99")))])
    return [f"## Policy filters (h1-policy against {plain})", "",
            "The same proxy, the same load, with RBAC, a local rate limit that never "
            "limits and header mutation in front of the router "
            "(loadtest/configs/envoy-policy-filters.yaml; Outrigger runs the same Envoy "
            "bootstrap as Envoy). *Added* is the median over rounds of the per-round "
            "difference in CPU per request.", "",
            table(["peer", "plain CPU µs/req", "policy CPU µs/req", "added µs/req",
                   "policy req/s", "policy p99 ms"], rows), ""]


def round_diffs(data: Data, base: str, scen: str, p: str, val) -> list:
    """`val` of each run of `scen` minus that of `base` in the same round, for peer `p`
    (the rounds both have): the per-round differences the A/B tables take medians of."""
    b = {r.round: val(r.data) for r in data.of(base, p)}
    return [val(r.data) - b[r.round] for r in data.of(scen, p)
            if b.get(r.round) is not None and val(r.data) is not None]


def extensions_section(data: Data) -> list[str]:
    """What each extension adds to each proxy's CPU per request over the same Envoy
    bootstrap without it, at the same load, in the same run: ext-proc and ext-authz
    (open loop, 1k rps) over h1-bootstrap-1k, wasm (closed loop) over h1-bootstrap."""
    cpu = get("cpu_us_per_req")
    rows = []
    for ext, plain in (("ext-proc", "h1-bootstrap-1k"),
                       ("ext-proc-streamed", "h1-bootstrap-1k"),
                       ("ext-proc-streamed-request", "h1-bootstrap-1k-post"),
                       ("ext-authz", "h1-bootstrap-1k"), ("wasm", "h1-bootstrap")):
        for p in data.peers(ext):
            if not data.of(plain, p):
                continue
            xs = round_diffs(data, plain, ext, p, cpu)
            rows.append([ext, p, f_num(data.median(plain, p, cpu), 1),
                         f_num(data.median(ext, p, cpu), 1), f_num(med(xs), 2),
                         f_num(data.median(ext, p, get("rps"))),
                         f_ms(data.median(ext, p, lat("p99")))])
    if not rows:
        return []
    return ["## Extensions (ext-proc, ext-authz, wasm against the plain bootstrap)", "",
            "The same Envoy bootstrap for both proxies, with and without the extension, "
            "at the same load: ext-proc (headers; ext-proc-streamed: headers and the "
            "response body, STREAMED; ext-proc-streamed-request: headers and a 16 KiB "
            "request body, STREAMED, against h1-bootstrap-1k-post) and ext-authz at 1k "
            "requests/s in open loop (the "
            "test services on the client CPUs keep up with that rate) against "
            "h1-bootstrap-1k, wasm in closed loop against h1-bootstrap. *Added* is the "
            "median over rounds of the per-round difference in CPU per request.", "",
            table(["extension", "peer", "plain CPU µs/req", "with it CPU µs/req",
                   "added µs/req", "req/s", "p99 ms"], rows), ""]


def tracing_section(data: Data) -> list[str]:
    """What tracing every request costs each proxy in CPU per request (issue bar:
    at most 2 µs for Outrigger), h1-traced against the same load without tracing
    in the same run: h1-closed-32, and h1-bootstrap (the same Envoy bootstrap
    without the tracing block: the exact difference) when it ran."""
    traced = "h1-traced"
    bases = [b for b in ("h1-closed-32", "h1-bootstrap")
             if any(r.scenario == b for r in data.runs)]
    peers = [p for p in data.peers(traced) if any(data.of(b, p) for b in bases)]
    if not peers:
        return equal_rate_tracing(data)
    cpu = get("cpu_us_per_req")
    rows = []
    for p in peers:
        cells = [p, f_num(data.median(traced, p, cpu), 1)]
        for b in bases:
            # Pair the two scenarios' runs by round, as everywhere else here.
            xs = round_diffs(data, b, traced, p, cpu)
            cells += [f_num(data.median(b, p, cpu), 1), f_num(med(xs), 2)]
        cells += [f_num(data.median(traced, p, get("exporter_cpu_us_per_req")), 2),
                  f_num(data.median(traced, p, get("spans_per_req")), 3),
                  f_num(data.median(traced, p, get("rps"))),
                  f_ms(data.median(traced, p, lat("p99")))]
        rows.append(cells)
    heads = ["peer", "traced CPU µs/req"]
    for b in bases:
        heads += [f"{b} CPU µs/req", f"added over {b} µs/req"]
    heads += ["exporter µs/req", "spans/req", "traced req/s", "traced p99 ms"]
    return ["## Tracing (h1-traced)", "",
            "Every request traced (100% sampling) and exported over OTLP/HTTP to the "
            "suite's collector, the same Envoy bootstrap for both proxies "
            "(loadtest/configs/envoy-tracing.yaml: HCM `tracing` with "
            "`envoy.tracers.opentelemetry`, a generated request id). The proxy's CPU "
            "includes its exporter. *Added* is the median over rounds of the per-round "
            "difference in CPU per request; over h1-closed-32 it includes, for "
            "Outrigger, the bootstrap's defaults its native config leaves off (date, "
            "server, x-envoy-* headers, sanitizing); over h1-bootstrap it is tracing "
            "and the request id alone. *exporter*: the CPU of Outrigger's span "
            "exporter thread per request, read from its own /proc task. *spans/req*: "
            "spans the collector counted.", "",
            table(heads, rows), "", *equal_rate_tracing(data)]


# The equal-rate pairs (untraced, traced) and their rate.
EQUAL_RATE_PAIRS = [("h1-bootstrap-5k", "h1-traced-5k", "5k"),
                    ("h1-bootstrap-20k", "h1-traced-20k", "20k")]


def equal_rate_tracing(data: Data) -> list[str]:
    """h1-traced-5k over h1-bootstrap-5k (and the 20k pair): the same fixed rate
    traced and not, so the difference in CPU per request is tracing's alone (the
    closed-loop pair runs the traced loop slower, as the collector shares the client
    CPUs). The exporter thread's own CPU per request is read apart, from its
    /proc task (Outrigger only: Envoy exports from its workers)."""
    cpu = get("cpu_us_per_req")
    rows = []
    for plain, traced, rate in EQUAL_RATE_PAIRS:
        for p in data.peers(traced):
            if not data.of(plain, p):
                continue
            xs = round_diffs(data, plain, traced, p, cpu)
            rows.append([rate, p, f_num(data.median(plain, p, cpu), 1),
                         f_num(data.median(traced, p, cpu), 1), f_num(med(xs), 2),
                         ", ".join(f_num(x, 1) for x in xs),
                         f_num(data.median(traced, p, get("exporter_cpu_us_per_req")), 2),
                         f_num(data.median(traced, p, get("spans_per_req")), 3),
                         f_num(data.median(traced, p, get("rps"))),
                         f_ms(data.median(traced, p, lat("p99")))])
    if not rows:
        return []
    return ["## Tracing at an equal rate (h1-traced-5k/-20k against h1-bootstrap-5k/-20k)",
            "",
            "At one fixed rate in open loop, the same Envoy bootstrap with and without its "
            "tracing block: the proxy does the same work but for tracing. *Added* is the "
            "median over rounds of the per-round difference in CPU per request (each "
            "round's difference listed). *Exporter* is the CPU of Outrigger's span "
            "exporter thread (`outrigger-trace`) per request, read from its own /proc "
            "task: a part of *added* that no wake-up pattern confounds.", "",
            table(["rate", "peer", "untraced CPU µs/req", "traced CPU µs/req",
                   "added µs/req", "per round", "exporter µs/req", "spans/req",
                   "traced req/s", "traced p99 ms"], rows), ""]


TLS_FIGURES = [   # (scenario, figure, key, higher is better)
    ("tls-handshakes", "full handshakes/s", get("handshakes_per_s"), True),
    ("tls-handshakes", "CPU µs per full handshake", get("cpu_us_per_handshake"), False),
    ("tls-resume", "resumed handshakes/s", get("handshakes_per_s"), True),
    ("tls-resume", "CPU µs per resumed handshake", get("cpu_us_per_handshake"), False),
    ("tls-keepalive", "TLS keep-alive req/s", get("rps"), True),
    ("tls-keepalive", "CPU µs per request over TLS", get("cpu_us_per_req"), False),
    ("mtls-keepalive", "mTLS keep-alive req/s", get("rps"), True),
    ("mtls-keepalive", "CPU µs per request over mTLS", get("cpu_us_per_req"), False),
]


def tls_section(data: Data) -> list[str]:
    """Issue 9's TLS figures in one table: each proxy's medians, and Outrigger's
    per-round ratios to Envoy and to HAProxy (the bar: ahead of Envoy on every
    figure, within 10% of HAProxy)."""
    figs = [f for f in TLS_FIGURES if any(r.scenario == f[0] for r in data.runs)]
    if not figs:
        return []
    proxies = [p for p in ("outrigger", "envoy", "haproxy", "direct")
               if any(data.of(sc, p, valid=False) for sc, *_ in figs)]
    rows = []
    for sc, label, key, up in figs:
        row = [label] + [f_num(data.median(sc, p, key), 1 if "CPU" in label else 0)
                         for p in proxies]
        for base in ("envoy", "haproxy"):
            r = data.ratio(sc, "outrigger", key, base=base)
            worse = r is not None and (r < 1 if up else r > 1) if base == "envoy" else \
                r is not None and (r < 0.9 if up else r > 1.1)
            row.append(f"**{f_ratio(r)}**" if worse else f_ratio(r))
        rows.append(row)
    return ["## TLS (issue 9)", "",
            "Medians over rounds; the ratios are Outrigger's, medians of per-round "
            "ratios; **bold**: behind Envoy, or more than 10% behind HAProxy. Method: "
            "\"TLS scenarios\" in docs/benchmarks/README.md.", "",
            table(["figure"] + proxies + ["Outrigger vs Envoy", "Outrigger vs HAProxy"],
                  rows), ""]


def headline(data: Data, idle_rss: dict) -> str:
    name = "h1-closed-32"
    rows = []
    for p in data.peers(name):
        m = lambda key: data.median(name, p, key)   # noqa: E731
        rt = lambda key: f_ratio(data.ratio(name, p, key)) if p != "envoy" else "1.00×"  # noqa
        rows.append([p, valid_cell(data, name, p), f_num(m(get("rps"))), rt(get("rps"))]
                    + [f_ms(m(lat(k))) for k, _ in PCTS]
                    + [f_num(m(get("cpu_us_per_req")), 1), rt(get("cpu_us_per_req")),
                       f_mib(m(get("peak_rss"))), f_mib(med(idle_rss.get(p, [])))])
    return table(["peer", "valid", "req/s", "vs Envoy", "p50 ms", "p90 ms", "p99 ms",
                  "p99.9 ms", "CPU µs/req", "CPU vs Envoy", "peak RSS MiB",
                  "idle RSS MiB"], rows)


def extras_notes(data: Data, ctx: dict) -> list[str]:
    """How kernel share, syscalls and allocations per request were measured here."""
    sysc, al, st = ctx.get("syscalls"), ctx.get("allocs") or {}, ctx.get("strace") or {}
    if not sysc and not al:
        return []
    L = ["## Kernel share, syscalls and allocations per request", "",
         "- **kernel share**: system / (user + system) CPU time of the proxy during the "
         "run, from /proc/PID/stat (utime, stime).",
         f"- **syscalls/req**: {sysc['mode'] if sysc else 'off'}: "
         f"{sysc['note'] if sysc else 'not measured'}; divided by the client's requests."]
    L += [f"  - {r.scenario} round {r.round} {r.peer}: not counted: {r.data['syscalls_note']}"
          for r in data.runs if r.data.get("syscalls_note")]
    for name, peers in st.items():
        for p, res in peers.items():
            if res.get("top"):
                top = ", ".join(f"{n} {c:.2f}" for n, c in res["top"])
                L.append(f"  - strace sample, {name} {p}: {res['per_req']:.2f} syscalls per "
                         f"request over {res['requests']:,} requests; most frequent: {top}")
            elif res.get("error"):
                L.append(f"  - strace sample, {name} {p}: failed: {res['error']}")
    if al:
        L.append("- **allocs/req**: a separate, untimed run of the `alloc-count` build "
                 "(counting global allocator, read from the admin `/stats`), h2load with a "
                 "fixed number of requests n1 then n2 on the scenario's connections: "
                 "(allocations during n2 − during n1) / (n2 − n1), so connection set-up and "
                 "the admin read cancel out.")
        for name, peers in al.items():
            for p, res in peers.items():
                if "per_req" in res:
                    L.append(f"  - {name} {p}: {res['per_req']:.2f} per request "
                             f"({res['per_req_with_setup']:.2f} counting connection set-up); "
                             f"n1 = {res['n1']:,}, n2 = {res['n2']:,}, "
                             f"{res['conns']} connections")
                else:
                    L.append(f"  - {name} {p}: "
                             f"{res.get('skipped') or 'failed: ' + str(res.get('error'))}")
    return L + [""]


def charts(data: Data, outdir: Path, prefix: str, rel: str) -> list[str]:
    """Write the SVGs; return Markdown image lines."""
    outdir.mkdir(parents=True, exist_ok=True)
    for old in outdir.glob(f"{prefix}*.svg"):   # no stale charts from older runs
        old.unlink()
    lines = []
    done = {r.scenario for r in data.runs}
    names = lambda kinds: [s.name for s in SCENARIOS if s.kind in kinds and s.name in done]  # noqa
    peers = []
    for r in data.runs:
        if r.peer not in peers:
            peers.append(r.peer)

    def bars(fname, title, ylabel, groups, key):
        if not groups:
            return
        vals = {(g, p): data.median(g, p, key) for g in groups for p in peers}
        svg.bar_chart(outdir / fname, title, ylabel, groups, peers, vals,
                      note="median of valid runs; n/a = not run or no valid run")
        lines.append(f"![{title}]({rel}/{fname})")

    bars(f"{prefix}throughput.svg", "Requests/s (closed loop)", "requests/s",
         names(("closed", "h2", "churn", "tls-ka")), get("rps"))
    bars(f"{prefix}cpu-per-request.svg", "Proxy CPU per request", "CPU µs / request",
         names(("closed", "h2", "open", "churn", "tls-ka")), get("cpu_us_per_req"))
    bars(f"{prefix}tls-handshakes.svg", "TLS handshakes/s (new connection per request)",
         "handshakes/s", names(("tls-hs",)), get("handshakes_per_s"))
    bars(f"{prefix}cpu-per-handshake.svg", "Proxy CPU per TLS handshake (and its request)",
         "CPU µs / handshake", names(("tls-hs",)), get("cpu_us_per_handshake"))
    bars(f"{prefix}body-throughput.svg", "Body throughput", "MB/s of body",
         names(("body",)), get("mb_per_s"))
    bars(f"{prefix}peak-rss.svg", "Peak RSS of the proxy", "MiB",
         names(("closed", "h2", "body", "idle")),
         lambda d: d["peak_rss"] / MiB if d.get("peak_rss") else None)
    for k, lab in (("p50", "p50"), ("p99", "p99")):
        groups = names(("open",))
        if not groups or "direct" not in peers:
            break
        proxies = [p for p in peers if p != "direct"]
        vals = {(g, p): (lambda v: v / 1000 if v is not None else None)(
                    data.added(g, p, lat(k))) for g in groups for p in proxies}
        fname = f"{prefix}added-latency-{k}.svg"
        svg.bar_chart(outdir / fname, f"Latency added over no proxy at a fixed rate ({lab})",
                      f"added {lab} latency, ms", groups, proxies, vals,
                      note="median over rounds of (proxy - direct) in the same round")
        lines.append(f"![added {lab} latency]({rel}/{fname})")
    for name in names(("closed", "h2", "open")):
        series = {p: [data.median(name, p, lat(k)) and data.median(name, p, lat(k)) / 1000
                      for k, _ in PCTS] for p in data.peers(name)}
        fname = f"{prefix}latency-{name}.svg"
        svg.line_chart(outdir / fname, f"Latency percentiles: {name}", "ms (log scale)",
                       [lab for _, lab in PCTS], series,
                       note="median over valid runs of each percentile")
        lines.append(f"![latency {name}]({rel}/{fname})")
    return lines


def write(path: Path, runs, ctx: dict, charts_dir: Path, prefix: str = "") -> Path:
    data = Data(runs)
    rel = os.path.relpath(charts_dir, path.parent)
    readme = os.path.relpath(REPO / "docs" / "benchmarks" / "README.md", path.parent)
    images = charts(data, charts_dir, prefix, rel)
    L = [f"# Outrigger load test: {ctx['mode']} run", "",
         f"Started {ctx['started']}, took {ctx['elapsed']:.0f} s. Generated by "
         f"`{ctx['command']}`; every number below comes from that run "
         f"(raw data: [{ctx['json_name']}]({ctx['json_name']})). Method and how to read "
         f"this: [docs/benchmarks/README.md]({readme}).", ""]
    if ctx.get("rerendered"):
        L += [f"*{ctx['rerendered']}*", ""]
    if ctx.get("problems"):
        L += ["## Harness problems", ""] + [f"- {p}" for p in ctx["problems"]] + [""]
    L += ["## Summary: HTTP/1.1, 32 connections, closed loop", "",
          "Medians over rounds; *vs Envoy* is the median of per-round ratios "
          "(same round; the peers' order rotates by one place each round). Idle RSS "
          "is measured right after start-up, with the peer's own config (runs on "
          "another config are not in it; reports before 2026-12-06 counted every "
          "start).", "",
          headline(data, ctx["idle_rss"]), ""]
    L += baseline_section(data, ctx)
    L += policy_section(data)
    L += extensions_section(data)
    L += tracing_section(data)
    L += tls_section(data)
    L += extras_notes(data, ctx)
    L += ["## Scenarios", ""]
    for sc in SCENARIOS:
        if sc.name not in ctx["selected"]:
            continue
        L += [f"### {sc.name}: {sc.title}", "", f"Measures: {sc.measures}.", ""]
        if sc.kind == "skip":
            L += [f"**Skipped:** {sc.skip}.", ""]
            continue
        if not any(r.scenario == sc.name for r in runs):
            L += ["Not run.", ""]
            continue
        L += [scenario_table(data, sc.name, ctx), ""]
    L += ["## Charts", ""] + [f"{img}\n" for img in images]
    bad = [r for r in runs if not r.valid]
    L += ["## Invalid runs", ""]
    L += [f"- {r.scenario} round {r.round} {r.peer}: {'; '.join(r.reasons)}" for r in bad] \
        or ["None: every run passed its checks."]
    noisy = [r for r in runs if (r.data.get("other_cpu_pct") or 0) > NOISY_PCT]
    L += ["", "## Other load on the machine", "",
          "CPU used during each run by processes that are not part of it (machine-wide "
          "busy time from /proc/stat minus the proxy, the upstream, the scenario's "
          "services (OTLP collector, ext_proc processor, ext_authz service), the load "
          f"generator and the harness), in % of one CPU. Runs above {NOISY_PCT:.0f}% "
          "are listed: their timings are disturbed.", ""]
    measured = any("other_cpu_pct" in r.data for r in runs)
    L += [f"- {r.scenario} round {r.round} {r.peer}: {r.data['other_cpu_pct']:.0f}%"
          for r in noisy] or (["None above the threshold."] if measured else
                              ["Not measured in this run."])
    steal = [r.data.get("steal_pct") or 0 for r in runs]
    if steal and max(steal) > 1:
        L += ["", f"CPU time stolen by the hypervisor: up to {max(steal):.0f}% of a CPU "
              "in one run."]
    L += ["", "## Machine", ""] + [f"- {k}: {v}" for k, v in ctx["machine"].items()]
    L += ["", "## Settings", ""] + [f"- {k}: {v}" for k, v in ctx["settings"].items()]
    L += ["", "## Versions", ""] + [f"- {k}: {v}" for k, v in ctx["versions"].items()]
    sys_cols = any(r.data.get("kernel_share") is not None for r in runs)
    L += ["", "## Every run", "", table(
        ["scenario", "round", "peer", "req/s", "p99 ms", "CPU µs/req"]
        + (["kernel share", "syscalls/req"] if sys_cols else [])
        + ["peak RSS MiB", "upstream conns opened", "other load %CPU", "status"],
        [[r.scenario, r.round, r.peer, f_num(r.data.get("rps")),
          f_ms(r.data["lat_us"]["p99"]) if "lat_us" in r.data else "—",
          f_num(r.data.get("cpu_us_per_req"), 1)]
         + ([f_pct(r.data.get("kernel_share")), f_num(r.data.get("syscalls_per_req"), 2)]
            if sys_cols else [])
         + [f_mib(r.data.get("peak_rss")),
            f_num(r.data.get("upstream_conns")), f_num(r.data.get("other_cpu_pct")),
            "ok" if r.valid else "INVALID"] for r in runs])]
    L += ["", "## Commands run", "", "Ports are picked from 127.0.0.1:18000-18999; "
          "`.work` is loadtest/.work.", "", "```"]
    L += ctx["commands"] + ["```", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(L))
    raw = {"context": {k: v for k, v in ctx.items() if k not in ("idle_rss", "work")},
           "idle_rss": ctx["idle_rss"],
           "runs": [{"scenario": r.scenario, "peer": r.peer, "round": r.round,
                     "valid": r.valid, "reasons": r.reasons, "data": r.data} for r in runs]}
    (path.parent / ctx["json_name"]).write_text(json.dumps(raw, indent=1, default=str))
    return path
