"""Counters behind ``GET /_stats``: what every registry and client was answered.

Benchmarks and tests read these to check a crawler's politeness (429s, blocks)
and to count work without trusting the crawler's own numbers.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

#: Outcome names counted besides HTTP statuses.
OUTCOMES = ("rate_limited", "blocked", "blocks", "redirects", "unanswered", "dropped",
            "truncated", "html", "server_errors", "not_found", "bad_requests")


class _Tally:
    __slots__ = ("requests", "statuses", "outcomes")

    def __init__(self) -> None:
        self.requests = 0
        self.statuses: Counter[int] = Counter()
        self.outcomes: Counter[str] = Counter()

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"requests": self.requests,
                                "responses": {str(k): v for k, v in sorted(self.statuses.items())}}
        body.update({name: self.outcomes.get(name, 0) for name in OUTCOMES})
        return body


class Stats:
    """Totals, per registry and per client address."""

    def __init__(self) -> None:
        self.started = time.time()
        self.total = _Tally()
        self.registries: defaultdict[str, _Tally] = defaultdict(_Tally)
        self.clients: defaultdict[str, _Tally] = defaultdict(_Tally)
        self.control: Counter[str] = Counter()
        self.connections = 0

    def request(self, registry: str, client: str) -> None:
        for tally in (self.total, self.registries[registry], self.clients[client]):
            tally.requests += 1

    def status(self, registry: str, client: str, status: int) -> None:
        for tally in (self.total, self.registries[registry], self.clients[client]):
            tally.statuses[status] += 1

    def outcome(self, registry: str, client: str, name: str) -> None:
        for tally in (self.total, self.registries[registry], self.clients[client]):
            tally.outcomes[name] += 1

    def as_dict(self) -> dict[str, Any]:
        body = self.total.as_dict()
        body["uptime_s"] = round(time.time() - self.started, 3)
        body["connections"] = self.connections
        body["control"] = dict(self.control)
        body["registries"] = {name: tally.as_dict() for name, tally in sorted(self.registries.items())}
        body["clients"] = {addr: tally.as_dict() for addr, tally in sorted(self.clients.items())}
        return body
