"""Small shared helpers: progress lines, child processes, ports, /proc readings."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

LOADTEST = Path(__file__).resolve().parent.parent
REPO = LOADTEST.parent
WORK = LOADTEST / ".work"
VENV = LOADTEST / ".venv"
CONFIGS = LOADTEST / "configs"

_T0 = time.monotonic()
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class HarnessError(Exception):
    """Something the harness itself needs is broken (tool missing, peer won't start)."""


def log(msg: str) -> None:
    """One progress line on stderr, prefixed by the elapsed time."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def elapsed() -> float:
    return time.monotonic() - _T0


# --------------------------------------------------------------------------
# Child processes: every one lives in its own process group and is killed on
# exit, whatever the exit path (normal, exception, Ctrl-C, SIGTERM).

_CHILDREN: list[subprocess.Popen] = []
COMMANDS: list[str] = []  # every command started, for the report


def record(cmd: list[str] | str) -> None:
    text = cmd if isinstance(cmd, str) else " ".join(str(c) for c in cmd)
    if text not in COMMANDS:
        COMMANDS.append(text)


def spawn(cmd: list[str], log_path: Path | None = None, **kw) -> subprocess.Popen:
    """Start a long-lived child in a new process group; output to log_path."""
    record(cmd)
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            [str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, **kw)
    finally:
        if log_path:
            out.close()
    _CHILDREN.append(proc)
    return proc


def kill(proc: subprocess.Popen | None, grace: float = 3.0) -> None:
    """SIGTERM the child's process group, then SIGKILL after `grace` seconds."""
    if proc is None:
        return
    try:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # The group may still hold grandchildren (e.g. HAProxy workers).
        _signal_group(proc, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait(timeout=5)
    finally:
        if proc in _CHILDREN:
            _CHILDREN.remove(proc)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_all() -> None:
    for proc in list(_CHILDREN):
        try:
            kill(proc, grace=2.0)
        except Exception as exc:  # keep killing the others
            print(f"warning: could not stop pid {proc.pid}: {exc}", file=sys.stderr)


def install_signal_handlers() -> None:
    """Turn SIGINT/SIGTERM/SIGHUP into KeyboardInterrupt so `finally` blocks run
    (SIGINT explicitly: a shell starts background jobs with SIGINT ignored)."""
    def handler(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def run(cmd: list[str], timeout: float, cwd: Path | None = None,
        check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a bounded command in its own process group, capturing output."""
    record(cmd)
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            cwd=cwd, env=env, start_new_session=True, text=True)
    _CHILDREN.append(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(proc, grace=1.0)
        raise HarnessError(f"timed out after {timeout:.0f}s: {' '.join(map(str, cmd))}")
    finally:
        if proc in _CHILDREN:
            kill(proc, grace=1.0)
    res = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check and proc.returncode != 0:
        tail = (err or out or "").strip().splitlines()[-5:]
        raise HarnessError(f"command failed ({proc.returncode}): "
                           f"{' '.join(map(str, cmd))}\n  " + "\n  ".join(tail))
    return res


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# --------------------------------------------------------------------------
# Ports: a fixed high range, each checked free before use.

_next_port = 18000


def free_port() -> int:
    global _next_port
    while _next_port < 19000:
        port = _next_port
        _next_port += 1
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise HarnessError("no free port left in 18000-18999")


# --------------------------------------------------------------------------
# HTTP helpers (loopback only).

def http(method: str, url: str, timeout: float = 2.0, body: bytes | None = None):
    """Return (status, body) or (None, error text)."""
    assert url.startswith("http://127.0.0.1:"), url
    req = urllib.request.Request(url, method=method, data=body)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError) as exc:
        return None, str(exc).encode()


def wait_listening(port: int, timeout: float, what: str, proc: subprocess.Popen,
                   log_path: Path) -> None:
    """Until a service this harness started accepts on 127.0.0.1:`port` (a fact of the
    running process, unlike a line in its log, which spawn appends to across runs)."""
    def accepts() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return True
        except OSError:
            return False
    wait_until(accepts, timeout, what, proc, log_path)


def wait_until(pred, timeout: float, what: str, proc: subprocess.Popen | None = None,
               log_path: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise HarnessError(f"{what}: process exited with code {proc.returncode}"
                               + _log_tail(log_path))
        if pred():
            return
        time.sleep(0.05)
    raise HarnessError(f"{what}: not ready after {timeout:.0f}s" + _log_tail(log_path))


def _log_tail(path: Path | None) -> str:
    if not path or not path.exists():
        return ""
    lines = path.read_text(errors="replace").strip().splitlines()[-3:]
    return ("; log: " + " | ".join(l.strip()[:200] for l in lines)) if lines else ""


# --------------------------------------------------------------------------
# /proc readings for a process tree (a proxy may have worker processes).

def tree_pids(pid: int) -> list[int]:
    """pid and all its descendants (by walking /proc/*/stat ppid)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _stat_fields(int(entry))
        if st:
            children.setdefault(int(st[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the comm field (index 0 = state)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) seconds of the tree, plus reaped children (cutime, cstime)
    of the root. The kernel splits a task's runtime between the two by where its
    ticks landed, so the split of a busy second is good to about a percent."""
    user = system = 0
    for p in tree_pids(pid):
        f = _stat_fields(p)
        if not f:
            continue
        user, system = user + int(f[11]), system + int(f[12])    # utime, stime
        if p == pid:
            user, system = user + int(f[13]), system + int(f[14])  # cutime, cstime
    return user / CLK_TCK, system / CLK_TCK


def thread_cpu_seconds(pid: int, comm: str) -> float:
    """utime+stime of the threads named `comm` in the tree (e.g. Outrigger's span
    exporter, `outrigger-trace`): a thread's own share of the proxy's CPU."""
    total = 0
    for p in tree_pids(pid):
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                if (task / "comm").read_text().strip() != comm:
                    continue
                raw = (task / "stat").read_text()
            except OSError:
                continue
            f = raw[raw.rindex(")") + 2:].split()
            total += int(f[11]) + int(f[12])    # utime, stime
    return total / CLK_TCK


def sched_seconds(pid: int, comm: str | None = None) -> float:
    """Time on CPU of every thread in the tree (or of those named `comm`), from
    /proc/*/task/*/schedstat: nanoseconds, where utime and stime count 10 ms ticks.
    A reading before and after a 2 s window of 0.3 CPU-seconds is then exact, where
    ticks would be off by up to 3%."""
    total = 0
    for p in tree_pids(pid):
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                if comm is not None and (task / "comm").read_text().strip() != comm:
                    continue
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total / 1e9


def cpu_seconds(pid: int) -> float:
    """utime+stime of the tree, plus reaped children (cutime+cstime) of the root."""
    return sum(cpu_times(pid))


def cpu_list(text: str) -> set[int]:
    """'0-2,5' -> {0, 1, 2, 5}"""
    out: set[int] = set()
    for part in text.strip().split(","):
        if "-" in part:
            a, b = part.split("-")
            out.update(range(int(a), int(b) + 1))
        elif part:
            out.add(int(part))
    return out


def pinning_escapes(pid: int, allowed: set[int]) -> list[str]:
    """Threads of the tree allowed to run outside `allowed` (name:cpus)."""
    bad = []
    for p in tree_pids(pid):
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                status = (task / "status").read_text()
                comm = (task / "comm").read_text().strip()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("Cpus_allowed_list:"):
                    cpus = line.split(":", 1)[1].strip()
                    if not cpu_list(cpus) <= allowed:
                        bad.append(f"{comm}:{cpus}")
    return bad


def cpu_snapshot(pids: list[int]) -> dict:
    """Machine-wide busy CPU (user+nice+system+irq+softirq: the kernel charges a
    process's loopback network work to softirq there, but to the process's own
    stime in /proc/PID/stat) and steal from /proc/stat, this
    harness's own CPU and its reaped children's (wrk, oha), and the CPU of the
    given process trees (proxy, upstream): to tell how much *other* work ran."""
    import resource as r
    f = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(f[i]) for i in (0, 1, 2, 5, 6)) / CLK_TCK
    steal = int(f[7]) / CLK_TCK
    me, kids = r.getrusage(r.RUSAGE_SELF), r.getrusage(r.RUSAGE_CHILDREN)
    own = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    return {"t": time.monotonic(), "busy": busy, "steal": steal,
            "ours": own + sum(cpu_seconds(p) for p in pids if p)}


def other_load(a: dict, b: dict) -> tuple[float, float]:
    """(% of one CPU used by processes not part of the run, % stolen by the host)."""
    wall = b["t"] - a["t"]
    if wall <= 0:
        return 0.0, 0.0
    other = (b["busy"] - a["busy"]) - (b["ours"] - a["ours"])
    return max(0.0, other) * 100 / wall, (b["steal"] - a["steal"]) * 100 / wall


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def thread_count(pid: int) -> int:
    return sum(len(list(Path(f"/proc/{p}/task").glob("*"))) for p in tree_pids(pid))


def rss_bytes(pid: int) -> int:
    """Current resident set (VmRSS) summed over the tree."""
    return sum(_status_kb(p, "VmRSS") for p in tree_pids(pid)) * 1024


def peak_rss_bytes(pid: int) -> int:
    """Peak resident set (VmHWM) summed over the tree."""
    return sum(_status_kb(p, "VmHWM") for p in tree_pids(pid)) * 1024


def render(template: Path, dest: Path, values: dict) -> Path:
    """Fill {{name}} placeholders; fail if one is left unfilled."""
    text = template.read_text()
    for key, val in values.items():
        text = text.replace("{{" + key + "}}", str(val))
    if "{{" in text:
        left = text[text.index("{{"):text.index("{{") + 40]
        raise HarnessError(f"{template.name}: unfilled placeholder near {left!r}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, dest)   # atomic, as a `mv` swap
    return dest
