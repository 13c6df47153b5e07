"""Discovering one allocation's networks with the fewest queries.

Two ways, chosen per registry by what it offers:

* ``search_walk`` (registries advertising ``rirSearch1``): ``rdap-bottom``
  over an allocation, or a run of consecutive allocations, lists the
  networks that are some address's most specific one, up to 100 per answer.
  A truncated answer is continued from the last network it listed (answers
  are in address order), a refused one (more than 10,000 related objects) is
  split, at an allocation boundary where the run has one, else in CIDR
  halves, each half also asked as a prefix (a network equal to a half is not
  "strictly inside" it). About one query per hundred networks, and the range
  ends resolved: every address's most specific network is known. The same
  walk with ``rdap-down`` over a run of allocations lists the allocations
  themselves, a hundred per query.
* ``probe_walk`` (no search): address probes, each answered with the most
  specific network of that address. Probes go to the gaps of the networks
  found (the space no known child covers), cut into CIDR blocks; the smallest
  blocks first, which are the gaps between networks already found, at the
  deepest level (a network's buddy block usually holds its sibling), before
  any block is probed a second time; a block whose probe answered its own
  network again is halved and only the unprobed half's first address is
  probed next, up to ``max_split`` halvings. Bounded by a budget of queries
  per allocation.

Both work through ``Queries`` (the executor's HTTP side), so they can be
driven by a test against the simulator or by the crawl.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field
from typing import Protocol

from whoiscrawl.crawl import ipspace

Range = tuple[int, int]


@dataclass
class SearchAnswer:
    """What a relation search gave: networks listed, and whether the list was cut or refused."""
    networks: list[Range] = field(default_factory=list)
    truncated: bool = False
    refused: bool = False
    failed: bool = False  # no usable answer after the policy's retries


class Queries(Protocol):
    async def prefix(self, registry: str, start: int, end: int) -> Range | None:
        """The most specific network enclosing the CIDR [start, end] (None: none, or it failed)."""

    async def search(self, registry: str, relation: str, start: int, end: int) -> SearchAnswer:
        """An RFC 9910 relation search over [start, end]."""

    async def probe(self, registry: str, addr: int) -> Range | None:
        """The most specific network of ``addr``."""


@dataclass
class WalkResult:
    """Networks found, ranges whose every address is resolved, and the queries spent."""
    networks: set[Range] = field(default_factory=set)
    resolved: list[Range] = field(default_factory=list)
    queries: int = 0
    unresolved: list[Range] = field(default_factory=list)


def halves(start: int, end: int) -> list[Range]:
    """Split a range in two along CIDR lines (a non-CIDR range: its CIDR pieces' largest split)."""
    pieces = [ipspace.network_range(c) for c in ipspace.range_to_cidrs(start, end)]
    if len(pieces) > 1:
        return pieces
    size = end - start + 1
    if size == 1:
        return [(start, end)]
    mid = start + size // 2
    return [(start, mid - 1), (mid, end)]


def _split(lo: int, hi: int, bounds: list[Range]) -> list[Range] | None:
    """Split [lo, hi] at the allocation boundary nearest its middle (None: no boundary inside it)."""
    cuts = [s for s, _e in bounds if lo < s <= hi]
    if not cuts:
        return None
    cut = cuts[len(cuts) // 2]
    return [(lo, cut - 1), (cut, hi)]


async def search_walk(queries: Queries, registry: str, start: int, end: int,
                      relation: str = "rdap-bottom", bounds: list[Range] | None = None,
                      ask_halves: bool = True) -> WalkResult:
    """Every network ``relation`` lists in [start, end]: with ``rdap-bottom``, every most specific one.

    [start, end] is one allocation, or a run of consecutive allocations (``bounds``, sorted): a refused
    answer is split at an allocation boundary first (no query lost to a network equal to a half), and
    only a single allocation is cut in CIDR halves, each half then also asked as a prefix when
    ``ask_halves`` (``rdap-bottom`` never lists a network equal to the range asked).
    """
    out = WalkResult()
    todo: list[Range] = [(start, end)]
    bounds = sorted(bounds or [])
    complete = True
    while todo:
        lo, hi = todo.pop()
        answer = await queries.search(registry, relation, lo, hi)
        out.queries += 1
        out.networks.update(answer.networks)
        if answer.failed:
            complete = False
            out.unresolved.append((lo, hi))
            continue
        if answer.refused or (answer.truncated and not answer.networks):
            parts = _split(lo, hi, bounds)
            if parts is None:
                parts = halves(lo, hi)
                if len(parts) == 1:
                    complete = False
                    out.unresolved.append((lo, hi))
                    continue
                if ask_halves:
                    for p_lo, p_hi in parts:
                        found = await queries.prefix(registry, p_lo, p_hi)
                        out.queries += 1
                        if found is not None:
                            out.networks.add(found)
            todo.extend(reversed(parts))
            continue
        if answer.truncated:
            cut = max(s for s, _e in answer.networks)
            if cut <= lo:  # a hundred networks starting at one address: split instead
                todo.extend(reversed(_split(lo, hi, bounds) or halves(lo, hi)))
            elif relation == "rdap-down" and (cut, hi) in answer.networks:
                continue  # the rest is that one network: asked again, it would list its children
            else:
                todo.append((cut, hi))
    if complete:
        out.resolved.append((start, end))
    return out


async def probe_walk(queries: Queries, registry: str, start: int, end: int, budget: int,
                     root: Range | None = None, max_split: int = 8,
                     probed: set[int] | None = None) -> WalkResult:
    """Networks of [start, end] found with at most ``budget`` probes; ``root`` is its network if known.

    ``max_split`` bounds how many times a gap block whose probe answered its own network is halved
    (down to 1/256 of the block by default): finer unknown children are left to the seed's own lookups.
    Each probed address is resolved (its answer is its most specific network).
    """
    out = WalkResult()
    probed = probed if probed is not None else set()
    known: dict[Range, int] = {}  # network -> depth
    # (halvings, block size - 1, -depth, lo, hi, owner lo, owner hi): unprobed gaps first, small before large
    heap: list[tuple[int, int, int, int, int, int, int]] = []
    order: list[tuple[int, int]] = []  # found networks as (start, -end), sorted

    def push_gaps(owner: Range, depth: int) -> None:
        lo, hi = owner
        i = bisect.bisect_left(order, (lo, -hi))
        cursor = lo
        for s, neg_e in order[i:]:
            if s > hi:
                break
            e = -neg_e
            if (s, e) == owner or e < cursor:
                continue  # itself, or inside a child already passed
            if s > cursor:
                push_blocks(cursor, s - 1, owner, depth, 0)
            cursor = max(cursor, e + 1)
        if cursor <= hi:
            push_blocks(cursor, hi, owner, depth, 0)

    def push_blocks(lo: int, hi: int, owner: Range, depth: int, level: int) -> None:
        for cidr in ipspace.range_to_cidrs(lo, hi):
            b_lo, b_hi = ipspace.network_range(cidr)
            heapq.heappush(heap, (level, b_hi - b_lo, -depth, b_lo, b_hi, owner[0], owner[1]))

    def add(net: Range, depth: int) -> None:
        known[net] = depth
        bisect.insort(order, (net[0], -net[1]))
        push_gaps(net, depth)

    if root is not None:
        out.networks.add(root)
        add(root, 0)
    else:
        push_blocks(start, end, (start, end), -1, 0)
    while heap and out.queries < budget:
        level, _size, neg_depth, b_lo, b_hi, o_lo, o_hi = heapq.heappop(heap)
        owner = (o_lo, o_hi)
        if b_lo in probed:  # its first address answered the owner: probe the half not yet asked
            if b_hi > b_lo and level < max_split:
                mid = b_lo + (b_hi - b_lo + 1) // 2
                heapq.heappush(heap, (level + 1, mid - 1 - b_lo, neg_depth, b_lo, mid - 1, o_lo, o_hi))
                heapq.heappush(heap, (level + 1, b_hi - mid, neg_depth, mid, b_hi, o_lo, o_hi))
            continue
        found = await queries.probe(registry, b_lo)
        out.queries += 1
        probed.add(b_lo)
        out.resolved.append((b_lo, b_lo))
        if found is None or found == owner or not (found[0] <= b_lo <= found[1]):
            heapq.heappush(heap, (level, b_hi - b_lo, neg_depth, b_lo, b_hi, o_lo, o_hi))  # split when next popped
            continue
        out.networks.add(found)
        if found not in known and start <= found[0] and found[1] <= end:
            add(found, -neg_depth + 1)
        if b_lo >= found[0] and b_hi <= found[1]:
            continue  # the block lies in the network found: that network's own gaps cover it
        # the network lies in the block: the rest of the block is still the owner's gap
        if b_lo < found[0]:
            push_blocks(b_lo, found[0] - 1, owner, -neg_depth, 0)
        if found[1] < b_hi:
            push_blocks(found[1] + 1, b_hi, owner, -neg_depth, 0)
    return out
