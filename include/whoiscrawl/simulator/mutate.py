"""Change a known set of networks of a universe, to test re-crawls: ``simulate --mutate SEED:N``.

N leaf networks (inside an allocation, with no network inside them, not a
cross-registry transfer), drawn with SEED, get one change each, in turn:

* ``reassign``: another country, so the name and the country change (same handle);
* ``transfer``: held by the next registry, so registry, handle and type change (same range);
* ``delete``: gone, its addresses answer with the enclosing network again.

The list of changes (what a re-crawl must report, exactly) is returned and
logged; the same SEED:N on the same universe always changes the same networks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from whoiscrawl.crawl.registries import REGISTRIES
from whoiscrawl.simulator.universe import Universe

OPERATIONS = ("reassign", "transfer", "delete")


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
    eligible = (parents >= 0) & ~has_child
    if only is not None:
        held = universe.lookup_many(np.asarray(only))
        mask = np.zeros(len(universe), dtype=bool)
        mask[held[held >= 0]] = True
        eligible &= mask
    candidates = np.flatnonzero(eligible)
    candidates = np.array([i for i in candidates.tolist() if i not in nested], dtype=np.int64)
    picks = np.random.default_rng([seed, 0x3E7A]).choice(candidates, size=min(n, len(candidates)), replace=False)
    universe.registry_codes = universe.registry_codes.copy()
    universe.country_codes = universe.country_codes.copy()
    universe._seg_net = universe._seg_net.copy()
    changes = []
    for k, i in enumerate(sorted(picks.tolist())):
        op = OPERATIONS[k % len(OPERATIONS)]
        before = (universe.registry_of(i), universe.handle(i))
        after: tuple[str, str] | None
        if op == "reassign":
            universe.country_codes[i] = (int(universe.country_codes[i]) + 1) % len(universe.countries)
            after = (universe.registry_of(i), universe.handle(i))
        elif op == "transfer":
            universe.registry_codes[i] = (int(universe.registry_codes[i]) + 1) % len(REGISTRIES)
            after = (universe.registry_of(i), universe.handle(i))
        else:
            universe._seg_net[universe._seg_net == i] = int(parents[i])
            after = None
        changes.append({"op": op, "index": int(i), "start": int(universe.starts[i]), "end": int(universe.ends[i]),
                        "before": list(before), "after": list(after) if after else None})
    return changes
