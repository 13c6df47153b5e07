"""RFC 9910 relation searches: answers compared with the universe, caps, links, conformance, errors."""

from __future__ import annotations

import numpy as np
import pytest

from simulator_helpers import dotted, get, parse_ip, small_universe
from whoiscrawl.crawl.registries import REGISTRIES
from whoiscrawl.simulator.search import Relations
from whoiscrawl.simulator.server import SimulatorThread

SEARCHING = ("arin", "ripencc")
NOT_SEARCHING = ("apnic", "lacnic", "afrinic")


@pytest.fixture(scope="module")
def universe():
    return small_universe()


@pytest.fixture(scope="module")
def sim(universe):
    """Real caps (100 shown, 10,000 related)."""
    with SimulatorThread(universe, profile="fast") as running:
        yield running


@pytest.fixture(scope="module")
def uncapped(universe):
    """Caps out of the way, to compare whole answers with the universe."""
    with SimulatorThread(universe, profile="fast", search_max_results=10**6, search_max_related=10**6) as running:
        yield running


def _children_count(universe) -> np.ndarray:
    return np.bincount(universe.parents[universe.parents >= 0], minlength=len(universe))


def _allocation(universe, registry: str, rank: int = 0) -> int:
    """A top-level network of the registry with many children (rank 0: the most)."""
    tops = np.flatnonzero((universe.levels == 0) & (universe.registry_codes == REGISTRIES.index(registry)))
    kids = _children_count(universe)[tops]
    return int(tops[np.argsort(-kids, kind="stable")[rank]])


def _key(universe, index: int) -> str:
    start, end = int(universe.starts[index]), int(universe.ends[index])
    size = end - start + 1
    if size & (size - 1) == 0 and start % size == 0:
        return f"{dotted(start)}/{33 - size.bit_length()}"
    return f"{dotted(start)}%20-%20{dotted(end)}"


def _search(sim, universe, relation: str, index: int):
    registry = universe.registry_of(index)
    return get(f"{sim.base_urls[registry]}ips/rirSearch1/{relation}/{_key(universe, index)}")


def _ranges(results: list[dict]) -> list[tuple[int, int]]:
    return [(parse_ip(r["startAddress"]), parse_ip(r["endAddress"])) for r in results]


def _universe_ranges(universe, indices) -> list[tuple[int, int]]:
    return [(int(universe.starts[i]), int(universe.ends[i])) for i in indices]


@pytest.mark.parametrize("registry", SEARCHING)
def test_down_of_an_allocation_is_exactly_its_children(uncapped, universe, registry):
    index = _allocation(universe, registry)
    answer = _search(uncapped, universe, "rdap-down", index)
    assert answer.status == 200 and answer.headers["content-type"] == "application/rdap+json"
    body = answer.json()
    children = np.flatnonzero(universe.parents == index)
    assert len(children) > 50
    assert _ranges(body["ipSearchResults"]) == _universe_ranges(universe, children)
    handles = [r["handle"] for r in body["ipSearchResults"]]
    assert handles == [universe.handle(i) for i in children]


def test_down_of_a_sub_network_is_one_level_only(uncapped, universe):
    kids = _children_count(universe)
    mid = int(np.flatnonzero((universe.levels == 1) & (universe.registry_codes == 1) & (kids > 1))[0])
    body = _search(uncapped, universe, "rdap-down", mid).json()
    assert _ranges(body["ipSearchResults"]) == _universe_ranges(universe, np.flatnonzero(universe.parents == mid))


def _bottom_by_coverage(universe, registry: str, index: int) -> list[tuple[int, int]]:
    """Independently: networks strictly inside that their children and nested transfers do not fill."""
    first, last = int(universe.starts[index]), int(universe.ends[index])
    code = REGISTRIES.index(registry)
    covered: dict[int, int] = {}
    for i in range(len(universe)):
        if universe.starts[i] > last:
            break
        if universe.ends[i] < first or universe.starts[i] < first:
            continue
        holder = universe.enclosing(i)
        if holder is not None:
            covered[holder] = covered.get(holder, 0) + int(universe.ends[i]) - int(universe.starts[i]) + 1
    result = []
    for i in range(len(universe)):
        start, end = int(universe.starts[i]), int(universe.ends[i])
        if start > last:
            break
        if start < first or end > last or (start, end) == (first, last) or universe.registry_codes[i] != code:
            continue
        if covered.get(i, 0) < end - start + 1:
            result.append((start, end))
    return result


@pytest.mark.parametrize("registry", SEARCHING)
def test_bottom_is_every_most_specific_network_below(uncapped, universe, registry):
    index = _allocation(universe, registry, rank=3)
    body = _search(uncapped, universe, "rdap-bottom", index).json()
    got = _ranges(body["ipSearchResults"])
    assert got == _bottom_by_coverage(universe, registry, index)
    kids = _children_count(universe)
    inside = np.flatnonzero((universe.starts >= universe.starts[index]) & (universe.ends <= universe.ends[index]))
    leaves = set(_universe_ranges(universe, [i for i in inside if kids[i] == 0 and i != index]))
    assert leaves and leaves <= set(got)


def test_bottom_of_a_leaf_is_empty_and_of_its_parent_includes_it(uncapped, universe):
    kids = _children_count(universe)
    leaf = int(np.flatnonzero((universe.levels == 2) & (universe.registry_codes == 1) & (kids == 0))[0])
    answer = _search(uncapped, universe, "rdap-bottom", leaf)
    assert answer.status == 200 and answer.json()["ipSearchResults"] == []
    parent = int(universe.parents[leaf])
    assert (int(universe.starts[leaf]), int(universe.ends[leaf])) in _ranges(
        _search(uncapped, universe, "rdap-bottom", parent).json()["ipSearchResults"])


@pytest.mark.parametrize("registry", SEARCHING)
def test_up_is_the_parent_and_top_the_allocation(sim, universe, registry):
    code = REGISTRIES.index(registry)
    deep = int(np.flatnonzero((universe.levels == 2) & (universe.registry_codes == code))[0])
    parent, allocation = int(universe.parents[deep]), int(universe.parents[universe.parents[deep]])
    up = _search(sim, universe, "rdap-up", deep)
    top = _search(sim, universe, "rdap-top", deep)
    assert up.status == top.status == 200
    assert up.json()["handle"] == universe.handle(parent) and up.json()["objectClassName"] == "ip network"
    assert top.json()["handle"] == universe.handle(allocation)
    assert "ipSearchResults" in up.json()["rdapConformance"]
    # a prefix inside the network that is no network itself: up is that network
    start = int(universe.starts[deep])
    inner = get(f"{sim.base_urls[registry]}ips/rirSearch1/rdap-up/{dotted(start)}/32").json()
    holder = universe.lookup(start)
    assert inner["handle"] == universe.handle(holder if universe.ends[holder] > universe.starts[holder]
                                              else int(universe.parents[holder]))


@pytest.mark.parametrize("relation", ["rdap-up", "rdap-top"])
def test_an_allocation_has_no_up_and_no_top(sim, universe, relation):
    answer = _search(sim, universe, relation, _allocation(universe, "ripencc"))
    assert answer.status == 404 and answer.json()["errorCode"] == 404


def test_answers_are_cut_at_100_with_the_notice(sim, universe):
    index = _allocation(universe, "ripencc")
    assert np.count_nonzero(universe.parents == index) > 100
    body = _search(sim, universe, "rdap-down", index).json()
    assert len(body["ipSearchResults"]) == 100
    assert body["notices"][0]["title"] == "limited search results to 100 maximum"
    assert _ranges(body["ipSearchResults"]) == _universe_ranges(universe, np.flatnonzero(universe.parents == index)[:100])


def test_small_answers_carry_no_limit_notice(sim, universe):
    kids = _children_count(universe)
    few = int(np.flatnonzero((universe.registry_codes == 1) & (kids > 1) & (kids < 100))[0])
    body = _search(sim, universe, "rdap-down", few).json()
    assert len(body["ipSearchResults"]) == kids[few]
    assert not any(n["title"].startswith("limited search results") for n in body["notices"])


def test_caps_are_parameters(universe):
    index = _allocation(universe, "arin")
    with SimulatorThread(universe, search_max_results=5, search_max_related=20) as small:
        body = _search(small, universe, "rdap-bottom", int(np.flatnonzero(universe.parents == index)[0])).json()
        assert len(body["ipSearchResults"]) <= 5
        refused = _search(small, universe, "rdap-down", index)
        assert refused.status == 400 and refused.json()["title"] == "Too Many Rows"
        assert refused.json()["description"] == ["The result size is too large"]


def test_more_than_10000_related_networks_is_refused_at_the_real_default(sim):
    refused = get(f"{sim.base_urls['ripencc']}ips/rirSearch1/rdap-down/80.0.0.0/4")
    assert refused.status == 400 and refused.json()["title"] == "Too Many Rows"
    allowed = get(f"{sim.base_urls['ripencc']}ips/rirSearch1/rdap-down/80.0.0.0/5")
    assert allowed.status == 200 and len(allowed.json()["ipSearchResults"]) == 100
    assert get(f"{sim.base_urls['ripencc']}ips/rirSearch1/rdap-bottom/80.0.0.0/4").status == 400


def test_the_early_refusal_bound_never_exceeds_the_answer(universe):
    relations = Relations(universe)
    for registry in SEARCHING:
        for rank in range(5):
            index = _allocation(universe, registry, rank)
            first, last = int(universe.starts[index]), int(universe.ends[index])
            bound = relations.bottom_at_least(registry, first, last)
            assert 0 < bound <= relations.bottom(registry, first, last).shape[0]


@pytest.mark.parametrize("registry", REGISTRIES)
def test_relation_links_and_conformance_only_at_arin_and_ripe(sim, universe, registry):
    index = _allocation(universe, registry)
    body = get(f"{sim.base_urls[registry]}ip/{dotted(int(universe.starts[index]))}").json()
    rels = {link["rel"] for link in body.get("links", [])}
    help_body = get(f"{sim.base_urls[registry]}help").json()
    if registry in SEARCHING:
        assert {"rdap-up", "rdap-down", "rdap-top", "rdap-bottom"} <= rels
        assert "rirSearch1" in body["rdapConformance"] and "ips" in body["rdapConformance"]
        assert {"rirSearch1", "ips", "ipSearchResults"} <= set(help_body["rdapConformance"])
        down = next(link for link in body["links"] if link["rel"] == "rdap-down")
        assert down["type"] == "application/rdap+json"
        followed = get(down["href"]).json()
        assert _ranges(followed["ipSearchResults"]) == _universe_ranges(
            universe, np.flatnonzero(universe.parents == index)[:100])
    else:
        assert not any(rel.startswith("rdap-") for rel in rels)
        assert "rirSearch1" not in body["rdapConformance"] + help_body["rdapConformance"]


@pytest.mark.parametrize("registry", NOT_SEARCHING)
def test_other_registries_answer_501(sim, universe, registry):
    index = _allocation(universe, registry)
    for relation in ("rdap-up", "rdap-down", "rdap-top", "rdap-bottom"):
        answer = _search(sim, universe, relation, index)
        assert answer.status == 501 and int(answer.json()["errorCode"]) == 501


@pytest.mark.parametrize("registry", SEARCHING)
@pytest.mark.parametrize("key", ["80.0.0.1/8", "80.0.0.0/33", "80.0.0", "080.0.0.0/8", "80.0.1.0%20-%2080.0.0.0"])
def test_malformed_keys_are_400(sim, registry, key):
    answer = get(f"{sim.base_urls[registry]}ips/rirSearch1/rdap-down/{key}")
    assert answer.status == 400 and answer.json()["errorCode"] == 400


@pytest.mark.parametrize("registry", SEARCHING)
def test_unknown_relation_is_400_and_status_on_down_is_501(sim, universe, registry):
    index = _allocation(universe, registry)
    base = f"{sim.base_urls[registry]}ips/rirSearch1"
    assert get(f"{base}/rdap-sideways/{_key(universe, index)}").status == 400
    assert get(f"{base}/rdap-down/{_key(universe, index)}?status=active").status == 501
    deep = int(np.flatnonzero(universe.parents == index)[0])
    assert get(f"{base}/rdap-up/{_key(universe, deep)}?status=active").json()["handle"] == universe.handle(index)


def test_unheld_space_is_404_and_foreign_space_redirects(sim, universe):
    held = universe.lookup_many(np.arange(80 << 24, 96 << 24, 256, dtype=np.int64))
    hole = (80 << 24) + 256 * int(np.flatnonzero(held < 0)[0])
    assert universe.bootstrap_registry(hole) == "ripencc" and universe.lookup(hole) is None
    missing = get(f"{sim.base_urls['ripencc']}ips/rirSearch1/rdap-down/{dotted(hole)}/24")
    assert missing.status == 404
    arin_net = _allocation(universe, "arin")
    moved = _search(sim, universe, "rdap-down", arin_net)
    redirect = get(f"{sim.base_urls['ripencc']}ips/rirSearch1/rdap-down/{_key(universe, arin_net)}")
    assert moved.status == 200 and redirect.status == 301
    assert redirect.headers["location"] == f"{sim.base_urls['arin']}ips/rirSearch1/rdap-down/{_key(universe, arin_net)}"


def test_searches_count_against_the_rate_limit(universe):
    index = _allocation(universe, "ripencc")
    with SimulatorThread(universe) as limited:
        limited.set_faults(rate_limits={"ripencc": {"limits": [[2, 60]], "block_after": 1000}})
        statuses = [_search(limited, universe, "rdap-down", index).status for _ in range(3)]
        assert statuses == [200, 200, 429]
        assert limited.stats()["registries"]["ripencc"]["requests"] == 3
