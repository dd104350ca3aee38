"""Syscalls per request: `perf stat` attached to the proxy for each measured run,
or, where perf cannot count syscalls, an `strace -c` sample in a separate short
run that is never timed (strace stops the process at every syscall).

perf is started disabled (`-D -1`) with a control FIFO and enabled/disabled around
the load, each step acknowledged, so its window is the window of the CPU reading.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

from . import util
from .util import HarnessError, log, run, spawn

# mode -> what perf counts. Not the sum of the ~360 syscalls:sys_enter_*
# tracepoints where raw_syscalls is missing: perf needs about 15 s to close that
# many events after each run (measured on the 2-vCPU VM), so strace it is then.
PERF_EVENTS = {"perf": "raw_syscalls:sys_enter"}


def probe(tools, wanted: str) -> tuple[str, str]:
    """Which way of counting syscalls works here: (mode, note). Modes: perf
    (the raw_syscalls:sys_enter tracepoint on every measured run), strace (a
    separate sampling run), off."""
    if wanted == "off":
        return "off", "not measured (--syscalls off)"
    notes = []
    if wanted in ("auto", "perf"):
        perf = tools.ensure_optional("perf")
        if not perf:
            notes.append("perf is not installed and could not be")
        else:
            for mode, event in PERF_EVENTS.items():
                n, err = _perf_true(perf, event)
                if n:
                    return mode, f"perf stat -e {event}, attached to the proxy for each run"
                notes.append(f"perf stat -e {event} does not count here ({err})")
        if wanted == "perf":
            return "off", "; ".join(notes)
    strace = tools.ensure_optional("strace")
    if strace:
        return "strace", "; ".join(notes + ["strace -c -f in a separate short sampling "
                                            "run after the timed rounds (not timed)"])
    return "off", "; ".join(notes + ["strace is not installed either: not measured"])


def _perf_true(perf: str, event: str) -> tuple[int, str]:
    """Syscalls counted for `true` (a few dozen when the event works)."""
    res = run([perf, "stat", "-x", ",", "-e", event, "--", "true"], timeout=60, check=False)
    total = _parse_perf(res.stderr)
    return total or 0, (res.stderr.strip().splitlines() or ["no output"])[-1][:120]


def _parse_perf(text: str) -> int | None:
    """Sum of the counts in `perf stat -x ,` output (None when nothing counted)."""
    total, seen = 0, False
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) >= 3 and fields[0].strip().isdigit() and "sys_enter" in fields[2]:
            total += int(fields[0])
            seen = True
    return total if seen else None


class PerfStat:
    """perf stat -p PIDS for exactly the window between enable() and disable()."""

    def __init__(self, perf: str, mode: str, pids: list[int], cpus: str, work: Path) -> None:
        self.perf, self.event, self.pids = perf, PERF_EVENTS[mode], pids
        self.cpus, self.work = cpus, work
        self.proc, self.ctl, self.ack = None, None, None

    def enable(self) -> None:
        work = self.work
        ctl, ack, self.out = work / "perf-ctl.fifo", work / "perf-ack.fifo", work / "perf.out"
        for f in (ctl, ack, self.out):
            f.unlink(missing_ok=True)
        os.mkfifo(ctl)
        os.mkfifo(ack)
        self.proc = spawn(["taskset", "-c", self.cpus, self.perf, "stat", "-x", ",",
                           "-e", self.event, "-p", ",".join(map(str, self.pids)),
                           "-D", "-1", "--control", f"fifo:{ctl},{ack}", "-o", self.out],
                          work / "perf.log")
        # The write end opens once perf has opened the read end (ENXIO before).
        deadline = time.monotonic() + 10
        while self.ctl is None:
            try:
                self.ctl = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise HarnessError("perf stat did not start" + util._log_tail(
                        work / "perf.log"))
                time.sleep(0.01)
        self.ack = os.open(ack, os.O_RDONLY | os.O_NONBLOCK)
        self._command("enable")

    def _command(self, cmd: str) -> None:
        os.write(self.ctl, cmd.encode() + b"\n")
        deadline, buf = time.monotonic() + 10, b""
        while b"ack" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise HarnessError(f"perf stat did not acknowledge '{cmd}'")
            if select.select([self.ack], [], [], min(left, 0.5))[0]:
                buf += os.read(self.ack, 64)

    def disable(self) -> int | None:
        """Stop counting; the syscalls counted while enabled."""
        try:
            self._command("disable")
            os.killpg(self.proc.pid, signal.SIGINT)   # perf writes its counts and exits
            self.proc.wait(timeout=10)
            return _parse_perf(self.out.read_text())
        except subprocess.TimeoutExpired:
            raise HarnessError("perf stat did not exit within 10 s of SIGINT")
        finally:
            self.close()

    def close(self) -> None:
        for fd in (self.ctl, self.ack):
            if fd is not None:
                os.close(fd)
        self.ctl = self.ack = None
        util.kill(self.proc, grace=2)
        for f in ("perf-ctl.fifo", "perf-ack.fifo"):
            (self.work / f).unlink(missing_ok=True)


def strace_sample(strace: str, pid: int, work: Path, cpus: str, load) -> dict:
    """Attach `strace -c -f` to the proxy, run `load()` (returns the client's
    result), detach; the syscalls per request and the five most frequent."""
    out, logp = work / "strace.out", work / "strace.log"
    out.unlink(missing_ok=True)
    logp.write_text("")
    proc = spawn(["taskset", "-c", cpus, strace, "-c", "-f", "-o", out, "-p", pid], logp)
    try:
        # strace says "Process N attached with T threads" once it holds them all.
        deadline = time.monotonic() + 10
        while "attached" not in logp.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise HarnessError("strace did not attach" + util._log_tail(logp))
            time.sleep(0.02)
        res = load()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)   # detach and write the summary
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:   # killed below; no summary then
                pass
        util.kill(proc, grace=2)
    calls = parse_strace(out.read_text() if out.exists() else "")
    total = calls.pop("total", None)
    if not total or not res["requests"]:
        raise HarnessError(f"strace sample: {total} syscalls, {res['requests']} requests")
    n = res["requests"]
    top = sorted(calls.items(), key=lambda kv: -kv[1])[:5]
    log(f"  strace sample: {total / n:.2f} syscalls/request over {n} requests")
    return {"requests": n, "syscalls": total, "per_req": total / n,
            "top": [[name, c / n] for name, c in top]}


def parse_strace(text: str) -> dict[str, int]:
    """`strace -c` table -> {syscall: calls} (with a 'total' row)."""
    calls = {}
    for line in text.splitlines():
        f = line.split()
        # % time, seconds, usecs/call, calls, [errors], name
        if len(f) in (5, 6) and re.fullmatch(r"[\d.]+", f[0]) and f[3].isdigit():
            calls[f[-1]] = int(f[3])
    return calls
