"""RFC 9910 relation searches (``rirSearch1``) over the universe: up, top, down, bottom.

A planned crawl walks a registry's hierarchy instead of probing addresses, so
the simulator answers these the way RIPE's server computes them (its
RdapRelationService), relative to the queried range and never counting a
network equal to the range itself:

* ``rdap-up``: the most specific network of the registry strictly enclosing the range;
* ``rdap-top``: the least specific one (the allocation); an allocation has neither;
* ``rdap-down``: the networks strictly inside the range whose parent is not (for a
  network's own range: its immediate children);
* ``rdap-bottom``: the networks strictly inside the range that are the most
  specific network of at least one of its addresses (the leaves, plus parents
  their children do not fill).

Everything is numpy over the universe's start-sorted arrays and its
most-specific table, so a search over a /8 of the default universe takes
milliseconds.
"""

from __future__ import annotations

import numpy as np

from whoiscrawl.crawl.registries import REGISTRIES
from whoiscrawl.simulator import layout, naming
from whoiscrawl.simulator.universe import Universe

RELATIONS = ("rdap-up", "rdap-down", "rdap-top", "rdap-bottom")
#: Relations answered with one network object (RIPE returns it as a lookup would).
SINGLE_RELATIONS = ("rdap-up", "rdap-top")
#: Registries whose real RDAP services implement RFC 9910 relation searches.
SEARCH_REGISTRIES = ("arin", "ripencc")
#: RIPE's defaults: results shown in one answer, and related objects past which it refuses (400).
MAX_RESULTS = 100
MAX_RELATED = 10_000


def relation_key(registry: str, start: int, end: int) -> str:
    """The key an object's ``rdap-*`` links name: RIPE its range handle, ARIN a CIDR (else the range)."""
    cidrs = layout.cidrs_of_range(start, end)
    if registry != "ripencc" and len(cidrs) == 1:
        return f"{naming.dotted(cidrs[0][0])}/{cidrs[0][1]}"
    return f"{naming.dotted(start)}%20-%20{naming.dotted(end)}"


def relation_url(base_url: str, relation: str, registry: str, start: int, end: int) -> str:
    return f"{base_url}ips/rirSearch1/{relation}/{relation_key(registry, start, end)}"


class Relations:
    """The four relations of a range within one registry's networks."""

    def __init__(self, universe: Universe) -> None:
        self.universe = universe
        codes = universe.registry_codes
        keys, parents = [], []
        for top, container in sorted(universe.nested().items()):
            # a transfer's parent in its own registry, if it sits in that registry's space at all
            holder: int | None = container
            while holder is not None and codes[holder] != codes[top]:
                holder = universe.enclosing(holder)
            keys.append(top)
            parents.append(-1 if holder is None else holder)
        self._nested_keys = np.asarray(keys, dtype=np.int64)
        self._nested_parents = np.asarray(parents, dtype=np.int64)
        # networks with nothing inside them at all: the most specific one of each of their addresses
        self._leaf = np.bincount(universe.parents[universe.parents >= 0], minlength=len(universe)) == 0
        self._leaf[np.asarray(sorted(set(universe.nested().values())), dtype=np.int64)] = False

    # --- one network ------------------------------------------------------------
    def enclosing(self, registry: str, first: int, last: int) -> list[int]:
        """Networks of the registry strictly enclosing [first, last], most specific first."""
        universe = self.universe
        code = REGISTRIES.index(registry)
        chain = []
        index = universe.lookup_range(first, last)
        while index is not None:
            if universe.registry_codes[index] == code and (
                    int(universe.starts[index]), int(universe.ends[index])) != (first, last):
                chain.append(index)
            index = universe.enclosing(index)
        return chain

    def up(self, registry: str, first: int, last: int) -> int | None:
        chain = self.enclosing(registry, first, last)
        return chain[0] if chain else None

    def top(self, registry: str, first: int, last: int) -> int | None:
        chain = self.enclosing(registry, first, last)
        return chain[-1] if chain else None

    # --- sets -------------------------------------------------------------------
    def _inside_mask(self, first: int, last: int, indices: np.ndarray) -> np.ndarray:
        """Which of the networks lie strictly inside [first, last]."""
        starts, ends = self.universe.starts[indices], self.universe.ends[indices]
        lo, hi = np.uint32(first), np.uint32(last)
        return (starts >= lo) & (ends <= hi) & ~((starts == lo) & (ends == hi))

    def _strictly_inside(self, registry: str, first: int, last: int, candidates: np.ndarray) -> np.ndarray:
        mine = self.universe.registry_codes[candidates] == REGISTRIES.index(registry)
        return candidates[mine & self._inside_mask(first, last, candidates)]

    def _parents(self, indices: np.ndarray) -> np.ndarray:
        """Parent of each network within its registry (-1: none), transfers included."""
        parents = self.universe.parents[indices].astype(np.int64)
        top = np.flatnonzero(parents < 0)
        if top.size and self._nested_keys.size:
            pos = np.minimum(np.searchsorted(self._nested_keys, indices[top]), self._nested_keys.size - 1)
            hit = self._nested_keys[pos] == indices[top]
            parents[top[hit]] = self._nested_parents[pos[hit]]
        return parents

    def down(self, registry: str, first: int, last: int) -> np.ndarray:
        inside = self._strictly_inside(registry, first, last, self.universe.within(first, last))
        parents = self._parents(inside)
        has = parents >= 0
        below_another = np.zeros(inside.shape[0], dtype=bool)
        below_another[has] = self._inside_mask(first, last, parents[has])
        return inside[~below_another]

    def bottom(self, registry: str, first: int, last: int) -> np.ndarray:
        nets = self.universe.segment_networks(first, last)
        nets = nets[nets >= 0]
        # filter before deduplicating: sorting every segment of a wide range is what would cost
        return np.unique(self._strictly_inside(registry, first, last, nets)).astype(np.int64)

    def bottom_at_least(self, registry: str, first: int, last: int) -> int:
        """A cheap lower bound of ``bottom``'s size (its leaves), to refuse huge searches early."""
        inside = self.universe.within(first, last)
        return int(np.count_nonzero(self._leaf[self._strictly_inside(registry, first, last, inside)]))

    def holds_any(self, registry: str, first: int, last: int) -> bool:
        """Whether some network of the registry encloses or lies inside the range (else: 404)."""
        universe = self.universe
        code = REGISTRIES.index(registry)
        index = universe.lookup_range(first, last)
        while index is not None:
            if universe.registry_codes[index] == code:
                return True
            index = universe.enclosing(index)
        inside = universe.within(first, last)
        return bool((universe.registry_codes[inside] == code).any())
