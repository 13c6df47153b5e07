"""A re-crawl from an earlier run's networks: one query per known network, plus samples of the gaps.

Each known network is re-checked with one lookup of the address whose lookup
found it (so an unchanged registry answers with that very network, not a
child or a parent), oldest fetched first, within the budget; then seed
addresses the earlier run found no network for (its gaps) are sampled for new
networks. The crawl runs
with ``skip_known_networks`` off, since a parent found first must not hide its
children's probes. Networks of the earlier run that were not probed (budget,
or wholly covered by children) are reported as unchecked, never as removed.

A probe that comes back with a network narrower than the one it re-checks
(split, or a part re-assigned) makes the crawl look up the rest of the old
range too (:class:`SplitFollowUps`), so every part is found and the change
report can name the split.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow.parquet as pq

from whoiscrawl.crawl import ipspace
from whoiscrawl.results.datasets import ADDRESSES_PARQUET, NETWORKS_PARQUET

PLAN_FILE = "recrawl.json"


def completed_runs(bases: Iterable[Path]) -> list[Path]:
    """Run folders with a coverage report and networks (a finished run), oldest first."""
    found = [p.parent for base in bases for p in Path(base).expanduser().glob("*/coverage.json")
             if (p.parent / NETWORKS_PARQUET).exists()]
    return sorted(found, key=lambda d: (d / "coverage.json").stat().st_mtime)


def plan(previous: Path, budget: int | None, gap_samples: int, random_seed: int) -> dict[str, Any]:
    """The addresses to crawl and the networks they re-check (registry, handle pairs)."""
    table = pq.read_table(Path(previous) / NETWORKS_PARQUET,
                          columns=["registry", "handle", "query_int", "fetched_at", "start_int", "end_int"])
    probe = np.asarray([-1 if q is None else q for q in table.column("query_int").to_pylist()], dtype=np.int64)
    fetched = np.asarray([t.timestamp() if t is not None else 0.0 for t in table.column("fetched_at").to_pylist()])
    order = [i for i in np.lexsort((np.arange(len(probe)), fetched)).tolist() if probe[i] >= 0]
    reserve = min(gap_samples, budget // 10) if budget is not None else 0
    if budget is not None:
        order = order[: max(0, budget - reserve)]
    registry, handle = table.column("registry").to_pylist(), table.column("handle").to_pylist()
    addresses = pq.read_table(Path(previous) / ADDRESSES_PARQUET, columns=["address_int", "handle"])
    unheld = np.asarray([a for a, h in zip(addresses.column("address_int").to_pylist(),
                                           addresses.column("handle").to_pylist()) if h is None], dtype=np.int64)
    unheld = unheld[np.random.default_rng(random_seed).permutation(len(unheld))]
    room = gap_samples if budget is None else max(0, budget - len(order))
    gaps = unheld[: min(gap_samples, room)]
    bounds = np.column_stack([table.column("start_int").to_numpy(), table.column("end_int").to_numpy()])
    return {"previous": str(previous), "probes": probe[order].tolist(), "gaps": gaps.tolist(),
            "ranges": bounds[order].astype(np.int64).tolist(),
            "checked": [[registry[i], handle[i]] for i in order], "gap_count": len(gaps),
            "known": len(probe), "unprobeable": int((probe < 0).sum())}


def write_plan(out_dir: Path, planned: dict[str, Any]) -> Path:
    """The addresses file the seed is prepared from; the plan itself (without them) beside it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    addresses = out_dir / "recrawl-addresses.txt"
    addresses.write_text("".join(ipspace.to_str(a) + "\n" for a in planned["probes"] + planned["gaps"]))
    (out_dir / PLAN_FILE).write_text(json.dumps({k: v for k, v in planned.items()
                                                 if k not in ("probes", "gaps", "ranges")}))
    return addresses


def read_plan(out_dir: Path) -> dict[str, Any] | None:
    path = Path(out_dir) / PLAN_FILE
    return json.loads(path.read_text()) if path.exists() else None


class SplitFollowUps:
    """The crawl's ``followups``: when a probe's answer is narrower than the network it re-checks, look up
    the first address of that old range no answer covers yet, until the range is covered or an answer
    leaves it (what a part of it became is no longer inside: deleted, merged).

    ``ranges``: probe address -> (start, end) of the network it re-checks. ``max_per_network`` bounds
    the queries one old network may cost (a /16 split into /24s would otherwise cost 256).
    """

    def __init__(self, ranges: dict[int, tuple[int, int]], max_per_network: int = 16) -> None:
        self.ranges = dict(ranges)
        self.max_per_network = max_per_network
        self._covered: dict[tuple[int, int], list[tuple[int, int]]] = {}

    def __call__(self, addr: int, start: int, end: int) -> list[int]:
        old = self.ranges.get(int(addr))
        if old is None:
            return []
        first, last = old
        if start < first or end > last or (start, end) == old:
            return []  # the same network, or one that encloses or leaves the old range: nothing to split
        covered = self._covered.setdefault(old, [])
        covered.append((start, end))
        if len(covered) > self.max_per_network:
            return []
        position = first
        for lo, hi in sorted(covered):
            if lo > position:
                break
            position = max(position, hi + 1)
        if position > last:
            return []
        self.ranges[position] = old
        return [position]
