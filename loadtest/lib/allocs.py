"""Allocations per request on real sockets, the runtime's own included: a
separate, untimed measurement with the `alloc-count` build of Outrigger
(src/observe/alloc_count.rs), whose admin `/stats` carries the process's
allocation total.

The counter is read before and after two fixed loads of n1 and n2 requests on
the same number of new connections (h2load: HTTP/1.1 keep-alive, or h2c):
    per request = ((after2 - before2) - (after1 - before1)) / (n2 - n1)
so what both loads cost alike cancels out (the admin request that reads the
counter, opening the downstream connections, pool warm-up) and what is left is
the cost of one more keep-alive request. "With set-up" is the second load's total
minus one admin read, per request, for orientation.
"""

from __future__ import annotations

import json

from . import loadgen
from .util import HarnessError, http, log

SCENARIOS = ("h1-closed-32", "h2-streams")   # where the report has the column
FEATURE = "alloc-count"


def counter(peer) -> int | None:
    status, body = http("GET", f"http://127.0.0.1:{peer.admin_port}/stats", timeout=5)
    if status != 200:
        raise HarnessError(f"{peer.name}: GET /stats gave {status}")
    try:
        n = json.loads(body).get("allocations")
    except ValueError:
        raise HarnessError(f"{peer.name}: /stats is not JSON")
    return n if isinstance(n, int) else None


def load(s, peer, sc, n: int) -> dict:
    h1 = sc.kind != "h2"
    res = loadgen.h2load(s.tools, peer.url, sc.conns, 1 if h1 else sc.streams, 60,
                         s.client_cpus, requests=n, h1=h1)
    h = res["h2"]
    if h["done"] != n or h["succeeded"] != n or res["non2xx"] or res["socket_errors"]:
        raise HarnessError(f"h2load -n {n}: {h['done']} done, {h['succeeded']} succeeded, "
                           f"{res['non2xx']} non-2xx, {res['socket_errors']} errors")
    return res


def measure(s, peer, sc, quick: bool) -> dict:
    """Start `peer` (an alloc-count build), measure, stop it."""
    n1, n2 = (1000, 6000) if quick else (5000, 55000)
    peer.start()
    try:
        if counter(peer) is None:
            raise HarnessError(f"{peer.name}: /stats has no 'allocations' "
                               "(not an alloc-count build?)")
        load(s, peer, sc, n1)          # warm-up: pools, buffers, first-use statics
        a0 = counter(peer)
        a1 = counter(peer)             # back to back: what one admin read costs
        load(s, peer, sc, n1)
        a2 = counter(peer)
        load(s, peer, sc, n2)
        a3 = counter(peer)
    finally:
        peer.stop()
    admin, first, second = a1 - a0, a2 - a1, a3 - a2
    out = {"n1": n1, "n2": n2, "conns": sc.conns, "admin_read": admin,
           "load1": first, "load2": second,
           "per_req": (second - first) / (n2 - n1),
           "per_req_with_setup": max(0, second - admin) / n2}
    log(f"  {peer.name}: {out['per_req']:.2f} allocations/request "
        f"({out['per_req_with_setup']:.2f} with connection set-up), "
        f"{n1} and {n2} requests on {sc.conns} connections")
    return out
