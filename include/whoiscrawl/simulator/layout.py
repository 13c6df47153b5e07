"""Geometry of the universe: make ranges nest, cut them into CIDRs, carve children.

Pure numpy over address ranges; nothing here knows about registries' formats.
A *laminar* family (every two ranges either nest or are disjoint) is what lets
one most-specific lookup table answer for the whole IPv4 space.
"""

from __future__ import annotations

import numpy as np

ADDRESS_SPACE_END = (1 << 32) - 1


def resolve_overlaps(start: np.ndarray, end: np.ndarray, precedence: np.ndarray,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Make delegated ranges laminar: the newer record wins shared addresses.

    The delegated files are snapshots of different years, so a block moved
    between registries can be listed by both.  When records overlap, a newer
    record strictly inside an older one stays nested in it (a transfer out of a
    larger block); an older record inside or equal to a newer one is shadowed
    (dropped); a partial overlap trims the older record.

    Returns (start, end, kept) with trimmed bounds, in the input order.
    """
    start = start.astype(np.int64).copy()
    end = end.astype(np.int64).copy()
    kept = np.ones(start.shape[0], dtype=bool)
    order = np.lexsort((-end, start))
    s_sorted = start[order]
    e_sorted = end[order]
    running_max = np.maximum.accumulate(e_sorted)
    opens = np.ones(order.shape[0], dtype=bool)
    opens[1:] = s_sorted[1:] > running_max[:-1]
    cluster = np.cumsum(opens) - 1
    sizes = np.bincount(cluster)
    for cid in np.flatnonzero(sizes > 1):
        members = order[cluster == cid]
        members = members[np.argsort(-precedence[members], kind="stable")]
        accepted: list[int] = []
        for idx in members.tolist():
            lo, hi = int(start[idx]), int(end[idx])
            alive = True
            for _ in range(len(accepted) + 1):  # each pass trims or settles
                changed = False
                for other in accepted:
                    o_lo, o_hi = int(start[other]), int(end[other])
                    if o_hi < lo or o_lo > hi:
                        continue
                    if lo <= o_lo and o_hi <= hi and (lo, hi) != (o_lo, o_hi):
                        continue  # newer record nested inside: a transfer
                    if o_lo <= lo and hi <= o_hi:
                        alive = False
                        break
                    if lo < o_lo:
                        hi = o_lo - 1
                    else:
                        lo = o_hi + 1
                    changed = True
                if not alive or not changed:
                    break
            if alive:
                start[idx], end[idx] = lo, hi
                accepted.append(idx)
            else:
                kept[idx] = False
    return start, end, kept


def nesting(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Container index (-1 for none) and depth of each range of a laminar family."""
    n = start.shape[0]
    container = np.full(n, -1, dtype=np.int64)
    depth = np.zeros(n, dtype=np.int64)
    order = np.lexsort((-end, start))
    stack: list[int] = []
    ends = end.tolist()
    starts = start.tolist()
    for idx in order.tolist():
        s = starts[idx]
        while stack and ends[stack[-1]] < s:
            stack.pop()
        if stack:
            container[idx] = stack[-1]
            depth[idx] = len(stack)
        stack.append(idx)
    return container, depth


def subtract(start: np.ndarray, end: np.ndarray, owner: np.ndarray,
             hole_start: np.ndarray, hole_end: np.ndarray, hole_owner: np.ndarray,
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ranges of each owner minus the holes of the same owner (holes lie inside)."""
    if hole_start.size == 0:
        return start, end, owner
    order = np.lexsort((hole_start, hole_owner))
    hs, he, ho = hole_start[order], hole_end[order], hole_owner[order]
    affected = np.isin(owner, ho)
    out_s = [start[~affected]]
    out_e = [end[~affected]]
    out_o = [owner[~affected]]
    holes_by_owner: dict[int, list[tuple[int, int]]] = {}
    for a, b, o in zip(hs.tolist(), he.tolist(), ho.tolist()):
        holes_by_owner.setdefault(o, []).append((a, b))
    piece_s: list[int] = []
    piece_e: list[int] = []
    piece_o: list[int] = []
    for s, e, o in zip(start[affected].tolist(), end[affected].tolist(), owner[affected].tolist()):
        cursor = s
        for a, b in holes_by_owner[o]:
            if b < cursor or a > e:
                continue
            if a > cursor:
                piece_s.append(cursor)
                piece_e.append(a - 1)
                piece_o.append(o)
            cursor = max(cursor, b + 1)
        if cursor <= e:
            piece_s.append(cursor)
            piece_e.append(e)
            piece_o.append(o)
    out_s.append(np.asarray(piece_s, dtype=np.int64))
    out_e.append(np.asarray(piece_e, dtype=np.int64))
    out_o.append(np.asarray(piece_o, dtype=np.int64))
    return np.concatenate(out_s), np.concatenate(out_e), np.concatenate(out_o)


def _floor_log2(values: np.ndarray) -> np.ndarray:
    _, exponent = np.frexp(values.astype(np.float64))
    return (exponent - 1).astype(np.int64)


def cidr_pieces(start: np.ndarray, end: np.ndarray, owner: np.ndarray,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split each [start, end] into the fewest aligned CIDR blocks (start, length, owner)."""
    s = start.astype(np.int64)
    e = end.astype(np.int64)
    o = owner.astype(np.int64)
    out_s, out_len, out_o = [], [], []
    for _ in range(64):
        if s.size == 0:
            break
        lowbit = s & -s
        lowbit[s == 0] = 1 << 32
        fit = np.left_shift(1, _floor_log2(e - s + 1))
        block = np.minimum(lowbit, fit)
        out_s.append(s)
        out_len.append(32 - _floor_log2(block))
        out_o.append(o)
        s = s + block
        more = s <= e
        s, e, o = s[more], e[more], o[more]
    return np.concatenate(out_s), np.concatenate(out_len), np.concatenate(out_o)


def cidrs_of_range(start: int, end: int) -> list[tuple[int, int]]:
    """The same split for one range, in plain ints (for responses)."""
    blocks = []
    s = start
    while s <= end:
        low = (s & -s) if s else 1 << 32
        size = min(low, 1 << ((end - s + 1).bit_length() - 1))
        blocks.append((s, 32 - size.bit_length() + 1))
        s += size
    return blocks


def carve(rng: np.random.Generator, piece_start: np.ndarray, piece_len: np.ndarray,
          piece_owner: np.ndarray, *, stop_p: np.ndarray, leaf_p: np.ndarray,
          min_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Carve child CIDRs out of each piece by random binary splitting.

    Every block below a piece is, with ``stop_p[length]``, left whole (a child
    with ``leaf_p[length]``, else unassigned space) or else halved again.  A
    small stop probability for big blocks and a large one past /23 gives what
    the registries look like: a few big customers, most records /24 or smaller,
    and holes.  Blocks never go below ``min_len``, and a piece itself is always
    split, so a child's range never equals its parent's.

    Returns child (start, prefix length, owner).
    """
    s = piece_start.astype(np.int64)
    length = piece_len.astype(np.int64)
    o = piece_owner.astype(np.int64)
    root = np.ones(s.shape[0], dtype=bool)
    out_s, out_len, out_o = [], [], []
    for _ in range(34):  # one prefix length per round
        splittable = (length < min_len) | ~root
        s, length, o, root = s[splittable], length[splittable], o[splittable], root[splittable]
        if s.size == 0:
            break
        clipped = np.minimum(length, 32)
        stop = ~root & ((length >= min_len) | (rng.random(s.shape[0]) < stop_p[clipped]))
        leaf = stop & (rng.random(s.shape[0]) < leaf_p[clipped])
        out_s.append(s[leaf])
        out_len.append(length[leaf])
        out_o.append(o[leaf])
        go = ~stop
        half = np.left_shift(1, 31 - length[go])
        s = np.concatenate([s[go], s[go] + half])
        length = np.concatenate([length[go] + 1, length[go] + 1])
        o = np.concatenate([o[go], o[go]])
        root = np.zeros(s.shape[0], dtype=bool)
    if not out_s:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(out_s), np.concatenate(out_len), np.concatenate(out_o)
