"""Routing: which registry's RDAP service to ask about an address, with no request spent.

The bootstrap file names the registry of every IANA block; space transferred
between registries is learned from redirects (the holder's answer names its
parent network, so one redirect teaches a whole range) and later addresses in
it go straight to the holder. Learned routes are per process.
"""

from __future__ import annotations

import numpy as np

from whoiscrawl.crawl import ipspace
from whoiscrawl.crawl.bootstrap import Bootstrap, Service


def learned_range(record: dict) -> tuple[int, int]:
    """The widest range a redirect teaches: the parent network when its handle is a range or CIDR
    (RIPE, APNIC, AFRINIC, LACNIC style; the parent is held by the same registry), else the network.
    A parent wider than a /8 (RIPE's "0.0.0.0 - 255.255.255.255" for legacy space) teaches nothing."""
    start, end = ipspace.to_int(record["start"]), ipspace.to_int(record["end"])
    parent = str(record.get("parent_handle") or "")
    try:
        if " - " in parent:
            a, b = (ipspace.to_int(x) for x in parent.split(" - ", 1))
        elif "/" in parent:
            a, b = ipspace.network_range(parent)
        else:
            return start, end
    except ValueError:
        return start, end
    if a <= start and end <= b and b - a < (1 << 24):
        return a, b
    return start, end


class LearnedRoutes:
    """Ranges learned from redirects (blocks transferred between RIRs), so later addresses go straight to the owner."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._services: list[Service] = []
        self._dirty = False
        self._s = np.empty(0, np.int64)
        self._order = np.empty(0, np.int64)

    def learn(self, start: int, end: int, service: Service) -> None:
        self._starts.append(start)
        self._ends.append(end)
        self._services.append(service)
        self._dirty = True

    def route(self, addr: int) -> Service | None:
        if not self._starts:
            return None
        if self._dirty:
            self._order = np.argsort(np.array(self._starts, np.int64), kind="stable")
            self._s = np.array(self._starts, np.int64)[self._order]
            self._dirty = False
        i = int(np.searchsorted(self._s, addr, side="right")) - 1
        # learned ranges are networks; a few may nest, so look back a little
        for j in range(i, max(-1, i - 8), -1):
            k = int(self._order[j])
            if self._starts[k] <= addr <= self._ends[k]:
                return self._services[k]
        return None

    def __len__(self) -> int:
        return len(self._starts)


class Router:
    """Learned transfers first, then the bootstrap file (longest prefix match)."""

    def __init__(self, bootstrap: Bootstrap) -> None:
        self.bootstrap = bootstrap
        self.learned = LearnedRoutes()

    def route(self, addr: int) -> Service | None:
        return self.learned.route(addr) or self.bootstrap.route(addr)

    def learn(self, record: dict, service: Service) -> tuple[int, int]:
        """A redirect ended at ``service`` with ``record``: route the range it teaches there."""
        start, end = learned_range(record)
        self.learned.learn(start, end, service)
        return start, end
