"""The networks found, kept nested: each address's most specific network, not just "known".

The known-network index (``netindex``) answers "is this address inside some
network already found?" from merged intervals, which is what the classic
crawl skips on; merging forgets nesting, so it cannot say which network is an
address's most specific one. Its Redis log, though, keeps every network as it
was added (8 bytes each, append-only, replicated to every host). A
``NetworkTree`` is built from that same log, so the index stays the one shared
truth between chunks and hosts and there is no second store to keep in step:
the networks sorted by (start, -end), each with its parent, so an address's
most specific network is a binary search and a short climb up the parents.
"""

from __future__ import annotations

import numpy as np
import redis

from whoiscrawl.crawl.netindex import RECORD_BYTES

_RECORD = np.dtype(">u4")


def read_log(client: redis.Redis, index_key: str, chunk_records: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """Every (start, end) the index's log holds, in log order (duplicates kept)."""
    parts, pos = [], 0
    while True:
        data = client.getrange(f"{index_key}:log", pos * RECORD_BYTES, (pos + chunk_records) * RECORD_BYTES - 1)
        usable = len(data) - len(data) % RECORD_BYTES
        if usable:
            parts.append(np.frombuffer(data[:usable], dtype=_RECORD).reshape(-1, 2).astype(np.int64))
            pos += usable // RECORD_BYTES
        if usable < chunk_records * RECORD_BYTES:
            break
    rec = np.concatenate(parts) if parts else np.empty((0, 2), np.int64)
    return rec[:, 0], rec[:, 1]


class NetworkTree:
    """Found networks as a nesting: most specific lookups, children and gaps of a network."""

    def __init__(self, starts: np.ndarray, ends: np.ndarray) -> None:
        s = np.asarray(starts, dtype=np.int64)
        e = np.asarray(ends, dtype=np.int64)
        if s.size:
            pairs = np.unique(np.stack([s, -e], axis=1), axis=0)  # by start, widest first; duplicates once
            s, e = pairs[:, 0], -pairs[:, 1]
        self.starts, self.ends = s, e
        self.parents = self._parents(s, e)

    @classmethod
    def from_redis(cls, client: redis.Redis, index_key: str) -> "NetworkTree":
        return cls(*read_log(client, index_key))

    @staticmethod
    def _parents(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Each network's tightest enclosing network (-1: none), one sweep with a stack."""
        parents = np.full(starts.size, -1, dtype=np.int64)
        stack: list[int] = []
        ends_list = ends.tolist()
        for i, (start, end) in enumerate(zip(starts.tolist(), ends_list)):
            while stack and ends_list[stack[-1]] < start:
                stack.pop()
            for j in reversed(stack):  # the nearest one that holds it whole (overlaps are not nesting)
                if ends_list[j] >= end:
                    parents[i] = j
                    break
            stack.append(i)
        return parents

    def __len__(self) -> int:
        return int(self.starts.size)

    def most_specific(self, addrs: np.ndarray) -> np.ndarray:
        """Index of each address's most specific found network, -1 where none covers it."""
        a = np.asarray(addrs, dtype=np.int64)
        idx = np.searchsorted(self.starts, a, side="right") - 1
        while True:
            bad = (idx >= 0) & (self.ends[np.maximum(idx, 0)] < a)
            if not bad.any():
                return idx
            idx[bad] = self.parents[idx[bad]]

    def children(self, index: int) -> np.ndarray:
        """Indices of the networks whose parent is ``index``, in address order."""
        lo = int(np.searchsorted(self.starts, self.starts[index], side="left"))
        hi = int(np.searchsorted(self.starts, self.ends[index], side="right"))
        inside = np.arange(lo, hi)
        return inside[self.parents[inside] == index]

    def gaps(self, index: int) -> list[tuple[int, int]]:
        """The parts of network ``index`` no known child covers: where unknown children can still be."""
        out, cursor = [], int(self.starts[index])
        for child in self.children(index).tolist():
            if int(self.starts[child]) > cursor:
                out.append((cursor, int(self.starts[child]) - 1))
            cursor = max(cursor, int(self.ends[child]) + 1)
        if cursor <= int(self.ends[index]):
            out.append((cursor, int(self.ends[index])))
        return out
