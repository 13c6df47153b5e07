"""The coverage report: how much of the non-reserved IPv4 space the crawl's networks cover.

Nested and overlapping networks are counted once (the union of ranges), in
total and per registry; the counters are the ancestor's six, summed over the
chunks that succeeded (a retried chunk's dead attempt is not counted twice).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Iterable

import numpy as np

from whoiscrawl.crawl import ipspace
from whoiscrawl.crawl.stats import ANCESTOR_COUNTERS


def coverage_report(networks: Iterable[dict[str, Any]], outcomes: Iterable[dict[str, Any]],
                    seed_count: int, run: str = "") -> dict[str, Any]:
    """``networks``: distinct network records (registry, start, end); ``outcomes``: the chunks' results."""
    total_nr = ipspace.non_reserved_total()
    per_registry: dict[str, list[tuple[int, int]]] = defaultdict(list)
    all_ranges: list[tuple[int, int]] = []
    for net in networks:
        r = (ipspace.to_int(net["start"]), ipspace.to_int(net["end"]))
        per_registry[net["registry"]].append(r)
        all_ranges.append(r)
    covered = ipspace.union_size(all_ranges)
    by_registry = {}
    for reg, rs in sorted(per_registry.items()):
        size = ipspace.union_size(rs)
        by_registry[reg] = {"networks": len(rs), "addresses_covered": size,
                            "percent_of_non_reserved": round(100.0 * size / total_nr, 4)}

    counters: Counter[str] = Counter({name: 0 for name in ANCESTOR_COUNTERS})
    reasons: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    duration = 0.0
    for o in outcomes:
        counters.update(o.get("counters", {}))
        reasons.update(o.get("failed_by_reason", {}))
        for k in ("addresses", "skipped", "looked_up", "failed"):
            totals[k] += int(o.get(k, 0))
        duration = max(duration, float(o.get("duration_s", 0.0)))

    return {
        "run": run,
        "seed_addresses": seed_count,
        "addresses_crawled": totals["addresses"],
        "looked_up": totals["looked_up"],
        "skipped": totals["skipped"],
        "failed": totals["failed"],
        "failed_by_reason": dict(sorted(reasons.items())),
        "distinct_networks": len(all_ranges),
        "addresses_covered": covered,
        "non_reserved_total": total_nr,
        "coverage_percent": round(100.0 * covered / total_nr, 4),
        "per_registry": by_registry,
        "counters": {name: int(counters[name]) for name in ANCESTOR_COUNTERS},
        "longest_chunk_s": round(duration, 3),
    }


def coverage_curve(starts: np.ndarray, ends: np.ndarray, order_keys: list[str],
                   points: int = 200) -> dict[str, Any]:
    """Addresses covered after every ``every`` networks found, in the order they were fetched.

    Each network found is one answered query; ``order_keys`` (the records' fetched_at, ISO text) sort
    them, ties in drain order. At most ``points`` points plus the last.
    """
    n = len(starts)
    every = max(1, -(-n // points))
    order = sorted(range(n), key=lambda i: (order_keys[i], i))
    s, e = np.asarray(starts, np.int64)[order], np.asarray(ends, np.int64)[order]
    marks = list(range(every, n, every)) + ([n] if n else [])
    return {"every": every, "queries": marks,
            "addresses_covered": [_covered(s[:k], e[:k]) for k in marks]}


def _covered(starts: np.ndarray, ends: np.ndarray) -> int:
    s, e = ipspace.merge_intervals(starts, ends)
    return int((e - s + 1).sum())


def status_counts(outcomes: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Per registry: addresses looked up and failed (by reason), and lookups sent; and the totals."""
    per: dict[str, Counter[str]] = defaultdict(Counter)
    queries = 0
    for o in outcomes:
        for name, value in (o.get("stats") or {}).items():
            parts = name.split("/")
            if parts[0] == "address" and len(parts) >= 3 and parts[2] in ("looked_up", "failed"):
                per[parts[1]][parts[2]] += int(value)
                if parts[2] == "failed" and len(parts) > 3:
                    per[parts[1]][f"failed/{parts[3]}"] += int(value)
            elif parts[0] == "lookup" and len(parts) == 3 and parts[2] == "attempt":
                per[parts[1]]["queries"] += int(value)
                queries += int(value)
    return {"queries": queries, "per_registry": {r: dict(sorted(c.items())) for r, c in sorted(per.items())}}
