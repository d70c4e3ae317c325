"""Separate hosts on one machine: Linux network namespaces on a bridge.

Each host is a network namespace with its own address on one /24, joined to a bridge in the
test's own namespace by a veth pair, so the test reaches every host and the hosts reach each
other only over that "cable". A partition takes a host's cable out (the bridge end of its veth
goes down): the host's processes keep running and keep their sockets, and packets between it
and the others are dropped without an answer, as when a switch port or a link dies. Healing
plugs it back in.

Needs root (CAP_NET_ADMIN) and a kernel that allows namespaces; :meth:`Hosts.create` raises
:class:`Unavailable` with the reason where they are refused, for the tests to skip on.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys


class Unavailable(Exception):
    """Network namespaces cannot be made here (the reason is the message)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


class Hosts:
    def __init__(self, names: list[str]):
        tag = f"mlc{os.getpid() % 100000}"
        self.names = list(names)
        self.subnet = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250 + 1}"
        self.bridge = f"{tag}b"
        self.namespaces = {name: f"{tag}-{name}" for name in self.names}
        self.cables = {name: f"{tag}h{i}" for i, name in enumerate(self.names)}
        self.addresses = {name: f"{self.subnet}.{i + 2}" for i, name in enumerate(self.names)}
        self._made: list[tuple[str, ...]] = []

    def create(self) -> "Hosts":
        if shutil.which("ip") is None:
            raise Unavailable("no `ip` command (iproute2) on this machine")
        if os.geteuid() != 0:
            raise Unavailable("network namespaces need root (CAP_NET_ADMIN); the tests do not run as root")
        try:
            self._build()
        except subprocess.CalledProcessError as exc:
            self.remove()
            raise Unavailable(f"the kernel refused `ip {' '.join(exc.cmd[1:])}`: {exc.stderr.strip()}") from exc
        return self

    def _build(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self._made.append(("link", "del", self.bridge))
        _ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for name in self.names:
            ns, cable = self.namespaces[name], self.cables[name]
            _ip("netns", "add", ns)
            self._made.append(("netns", "del", ns))
            _ip("link", "add", cable, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", ns, "addr", "add", f"{self.addresses[name]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("link", "set", cable, "master", self.bridge)
            _ip("link", "set", cable, "up")

    def remove(self) -> None:
        for args in reversed(self._made):
            _ip(*args, check=False)
        self._made.clear()

    def launcher(self, name: str) -> tuple[str, ...]:
        """The command prefix that runs a program on host ``name``."""
        return ("ip", "netns", "exec", self.namespaces[name])

    def address(self, name: str) -> str:
        return self.addresses[name]

    def partition(self, name: str) -> None:
        """Pull host ``name``'s cable: its packets are dropped from now on, nothing is refused."""
        _ip("link", "set", self.cables[name], "down")

    def heal(self, name: str) -> None:
        _ip("link", "set", self.cables[name], "up")

    def reaches(self, name: str, address: str, port: int, timeout: float = 10.0) -> str:
        """'' when a TCP connection from host ``name`` to ``address:port`` opens within ``timeout``,
        else why not (a firewall on the bridge, say)."""
        probe = ("import socket,sys\ntry:\n"
                 f"    socket.create_connection(({address!r}, {port}), timeout={timeout}).close()\n"
                 "except OSError as e:\n    sys.exit(str(e))")
        done = subprocess.run([*self.launcher(name), sys.executable, "-c", probe], capture_output=True,
                              text=True, timeout=timeout + 20)
        return "" if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")

