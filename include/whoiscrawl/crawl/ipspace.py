"""IPv4 address arithmetic and the reserved space, as numbers.

Addresses are handled as unsigned 32-bit integers throughout the project: a
seed list of millions of addresses fits in a numpy array, and an interval
union is two sorted arrays.

Two notions of "reserved" exist and both are needed:

* the *ancestor's* filter for seed addresses (its old ``ipaddr`` library:
  private 10/8, 172.16/12, 192.168/16; link-local 169.254/16; loopback 127/8;
  multicast 224/4; reserved 240/4), which fixes the classic seed at exactly
  4,706,768 addresses;
* IANA's special-purpose registry plus multicast, whose complement is the
  3,702,257,664 non-reserved addresses that coverage is measured against.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from importlib import resources
from typing import Iterable

import numpy as np

ADDRESS_SPACE = 1 << 32

#: The ancestor's excluded blocks (ipaddr's is_private/is_link_local/is_loopback/is_multicast/is_reserved).
ANCESTOR_EXCLUDED: tuple[str, ...] = (
    "10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
)

#: Multicast is in its own IANA registry, not in the special-purpose one.
MULTICAST = "224.0.0.0/4"


def to_int(address: str) -> int:
    """Dotted quad to integer; raises ValueError for anything that is not one IPv4 address."""
    return int(ipaddress.IPv4Address(address.strip()))


def to_str(value: int) -> str:
    return str(ipaddress.IPv4Address(int(value)))


def network_range(cidr: str) -> tuple[int, int]:
    """First and last address of a CIDR block, inclusive."""
    net = ipaddress.IPv4Network(cidr.strip(), strict=False)
    return int(net.network_address), int(net.broadcast_address)


def range_to_cidrs(start: int, end: int) -> list[str]:
    """The CIDR blocks that exactly cover ``start..end`` (a registry range need not be one prefix)."""
    return [str(n) for n in ipaddress.summarize_address_range(
        ipaddress.IPv4Address(int(start)), ipaddress.IPv4Address(int(end)))]


def merge_intervals(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort and merge inclusive intervals into disjoint, non-adjacent ones (int64 arrays)."""
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    if starts.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    # a new merged interval begins where a start lies beyond everything before it (+1: adjacent ones merge)
    begins = np.empty(starts.size, dtype=bool)
    begins[0] = True
    begins[1:] = starts[1:] > reach[:-1] + 1
    first = np.flatnonzero(begins)
    last = np.append(first[1:] - 1, starts.size - 1)
    return starts[first], reach[last]


def containing_interval(starts: np.ndarray, ends: np.ndarray, addrs: np.ndarray) -> np.ndarray:
    """Index of the interval containing each address, or -1 (intervals sorted and disjoint)."""
    if starts.size == 0:
        return np.full(addrs.shape, -1, dtype=np.int64)
    i = np.searchsorted(starts, addrs, side="right") - 1
    safe = np.maximum(i, 0)
    hit = (i >= 0) & (ends[safe] >= addrs)
    return np.where(hit, i, -1)


def union_size(ranges: Iterable[tuple[int, int]]) -> int:
    """Addresses covered by a set of inclusive ranges, overlaps counted once."""
    pairs = list(ranges)
    if not pairs:
        return 0
    arr = np.array(pairs, dtype=np.int64)
    s, e = merge_intervals(arr[:, 0], arr[:, 1])
    return int((e - s + 1).sum())


@lru_cache(maxsize=1)
def special_purpose_records() -> tuple[tuple[int, int, str, bool], ...]:
    """IANA's IPv4 special-purpose registry (shipped XML): (first, last, name, globally reachable)."""
    text = resources.files("whoiscrawl").joinpath("data/iana/iana-ipv4-special-registry.xml").read_text()
    records: list[tuple[int, int, str, bool]] = []
    for record in re.findall(r"<record[^>]*>(.*?)</record>", text, flags=re.S):
        address = re.search(r"<address>(.*?)</address>", record, flags=re.S)
        if address is None:
            continue
        name = re.search(r"<name>([^<]*)</name>", record)
        reach = re.search(r"<global>([^<]*)</global>", record)
        reachable = bool(reach and reach.group(1).strip().lower().startswith("true"))
        for cidr in re.sub(r"<xref[^>]*/>", "", address.group(1)).split(","):
            if cidr.strip():
                first, last = network_range(cidr)
                records.append((first, last, name.group(1).strip() if name else "", reachable))
    return tuple(records)


@lru_cache(maxsize=1)
def iana_special_purpose() -> tuple[tuple[int, int], ...]:
    """Blocks of IANA's IPv4 special-purpose registry, plus multicast (in a registry of its own)."""
    return (network_range(MULTICAST), *((first, last) for first, last, _n, _r in special_purpose_records()))


@lru_cache(maxsize=1)
def reserved_intervals() -> tuple[np.ndarray, np.ndarray]:
    blocks = np.array(iana_special_purpose(), dtype=np.int64)
    return merge_intervals(blocks[:, 0], blocks[:, 1])


def non_reserved_total() -> int:
    """Addresses outside IANA's special-purpose blocks and multicast: 3,702,257,664."""
    s, e = reserved_intervals()
    return ADDRESS_SPACE - int((e - s + 1).sum())


def _in_intervals(addrs: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    return containing_interval(starts, ends, np.asarray(addrs, dtype=np.int64)) >= 0


def is_reserved_many(addrs: np.ndarray) -> np.ndarray:
    s, e = reserved_intervals()
    return _in_intervals(addrs, s, e)


@lru_cache(maxsize=1)
def _ancestor_intervals() -> tuple[np.ndarray, np.ndarray]:
    blocks = np.array([network_range(c) for c in ANCESTOR_EXCLUDED], dtype=np.int64)
    return merge_intervals(blocks[:, 0], blocks[:, 1])


def ancestor_excluded_many(addrs: np.ndarray) -> np.ndarray:
    """True where the ancestor's ipaddr-based filter would drop the address."""
    s, e = _ancestor_intervals()
    return _in_intervals(addrs, s, e)
