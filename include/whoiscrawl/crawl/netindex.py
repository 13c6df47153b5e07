"""Index of IPv4 networks already found, shared by every crawl process through Redis.

A crawl must not look up an address whose network it already has: the ancestor
kept every known CIDR in one comma-joined Redis string, rewrote it on each new
block (replication traffic growing with the index) and scanned it linearly for
each address (about 0.6 s per address at 50K blocks). This module replaces it.

Design
------
Shared state on the master, two keys:

* ``<key>:log`` -- an append-only *string* of fixed 8-byte records
  (``start``, ``end`` as big-endian uint32, inclusive). One add is one
  ``APPEND`` of 8 bytes: Redis grows the string in place (amortised O(1)) and
  replicates only that command, so the replication cost of an add is O(1) and
  constant in the number of networks already known (a batch of adds is one
  ``APPEND`` of all its records: ~8 bytes per network). A string, not a list,
  because a reader fetches any tail with one ``GETRANGE`` as a single bulk
  reply that numpy decodes without a per-record Python step.
* ``<key>:epoch`` -- a counter bumped by :meth:`KnownNetworkIndex.reset`; a
  reader seeing a newer epoch drops its copy and rereads the log from the start.

Each process keeps a local copy as sorted, merged (disjoint, non-adjacent)
intervals in uint32 numpy arrays (8 bytes per interval), in two levels like a
tiny LSM tree: a large ``main`` level and a small ``delta`` level that absorbs
new records; the delta is merged into main when it exceeds 1/32 of main, so the
amortised merge cost per add is O(log n). A check is a binary search
(``searchsorted``) in each level: O(log n), vectorised over a batch of
addresses. A batch is sorted first: successive searches then walk neighbouring
paths of the arrays, which keeps them in cache and makes a 1M-network index
nearly as fast as a 50K one.

:meth:`sync` reads the log tail from the host's replica (records past the last
position read, plus the epoch, in one MULTI so both come from one snapshot):
a process joining late reads the whole log once, afterwards only what is new.
A process's own adds are applied locally at once, so it never misses what it
has just found while the replica lags; they are kept as "pending" until the
process reads them back from the log, and re-applied if the copy is rebuilt in
the meantime (a reset seen through a lagging replica). If the replica fails,
reads fall back to the master (``index/replica_fallback``) and the replica is
retried after ``replica_retry_s``. A replica that is behind the position or
epoch already seen is simply not yet up to date (``index/replica_behind``);
the master is authoritative, so a master whose log is shorter than the
position read (trimmed, flushed) causes a rebuild (``index/rebuild/truncated``).

Records wider than :data:`MAX_NETWORK_ADDRESSES` (a /8, the widest network
a registry allocates) or with start > end are dropped where they are read and
where they are added, and counted (``index/all/refused_range``): anyone who
can append one 0..2^32-1 record to the log must not make every crawl skip
every address.

An object is not thread-safe: use one per process (or per thread).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import redis

from whoiscrawl.crawl.ipspace import containing_interval as _lookup, merge_intervals
from whoiscrawl.crawl.stats import StatsCollector

__all__ = ["KnownNetworkIndex", "MAX_NETWORK_ADDRESSES", "RECORD_BYTES", "merge_intervals"]

#: Bytes per log record: start and end, big-endian uint32.
RECORD_BYTES = 8
_RECORD = np.dtype(">u4")
_MAX_ADDR = (1 << 32) - 1
#: Addresses of the widest network the index accepts: a /8.
MAX_NETWORK_ADDRESSES = 1 << 24

# APPEND the packed records and report the epoch and new length from the same
# atomic step, so an add knows which run it belongs to and where it landed.
# Only the APPEND is a write, so only the APPEND is replicated.
_ADD_SCRIPT = """
local n = redis.call('APPEND', KEYS[1], ARGV[1])
local e = redis.call('GET', KEYS[2])
return {tonumber(e) or 0, n}
"""


def _as_addresses(addrs: Iterable[int] | np.ndarray) -> np.ndarray:
    """Addresses as uint32 (the arrays' dtype, so searchsorted does not convert the index)."""
    a = np.asarray(addrs if isinstance(addrs, np.ndarray) else list(addrs))
    if a.dtype == np.uint32:
        return a
    if a.size and (a.min() < 0 or a.max() > _MAX_ADDR):
        raise ValueError("IPv4 addresses must be integers in 0..2**32-1")
    return a.astype(np.uint32)


@dataclass
class _Pending:
    """An own add not yet read back from the log: (epoch, log length after it, intervals)."""
    epoch: int
    end_pos: int
    starts: np.ndarray
    ends: np.ndarray


class KnownNetworkIndex:
    """Networks already found; checks are local and O(log n), adds are O(1) on the wire."""

    def __init__(self, master: redis.Redis, replica: redis.Redis | None = None,
                 key: str = "whoiscrawl:known", *, sync_interval_s: float = 0.0,
                 replica_retry_s: float = 30.0, read_chunk_records: int = 1 << 20,
                 stats: StatsCollector | None = None) -> None:
        self.master = master
        self.replica = replica
        self.key = key
        self.log_key = f"{key}:log"
        self.epoch_key = f"{key}:epoch"
        #: contains()/contains_many()/covering() sync first if the last sync is older than this.
        self.sync_interval_s = sync_interval_s
        self.replica_retry_s = replica_retry_s
        self.read_chunk_records = max(1, int(read_chunk_records))
        self.stats = stats if stats is not None else StatsCollector()
        self._add_script = master.register_script(_ADD_SCRIPT)
        self._clear_local()
        self._epoch = -1  # not read yet: the first sync rebuilds from the whole log
        self._pending: list[_Pending] = []
        self._replica_down_until = 0.0
        self._last_sync = float("-inf")

    # --- local state ----------------------------------------------------------------------
    def _clear_local(self) -> None:
        self._pos = 0  # records of the current epoch's log already applied
        self._main_s = self._main_e = np.empty(0, np.uint32)
        self._delta_s = self._delta_e = np.empty(0, np.uint32)

    def _apply(self, starts: np.ndarray, ends: np.ndarray) -> None:
        """Union new intervals into the delta level; fold the delta into main when it grows."""
        if starts.size == 0:
            return
        s, e = merge_intervals(np.concatenate([self._delta_s.astype(np.int64), starts]),
                               np.concatenate([self._delta_e.astype(np.int64), ends]))
        self._delta_s, self._delta_e = s.astype(np.uint32), e.astype(np.uint32)
        if self._delta_s.size > max(4096, self._main_s.size >> 5):
            self.compact()

    def compact(self) -> None:
        """Merge the delta level into main (done automatically; public for benches and tests)."""
        if self._delta_s.size:
            s, e = merge_intervals(np.concatenate([self._main_s, self._delta_s]).astype(np.int64),
                                   np.concatenate([self._main_e, self._delta_e]).astype(np.int64))
            self._main_s, self._main_e = s.astype(np.uint32), e.astype(np.uint32)
            self._delta_s = self._delta_e = np.empty(0, np.uint32)
            self.stats.count("index", None, "compactions")

    def interval_count(self) -> int:
        """Merged intervals held locally (after folding the levels); for reports."""
        self.compact()
        return int(self._main_s.size)

    @property
    def position(self) -> int:
        """Records of the log applied locally."""
        return self._pos

    @property
    def epoch(self) -> int:
        return self._epoch

    # --- writes ---------------------------------------------------------------------------
    @staticmethod
    def _validate(starts: np.ndarray, ends: np.ndarray) -> None:
        if starts.size and (starts.min() < 0 or ends.max() > _MAX_ADDR or bool(np.any(starts > ends))):
            raise ValueError("network ranges must satisfy 0 <= start <= end <= 2**32-1")

    def _registrable(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Mask of the ranges the index keeps; the others are counted as refused."""
        ok = (starts <= ends) & (ends - starts < MAX_NETWORK_ADDRESSES)
        refused = int(ok.size - ok.sum())
        if refused:
            self.stats.count("index", None, "refused_range", n=refused)
        return ok

    def add(self, start: int, end: int) -> None:
        """Record one network [start, end] (inclusive integer IPv4 addresses)."""
        self.add_many([(start, end)])

    def add_many(self, ranges: Iterable[tuple[int, int]], batch_records: int = 65536) -> None:
        """Record many networks: one APPEND per ``batch_records``, sent in one pipeline."""
        arr = np.asarray(ranges if isinstance(ranges, np.ndarray) else list(ranges), dtype=np.int64).reshape(-1, 2)
        if arr.size == 0:
            return
        self._validate(arr[:, 0], arr[:, 1])
        arr = arr[self._registrable(arr[:, 0], arr[:, 1])]
        if arr.size == 0:
            return
        starts, ends = arr[:, 0], arr[:, 1]
        packed = arr.astype(_RECORD)
        keys = [self.log_key, self.epoch_key]
        bounds = range(0, len(packed), batch_records)
        if len(bounds) == 1:  # the common case: one EVALSHA, no pipeline bookkeeping
            replies = [self._add_script(keys=keys, args=[packed.tobytes()])]
        else:
            pipe = self.master.pipeline(transaction=False)
            for i in bounds:
                self._add_script(keys=keys, args=[packed[i:i + batch_records].tobytes()], client=pipe)
            replies = pipe.execute()
        for i, (epoch, length) in zip(bounds, replies):
            chunk = slice(i, i + batch_records)
            self._pending.append(_Pending(int(epoch), int(length) // RECORD_BYTES,
                                          starts[chunk].copy(), ends[chunk].copy()))
        self._apply(starts, ends)  # seen at once by this process, whatever the replica's lag
        self.stats.count("index", None, "adds", n=len(arr))

    def reset(self) -> None:
        """Forget every network (a new crawl run): empty the log and bump the epoch."""
        pipe = self.master.pipeline(transaction=True)
        pipe.delete(self.log_key)
        pipe.incr(self.epoch_key)
        _, epoch = pipe.execute()
        self._clear_local()
        self._epoch = int(epoch)
        self._pending = [p for p in self._pending if p.epoch > self._epoch]
        self.stats.count("index", None, "reset")

    # --- reads ----------------------------------------------------------------------------
    def _read(self, conn: redis.Redis, first_record: int) -> tuple[int, int, bytes]:
        """(epoch, log length in records, records from ``first_record``) in one snapshot."""
        pipe = conn.pipeline(transaction=True)
        pipe.get(self.epoch_key)
        pipe.strlen(self.log_key)
        first = first_record * RECORD_BYTES
        pipe.getrange(self.log_key, first, first + self.read_chunk_records * RECORD_BYTES - 1)
        epoch, length, data = pipe.execute()
        return int(epoch or 0), int(length) // RECORD_BYTES, data

    def _read_with_fallback(self, first_record: int) -> tuple[int, int, bytes, bool]:
        now = time.monotonic()
        if self.replica is not None and now >= self._replica_down_until:
            try:
                return (*self._read(self.replica, first_record), False)
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                self._replica_down_until = now + self.replica_retry_s
                self.stats.count("index", None, "replica_fallback")
        elif self.replica is not None:
            self.stats.count("index", None, "replica_fallback")
        return (*self._read(self.master, first_record), True)

    def sync(self) -> int:
        """Apply what the log gained since the last sync; return the records read."""
        self._last_sync = time.monotonic()
        self.stats.count("index", None, "sync")
        total = 0
        while True:
            epoch, length, data, authoritative = self._read_with_fallback(self._pos)
            if epoch != self._epoch:
                if epoch < self._epoch and not authoritative:
                    self.stats.count("index", None, "replica_behind")
                    break  # the replica has not seen the reset we already know of
                self._rebuild(epoch, "initial" if self._epoch < 0 else "epoch")
                continue
            if length < self._pos:
                if not authoritative:
                    self.stats.count("index", None, "replica_behind")
                    break  # our own adds (or the master) are ahead of this replica
                self._rebuild(epoch, "truncated")
                continue
            usable = len(data) - len(data) % RECORD_BYTES
            if usable:
                rec = np.frombuffer(data, dtype=_RECORD, count=usable // 4).reshape(-1, 2).astype(np.int64)
                kept = rec[self._registrable(rec[:, 0], rec[:, 1])]
                self._apply(kept[:, 0], kept[:, 1])
                self._pos += len(rec)
                total += len(rec)
            if usable < self.read_chunk_records * RECORD_BYTES:
                break
        self._pending = [p for p in self._pending
                         if p.epoch > self._epoch or (p.epoch == self._epoch and p.end_pos > self._pos)]
        self.stats.count("index", None, "sync_entries", n=total)
        return total

    def _rebuild(self, epoch: int, reason: str) -> None:
        """Drop the local copy and start over at ``epoch``; own adds not yet read back survive."""
        self.stats.count("index", None, "rebuilt", reason)
        self._clear_local()
        self._epoch = epoch
        self._pending = [p for p in self._pending if p.epoch >= epoch]
        for p in self._pending:
            self._apply(p.starts, p.ends)

    def _maybe_sync(self) -> None:
        if time.monotonic() - self._last_sync >= self.sync_interval_s:
            self.sync()

    def contains(self, addr: int) -> bool:
        """Whether some added network contains ``addr``."""
        return bool(self.contains_many([addr])[0])

    def contains_many(self, addrs: Iterable[int] | np.ndarray) -> np.ndarray:
        """Boolean array: for each address, whether it is in a known network (one sync, then numpy)."""
        a = _as_addresses(addrs)
        self._maybe_sync()
        order = np.argsort(a) if a.size > 64 else None  # sorted needles keep the searches in cache
        b = a if order is None else a[order]
        hit = _lookup(self._main_s, self._main_e, b) >= 0
        if self._delta_s.size:
            hit |= _lookup(self._delta_s, self._delta_e, b) >= 0
        if order is not None:
            unsorted = np.empty_like(hit)
            unsorted[order] = hit
            hit = unsorted
        self.stats.count("index", None, "checks", n=int(a.size))
        return hit

    def covering(self, addr: int) -> tuple[int, int] | None:
        """The merged known interval containing ``addr`` (crawls skip to its end + 1), or None."""
        a = _as_addresses([addr])
        self._maybe_sync()
        levels = ((self._main_s, self._main_e), (self._delta_s, self._delta_e))
        found = None
        for s, e in levels:
            i = int(_lookup(s, e, a)[0])
            if i >= 0:
                found = (int(s[i]), int(e[i]))
                break
        if found is None:
            return None
        lo, hi = found
        changed = True
        while changed:  # the levels may hold pieces that touch; a handful of rounds at most
            changed = False
            for s, e in levels:
                if s.size == 0:
                    continue
                if hi < _MAX_ADDR:
                    j = int(np.searchsorted(s, np.uint32(hi + 1), side="right")) - 1  # last piece starting <= hi+1
                    if j >= 0 and int(e[j]) > hi:
                        hi, changed = int(e[j]), True
                if lo > 0:
                    k = int(np.searchsorted(e, np.uint32(lo - 1), side="left"))  # first piece ending >= lo-1
                    if k < s.size and int(s[k]) < lo:
                        lo, changed = int(s[k]), True
        return lo, hi

    def network_count(self) -> int:
        """Adds recorded in the master's log for the current run (nested and duplicate ones included)."""
        return int(self.master.strlen(self.log_key)) // RECORD_BYTES
