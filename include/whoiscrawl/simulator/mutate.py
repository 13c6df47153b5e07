"""Change a known set of networks of a universe, to test re-crawls: ``simulate --mutate SEED:N``.

N leaf networks (with no network inside them, not a cross-registry transfer),
drawn with SEED, get one change each, the operations in turn (the first three
only for networks inside an allocation: a deleted one's addresses answer with
its parent):

* ``reassign``: another country, so the name and the country change (same handle);
* ``transfer``: held by the next registry, so registry, handle and type change (same range);
* ``delete``: gone, its addresses answer with the enclosing network again;
* ``split``: two networks, its lower and its upper half (new handles: a handle names a range).

The list of changes (what a re-crawl must report, exactly) is returned and
logged; the same SEED:N on the same universe always changes the same networks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from whoiscrawl.crawl.registries import REGISTRIES
from whoiscrawl.simulator.universe import Universe

OPERATIONS = ("reassign", "transfer", "delete", "split")


def parse_spec(text: str) -> tuple[int, int]:
    """``SEED:N`` -> (seed, n)."""
    seed, sep, n = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return int(seed), int(n)
    except ValueError:
        raise ValueError(f"--mutate {text!r}: expected SEED:N, e.g. 7:30") from None


def mutate(universe: Universe, seed: int, n: int, only: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Apply the changes in place; returns one record per change: op, before and after (registry, handle).

    ``only``: addresses; then only the networks answering for them are candidates (to change what a
    given run knows).
    """
    parents = universe.parents
    has_child = np.zeros(len(universe), dtype=bool)
    has_child[parents[parents >= 0]] = True
    nested = set(universe.nested()) | set(universe.nested().values())
    leaf = ~has_child & (universe.ends > universe.starts)  # a split needs two addresses
    if only is not None:
        held = universe.lookup_many(np.asarray(only))
        mask = np.zeros(len(universe), dtype=bool)
        mask[held[held >= 0]] = True
        leaf &= mask
    leaves = np.array([i for i in np.flatnonzero(leaf).tolist() if i not in nested], dtype=np.int64)
    # a deleted network's addresses answer with its parent, so the first three need one; a split does not
    inner = leaves[parents[leaves] >= 0]
    ops = [OPERATIONS[k % len(OPERATIONS)] for k in range(n)]
    rng = np.random.default_rng([seed, 0x3E7A])
    picked = rng.choice(inner, size=min(sum(op != "split" for op in ops), len(inner)), replace=False)
    rest = np.setdiff1d(leaves, picked)
    split_picks = rng.choice(rest, size=min(ops.count("split"), len(rest)), replace=False)
    plan = sorted(zip(sorted(picked.tolist()), (op for op in ops if op != "split")))
    plan += [(int(i), "split") for i in sorted(split_picks.tolist())]
    universe.registry_codes = universe.registry_codes.copy()
    universe.country_codes = universe.country_codes.copy()
    universe._seg_net = universe._seg_net.copy()
    changes = []
    splits = []
    for i, op in plan:  # the first three in index order, then the splits
        before = (universe.registry_of(i), universe.handle(i))
        record = {"op": op, "index": int(i), "start": int(universe.starts[i]), "end": int(universe.ends[i]),
                  "before": list(before)}
        if op == "reassign":
            universe.country_codes[i] = (int(universe.country_codes[i]) + 1) % len(universe.countries)
            record["after"] = [universe.registry_of(i), universe.handle(i)]
        elif op == "transfer":
            universe.registry_codes[i] = (int(universe.registry_codes[i]) + 1) % len(REGISTRIES)
            record["after"] = [universe.registry_of(i), universe.handle(i)]
        elif op == "delete":
            universe._seg_net[universe._seg_net == i] = int(parents[i])
            record["after"] = None
        else:
            splits.append(record)  # after the others: a split inserts a network and shifts the indices above
        changes.append(record)
    for record in sorted(splits, key=lambda r: -r["index"]):
        i = record["index"]
        _split(universe, i)
        record["after"] = None
        record["parts"] = [[universe.registry_of(j), universe.handle(j)] for j in (i, i + 1)]
    return changes


def _split(universe: Universe, i: int) -> None:
    """Leaf network ``i`` becomes its lower half; its upper half is a new network at index ``i + 1``."""
    start, end = int(universe.starts[i]), int(universe.ends[i])
    mid = start + (end - start + 1) // 2 - 1
    j = i + 1

    def shifted(values: np.ndarray) -> np.ndarray:
        out = values.copy()
        out[out >= j] += 1
        return out

    for name in ("starts", "ends", "registry_codes", "levels", "kinds", "country_codes", "days"):
        values = getattr(universe, name)
        setattr(universe, name, np.insert(values, j, values[i]))
    parents = shifted(universe.parents)
    universe.parents = np.insert(parents, j, parents[i])
    universe.ends[i] = mid
    universe.starts[j] = mid + 1
    universe._container = {(k + 1 if k >= j else k): (v + 1 if v >= j else v) for k, v in universe._container.items()}
    seg_start, seg_net = universe._seg_start, shifted(universe._seg_net)
    k = int(seg_start.searchsorted(np.uint32(mid + 1), side="right")) - 1
    if int(seg_start[k]) != mid + 1:  # a segment boundary where the upper half starts
        seg_start = np.insert(seg_start, k + 1, np.uint32(mid + 1))
        seg_net = np.insert(seg_net, k + 1, seg_net[k])
    upper = (seg_start >= np.uint32(mid + 1)) & (seg_start <= np.uint32(end)) & (seg_net == i)
    seg_net[upper] = j
    universe._seg_start, universe._seg_net = seg_start, seg_net
