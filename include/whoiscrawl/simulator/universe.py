"""The simulated IPv4 registration universe: every network the five RIRs hold.

Built deterministically from a seed: the real delegated-stats records are the
allocation layer (level 0); under them, assignments (level 1), reassignments
(level 2) and a few deeper ones (level 3) are synthesised, leaving holes.
Everything is kept as compact numpy arrays plus a most-specific lookup table
(sorted segment starts → network), so the default universe of about five
million networks fits in a few hundred MB and answers a lookup in microseconds.
Handles, names and contacts are derived on demand, never stored per network.
"""

from __future__ import annotations

import csv
import os
import tempfile
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from whoiscrawl.crawl.registries import REGISTRIES
from whoiscrawl.simulator import layout, naming, sources

#: Bump when the synthesis changes, so cached universes are rebuilt.
SYNTH_VERSION = 1

_EPOCH = date(1970, 1, 1)
_MAX_LEVEL = 3


def _curve(points: list[tuple[int, float]]) -> np.ndarray:
    """A per-prefix-length table (index 0..32) interpolated between points."""
    xs, ys = zip(*points)
    return np.interp(np.arange(33), xs, ys)


# Shape of the synthesis, by prefix length of the block in question.  Tuned so
# that scale 1.0 gives ~5M networks, ~70% of them /24 or smaller, and the most
# specific network of a random allocated address is typically 1/32 of its
# allocation (tests/unit/test_simulator_scale.py measures these figures).
_GATE = {  # chance that a network of this length has children at all
    1: _curve([(0, 0.97), (12, 0.95), (16, 0.9), (20, 0.7), (22, 0.5), (24, 0.3), (26, 0.1), (32, 0.0)]),
    2: _curve([(0, 0.6), (16, 0.5), (20, 0.35), (22, 0.25), (24, 0.12), (26, 0.05), (27, 0.0), (32, 0.0)]),
    3: _curve([(0, 0.3), (16, 0.25), (20, 0.175), (22, 0.125), (24, 0.06), (26, 0.025), (27, 0.0), (32, 0.0)]),
}
_STOP = {  # chance that a block is left whole instead of halved
    1: _curve([(0, 0.05), (12, 0.05), (16, 0.08), (20, 0.25), (23, 0.5), (24, 0.62), (28, 0.7), (32, 1.0)]),
    2: _curve([(0, 0.1), (16, 0.15), (20, 0.3), (23, 0.5), (24, 0.6), (28, 0.7), (32, 1.0)]),
}
_LEAF = {  # chance that a block left whole is a child (else unassigned space)
    1: _curve([(0, 0.7), (16, 0.75), (24, 0.85), (32, 0.85)]),
    2: _curve([(0, 0.8), (32, 0.8)]),
}
_MIN_LEN = {1: 29, 2: 30, 3: 30}

_ARRAYS = ("start", "end", "registry", "parent", "level", "kind", "country", "day",
           "seg_start", "seg_net", "nested_top", "nested_container", "countries", "meta")


@dataclass(frozen=True)
class Network:
    """One registered network, as the registry that holds it describes it."""

    registry: str
    handle: str
    start: int
    end: int
    parent_handle: str | None
    type: str
    country: str
    name: str
    level: int
    index: int
    registered: date
    last_changed: date

    @property
    def cidrs(self) -> list[tuple[int, int]]:
        """Aligned CIDR blocks covering the range, as (start, prefix length)."""
        return layout.cidrs_of_range(self.start, self.end)


class Universe:
    """All networks, with most-specific lookup; see the module docstring."""

    def __init__(self, arrays: dict[str, np.ndarray], seed: int, scale: float) -> None:
        self.seed = seed
        self.scale = scale
        self.starts: np.ndarray = arrays["start"]
        self.ends: np.ndarray = arrays["end"]
        self.registry_codes: np.ndarray = arrays["registry"]
        self.parents: np.ndarray = arrays["parent"]
        self.levels: np.ndarray = arrays["level"]
        self.kinds: np.ndarray = arrays["kind"]
        self.country_codes: np.ndarray = arrays["country"]
        self.days: np.ndarray = arrays["day"]
        self._seg_start: np.ndarray = arrays["seg_start"]
        self._seg_net: np.ndarray = arrays["seg_net"]
        self._container = dict(zip(arrays["nested_top"].tolist(), arrays["nested_container"].tolist()))
        self.countries: tuple[str, ...] = tuple(str(c) for c in arrays["countries"])
        meta = arrays["meta"]
        self._allocation_count = int(meta[0])
        self.shadowed_records = int(meta[1])
        slash8 = sources.read_slash8()
        self._bootstrap = slash8.bootstrap
        self._reserved8 = tuple(status == "RESERVED" for status in slash8.status)
        self._special = tuple((a, b) for a, b, _name, _glob in sources.read_special_purpose())
        self._snapshot_day = sources.read_delegated_snapshot_days()

    # --- sizes -------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def allocation_count(self) -> int:
        """Delegated records (allocated + assigned) the allocation layer is built from."""
        return self._allocation_count

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays that define the universe (what the cache stores)."""
        return {
            "start": self.starts, "end": self.ends, "registry": self.registry_codes,
            "parent": self.parents, "level": self.levels, "kind": self.kinds,
            "country": self.country_codes, "day": self.days,
            "seg_start": self._seg_start, "seg_net": self._seg_net,
            "nested_top": np.asarray(list(self._container.keys()), dtype=np.int64),
            "nested_container": np.asarray(list(self._container.values()), dtype=np.int64),
            "countries": np.asarray(self.countries),
            "meta": np.asarray([self._allocation_count, self.shadowed_records], dtype=np.int64),
        }

    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self.arrays().values())

    # --- lookups -----------------------------------------------------------
    def lookup(self, addr: int) -> int | None:
        """Index of the most specific network enclosing addr (None: nobody holds it)."""
        if not 0 <= addr <= layout.ADDRESS_SPACE_END:
            return None
        # a uint32 key keeps numpy from converting the whole table to compare
        idx = int(self._seg_net[int(self._seg_start.searchsorted(np.uint32(addr), side="right")) - 1])
        return None if idx < 0 else idx

    def lookup_many(self, addrs: np.ndarray) -> np.ndarray:
        """Vectorised lookup: int64 indices, -1 where nobody holds the address."""
        positions = np.searchsorted(self._seg_start, np.asarray(addrs, dtype=np.uint32), side="right") - 1
        return self._seg_net[positions].astype(np.int64)

    def enclosing(self, i: int) -> int | None:
        """The next network up that encloses network i, in any registry."""
        parent = int(self.parents[i])
        if parent >= 0:
            return parent
        return self._container.get(i)

    def lookup_range(self, first: int, last: int) -> int | None:
        """Most specific network enclosing the whole range [first, last]."""
        idx = self.lookup(first)
        for _ in range(_MAX_LEVEL + 4):
            if idx is None or int(self.ends[idx]) >= last:
                return idx
            idx = self.enclosing(idx)
        return None

    def within(self, first: int, last: int) -> np.ndarray:
        """Indices of every network inside [first, last], in universe order.

        Networks are sorted by start, so those starting in the range are one
        contiguous run; only the ones ending past it are dropped.
        """
        lo = int(self.starts.searchsorted(np.uint32(first), side="left"))
        hi = int(self.starts.searchsorted(np.uint32(last), side="right"))
        return lo + np.flatnonzero(self.ends[lo:hi] <= np.uint32(last))

    def segment_networks(self, first: int, last: int) -> np.ndarray:
        """Most specific network of each lookup segment meeting [first, last] (-1: nobody); may repeat."""
        lo = int(self._seg_start.searchsorted(np.uint32(first), side="right")) - 1
        hi = int(self._seg_start.searchsorted(np.uint32(last), side="right"))
        return self._seg_net[lo:hi]

    def nested(self) -> dict[int, int]:
        """Top-level networks nested in another one (transfers) → the network enclosing each."""
        return dict(self._container)

    def owner(self, addr: int) -> str | None:
        """Registry holding addr (the holder of its most specific network)."""
        idx = self.lookup(addr)
        return None if idx is None else REGISTRIES[int(self.registry_codes[idx])]

    def bootstrap_registry(self, addr: int) -> str | None:
        """Registry IANA's bootstrap file names for addr's /8 (None: reserved /8)."""
        if not 0 <= addr <= layout.ADDRESS_SPACE_END:
            return None
        return self._bootstrap[addr >> 24]

    def is_reserved(self, addr: int) -> bool:
        """IANA-reserved /8 or special-purpose block that nobody holds."""
        if not 0 <= addr <= layout.ADDRESS_SPACE_END:
            return False
        if self._reserved8[addr >> 24]:
            return True
        if self.lookup(addr) is not None:
            return False
        return any(a <= addr <= b for a, b in self._special)

    # --- one network -------------------------------------------------------
    def registry_of(self, i: int) -> str:
        return REGISTRIES[int(self.registry_codes[i])]

    def handle(self, i: int) -> str:
        return naming.network_handle(self.registry_of(i), int(self.starts[i]), int(self.ends[i]),
                                     int(self.levels[i]))

    def parent_handle(self, i: int) -> str | None:
        parent = int(self.parents[i])
        if parent >= 0:
            return self.handle(parent)
        return naming.top_parent_handle(self.registry_of(i), int(self.starts[i]), int(self.ends[i]),
                                        int(self.kinds[i]) == naming.KIND_LEGACY)

    def identity_hash(self, i: int) -> int:
        """Stable per-network hash that names, contacts and dates derive from."""
        return naming.mix(self.seed, int(self.starts[i]), int(self.ends[i]), int(self.registry_codes[i]))

    def network(self, i: int) -> Network:
        registry = self.registry_of(i)
        start, end, level = int(self.starts[i]), int(self.ends[i]), int(self.levels[i])
        h = self.identity_hash(i)
        country = self.countries[int(self.country_codes[i])]
        registered = _EPOCH + timedelta(days=int(self.days[i]))
        horizon = max(self._snapshot_day.get(registry, 0), int(self.days[i]))
        changed_day = int(self.days[i]) + naming.mix(h, 11) % (horizon - int(self.days[i]) + 1)
        return Network(
            registry=registry,
            handle=naming.network_handle(registry, start, end, level),
            start=start,
            end=end,
            parent_handle=self.parent_handle(i),
            type=naming.TYPE_NAMES[registry][int(self.kinds[i])],
            country=country,
            name=naming.network_name(registry, h, country, level),
            level=level,
            index=i,
            registered=registered,
            last_changed=_EPOCH + timedelta(days=changed_day),
        )

    # --- bulk --------------------------------------------------------------
    def random_allocated_addresses(self, count: int, seed: int = 0) -> np.ndarray:
        """Uniform random addresses among those some network holds (uint32)."""
        rng = np.random.default_rng([self.seed, seed, 0xADD7])
        held = self._seg_net >= 0
        seg_first = self._seg_start.astype(np.int64)
        seg_next = np.append(seg_first[1:], 1 << 32)
        first, size = seg_first[held], (seg_next - seg_first)[held]
        cumulative = np.cumsum(size)
        picks = rng.integers(0, int(cumulative[-1]), count)
        seg = np.searchsorted(cumulative, picks, side="right")
        offset = picks - (cumulative[seg] - size[seg])
        return (first[seg] + offset).astype(np.uint32)

    def export_truth(self, path: str | Path) -> int:
        """Write every network as TSV (registry, handle, start, end, parent_handle)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        starts = self.starts.tolist()
        ends = self.ends.tolist()
        regs = self.registry_codes.tolist()
        levels = self.levels.tolist()
        parents = self.parents.tolist()
        kinds = self.kinds.tolist()
        handles = [naming.network_handle(REGISTRIES[r], s, e, lv)
                   for r, s, e, lv in zip(regs, starts, ends, levels)]
        dotted = naming.dotted
        with open(path, "w", encoding="utf-8", newline="") as out:
            out.write("registry\thandle\tstart\tend\tparent_handle\n")
            chunk: list[str] = []
            for i, handle in enumerate(handles):
                parent = parents[i]
                if parent >= 0:
                    parent_handle = handles[parent]
                else:
                    parent_handle = naming.top_parent_handle(
                        REGISTRIES[regs[i]], starts[i], ends[i], kinds[i] == naming.KIND_LEGACY) or ""
                chunk.append(f"{REGISTRIES[regs[i]]}\t{handle}\t{dotted(starts[i])}\t{dotted(ends[i])}\t{parent_handle}\n")
                if len(chunk) >= 65536:
                    out.write("".join(chunk))
                    chunk.clear()
            out.write("".join(chunk))
        return len(handles)


def read_truth(path: str | Path) -> list[dict[str, str]]:
    """Read a file written by ``export_truth`` (for tests and reports)."""
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


# --- building ---------------------------------------------------------------

def _synthesise(seed: int, scale: float) -> dict[str, np.ndarray]:
    """All arrays of a universe: allocation layer, carved levels 1-3, lookup table."""
    rng = np.random.default_rng([seed, 0x5EED])
    records = sources.read_delegated()
    slash8 = sources.read_slash8()
    snapshot = np.asarray([records.snapshot_day.get(r, 0) for r in REGISTRIES], dtype=np.int64)
    precedence = snapshot[records.registry] * 8 + records.registry

    start, end, kept = layout.resolve_overlaps(records.start, records.end, precedence)
    start, end = start[kept], end[kept]
    registry = records.registry[kept].astype(np.int64)
    n0 = start.shape[0]
    container, depth0 = layout.nesting(start, end)
    legacy8 = np.asarray([s == "LEGACY" for s in slash8.status])
    ripe = registry == sources.REGISTRY_CODE["ripencc"]
    legacy0 = ripe & legacy8[start >> 24]
    kind0 = np.where(records.allocated[kept], naming.KIND_ALLOCATION, naming.KIND_ASSIGNMENT)
    kind0 = np.where(legacy0, naming.KIND_LEGACY, kind0)

    # Level 1 is carved from each allocation minus the transfers nested in it.
    nested = container >= 0
    free_s, free_e, free_o = layout.subtract(start, end, np.arange(n0), start[nested], end[nested],
                                             container[nested])
    piece_s, piece_len, piece_o = layout.cidr_pieces(free_s, free_e, free_o)
    gate = rng.random(piece_s.shape[0]) < np.minimum(_GATE[1][piece_len] * scale, 1.0)
    levels_s = [start]
    levels_e = [end]
    owners = [np.full(n0, -1, dtype=np.int64)]
    child_s, child_len, child_o = layout.carve(rng, piece_s[gate], piece_len[gate], piece_o[gate],
                                               stop_p=_STOP[1], leaf_p=_LEAF[1], min_len=_MIN_LEN[1])
    for level in (1, 2, 3):
        if level > 1:
            prev_s, prev_len = child_s, child_len
            gate = rng.random(prev_s.shape[0]) < _GATE[level][prev_len]
            child_s, child_len, child_o = layout.carve(
                rng, prev_s[gate], prev_len[gate], np.flatnonzero(gate),
                stop_p=_STOP[2], leaf_p=_LEAF[2], min_len=_MIN_LEN[level])
        order = np.argsort(child_s, kind="stable")
        child_s, child_len, child_o = child_s[order], child_len[order], child_o[order]
        levels_s.append(child_s)
        levels_e.append(child_s + np.left_shift(1, 32 - child_len) - 1)
        owners.append(child_o)

    # Stitch the levels into one set of arrays with global parent indices.
    offsets = np.cumsum([0] + [a.shape[0] for a in levels_s])
    n = int(offsets[-1])
    g_start = np.concatenate(levels_s)
    g_end = np.concatenate(levels_e)
    g_level = np.concatenate([np.full(a.shape[0], lv, dtype=np.uint8) for lv, a in enumerate(levels_s)])
    g_parent = np.concatenate([owners[0]] + [owners[lv] + offsets[lv - 1] for lv in range(1, 4)])
    g_registry = np.empty(n, dtype=np.int64)
    g_registry[:n0] = registry
    g_depth = np.empty(n, dtype=np.int64)
    g_depth[:n0] = depth0
    g_legacy = np.empty(n, dtype=bool)
    g_legacy[:n0] = legacy0
    g_country = np.empty(n, dtype=np.uint16)
    g_country[:n0] = records.country[kept]
    g_day = np.empty(n, dtype=np.int64)
    g_day[:n0] = records.day[kept]
    for lv in range(1, 4):
        sl = slice(offsets[lv], offsets[lv + 1])
        par = g_parent[sl]
        g_registry[sl] = g_registry[par]
        g_depth[sl] = g_depth[par] + 1
        g_legacy[sl] = g_legacy[par]
        g_country[sl] = g_country[par]
        horizon = snapshot[g_registry[sl]]
        span = np.maximum(horizon - g_day[par], 0)
        g_day[sl] = g_day[par] + np.floor(rng.random(par.shape[0]) * (span + 1)).astype(np.int64)
    has_children = np.bincount(g_parent[g_parent >= 0], minlength=n) > 0
    g_kind = np.where(has_children, naming.KIND_SUBALLOCATION, naming.KIND_SUBASSIGNMENT)
    g_kind[:n0] = kind0
    g_kind = np.where(g_legacy, naming.KIND_LEGACY, g_kind)

    # Global order: by start, enclosing networks first.
    del levels_s, levels_e, owners, child_s, child_len, child_o
    order = np.lexsort((g_level, -g_end, g_start))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    parent = g_parent[order]
    parent = np.where(parent >= 0, rank[np.maximum(parent, 0)], -1).astype(np.int32)
    del g_parent
    arrays = {
        "start": g_start[order].astype(np.uint32),
        "end": g_end[order].astype(np.uint32),
        "registry": g_registry[order].astype(np.uint8),
        "parent": parent,
        "level": g_level[order],
        "kind": g_kind[order].astype(np.uint8),
        "country": g_country[order],
        "day": g_day[order].astype(np.uint16),
        "nested_top": rank[np.flatnonzero(nested)],
        "nested_container": rank[container[nested]],
        "countries": np.asarray(records.countries),
        "meta": np.asarray([len(records), int((~kept).sum())], dtype=np.int64),
    }
    depth = g_depth[order].astype(np.uint8)
    del g_start, g_end, g_registry, g_level, g_kind, g_country, g_day, g_depth, g_legacy, rank, order
    arrays["seg_start"], arrays["seg_net"] = _segments(arrays["start"], arrays["end"], depth)
    return arrays


def _segments(start: np.ndarray, end: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Most-specific table: sorted segment starts and the network of each (-1 none).

    Networks of one nesting depth are disjoint, so painting depth by depth,
    deeper over shallower, leaves each segment with its most specific network.
    """
    bounds = np.concatenate([np.zeros(1, dtype=np.int64), start.astype(np.int64), end.astype(np.int64) + 1])
    bounds.sort()  # sort + dedupe: numpy 2's hash-based unique is ~10x slower here
    distinct = np.ones(bounds.shape[0], dtype=bool)
    distinct[1:] = bounds[1:] != bounds[:-1]
    bounds = bounds[distinct]
    del distinct
    bounds = bounds[bounds <= layout.ADDRESS_SPACE_END]
    net = np.full(bounds.shape[0], -1, dtype=np.int32)
    for d in range(int(depth.max()) + 1 if depth.size else 0):
        members = np.flatnonzero(depth == d)
        first, last = start[members].astype(np.int64), end[members].astype(np.int64)  # sorted by start
        pos = np.searchsorted(first, bounds, side="right") - 1
        inside = pos >= 0
        inside[inside] = last[pos[inside]] >= bounds[inside]
        net[inside] = members[pos[inside]]
        del pos, inside, first, last, members
    change = np.ones(bounds.shape[0], dtype=bool)
    change[1:] = net[1:] != net[:-1]
    return bounds[change].astype(np.uint32), net[change]


def cache_path(cache_dir: str | Path, seed: int, scale: float) -> Path:
    checksum = sources.data_checksum()[:16]
    return Path(cache_dir) / f"universe-seed{seed}-scale{scale:g}-{checksum}-v{SYNTH_VERSION}.npz"


def build_universe(seed: int = 1, scale: float = 1.0, cache_dir: str | Path | None = None) -> Universe:
    """Build (or load from ``cache_dir``) the universe for a seed and scale."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, not {scale}")
    path = cache_path(cache_dir, seed, scale) if cache_dir is not None else None
    if path is not None and path.exists():
        try:
            with np.load(path, allow_pickle=False) as loaded:
                arrays = {name: loaded[name] for name in _ARRAYS}
            return Universe(arrays, seed, scale)
        except (OSError, KeyError, ValueError):
            pass  # unreadable or stale cache: rebuild below
    arrays = _synthesise(seed, scale)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".universe-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as out:
                np.savez(out, **arrays)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return Universe(arrays, seed, scale)
