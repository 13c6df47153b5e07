"""What changed between two runs' networks: new, removed, changed (which fields), moved between registries.

A network is the same network in both runs when registry and handle agree
(then any differing field makes it ``changed``); left over, an old and a new
network with the same range but another registry were ``moved`` (a transfer),
with the same registry ``changed`` (its handle among the fields); an old network
whose range new networks of its registry now tile exactly, two or more, was
``split`` (the change lists the ``parts``); the rest are ``removed`` and ``new``. Observation fields (when, how, from which URL it was
fetched) are not changes. ``changes.jsonl.gz`` holds one line per change.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import pyarrow.parquet as pq

from whoiscrawl.results.datasets import NETWORKS_PARQUET

CHANGES_JSONL = "changes.jsonl.gz"
#: The fields that describe a network; a difference in any of them is a change.
COMPARED = ("handle", "start", "end", "cidrs", "name", "type", "country", "parent_handle", "entities",
            "registered_at", "last_changed_at")


def _view(net: dict[str, Any]) -> dict[str, Any]:
    return {k: net.get(k) for k in ("registry", *COMPARED)}


def _differing(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [k for k in COMPARED if old.get(k) != new.get(k)]


def diff_networks(before: Iterable[dict[str, Any]], after: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The change records from ``before`` to ``after`` (network rows as in networks.parquet)."""
    old = {(n["registry"], n["handle"]): n for n in before}
    new = {(n["registry"], n["handle"]): n for n in after}
    changes: list[dict[str, Any]] = []
    came = {k: new[k] for k in new.keys() - old.keys()}
    differing = {k: f for k in sorted(old.keys() & new.keys()) if (f := _differing(old[k], new[k]))}
    # a handle that names its start keeps naming the lower part of a split network
    narrowed = {k: old[k] for k, f in differing.items() if "end" in f}
    splits = {(c["registry"], c["handle"]): c
              for c in _splits(narrowed, came, kept={k: new[k] for k in narrowed})}
    for key, fields in differing.items():
        changes.append(splits.get(key) or {"change": "changed", "registry": key[0], "handle": key[1],
                                           "fields": fields, "before": _view(old[key]), "after": _view(new[key])})
    gone = {k: old[k] for k in old.keys() - new.keys()}
    by_range: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for key, net in sorted(came.items()):
        by_range.setdefault((net["start"], net["end"]), []).append(key)
    for key, net in sorted(gone.items()):
        candidates = by_range.get((net["start"], net["end"])) or []
        if not candidates:
            continue
        match = candidates.pop(0)
        successor = came.pop(match)
        del gone[key]
        kind = "moved" if successor["registry"] != net["registry"] else "changed"
        changes.append({"change": kind, "registry": successor["registry"], "handle": successor["handle"],
                        "fields": (["registry"] if kind == "moved" else []) + _differing(net, successor),
                        "before": _view(net), "after": _view(successor)})
    changes += _splits(gone, came)
    changes += [{"change": "removed", "registry": k[0], "handle": k[1], "fields": [], "before": _view(n),
                 "after": None} for k, n in sorted(gone.items())]
    changes += [{"change": "new", "registry": k[0], "handle": k[1], "fields": [], "before": None,
                 "after": _view(n)} for k, n in sorted(came.items())]
    return changes


def _splits(gone: dict[tuple[str, str], dict[str, Any]], came: dict[tuple[str, str], dict[str, Any]],
            kept: dict[tuple[str, str], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Old networks that new ones of the same registry tile exactly; both taken out of ``gone``/``came``.

    ``kept``: old networks of ``gone`` still there under their handle with a narrower range, by key (each
    may be one of the parts).
    """
    from bisect import bisect_left

    from whoiscrawl.crawl import ipspace

    def bounds(net: dict[str, Any]) -> tuple[int, int]:
        return ipspace.to_int(str(net["start"])), ipspace.to_int(str(net["end"]))

    kept = kept or {}
    candidates = {**came, **kept}  # a kept network is a part of its own old range only
    by_registry: dict[str, list[tuple[int, int, tuple[str, str]]]] = {}
    for key, net in candidates.items():
        by_registry.setdefault(key[0], []).append((*bounds(net), key))
    for rows in by_registry.values():
        rows.sort()
    found = []
    for key, net in sorted(gone.items()):
        first, last = bounds(net)
        rows = by_registry.get(key[0], [])
        parts, position = [], first
        for lo, hi, k in rows[bisect_left(rows, (first, -1)):]:
            if lo > last or lo != position or hi > last or k not in candidates or (k in kept and k != key):
                break
            parts.append(k)
            position = hi + 1
        if len(parts) < 2 or position != last + 1:
            continue
        found.append({"change": "split", "registry": key[0], "handle": key[1], "fields": [], "before": _view(net),
                      "after": None, "parts": [_view(candidates.pop(k)) for k in parts]})
        for k in parts:
            came.pop(k, None)
        del gone[key]
    return found


def summarise(changes: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per kind of change, and per field for ``changed``: the XCom's summary."""
    kinds = Counter(c["change"] for c in changes)
    fields = Counter(f for c in changes if c["change"] == "changed" for f in c["fields"])
    return {"new": kinds["new"], "removed": kinds["removed"], "changed": kinds["changed"],
            "moved": kinds["moved"], "split": kinds["split"], "changed_fields": dict(sorted(fields.items()))}


def read_networks(run_dir: Path) -> list[dict[str, Any]]:
    return pq.read_table(Path(run_dir) / NETWORKS_PARQUET, columns=["registry", *COMPARED]).to_pylist()


def write_changes(before_dir: Path, after_dir: Path,
                  checked: Iterable[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Compare two run folders; write ``after_dir/changes.jsonl.gz``; return the summary.

    ``checked``: the earlier networks the later run re-checked (a re-crawl); the others, unless found
    again, are left out (``unchecked``), not reported removed. None: the later run is complete.
    """
    before, after = read_networks(before_dir), read_networks(after_dir)
    unchecked = 0
    if checked is not None:
        keep = {tuple(k) for k in checked} | {(n["registry"], n["handle"]) for n in after}
        kept = [n for n in before if (n["registry"], n["handle"]) in keep]
        unchecked, before = len(before) - len(kept), kept
    changes = diff_networks(before, after)
    path = Path(after_dir) / CHANGES_JSONL
    tmp = Path(str(path) + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as fh:
        for change in changes:
            fh.write(json.dumps(change, default=str, separators=(",", ":")) + "\n")
    os.replace(tmp, path)
    return {"before": str(before_dir), "after": str(after_dir), **summarise(changes), "unchecked": unchecked}
