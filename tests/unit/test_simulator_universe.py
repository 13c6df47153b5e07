"""The simulated universe: allocation layer from the real data, synthesis, lookups, truth export."""

from __future__ import annotations

import re

import numpy as np
import pytest

from simulator_helpers import TEST_SCALE, dotted, small_universe
from whoiscrawl.crawl.registries import REGISTRIES
from whoiscrawl.simulator import layout, sources
from whoiscrawl.simulator.universe import build_universe, cache_path, read_truth

ADDRESS_SPACE = 1 << 32


@pytest.fixture(scope="module")
def universe():
    return small_universe()


def _delegated_rows_by_hand() -> int:
    """Count the allocation layer's rows straight from the files, independently of sources.py."""
    total = 0
    for registry, filename in sources.DELEGATED_FILES.items():
        for line in (sources.DELEGATED_DIR / filename).read_text(encoding="ascii", errors="replace").splitlines():
            parts = line.split("|")
            if len(parts) >= 7 and parts[0] == registry and parts[2] == "ipv4" and parts[1] != "*" \
                    and parts[6] in ("allocated", "assigned"):
                total += 1
    return total


def test_allocation_layer_has_every_delegated_record(universe):
    assert universe.allocation_count() == 46593 + 49932 + 53993 + 20067 + 5397 == 175_982
    assert universe.allocation_count() == _delegated_rows_by_hand()
    level0 = int((universe.levels == 0).sum())
    # records fully covered by a newer record of another registry are shadowed, not served
    assert level0 + universe.shadowed_records == universe.allocation_count()
    assert 0 < universe.shadowed_records < 0.01 * universe.allocation_count()


def test_allocation_count_does_not_depend_on_scale(universe):
    bigger = build_universe(seed=1, scale=2 * TEST_SCALE)
    assert bigger.allocation_count() == universe.allocation_count()
    assert len(bigger) > len(universe)
    assert int((bigger.levels == 0).sum()) == int((universe.levels == 0).sum())


def test_same_seed_same_arrays_other_seed_other_arrays(universe):
    again = build_universe(seed=1, scale=TEST_SCALE)
    for name, array in universe.arrays().items():
        assert np.array_equal(array, again.arrays()[name]), name
    other = build_universe(seed=2, scale=TEST_SCALE)
    assert len(other) != len(universe) or not np.array_equal(other.starts, universe.starts)
    # the allocation layer comes from the data, so it is the same for every seed
    assert np.array_equal(other.starts[other.levels == 0], universe.starts[universe.levels == 0])


def test_lookup_is_the_most_specific_enclosing_network(universe):
    rng = np.random.default_rng(5)
    addrs = np.concatenate([rng.integers(0, ADDRESS_SPACE, 300, dtype=np.int64),
                            universe.random_allocated_addresses(300, seed=5).astype(np.int64)])
    starts = universe.starts.astype(np.int64)
    ends = universe.ends.astype(np.int64)
    sizes = ends - starts + 1
    found = universe.lookup_many(addrs.astype(np.uint32))
    for addr, fast in zip(addrs.tolist(), found.tolist()):
        enclosing = np.flatnonzero((starts <= addr) & (ends >= addr))
        expected = -1 if enclosing.size == 0 else int(enclosing[np.argmin(sizes[enclosing])])
        assert fast == expected, dotted(addr)
        assert universe.lookup(addr) == (None if expected < 0 else expected)


def test_hierarchy_nests_with_three_levels(universe):
    levels = universe.levels.astype(np.int64)
    assert set(np.unique(levels).tolist()) == {0, 1, 2, 3}
    children = np.flatnonzero(universe.parents >= 0)
    parents = universe.parents[children]
    assert np.array_equal(levels[children], levels[parents] + 1)
    assert (universe.starts[children] >= universe.starts[parents]).all()
    assert (universe.ends[children] <= universe.ends[parents]).all()
    same = (universe.starts[children] == universe.starts[parents]) & (universe.ends[children] == universe.ends[parents])
    assert not same.any()
    assert (universe.registry_codes[children] == universe.registry_codes[parents]).all()
    assert (universe.parents[levels == 0] == -1).all()


def test_children_are_fragmented_and_leave_holes(universe):
    sub = universe.levels > 0
    sizes = universe.ends[sub].astype(np.int64) - universe.starts[sub] + 1
    assert (sizes <= 256).mean() > 0.5
    # some allocated addresses fall in allocations that have children but not under one of them
    addrs = universe.random_allocated_addresses(20_000, seed=9)
    found = universe.lookup_many(addrs)
    has_children = np.bincount(universe.parents[universe.parents >= 0], minlength=len(universe)) > 0
    holes = (universe.levels[found] == 0) & has_children[found]
    assert holes.any()


def test_handles_are_unique_and_shaped_per_registry(universe):
    patterns = {
        "arin": re.compile(r"^NET-\d+-\d+-\d+-\d+-[1-4]$"),
        "ripencc": re.compile(r"^\d+\.\d+\.\d+\.\d+ - \d+\.\d+\.\d+\.\d+$"),
        "apnic": re.compile(r"^\d+\.\d+\.\d+\.\d+ - \d+\.\d+\.\d+\.\d+$"),
        "afrinic": re.compile(r"^\d+\.\d+\.\d+\.\d+ - \d+\.\d+\.\d+\.\d+$"),
        "lacnic": re.compile(r"^\d+\.\d+\.\d+\.\d+/\d+$"),
    }
    handles = [universe.handle(i) for i in range(len(universe))]
    assert len(set(handles)) == len(handles)
    rng = np.random.default_rng(3)
    for i in rng.choice(len(universe), 2000, replace=False).tolist():
        net = universe.network(i)
        assert patterns[net.registry].match(net.handle), net
        assert net.handle == handles[i]
        parent = int(universe.parents[i])
        if parent >= 0:
            assert net.parent_handle == handles[parent]
        elif net.registry == "lacnic":
            assert net.parent_handle is None
        elif net.registry == "arin":
            assert net.parent_handle == f"NET-{net.start >> 24}-0-0-0-0"
        else:
            assert net.parent_handle in (f"{net.start >> 24}.0.0.0 - {net.start >> 24}.255.255.255",
                                         "0.0.0.0 - 255.255.255.255")


def test_ripe_legacy_space_is_typed_and_parented_as_legacy(universe):
    ripe = REGISTRIES.index("ripencc")
    slash8 = sources.read_slash8()
    legacy_octets = np.asarray([status == "LEGACY" for status in slash8.status])
    idx = np.flatnonzero((universe.registry_codes == ripe) & (universe.levels == 0)
                         & legacy_octets[universe.starts >> 24])
    assert idx.size > 0
    net = universe.network(int(idx[0]))
    assert net.type == "LEGACY"
    assert net.parent_handle == "0.0.0.0 - 255.255.255.255"


def test_reserved_and_unallocated_space_has_no_network(universe):
    for text in ("10.1.2.3", "127.0.0.1", "224.0.0.1", "240.1.1.1", "192.168.1.1", "100.64.0.1"):
        a, b, c, d = (int(x) for x in text.split("."))
        addr = (a << 24) | (b << 16) | (c << 8) | d
        assert universe.lookup(addr) is None, text
        assert universe.is_reserved(addr), text
    assert universe.bootstrap_registry(10 << 24) is None
    free = np.flatnonzero(universe._seg_net < 0)
    unreserved = [int(universe._seg_start[k]) for k in free.tolist()
                  if not universe.is_reserved(int(universe._seg_start[k]))]
    assert unreserved, "some space inside RIR /8s is held by nobody"
    assert universe.owner(unreserved[0]) is None and universe.bootstrap_registry(unreserved[0]) is not None


def test_some_space_is_held_by_another_registry_than_the_bootstrap_names(universe):
    addrs = universe.random_allocated_addresses(20_000, seed=11)
    moved = [a for a in addrs.tolist() if universe.owner(a) != universe.bootstrap_registry(a)]
    assert len(moved) > 20
    for addr in moved[:50]:
        assert universe.owner(addr) == universe.registry_of(universe.lookup(addr))
        assert universe.bootstrap_registry(addr) in REGISTRIES


def test_cidrs_cover_ranges_that_are_not_powers_of_two(universe):
    sizes = universe.ends.astype(np.int64) - universe.starts + 1
    odd = np.flatnonzero((sizes & (sizes - 1)) != 0)
    assert odd.size > 0
    for i in odd[:200].tolist():
        net = universe.network(i)
        blocks = net.cidrs
        assert len(blocks) > 1
        cursor = net.start
        for start, length in blocks:
            size = 1 << (32 - length)
            assert start == cursor and start % size == 0
            cursor += size
        assert cursor == net.end + 1


def test_vectorised_cidr_split_matches_the_scalar_one():
    rng = np.random.default_rng(1)
    starts = rng.integers(0, ADDRESS_SPACE - 100_000, 500)
    ends = starts + rng.integers(0, 100_000, 500)
    s, length, owner = layout.cidr_pieces(starts, ends, np.arange(500))
    for k in range(500):
        mine = sorted(zip(s[owner == k].tolist(), length[owner == k].tolist()))
        assert mine == layout.cidrs_of_range(int(starts[k]), int(ends[k]))


def test_overlapping_records_resolve_newest_first():
    start = np.asarray([0, 100, 100, 300, 350], dtype=np.int64)
    end = np.asarray([299, 199, 199, 399, 450], dtype=np.int64)
    precedence = np.asarray([1, 5, 2, 1, 9])  # higher is newer
    new_start, new_end, kept = layout.resolve_overlaps(start, end, precedence)
    assert kept.tolist() == [True, True, False, True, True]  # the older duplicate is shadowed
    assert (new_start[0], new_end[0]) == (0, 299)          # a newer block nests inside it
    assert (new_start[3], new_end[3]) == (300, 349)        # partial overlap trims the older one
    assert (new_start[4], new_end[4]) == (350, 450)


def test_export_truth_lists_every_network(universe, tmp_path):
    path = tmp_path / "truth.tsv"
    count = universe.export_truth(path)
    assert count == len(universe)
    assert path.read_text(encoding="utf-8").split("\n", 1)[0] == "registry\thandle\tstart\tend\tparent_handle"
    rows = read_truth(path)
    assert len(rows) == len(universe)
    for i in (0, len(universe) // 3, len(universe) - 1):
        net = universe.network(i)
        assert rows[i] == {"registry": net.registry, "handle": net.handle, "start": dotted(net.start),
                           "end": dotted(net.end), "parent_handle": net.parent_handle or ""}


def test_cache_round_trip(tmp_path, universe):
    first = build_universe(seed=1, scale=TEST_SCALE, cache_dir=tmp_path)
    path = cache_path(tmp_path, 1, TEST_SCALE)
    assert path.exists()
    assert not cache_path(tmp_path, 2, TEST_SCALE).exists()
    loaded = build_universe(seed=1, scale=TEST_SCALE, cache_dir=tmp_path)
    for name, array in first.arrays().items():
        assert np.array_equal(array, loaded.arrays()[name]), name
        assert np.array_equal(array, universe.arrays()[name]), name
    assert loaded.network(123) == universe.network(123)
