"""The h1-captured scenario's network namespace: the captured path (iptables
REDIRECT in the namespace, then the proxy's original-destination hand-off) against
the direct port, with the same proxy process.

    root namespace                     namespace ltcap<pid> ("the pod")
    nginx 127.0.0.1:P and 10.241.0.1:P ◄─veth─ 10.241.0.2
                                        outrigger (UID 1337, `outrigger iptables` rules)
                                          127.0.0.1:D        direct port
                                          0.0.0.0:C          capture port (use_original_dst)
                                          0.0.0.0:S          virtual (bind_to_port: false)
                                        wrk -> 127.0.0.1:D         (direct, not captured)
                                        wrk -> 10.241.0.1:S        (REDIRECT -> C -> S)

Both listeners have the same route to the same cluster (nginx through the veth), so
the two paths differ only by the capture: the REDIRECT, SO_ORIGINAL_DST and the
hand-off. Nothing listens on 10.241.0.1:S; every connection there is captured. The
veth's root side is the only thing outside the namespace; deleting the namespace at
exit removes both ends.
"""

from __future__ import annotations

import os
import subprocess

from .util import HarnessError, log, run

SUBNET = "10.241.0"
HOST_IP = f"{SUBNET}.1"      # the root side: nginx listens here too
POD_IP = f"{SUBNET}.2"
PROXY_UID = "1337"


class Netns:
    def __init__(self) -> None:
        self.name = f"ltcap{os.getpid()}"
        self.up = False
        self.host_ip, self.pod_ip, self.proxy_uid = HOST_IP, POD_IP, PROXY_UID

    def exec_prefix(self) -> list:
        return ["ip", "netns", "exec", self.name]

    def create(self, tools) -> None:
        """The namespace, the veth pair and addresses; the capture rules come later
        (`install_rules`), from the proxy binary."""
        if os.geteuid() != 0:
            raise HarnessError("h1-captured needs root (a network namespace and iptables)")
        tools.ensure_apt(["ip", "iptables", "setpriv", "curl"])
        self.delete()
        # An earlier run killed before its cleanup leaves its namespace, whose veth has
        # the same addresses: connections from this one's would go astray.
        listed = run(["ip", "netns", "list"], timeout=10, check=False).stdout or ""
        for line in listed.splitlines():
            stale = line.split(" ", 1)[0]
            if stale.startswith("ltcap") and stale != self.name:
                run(["ip", "netns", "del", stale], timeout=10, check=False)
        host, pod = f"ltc{os.getpid() % 100000}h", f"ltc{os.getpid() % 100000}p"
        steps = [
            ["ip", "netns", "add", self.name],
            ["ip", "link", "add", host, "type", "veth", "peer", "name", pod,
             "netns", self.name],
            ["ip", "addr", "add", f"{HOST_IP}/24", "dev", host],
            ["ip", "link", "set", host, "up"],
            self.exec_prefix() + ["ip", "link", "set", "lo", "up"],
            self.exec_prefix() + ["ip", "addr", "add", f"{POD_IP}/24", "dev", pod],
            self.exec_prefix() + ["ip", "link", "set", pod, "up"],
        ]
        self.up = True
        for cmd in steps:
            res = run(cmd, timeout=10, check=False)
            if res.returncode != 0:
                raise HarnessError(f"h1-captured: {' '.join(cmd)}: {res.stderr.strip()}")
        log(f"h1-captured: namespace {self.name}, veth {host} {HOST_IP} <-> {pod} {POD_IP}")

    def install_rules(self, binary, capture_port: int) -> None:
        """`outrigger iptables` in the namespace: outbound TCP to the capture port,
        the proxy's own UID let through, no inbound capture."""
        cmd = self.exec_prefix() + [binary, "iptables", "--proxy-uid", PROXY_UID,
                                    "--proxy-port", str(capture_port),
                                    "--include-inbound-ports", "", "--no-ipv6"]
        res = run(cmd, timeout=30, check=False)
        if res.returncode != 0:
            raise HarnessError(f"h1-captured: outrigger iptables failed: "
                               f"{(res.stderr or res.stdout).strip()[-300:]}")

    def curl(self, url: str, timeout: float = 2.0) -> tuple[int, bytes]:
        """GET from inside the namespace: (status, body); (0, b"") on failure."""
        cmd = self.exec_prefix() + ["curl", "-s", "-m", str(timeout), "-o", "-",
                                    "-w", "\n%{http_code}", url]
        try:
            res = subprocess.run(cmd, capture_output=True, timeout=timeout + 5)
        except subprocess.TimeoutExpired:
            return 0, b""
        body, _, code = res.stdout.rpartition(b"\n")
        return (int(code) if code.strip().isdigit() else 0), body

    def check(self, who: str, url: str, body: bytes) -> None:
        """End to end from inside the namespace: `url` answers 200 with `body`."""
        status, got = self.curl(url, timeout=5)
        if status != 200 or got != body:
            raise HarnessError(f"{who}: GET {url} in {self.name} gave {status} "
                               f"{got[:80]!r}, expected 200 {body!r}")

    def delete(self) -> None:
        if self.up or os.path.exists(f"/run/netns/{self.name}"):
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        self.up = False
