"""Delegated-extended files into allocations: host counts into CIDRs, the simulator's files into its universe."""

from __future__ import annotations

import asyncio

import aiohttp
import numpy as np
import pytest

from simulator_helpers import small_universe
from whoiscrawl.crawl import ipspace
from whoiscrawl.crawl.config import ConfigError, RunConfig
from whoiscrawl.crawl.registries import REGISTRIES
from whoiscrawl.crawl.strategy.plan import bootstrap_ranges, build_items, split_items
from whoiscrawl.crawl.strategy.sources import (DEFAULT_URLS, Allocation, DelegatedError, fetch_delegated,
                                               parse_delegated, parse_urls)
from whoiscrawl.crawl.strategy.tree import NetworkTree
from whoiscrawl.simulator.server import SimulatorThread

SAMPLE = """2|apnic|20260101|4|19830613|20251231|+1000
apnic|*|ipv4|*|3|summary
apnic|*|asn|*|1|summary
apnic|AU|ipv4|1.0.0.0|256|20110811|assigned|A91872ED
apnic|CN|ipv4|1.0.1.0|768|20110414|allocated|A92E1062
apnic|JP|asn|173|1|20020801|allocated|A91D8B17
apnic||ipv4|1.0.8.0|2048|20110412|available|
apnic|AU|ipv6|2001:200::|35|19990813|allocated|A91D8B17
"""


def test_host_counts_become_ranges_and_cidrs():
    rows = parse_delegated(SAMPLE, "apnic")
    assert [(ipspace.to_str(a.start), ipspace.to_str(a.end), a.status) for a in rows] == [
        ("1.0.0.0", "1.0.0.255", "assigned"), ("1.0.1.0", "1.0.3.255", "allocated")]
    assert rows[1].cidrs() == ["1.0.1.0/24", "1.0.2.0/23"]  # 768 hosts: not one prefix
    assert parse_delegated(SAMPLE, "ripencc") == []


def test_a_malformed_row_is_an_error_naming_its_line():
    with pytest.raises(DelegatedError, match="line 2"):
        parse_delegated("2|arin|x|1|x|x|-0500\narin|US|ipv4|3.0.0.999|256|20000101|allocated|X\n")
    with pytest.raises(DelegatedError, match="leave IPv4"):
        parse_delegated("arin|US|ipv4|255.255.255.0|512|20000101|allocated|X\n")


def test_urls_default_to_the_real_files_and_take_a_mapping():
    assert parse_urls("") == DEFAULT_URLS
    assert DEFAULT_URLS["ripencc"].endswith("/delegated-ripencc-extended-latest")
    urls = parse_urls("lacnic=http://127.0.0.1:1/x, afrinic=")
    assert urls["lacnic"] == "http://127.0.0.1:1/x" and urls["afrinic"] == "" and urls["arin"] == DEFAULT_URLS["arin"]
    with pytest.raises(ValueError):
        parse_urls("nic=http://x")
    with pytest.raises(ConfigError):
        RunConfig(delegated_urls="arin=ftp://x")
    with pytest.raises(ConfigError):
        RunConfig(strategy="fastest")


def test_the_simulators_files_parse_into_exactly_its_allocation_layer():
    universe = small_universe()

    async def fetch_all(urls):
        async def acquire(_registry):
            return 0.0

        async with aiohttp.ClientSession() as session:
            return {r: await fetch_delegated(session, r, u, acquire) for r, u in urls.items()}

    with SimulatorThread(universe, profile="fast") as sim:
        got = asyncio.run(fetch_all(sim.delegated_urls))
    for code, registry in enumerate(REGISTRIES):
        rows = np.flatnonzero((universe.levels == 0) & (universe.registry_codes == code))
        expected = set(zip(universe.starts[rows].astype(int).tolist(), universe.ends[rows].astype(int).tolist()))
        assert {(a.start, a.end) for a in got[registry]} == expected, registry
    multi = [a for rows in got.values() for a in rows if len(a.cidrs()) > 1]
    assert multi, "the universe has trimmed records: some rows need several CIDRs"
    for a in multi[:50]:  # the CIDRs of a row cover exactly its hosts
        assert sum(ipspace.network_range(c)[1] - ipspace.network_range(c)[0] + 1 for c in a.cidrs()) == a.size


def test_items_are_largest_first_with_a_probe_budget_by_size_and_dealt_to_every_chunk():
    allocations = {"lacnic": [Allocation("lacnic", 0, 255, "allocated"), Allocation("lacnic", 1024, 2047, "allocated")],
                   "arin": [Allocation("arin", 4096, 4096 + 4095, "allocated")] * 3}
    items = build_items(allocations, probe_budget=1000)
    lacnic = [it for it in items if it["registry"] == "lacnic"]
    assert [it["end"] - it["start"] + 1 for it in lacnic] == [1024, 256]
    assert [it["budget"] for it in lacnic] == [800, 200]
    chunks = split_items(items, 2)
    assert len(chunks) == 2 and all({"lacnic", "arin"} <= {it["registry"] for it in c} for c in chunks)


def test_bootstrap_ranges_are_the_fallback_source():
    from whoiscrawl.crawl.bootstrap import default_document

    ranges = bootstrap_ranges(default_document())
    assert set(ranges) == set(REGISTRIES)
    assert (ipspace.to_int("200.0.0.0"), ipspace.to_int("200.255.255.255")) in ranges["lacnic"]


def test_tree_answers_the_most_specific_network_and_its_gaps():
    nets = [(0, 255), (0, 63), (128, 191), (128, 143), (0, 63), (1000, 1999)]
    tree = NetworkTree([s for s, _ in nets], [e for _, e in nets])
    assert len(tree) == 5  # duplicates once
    ms = tree.most_specific(np.array([5, 64, 130, 150, 200, 300, 1500]))
    got = [None if i < 0 else (int(tree.starts[i]), int(tree.ends[i])) for i in ms]
    assert got == [(0, 63), (0, 255), (128, 143), (128, 191), (0, 255), None, (1000, 1999)]
    root = int(np.flatnonzero((tree.starts == 0) & (tree.ends == 255))[0])
    assert tree.gaps(root) == [(64, 127), (192, 255)]


def test_the_real_files_are_the_default_only_for_registries_reached_at_their_real_hosts():
    from whoiscrawl.crawl.strategy.sources import DEFAULT_URLS, parse_urls, real_defaults

    iana = {"services": [[["41.0.0.0/8"], ["https://rdap.afrinic.net/rdap/"]],
                         [["200.0.0.0/8"], ["http://127.0.0.1:18084/lacnic/"]]]}
    assert real_defaults(iana) == {"afrinic": DEFAULT_URLS["afrinic"]}
    urls = parse_urls("", defaults=real_defaults(iana))
    assert "lacnic" not in urls or not urls["lacnic"]  # the simulator's LACNIC: no real file fetched
    assert parse_urls("lacnic=http://127.0.0.1:18084/x", defaults={})["lacnic"] == "http://127.0.0.1:18084/x"


def test_registries_with_searches_get_runs_of_neighbours_and_the_others_round_robin():
    allocations = {"arin": [Allocation("arin", i * 256, i * 256 + 255, "allocated") for i in range(10)],
                   "apnic": [Allocation("apnic", 65536 + i * 256, 65536 + i * 256 + 255, "allocated")
                             for i in range(10)]}
    items = build_items(allocations, probe_budget=0)
    assert sorted(it["seq"] for it in items if it["registry"] == "arin") == list(range(10))
    chunks = split_items(items, 3, contiguous={"arin"})
    assert len(chunks) == 3
    for chunk in chunks:
        seqs = sorted(it["seq"] for it in chunk if it["registry"] == "arin")
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # one run in address order
        assert any(it["registry"] == "apnic" for it in chunk)
    assert sorted(it["seq"] for c in chunks for it in c if it["registry"] == "arin") == list(range(10))
    apnic_first = [sorted(it["seq"] for it in c if it["registry"] == "apnic")[0] for c in chunks]
    assert len(set(apnic_first)) == 3 and max(apnic_first) <= 2  # dealt one by one, not in runs


def test_a_refused_run_is_split_at_an_allocation_boundary_and_listed_networks_enclose_their_rows():
    from whoiscrawl.crawl.strategy.executor import _enclosing
    from whoiscrawl.crawl.strategy.walk import _split

    bounds = [(0, 99), (100, 199), (300, 399), (400, 499)]
    assert _split(0, 499, bounds) == [(0, 299), (300, 499)]
    assert _split(300, 399, bounds) is None  # one allocation: CIDR halves instead
    listed = sorted([(0, 199), (300, 399), (450, 460)])
    assert _enclosing(listed, 100, 199) == (0, 199)
    assert _enclosing(listed, 300, 399) == (300, 399)
    assert _enclosing(listed, 400, 499) is None
    assert _enclosing(listed, 0, 255) is None


def test_only_neighbours_in_the_whole_list_have_consecutive_seq():
    # ten rows in address order; the three largest are the 1st, 6th and 10th: a partial plan keeps them,
    # and they must not look like neighbours (a search over their span would take in the seven others)
    sizes = [4096, 256, 256, 256, 256, 4096, 256, 256, 256, 4096]
    rows, start = [], 0
    for size in sizes:
        rows.append(Allocation("arin", start, start + size - 1, "allocated"))
        start += size
    items = build_items({"arin": rows}, probe_budget=0, per_registry=3)
    assert sorted(it["seq"] for it in items) == [0, 5, 9]
