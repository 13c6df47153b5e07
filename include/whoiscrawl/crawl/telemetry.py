"""Per-host telemetry on the ``metrics`` topic, and the cluster aggregate.

Each crawl process reports its counters (the ancestor's six, plus per-registry
429s, redirects, retries and latency percentiles) every
``TELEMETRY_INTERVAL_S`` and once more when it ends. A report is cumulative
for its reporter, so the cluster view is the latest report of each reporter,
summed: a lost or duplicated report changes nothing.
"""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from typing import Any, Iterable

from whoiscrawl.crawl.kafka_io import DeliveryTracker
from whoiscrawl.crawl.stats import ANCESTOR_COUNTERS, StatsCollector, registry_of


def host_id(configured: str = "") -> str:
    return configured or socket.gethostname()


def per_registry(counters: dict[str, int | float]) -> dict[str, dict[str, int | float]]:
    """Stats split by their registry part: ``{"lacnic": {"throttle/received/http_429": 2}}``."""
    out: dict[str, dict[str, int | float]] = {}
    for name, value in counters.items():
        registry = registry_of(name)
        if registry is not None:
            area, _registry, rest = name.split("/", 2)
            out.setdefault(registry, {})[f"{area}/{rest}"] = value
    return out


def build_report(stats: StatsCollector, host: str, reporter: str, final: bool = False) -> dict[str, Any]:
    counters = stats.as_dict()
    return {
        "host": host,
        "reporter": reporter,
        "timestamp": time.time(),
        "final": final,
        **stats.ancestor_view(),
        "counters": counters,
        "per_registry": per_registry(counters),
        "latency": stats.latency_percentiles(),
    }


class TelemetryReporter:
    """Sends a report when due (call ``maybe_report`` from the crawl loop) and a final one at the end."""

    def __init__(self, tracker: DeliveryTracker, topic: str, host: str, reporter: str,
                 interval_s: float) -> None:
        self.tracker, self.topic, self.host, self.reporter = tracker, topic, host, reporter
        self.interval_s = interval_s
        self._last = 0.0
        self.sent = 0

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.interval_s

    def maybe_report(self, stats: StatsCollector, final: bool = False) -> bool:
        now = time.monotonic()
        if not final and not self.due():
            return False
        self._last = now
        report = build_report(stats, self.host, self.reporter, final)
        self.tracker.produce(self.topic, self.host, report, lambda _err: None)
        self.sent += 1
        return True


def aggregate(reports: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The cluster view: the latest report of each reporter, summed; hosts listed with their own sums."""
    latest: dict[str, dict[str, Any]] = {}
    for r in reports:
        key = r.get("reporter") or r.get("host")
        if key not in latest or r.get("timestamp", 0) >= latest[key].get("timestamp", 0):
            latest[key] = r
    total: Counter[str] = Counter({name: 0 for name in ANCESTOR_COUNTERS})
    hosts: dict[str, Counter[str]] = {}
    for r in latest.values():
        per_host = hosts.setdefault(r.get("host", "?"), Counter())
        for name in ANCESTOR_COUNTERS:
            total[name] += int(r.get(name, 0))
            per_host[name] += int(r.get(name, 0))
    out: dict[str, Any] = {name: total[name] for name in sorted(ANCESTOR_COUNTERS)}
    out["hosts"] = {h: {k: c[k] for k in sorted(c)} for h, c in sorted(hosts.items())}
    out["reporters"] = len(latest)
    return out


def format_aggregate(agg: dict[str, Any]) -> str:
    return json.dumps(agg, sort_keys=True, indent=4)
