"""A run's live figures from the metrics topic, its run state and its known-network index in Redis.

The hosts already publish cumulative per-reporter reports to the metrics topic
(``crawl/telemetry.py``); the cluster view is the latest report of each
reporter, summed (:func:`~whoiscrawl.crawl.telemetry.aggregate`), here
restricted to one run. Rates come from each reporter's last two reports.
Coverage so far is the union of the networks in the run's known-network
index, which grows in the order networks are found, so the curve is the
coverage after each network found.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any, Iterable

import numpy as np

from whoiscrawl.crawl import runstate
from whoiscrawl.crawl.ipspace import merge_intervals, non_reserved_total
from whoiscrawl.crawl.registries import REGISTRIES
from whoiscrawl.crawl.telemetry import aggregate

#: points of the coverage curve
CURVE_POINTS = 60


def run_of(report: dict[str, Any]) -> str | None:
    """The run key in a reporter id ``host:pid:run:chunk:attempt`` (run keys have no colons)."""
    parts = str(report.get("reporter", "")).rsplit(":", 3)
    return parts[1] if len(parts) == 4 else None


def runs(reports: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every run the topic holds reports of, the most recently reporting first."""
    seen: dict[str, dict[str, Any]] = {}
    for r in reports:
        key = run_of(r)
        if key is None:
            continue
        entry = seen.setdefault(key, {"run": key, "first_report": r.get("timestamp", 0),
                                      "last_report": r.get("timestamp", 0), "reporters": set()})
        entry["first_report"] = min(entry["first_report"], r.get("timestamp", 0))
        entry["last_report"] = max(entry["last_report"], r.get("timestamp", 0))
        entry["reporters"].add(r.get("reporter"))
    out = [{**e, "reporters": len(e["reporters"])} for e in seen.values()]
    return sorted(out, key=lambda e: e["last_report"], reverse=True)


def _by_reporter(reports: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in reports:
        by.setdefault(r.get("reporter") or r.get("host", "?"), []).append(r)
    for items in by.values():
        items.sort(key=lambda r: r.get("timestamp", 0))
    return by


def _rate(items: list[dict[str, Any]], value) -> float:
    """Per second between a reporter's last two reports; 0 once it sent its final one."""
    if len(items) < 2 or items[-1].get("final"):
        return 0.0
    a, b = items[-2], items[-1]
    dt = b.get("timestamp", 0) - a.get("timestamp", 0)
    return max(0.0, (value(b) - value(a)) / dt) if dt > 0 else 0.0


def _registry_counter(report: dict[str, Any], registry: str, name: str) -> float:
    return float((report.get("per_registry") or {}).get(registry, {}).get(name, 0))


def budget_per_s(windows) -> float:
    """The sustained requests per second a host's windows allow (the tightest window)."""
    return min((w.count / w.period_s for w in windows), default=0.0)


def registry_figures(by_reporter: dict[str, list[dict[str, Any]]], registry: str,
                     budget_host_s: float | None, hosts: int) -> dict[str, Any]:
    latest = [items[-1] for items in by_reporter.values()]
    counters: Counter[str] = Counter()
    for r in latest:
        for name, value in (r.get("per_registry") or {}).get(registry, {}).items():
            counters[name] += value
    failures = {name.split("/", 2)[2]: int(v) for name, v in counters.items() if name.startswith("address/failed/")}
    rps = sum(_rate(items, lambda r: _registry_counter(r, registry, "lookup/attempt"))
              for items in by_reporter.values())
    return {
        "routed": int(counters["address/routed"]),
        "looked_up": int(counters["address/looked_up"]),
        "requests": int(counters["lookup/attempt"]),
        "requests_per_s": round(rps, 2),
        "budget_per_s": None if budget_host_s is None else round(budget_host_s * max(hosts, 1), 3),
        "http_429": int(counters["throttle/received/http_429"]),
        "pauses": int(sum(v for n, v in counters.items() if n.startswith("ratelimit/paused/"))),
        "blocks": int(counters["throttle/received/http_403"]),
        "breaker_opened": int(counters["breaker/opened"]),
        "failed": int(sum(failures.values())),
        "failures": dict(sorted(failures.items())),
    }


def coverage_curve(log: bytes, points: int = CURVE_POINTS) -> dict[str, Any]:
    """Coverage of the index's networks (in the order they were found), with ``points`` steps of the curve."""
    total = non_reserved_total()
    records = np.frombuffer(log[: len(log) // 8 * 8], dtype=">u4").astype(np.int64).reshape(-1, 2)
    n = len(records)
    curve = []
    for k in sorted({int(round(n * i / points)) for i in range(1, points + 1)} - {0}):
        s, e = merge_intervals(records[:k, 0], records[:k, 1])
        curve.append({"networks": k, "percent": round(100.0 * float((e - s + 1).sum()) / total, 4)})
    covered = curve[-1]["percent"] if curve else 0.0
    return {"networks": n, "percent": covered, "curve": curve}


def figures(reports: list[dict[str, Any]], run: str, *, run_state: dict[str, Any] | None = None,
            seed_addresses: int | None = None, index_log: bytes = b"") -> dict[str, Any]:
    """The page's figures for ``run``: totals, hosts, registries, addresses left, coverage."""
    from whoiscrawl.crawl.config import RunConfig

    mine = [r for r in reports if run_of(r) == run]
    by_reporter = _by_reporter(mine)
    agg = aggregate(mine)
    hosts = sorted(agg["hosts"])
    limits = None
    if run_state and "run_config" in run_state:
        limits = RunConfig.from_values(run_state["run_config"]).rate_limit_table()
    host_rows = {}
    for host in hosts:
        items = {k: v for k, v in by_reporter.items() if v[-1].get("host") == host}
        host_rows[host] = {**agg["hosts"][host],
                           "requests_per_s": round(sum(_rate(v, lambda r: sum(
                               float(c.get("lookup/attempt", 0)) for c in (r.get("per_registry") or {}).values()))
                               for v in items.values()), 2),
                           "reporters": len(items),
                           "active": sum(1 for v in items.values() if not v[-1].get("final"))}
    registries = {}
    for registry in REGISTRIES:
        budget = budget_per_s(limits.windows.get(registry, limits.default)) if limits else None
        registries[registry] = registry_figures(by_reporter, registry, budget, len(hosts))
    done = agg["Within Known CIDR Block"] + agg["Got WHOIS"] + agg["Failed to lookup WHOIS"]
    totals = {k: v for k, v in agg.items() if k not in ("hosts", "reporters")}
    last = max((r.get("timestamp", 0) for r in mine), default=None)
    return {
        "run": run,
        "updated": time.time(),
        "last_report": last,
        "reporters": agg["reporters"],
        "active_reporters": sum(1 for v in by_reporter.values() if not v[-1].get("final")),
        "totals": totals,
        "seed_addresses": seed_addresses,
        "addresses_done": done,
        "addresses_left": None if seed_addresses is None else max(seed_addresses - done, 0),
        "hosts": host_rows,
        "registries": registries,
        "coverage": coverage_curve(index_log),
    }


# --- reading the sources --------------------------------------------------------------------
class MetricsReader:
    """The metrics topic read with one consumer: each :meth:`reports` reads only what came since the last.

    Its own group id, offsets kept in the object, never committed: a reader never moves anyone's offsets.
    A page that polls every few seconds (and the demo's progress) costs one connection, not one per poll.
    """

    def __init__(self, kafka: dict[str, Any], topic: str) -> None:
        import uuid

        from whoiscrawl.crawl.kafka_io import make_consumer

        self.topic = topic
        self._consumer = make_consumer(kafka, group_id=f"whoiscrawl-ui-{uuid.uuid4().hex[:8]}")
        self._next: dict[int, int] = {}
        self._reports: list[dict[str, Any]] = []

    def reports(self) -> list[dict[str, Any]]:
        """Every report on the topic so far (the list grows; callers must not change it)."""
        from whoiscrawl.crawl.kafka_io import end_offsets, read_range

        ends = end_offsets(self._consumer, self.topic)
        for _key, value in read_range(self._consumer, self.topic, {p: self._next.get(p, 0) for p in ends}, ends):
            try:
                report = json.loads(value)
            except ValueError:
                continue  # one bad record never hides the others
            if isinstance(report, dict):
                self._reports.append(report)
        self._next.update(ends)
        return self._reports

    def close(self) -> None:
        self._consumer.close()


def read_reports(kafka: dict[str, Any], topic: str) -> list[dict[str, Any]]:
    """Every report on the metrics topic, read once."""
    reader = MetricsReader(kafka, topic)
    try:
        return list(reader.reports())
    finally:
        reader.close()


def read_run_state(client, run: str) -> tuple[dict[str, Any] | None, int | None, bytes]:
    """(run state, seed addresses, index log) of ``run`` from Redis; None/b"" for what is not there."""
    prefix = f"whoiscrawl:run:{run}"
    raw = client.hgetall(f"{prefix}:config")
    state = {k.decode() if isinstance(k, bytes) else k: json.loads(v) for k, v in raw.items()} if raw else None
    seed_addresses = 0
    found = False
    for chunk_key in client.scan_iter(match=f"{prefix}:chunk:*", count=1000):
        name = chunk_key.decode() if isinstance(chunk_key, bytes) else chunk_key
        if name.endswith(":continuation"):  # a deferred rest of a chunk counted already
            continue
        seed_addresses += int(client.strlen(chunk_key)) // 4
        found = True
    attempt = int((state or {}).get("attempt", 0))  # the index of the run's current attempt
    log = client.get(f"{runstate.index_key(run, attempt)}:log") or b""
    return state, (seed_addresses if found else None), log


def text_table(f: dict[str, Any]) -> str:
    """The figures as the terminal's live table (``whoiscrawl telemetry --follow``): registries, then hosts."""
    t = f["totals"]
    lines = [f"run {f['run']}  reporters {f['reporters']} ({f['active_reporters']} active)  "
             f"looked up {t['Got WHOIS']:,}  skipped {t['Within Known CIDR Block']:,}  "
             f"failed {t['Failed to lookup WHOIS']:,}  coverage {f['coverage']['percent']:.4f} %", ""]
    head = ("registry", "routed", "looked_up", "requests", "req/s", "budget/s", "429s", "pauses", "blocks", "failed")
    rows = [head] + [(name, f"{r['routed']:,}", f"{r['looked_up']:,}", f"{r['requests']:,}",
                      f"{r['requests_per_s']:.1f}", "-" if r["budget_per_s"] is None else f"{r['budget_per_s']:g}",
                      f"{r['http_429']:,}", f"{r['pauses']:,}", f"{r['blocks']:,}", f"{r['failed']:,}")
                     for name, r in f["registries"].items()]
    rows += [()] + [("host", "looked_up", "skipped", "failed", "req/s", "reporters", "active")]
    rows += [(host, f"{h['Got WHOIS']:,}", f"{h['Within Known CIDR Block']:,}", f"{h['Failed to lookup WHOIS']:,}",
              f"{h['requests_per_s']:.1f}", str(h["reporters"]), str(h["active"])) for host, h in f["hosts"].items()]
    widths = [max(len(row[i]) for row in rows if len(row) > i) for i in range(len(head))]
    for row in rows:
        lines.append("  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i])
                               for i, cell in enumerate(row)).rstrip())
    return "\n".join(lines)
