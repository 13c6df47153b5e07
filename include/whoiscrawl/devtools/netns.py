"""The local fleet's network: one bridge in the root namespace, one network namespace per host.

Each host is a network namespace joined to the bridge by a veth pair, with an
address on a private subnet of its own (``FLEET_SUBNET``); the bridge holds
the subnet's first address and is where the coordinator's services listen.
A host gets no default route and there is no NAT or forwarding: it reaches
the bridge's subnet and its own loopback, nothing else.

We delete only what we created: every name starts with the fleet id, and each
one is recorded in ``state_path`` when created; a name that already exists but
is not in our record is an error, never reused or removed.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from whoiscrawl.errors import WhoiscrawlError

__all__ = ["FleetNetwork", "HostNet", "NetworkError"]

_ID = re.compile(r"^[a-z0-9]{1,8}$")


class NetworkError(WhoiscrawlError):
    """A bridge, veth or namespace could not be created, checked or removed."""


def ip_bin() -> str:
    found = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not found:
        raise NetworkError("the `ip` command is missing: apt-get install iproute2")
    return found


def _ip(*args: str, check: bool = True, timeout_s: float = 15) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run([ip_bin(), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise NetworkError(f"ip {' '.join(args)}: no answer within {timeout_s:g} s") from None
    if check and done.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done


def netns_supported() -> str | None:
    """None when this process can create network namespaces, else the reason it cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    try:
        ip_bin()
    except NetworkError as exc:
        return str(exc)
    done = _ip("netns", "list", check=False)
    if done.returncode != 0:
        return f"`ip netns` does not work here: {done.stderr.strip()}"
    return None


@dataclass(frozen=True)
class HostNet:
    """One host's names and address."""

    index: int
    netns: str
    veth: str       # root-namespace end, enslaved to the bridge
    peer: str       # end inside the namespace, holding the address
    address: str

    def exec_prefix(self) -> list[str]:
        """Prefix that runs a command inside this host's namespace."""
        return [ip_bin(), "netns", "exec", self.netns]


class FleetNetwork:
    """Names and addresses derive from the fleet id and the subnet; ``state_path`` records what exists."""

    def __init__(self, fleet_id: str, subnet: str, state_path: Path) -> None:
        if not _ID.match(fleet_id):
            raise NetworkError(f"fleet id {fleet_id!r}: use 1-8 characters of a-z and 0-9 (WHOISCRAWL_FLEET_ID)")
        self.fleet_id = fleet_id
        try:
            self.subnet = ipaddress.IPv4Network(subnet, strict=True)
        except ValueError as exc:
            raise NetworkError(f"WHOISCRAWL_FLEET_SUBNET={subnet!r}: {exc}") from None
        if not self.subnet.is_private or self.subnet.prefixlen > 29:
            raise NetworkError(f"WHOISCRAWL_FLEET_SUBNET={subnet!r}: use a private subnet of at least 8 addresses")
        self.state_path = Path(state_path)
        self.bridge = f"{fleet_id}-br"
        self.bridge_address = str(self.subnet.network_address + 1)

    # --- names ------------------------------------------------------------------------
    @property
    def max_hosts(self) -> int:
        return min(self.subnet.num_addresses - 3, 999)

    def host(self, index: int) -> HostNet:
        if not 1 <= index <= self.max_hosts:
            raise NetworkError(f"host {index}: the subnet {self.subnet} holds hosts 1-{self.max_hosts}")
        name = f"{self.fleet_id}-h{index}"
        return HostNet(index, name, name, f"{name}p", str(self.subnet.network_address + 1 + index))

    # --- record of what we created --------------------------------------------------------
    def _load(self) -> dict:
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"bridge": None, "hosts": {}}

    def _save(self, state: dict) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
        tmp.replace(self.state_path)

    def recorded_hosts(self) -> list[int]:
        return sorted(int(i) for i in self._load().get("hosts", {}))

    # --- what exists ----------------------------------------------------------------------
    @staticmethod
    def link_exists(name: str) -> bool:
        return _ip("link", "show", "dev", name, check=False).returncode == 0

    @staticmethod
    def netns_exists(name: str) -> bool:
        out = _ip("netns", "list").stdout
        return any(line.split()[0] == name for line in out.splitlines() if line.strip())

    def _check_subnet_free(self) -> None:
        """Refuse a subnet that overlaps any address or route the machine already has (but ours)."""
        routes = json.loads(_ip("-j", "-4", "route", "show", "table", "all").stdout or "[]")
        for route in routes:
            dst = route.get("dst", "")
            if route.get("dev") == self.bridge or dst in ("", "default") or route.get("type") in ("broadcast",):
                continue
            try:
                net = ipaddress.IPv4Network(dst, strict=False)
            except ValueError:
                continue
            if net.overlaps(self.subnet) and not net.is_loopback:
                raise NetworkError(f"WHOISCRAWL_FLEET_SUBNET {self.subnet} overlaps {dst} "
                                   f"(dev {route.get('dev')}); choose another private subnet")

    # --- create ---------------------------------------------------------------------------
    def ensure_bridge(self) -> bool:
        """Create the bridge with the subnet's first address; True when created now."""
        state = self._load()
        if self.link_exists(self.bridge):
            if state.get("bridge") != self.bridge:
                raise NetworkError(f"a link named {self.bridge} exists but this fleet did not create it; "
                                   f"set WHOISCRAWL_FLEET_ID to another prefix")
            return False
        self._check_subnet_free()
        state["bridge"] = self.bridge
        self._save(state)  # record first: a half-made bridge is still ours to remove
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.bridge_address}/{self.subnet.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        return True

    def ensure_host(self, index: int) -> tuple[HostNet, bool]:
        """Namespace, veth pair and address of host ``index``; (host, created now)."""
        host = self.host(index)
        state = self._load()
        ours = str(index) in state.get("hosts", {})
        if self.netns_exists(host.netns) or self.link_exists(host.veth):
            if not ours:
                raise NetworkError(f"{host.netns} exists but this fleet did not create it; "
                                   f"set WHOISCRAWL_FLEET_ID to another prefix")
            if self.netns_exists(host.netns) and self.link_exists(host.veth):
                return host, False
            self.remove_host(index)  # half-made: start it again
            state = self._load()
        state.setdefault("hosts", {})[str(index)] = {"netns": host.netns, "veth": host.veth,
                                                     "address": host.address}
        self._save(state)
        _ip("netns", "add", host.netns)
        _ip("link", "add", host.veth, "type", "veth", "peer", "name", host.peer)
        _ip("link", "set", host.veth, "master", self.bridge)
        _ip("link", "set", host.veth, "up")
        _ip("link", "set", host.peer, "netns", host.netns)
        _ip("-n", host.netns, "addr", "add", f"{host.address}/{self.subnet.prefixlen}", "dev", host.peer)
        _ip("-n", host.netns, "link", "set", host.peer, "up")
        _ip("-n", host.netns, "link", "set", "lo", "up")
        return host, True

    def routes_of(self, host: HostNet) -> list[dict]:
        """Every IPv4 route of a host, all tables (`ip -j route`): what the host can reach."""
        return json.loads(_ip("-j", "-n", host.netns, "-4", "route", "show", "table", "all").stdout or "[]")

    # --- processes inside a namespace -------------------------------------------------------
    @staticmethod
    def pids(host: HostNet) -> list[int]:
        """Every process whose network namespace is this host's."""
        done = _ip("netns", "pids", host.netns, check=False)
        return [int(p) for p in done.stdout.split() if p.isdigit()]

    def kill_all(self, host: HostNet, timeout_s: float = 15) -> list[int]:
        """SIGTERM every process in the namespace, then SIGKILL what is left; returns the pids seen."""
        seen = self.pids(host)
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
            left = self.pids(host)
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait_s
            while self.pids(host) and time.monotonic() < deadline:
                time.sleep(0.2)
        return seen

    # --- remove ---------------------------------------------------------------------------
    def remove_host(self, index: int) -> bool:
        """Kill what runs in the namespace, delete it and its veth; only if we recorded it."""
        state = self._load()
        record = state.get("hosts", {}).get(str(index))
        if record is None:
            return False
        host = self.host(index)
        if record.get("netns") != host.netns:  # our record names something else: touch nothing
            raise NetworkError(f"record of host {index} names {record.get('netns')}, not {host.netns}")
        removed = False
        if self.netns_exists(host.netns):
            self.kill_all(host)
            _ip("netns", "del", host.netns)
            removed = True
        if self.link_exists(host.veth):  # deleting the namespace normally took the pair with it
            _ip("link", "del", host.veth)
            removed = True
        del state["hosts"][str(index)]
        self._save(state)
        return removed

    def remove_all(self) -> list[str]:
        """Every host we recorded, then the bridge; returns what was removed."""
        removed = []
        for index in self.recorded_hosts():
            if self.remove_host(index):
                removed.append(self.host(index).netns)
        state = self._load()
        if state.get("bridge") == self.bridge:
            if self.link_exists(self.bridge):
                _ip("link", "del", self.bridge)
                removed.append(self.bridge)
            state["bridge"] = None
            self._save(state)
        return removed

