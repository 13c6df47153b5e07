"""``whoiscrawl lookup``: who holds an address, answered from a run's on-disk index.

The drain builds ``lookup.sqlite`` once per run: the disjoint segments of
``results.netmap.NetworkMap`` keyed by their first address (SQLite's rowid
B-tree: one ``start <= ?`` descent per address, no scan) and the networks with
their parent, so an answer is the most specific network and its parents up to
the allocation, with the registry and the entities.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterable

import pyarrow.parquet as pq

from whoiscrawl.crawl import ipspace
from whoiscrawl.errors import WhoiscrawlError
from whoiscrawl.results.datasets import NETWORKS_PARQUET
from whoiscrawl.results.netmap import NetworkMap

INDEX_NAME = "lookup.sqlite"
_NET_COLUMNS = ("registry", "handle", "start", "end", "cidrs", "name", "type", "country",
                "parent_handle", "entities", "fetched_at")


class NoRunIndex(WhoiscrawlError):
    """No run to answer from, or a run without an index."""


def build_index(run_dir: Path) -> Path:
    """Write ``lookup.sqlite`` for the run's networks.parquet (replacing any older one)."""
    run_dir = Path(run_dir)
    table = pq.read_table(run_dir / NETWORKS_PARQUET, columns=[c for c in _NET_COLUMNS] + ["start_int", "end_int"])
    netmap = NetworkMap.build(table.column("start_int").to_numpy(), table.column("end_int").to_numpy())
    tmp = run_dir / (INDEX_NAME + ".tmp")
    tmp.unlink(missing_ok=True)
    db = sqlite3.connect(tmp)
    try:
        db.execute("CREATE TABLE segments (start INTEGER PRIMARY KEY, last INTEGER NOT NULL, net INTEGER NOT NULL)")
        db.execute("CREATE TABLE networks (id INTEGER PRIMARY KEY, parent INTEGER, doc TEXT NOT NULL)")
        keep = netmap.seg_net >= 0
        db.executemany("INSERT INTO segments VALUES (?, ?, ?)",
                       zip(netmap.seg_start[keep].tolist(), netmap.seg_end[keep].tolist(),
                           netmap.seg_net[keep].tolist()))
        rows = table.select(list(_NET_COLUMNS)).to_pylist()
        db.executemany("INSERT INTO networks VALUES (?, ?, ?)",
                       ((i, int(netmap.parent[i]), json.dumps(r, default=str, separators=(",", ":")))
                        for i, r in enumerate(rows)))
        db.commit()
    finally:
        db.close()
    os.replace(tmp, run_dir / INDEX_NAME)
    return run_dir / INDEX_NAME


def newest_run(bases: Iterable[Path]) -> Path:
    """The run folder whose index is newest, among the folders under ``bases``."""
    found = [p for base in bases for p in Path(base).expanduser().glob(f"*/{INDEX_NAME}")]
    if not found:
        raise NoRunIndex("no run with a lookup index under " + ", ".join(str(b) for b in bases)
                           + " (a run's drain_results task builds it); name one with --run")
    return max(found, key=lambda p: p.stat().st_mtime).parent


def resolve_run(name: str, bases: Iterable[Path]) -> Path:
    """A run folder from a path, or from a run key under one of ``bases``."""
    named = Path(name).expanduser()
    if named.is_dir():
        return named
    for base in bases:
        if (Path(base) / name).is_dir():
            return Path(base) / name
    raise NoRunIndex(f"no run folder {name!r} (neither a folder nor a run under " + ", ".join(map(str, bases)) + ")")


class LookupIndex:
    """An open run index: ``lookup(address)`` answers from two B-tree descents and a few row reads."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        path = self.run_dir / INDEX_NAME
        if not path.exists():
            raise NoRunIndex(f"{self.run_dir} has no {INDEX_NAME} (not a finished run folder?)")
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def close(self) -> None:
        self._db.close()

    def _network(self, net: int) -> tuple[dict[str, Any], int]:
        parent, doc = self._db.execute("SELECT parent, doc FROM networks WHERE id = ?", (net,)).fetchone()
        return json.loads(doc), parent

    def lookup(self, address: str | int) -> dict[str, Any]:
        """{"address", "found", "registry", "network", "parents"}; ``parents`` innermost first."""
        try:
            addr = int(address) if isinstance(address, int) else ipspace.to_int(str(address).strip())
        except ValueError:
            return {"address": str(address), "error": "not an IPv4 address"}
        text = ipspace.to_str(addr)
        row = self._db.execute("SELECT last, net FROM segments WHERE start <= ? ORDER BY start DESC LIMIT 1",
                               (addr,)).fetchone()
        if row is None or row[0] < addr:
            return {"address": text, "found": False, "registry": None, "network": None, "parents": []}
        chain = []
        net = row[1]
        while net is not None and net >= 0 and len(chain) < 64:
            doc, net = self._network(net)
            chain.append(doc)
        return {"address": text, "found": True, "registry": chain[0]["registry"], "network": chain[0],
                "parents": chain[1:]}


def format_answer(answer: dict[str, Any]) -> str:
    """A few human lines for one answer."""
    if "error" in answer:
        return f"{answer['address']}: {answer['error']}"
    if not answer["found"]:
        return f"{answer['address']}: no network found in this run"
    net = answer["network"]
    lines = [f"{answer['address']}: {net['registry']} {net['handle']} {net['start']} - {net['end']} "
             f"{net.get('name') or ''} {net.get('country') or ''}".rstrip()]
    for ent in net.get("entities") or []:
        lines.append(f"  entity {ent.get('handle')} ({', '.join(ent.get('roles') or [])}) {ent.get('name') or ''}".rstrip())
    for parent in answer["parents"]:
        lines.append(f"  inside {parent['registry']} {parent['handle']} {parent['start']} - {parent['end']} "
                     f"{parent.get('name') or ''}".rstrip())
    return "\n".join(lines)
