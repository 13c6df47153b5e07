"""The most specific network of every address, for a set of nested networks.

The space is cut at every network boundary into disjoint segments; each
segment belongs to the smallest network that covers it (networks are painted
largest first, so a more specific one overwrites its parents). The same map
answers the per-address dataset (vectorised), the lookup index (saved as a
table) and each network's parent (the segment owner just before the network
itself was painted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NetworkMap:
    seg_start: np.ndarray  # int64, sorted: first address of each segment
    seg_end: np.ndarray    # int64: last address of each segment
    seg_net: np.ndarray    # int64: the most specific network of the segment, -1 for none
    parent: np.ndarray     # int64 per network: the most specific network strictly around it, -1 for none

    @classmethod
    def build(cls, starts: np.ndarray, ends: np.ndarray) -> "NetworkMap":
        starts = np.asarray(starts, dtype=np.int64)
        ends = np.asarray(ends, dtype=np.int64)
        n = len(starts)
        bounds = np.unique(np.concatenate([starts, ends + 1]))
        owner = np.full(max(len(bounds) - 1, 0), -1, dtype=np.int64)
        parent = np.full(n, -1, dtype=np.int64)
        lo = np.searchsorted(bounds, starts)
        hi = np.searchsorted(bounds, ends + 1)
        # largest first; equal sizes in input order (the first drained keeps the smaller index)
        order = np.lexsort((-np.arange(n), -(ends - starts)))
        for i in order.tolist():
            a, b = lo[i], hi[i]
            parent[i] = owner[a]
            owner[a:b] = i
        seg_start, seg_end = bounds[:-1], bounds[1:] - 1
        return cls(seg_start, seg_end, owner, parent)

    def most_specific(self, addrs: np.ndarray) -> np.ndarray:
        """Network index per address (-1: inside no network)."""
        addrs = np.asarray(addrs, dtype=np.int64)
        if len(self.seg_start) == 0:
            return np.full(len(addrs), -1, dtype=np.int64)
        i = np.searchsorted(self.seg_start, addrs, side="right") - 1
        ok = (i >= 0) & (addrs <= self.seg_end[np.clip(i, 0, None)])
        return np.where(ok, self.seg_net[np.clip(i, 0, None)], -1)

    def chain(self, net: int) -> list[int]:
        """``net`` and its parents up to the outermost (the allocation)."""
        out = []
        while net >= 0 and len(out) < 64:
            out.append(int(net))
            net = int(self.parent[net])
        return out
