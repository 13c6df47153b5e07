"""A re-crawl from an earlier run's networks: one query per known network, plus samples of the gaps.

Each known network is re-checked with one lookup of an address it holds
itself (the first address of a segment where it is the most specific network
of the earlier run, so the registry answers with that network and not with a
child), oldest fetched first, within the budget; then classic-pattern addresses
the earlier run found nothing for are sampled for new networks. The crawl runs
with ``skip_known_networks`` off, since a parent found first must not hide its
children's probes. Networks of the earlier run that were not probed (budget,
or wholly covered by children) are reported as unchecked, never as removed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow.parquet as pq

from whoiscrawl.crawl import ipspace
from whoiscrawl.crawl.seed import classic_pattern
from whoiscrawl.results.datasets import NETWORKS_PARQUET
from whoiscrawl.results.netmap import NetworkMap

PLAN_FILE = "recrawl.json"


def completed_runs(bases: Iterable[Path]) -> list[Path]:
    """Run folders with a coverage report and networks (a finished run), oldest first."""
    found = [p.parent for base in bases for p in Path(base).expanduser().glob("*/coverage.json")
             if (p.parent / NETWORKS_PARQUET).exists()]
    return sorted(found, key=lambda d: (d / "coverage.json").stat().st_mtime)


def plan(previous: Path, budget: int | None, gap_samples: int, random_seed: int) -> dict[str, Any]:
    """The addresses to crawl and the networks they re-check (registry, handle pairs)."""
    table = pq.read_table(Path(previous) / NETWORKS_PARQUET,
                          columns=["registry", "handle", "start_int", "end_int", "fetched_at"])
    starts = table.column("start_int").to_numpy()
    ends = table.column("end_int").to_numpy()
    netmap = NetworkMap.build(starts, ends)
    probe = np.full(len(starts), -1, dtype=np.int64)
    owned = netmap.seg_net >= 0
    seg_net, seg_start = netmap.seg_net[owned], netmap.seg_start[owned]
    first = np.unique(seg_net, return_index=True)  # segments are sorted: the first owned one per network
    probe[first[0]] = seg_start[first[1]]
    fetched = np.asarray([t.timestamp() if t is not None else 0.0 for t in table.column("fetched_at").to_pylist()])
    order = [i for i in np.lexsort((np.arange(len(starts)), fetched)).tolist() if probe[i] >= 0]
    if budget is not None:
        order = order[: max(0, budget - min(gap_samples, budget // 10))] if gap_samples else order[:budget]
    registry, handle = table.column("registry").to_pylist(), table.column("handle").to_pylist()
    checked = [[registry[i], handle[i]] for i in order]
    pool = classic_pattern().astype(np.int64)
    pool = pool[netmap.most_specific(pool) < 0]
    pool = pool[np.random.default_rng(random_seed).permutation(len(pool))]
    room = gap_samples if budget is None else max(0, budget - len(order))
    gaps = pool[: min(gap_samples, room)]
    return {"previous": str(previous), "probes": probe[order].tolist(), "gaps": gaps.tolist(),
            "checked": checked, "gap_count": len(gaps), "known": len(starts), "unprobeable": int((probe < 0).sum())}


def write_plan(out_dir: Path, planned: dict[str, Any]) -> Path:
    """The addresses file the seed is prepared from; the plan itself (without them) beside it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    addresses = out_dir / "recrawl-addresses.txt"
    addresses.write_text("".join(ipspace.to_str(a) + "\n" for a in planned["probes"] + planned["gaps"]))
    (out_dir / PLAN_FILE).write_text(json.dumps({k: v for k, v in planned.items() if k not in ("probes", "gaps")}))
    return addresses


def read_plan(out_dir: Path) -> dict[str, Any] | None:
    path = Path(out_dir) / PLAN_FILE
    return json.loads(path.read_text()) if path.exists() else None
