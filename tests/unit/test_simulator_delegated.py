"""Delegated-extended files: they parse back to exactly each registry's allocation layer."""

from __future__ import annotations

import numpy as np
import pytest

from simulator_helpers import get, parse_ip, small_universe
from whoiscrawl.crawl.registries import REGISTRIES
from whoiscrawl.simulator import delegated
from whoiscrawl.simulator.server import SimulatorThread


@pytest.fixture(scope="module")
def universe():
    return small_universe()


@pytest.fixture(scope="module")
def sim(universe):
    with SimulatorThread(universe, profile="fast") as running:
        yield running


def _parse(text: str) -> tuple[list[str], list[list[str]]]:
    lines = text.splitlines()
    return lines[:2], [line.split("|") for line in lines[2:]]


def _level0(universe, registry: str) -> list[tuple[int, int]]:
    rows = np.flatnonzero((universe.levels == 0) & (universe.registry_codes == REGISTRIES.index(registry)))
    return list(zip(universe.starts[rows].tolist(), universe.ends[rows].tolist()))


@pytest.mark.parametrize("registry", REGISTRIES)
def test_rows_are_exactly_the_registrys_allocations(universe, registry):
    (version, summary), rows = _parse(delegated.delegated_text(universe, registry))
    ranges = []
    for row in rows:
        assert len(row) == 8 and row[0] == registry and row[2] == "ipv4" and row[6] in ("allocated", "assigned")
        first = parse_ip(row[3])
        ranges.append((first, first + int(row[4]) - 1))  # value is a host count
    assert ranges == _level0(universe, registry)
    fields = version.split("|")
    assert fields[:2] == ["2", registry] and int(fields[3]) == len(rows)
    assert summary == f"{registry}|*|ipv4|*|{len(rows)}|summary"


def test_counts_are_host_counts_not_prefix_lengths(universe):
    _, rows = _parse(delegated.delegated_text(universe, "arin"))
    counts = [int(row[4]) for row in rows]
    assert max(counts) > 32
    assert any(c & (c - 1) for c in counts), "some ARIN records are not a power of two"


def test_statuses_follow_the_source_rows(universe):
    _, rows = _parse(delegated.delegated_text(universe, "ripencc"))
    statuses = {row[6] for row in rows}
    assert statuses == {"allocated", "assigned"}


@pytest.mark.parametrize("registry", REGISTRIES)
def test_each_port_serves_its_own_file_at_the_real_path(sim, universe, registry):
    url = sim.delegated_urls[registry]
    assert url.endswith(f"/pub/stats/{registry}/delegated-{registry}-extended-latest")
    assert f":{sim.ports[registry]}/" in url
    answer = get(url)
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/plain")
    assert answer.body.decode() == delegated.delegated_text(universe, registry)
    other = REGISTRIES[(REGISTRIES.index(registry) + 1) % len(REGISTRIES)]
    assert get(url.replace(f"/{registry}/delegated-{registry}", f"/{other}/delegated-{other}")).status != 200


def test_urls_are_discoverable_on_the_base_port_and_not_counted_as_rdap(sim):
    before = sim.stats()["registries"].get("lacnic", {}).get("requests", 0)
    listed = get(sim.bootstrap_url.replace("/bootstrap/ipv4.json", "/_delegated")).json()
    assert listed == sim.delegated_urls
    assert get(listed["lacnic"]).status == 200
    assert sim.stats()["registries"].get("lacnic", {}).get("requests", 0) == before
