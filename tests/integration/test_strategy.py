"""The planned crawl against the simulator on real Redis and Kafka: walks, probes, the seed at its most specific."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest
from crawlkit import FAST_SIMULATOR_LIMITS, sample_addresses

from whoiscrawl.crawl.bootstrap import Bootstrap, load_document
from whoiscrawl.crawl.config import RunConfig
from whoiscrawl.crawl.kafka_io import PRODUCER_OVERRIDES, DeliveryTracker
from whoiscrawl.crawl.netindex import KnownNetworkIndex
from whoiscrawl.crawl.ratelimit import RegistryRateLimiter
from whoiscrawl.crawl.registries import REGISTRIES
from whoiscrawl.crawl.stats import StatsCollector
from whoiscrawl.crawl.strategy.executor import PlanExecutor
from whoiscrawl.crawl.strategy.plan import build_items, gather_sources, resolved_key
from whoiscrawl.crawl.strategy.sources import Allocation
from whoiscrawl.crawl.strategy.tree import NetworkTree
from whoiscrawl.simulator.search import Relations
from whoiscrawl.simulator.server import SimulatorThread

pytestmark = pytest.mark.integration


class Run:
    """One planned run's components on the test's Redis and Kafka."""

    def __init__(self, redis_server, kafka, sim, **overrides) -> None:
        from confluent_kafka import Producer

        self.key = f"plan-{uuid.uuid4().hex[:8]}"
        self.client = redis_server.client()
        delegated = ",".join(f"{r}={u}" for r, u in sim.delegated_urls.items())
        self.config = RunConfig.from_values({"rate_limits": FAST_SIMULATOR_LIMITS, "retry_backoff_s": 0.05,
                                             "delegated_urls": delegated, **overrides})
        self.document, where = load_document(str(sim.bootstrap_path))
        self.bootstrap = Bootstrap(self.document, where)
        self.stats = StatsCollector()
        self.index_key = f"whoiscrawl:run:{self.key}:known"
        self.index = KnownNetworkIndex(self.client, self.client, key=self.index_key, stats=self.stats)
        self.resolved = KnownNetworkIndex(self.client, self.client, key=resolved_key(self.key), stats=self.stats)
        self.limiter = RegistryRateLimiter(self.client, f"host-{self.key}", self.config.rate_limit_table(),
                                           stats=self.stats)
        self.tracker = DeliveryTracker(Producer({"bootstrap.servers": kafka.bootstrap_servers,
                                                 **PRODUCER_OVERRIDES}))

    def executor(self) -> PlanExecutor:
        return PlanExecutor(bootstrap=self.bootstrap, index=self.index, resolved=self.resolved,
                            limiter=self.limiter, tracker=self.tracker, config=self.config, run_key=self.key,
                            stats=self.stats)

    def items(self):
        allocations, sources = asyncio.run(gather_sources(self.config, self.document, self.limiter.acquire))
        return build_items(allocations, self.config.plan_probe_budget), sources

    def tree(self) -> NetworkTree:
        return NetworkTree.from_redis(self.client, self.index_key)


def _most_specific_sets(universe, registry: str, start: int, end: int) -> set[tuple[int, int]]:
    """The registry's networks in [start, end] that are some address's most specific one (plus the allocation)."""
    nets = universe.segment_networks(start, end)
    nets = np.unique(nets[nets >= 0])
    code = REGISTRIES.index(registry)
    nets = nets[universe.registry_codes[nets] == code]
    return {(int(universe.starts[i]), int(universe.ends[i])) for i in nets.tolist()}


def _busiest_allocation(universe, registry: str) -> int:
    relations = Relations(universe)
    code = REGISTRIES.index(registry)
    tops = np.flatnonzero((universe.levels == 0) & (universe.registry_codes == code))
    sizes = [(relations.bottom(registry, int(universe.starts[i]), int(universe.ends[i])).shape[0], int(i))
             for i in tops[np.argsort(universe.ends[tops] - universe.starts[tops])[::-1][:300]].tolist()]
    return max(sizes)[1]


@pytest.mark.parametrize("registry", ["arin", "ripencc"])
def test_search_walk_finds_exactly_the_most_specific_networks_through_truncated_and_refused_answers(
        universe, redis_flush, kafka, registry):
    alloc = _busiest_allocation(universe, registry)
    start, end = int(universe.starts[alloc]), int(universe.ends[alloc])
    expected = _most_specific_sets(universe, registry, start, end) | {(start, end)}
    # small caps, so this allocation's answers are cut (10 shown) and refused (more than 60 related)
    with SimulatorThread(universe, profile="fast", search_max_results=10, search_max_related=60) as sim:
        run = Run(redis_flush, kafka, sim)
        item = {"registry": registry, "start": start, "end": end, "budget": 0}
        out = asyncio.run(run.executor().run_plan([item]))
    assert out["walks"] == {registry: {"search": 1}}
    assert run.stats[f"plan/{registry}/search/truncated"] > 0 and run.stats[f"plan/{registry}/search/refused"] > 0
    assert len(expected) > 60
    found = {(int(s), int(e)) for s, e in zip(run.tree().starts, run.tree().ends)}
    assert expected <= found and found <= expected | _all_networks_in(universe, start, end)
    assert run.resolved.contains_many(np.array([start, end], dtype=np.uint32)).all()


def _all_networks_in(universe, start: int, end: int) -> set[tuple[int, int]]:
    inside = universe.within(start, end)
    return {(int(universe.starts[i]), int(universe.ends[i])) for i in inside.tolist()}


def test_gap_probes_find_the_most_specific_networks_of_allocations_without_search(universe, redis_flush, kafka):
    # a few APNIC allocations with networks below them; a budget large enough for each (about 1/6 of their
    # addresses: the probes find every network long before they would have tried every address)
    code = REGISTRIES.index("apnic")
    tops = np.flatnonzero((universe.levels == 0) & (universe.registry_codes == code))
    children = np.bincount(universe.parents[universe.parents >= 0], minlength=len(universe))
    small = (universe.ends[tops] - universe.starts[tops] + 1) <= 8192
    picked = [int(i) for i in tops[(children[tops] >= 2) & small][:3].tolist()]
    items = [{"registry": "apnic", "start": int(universe.starts[i]), "end": int(universe.ends[i]), "budget": 1500}
             for i in picked]
    expected = set()
    for it in items:
        expected |= _most_specific_sets(universe, "apnic", it["start"], it["end"])
    with SimulatorThread(universe, profile="fast") as sim:
        run = Run(redis_flush, kafka, sim, plan_probe_split=16)
        out = asyncio.run(run.executor().run_plan(items))
    assert out["walks"] == {"apnic": {"probes": len(items)}}
    found = {(int(s), int(e)) for s, e in zip(run.tree().starts, run.tree().ends)}
    assert expected <= found, f"missed {sorted(expected - found)[:5]}"


@pytest.mark.parametrize("coverage_first", [1, 0])
def test_planned_crawl_resolves_every_seed_address_to_its_most_specific_network(universe, redis_flush, kafka,
                                                                                 coverage_first):
    addrs = sample_addresses(universe, 600, seed=5)
    with SimulatorThread(universe, profile="fast") as sim:
        run = Run(redis_flush, kafka, sim, plan_probe_budget=300, plan_coverage_first=coverage_first)
        items, sources = run.items()
        assert {r: s["allocations"] for r, s in sources.items()} == {r: "delegated" for r in REGISTRIES}
        # each registry's help says whether it offers relation searches (the simulator: as the real ones)
        assert {r: s["search"] for r, s in sources.items()} == {r: r in ("arin", "ripencc") for r in REGISTRIES}
        arin_ripe = [it for it in items if it["registry"] in ("arin", "ripencc")][:40]
        others = [it for it in items if it["registry"] not in ("arin", "ripencc")][:40]
        asyncio.run(run.executor().run_plan(arin_ripe + others))
        seed_pass = run.executor()
        outcome = asyncio.run(seed_pass.run_seed(addrs, run.tree()))
    assert outcome.skipped + outcome.looked_up + outcome.failed == len(addrs)
    assert outcome.skipped > 0 and outcome.looked_up > 0  # some answered from the plan, some looked up
    truth = universe.lookup_many(addrs)
    tree = run.tree()
    ms = tree.most_specific(addrs)
    held = truth >= 0
    assert (ms[held] >= 0).all()
    assert np.array_equal(tree.starts[ms[held]], universe.starts[truth[held]].astype(np.int64))
    assert np.array_equal(tree.ends[ms[held]], universe.ends[truth[held]].astype(np.int64))
    assert set(outcome.failed_by_reason) <= {"not_found", "no_registry"}
    assert outcome.failed == int((~held).sum())
    # each failed address is kept with its reason (addresses.parquet says why it has no network)
    assert sorted(a for a, _r in seed_pass.failures) == sorted(int(a) for a in addrs[~held])
    assert sum(1 for _a, r in seed_pass.failures if r == "not_found") == outcome.failed_by_reason.get("not_found", 0)


@pytest.mark.parametrize("registry", ["arin", "ripencc"])
def test_a_run_of_allocations_is_listed_and_walked_as_ranges(universe, redis_flush, kafka, registry):
    # forty neighbouring allocations of the registry, as the plan deals them (consecutive ``seq``)
    code = REGISTRIES.index(registry)
    tops = np.flatnonzero((universe.levels == 0) & (universe.registry_codes == code))
    tops = tops[np.argsort(universe.starts[tops], kind="stable")]
    inside = np.array([universe.within(int(universe.starts[i]), int(universe.ends[i])).shape[0] for i in tops])
    window = np.convolve(inside, np.ones(40, dtype=np.int64), mode="valid")  # networks in each run of 40
    first = int(np.flatnonzero((window >= 200) & (window <= 3000))[0])
    tops = tops[first:first + 40]
    allocations = {registry: [Allocation(registry, int(universe.starts[i]), int(universe.ends[i]), "allocated")
                              for i in tops.tolist()]}
    items = build_items(allocations, probe_budget=0)
    expected = set()
    for it in items:
        expected |= _most_specific_sets(universe, registry, it["start"], it["end"]) | {(it["start"], it["end"])}
    # small caps: answers are cut at 10 networks and refused past 60 related ones
    with SimulatorThread(universe, profile="fast", search_max_results=10, search_max_related=60) as sim:
        run = Run(redis_flush, kafka, sim, plan_search_group=16)
        out = asyncio.run(run.executor().run_plan(items))
    assert out["walks"] == {registry: {"search": len(items)}}
    found = {(int(s), int(e)) for s, e in zip(run.tree().starts, run.tree().ends)}
    missed = expected - found
    assert not missed, f"missed {sorted(missed)[:5]}"
    everything = set()
    for it in items:
        everything |= _all_networks_in(universe, it["start"], it["end"])
    assert found <= everything
    # the allocations came from rdap-down lists, not a prefix query each
    listed = run.stats[f"plan/{registry}/allocations/listed"]
    assert listed >= len(items) - 1 - 3
    assert run.stats[f"plan/{registry}/walk/allocations"] >= 3
    searches = run.stats[f"plan/{registry}/query/search"]
    assert searches + run.stats[f"plan/{registry}/query/prefix"] < len(expected) / 3
    # every allocation resolved, not the space between them
    edges = np.array([a for it in items for a in (it["start"], it["end"])], dtype=np.uint32)
    assert run.resolved.contains_many(edges).all()
    ordered = sorted((it["start"], it["end"]) for it in items)
    between = np.array([e + 1 for (_s, e), (s2, _e2) in zip(ordered, ordered[1:]) if s2 > e + 1], dtype=np.uint32)
    assert not run.resolved.contains_many(between).any()
