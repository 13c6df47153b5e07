"""Crawl strategies, classic against planned, on the same universe in the same run.

Both crawl the registry simulator (a subprocess, fast profile: no rate limits) over HTTP like a real
crawl, with real Redis and a real Kafka broker; the figures are then counted against the simulator's
universe (the ground truth), loaded in this process from the same cache.

* classic: the ancestor's strategy with whoiscrawl's engine: shuffled classic-pattern addresses,
  skipping those inside a network already found, fed in batches until it has spent as many queries
  as the planned crawl (or ``--queries``).
* planned: the plan from the simulator's delegated files (``delegated_urls``), each registry at its
  own pace: where ``rirSearch1`` is advertised (ARIN, RIPE NCC) the allocations listed by ``rdap-down``
  over runs of neighbours and walked with ``rdap-bottom`` over the same runs; elsewhere one prefix
  query per allocation, largest first, then gap probes (``--probe-budget`` per registry); then the
  seed answered from what was found and the rest looked up.

The seed is the first ``--seed-size`` addresses of the shuffled classic pattern (the ones classic
crawls first). Prints, per strategy: queries to reach 64/80/90/95 % of the non-reserved space, final
coverage, seed addresses resolved to their most specific network, networks found as a share of the
universe's, queries per network found (and, for ARIN and RIPE, per network found there); last line:
``classic_q64= ... classic_seed_most_specific_pct= planned_q64= ... planned_seed_most_specific_pct=``.

    python bench/strategy_bench.py [--scale 1.0] [--queries N] [--allocations N] [--seed-size 20000]
                                   [--probe-budget 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
from confluent_kafka import Producer
from simulator_bench import start_simulator, stop_cleanly_on_sigterm, stop_simulator

from whoiscrawl.crawl import ipspace, seed
from whoiscrawl.crawl.bootstrap import Bootstrap, load_document
from whoiscrawl.crawl.config import RunConfig
from whoiscrawl.crawl.engine import Crawler
from whoiscrawl.crawl.kafka_io import PRODUCER_OVERRIDES, DeliveryTracker
from whoiscrawl.crawl.netindex import KnownNetworkIndex
from whoiscrawl.crawl.ratelimit import RegistryRateLimiter
from whoiscrawl.crawl.registries import REGISTRIES
from whoiscrawl.crawl.stats import StatsCollector
from whoiscrawl.crawl.strategy.executor import PlanExecutor
from whoiscrawl.crawl.strategy.plan import build_items, gather_sources, resolved_key
from whoiscrawl.crawl.strategy.tree import NetworkTree
from whoiscrawl.devtools.services import free_port
from whoiscrawl.devtools.services.kafka_broker import KafkaBroker
from whoiscrawl.devtools.services.redis_server import RedisServer
from whoiscrawl.settings import Settings
from whoiscrawl.simulator.universe import build_universe

NO_LIMITS = ",".join(f"{r}=100000/1" for r in REGISTRIES)
THRESHOLDS = (64, 80, 90, 95)


class RecordingIndex:
    """The real index, noting each network as it is added and the queries spent by then (the curve)."""

    def __init__(self, index: KnownNetworkIndex, stats: StatsCollector) -> None:
        self.index, self.stats, self.events = index, stats, []

    def add(self, start: int, end: int) -> None:
        self.events.append((self.queries(), start, end))
        self.index.add(start, end)

    def add_many(self, ranges) -> None:
        queries = self.queries()
        ranges = list(ranges)
        self.events += [(queries, start, end) for start, end in ranges]
        self.index.add_many(ranges)

    def queries(self) -> int:
        return int(self.stats.total(area="lookup", event="attempt"))

    def __getattr__(self, name):
        return getattr(self.index, name)


def _services(redis_client, kafka: str, run: str, stats: StatsCollector, config: RunConfig):
    index = RecordingIndex(KnownNetworkIndex(redis_client, redis_client, key=f"whoiscrawl:run:{run}:known",
                                             sync_interval_s=0.25, stats=stats), stats)
    limiter = RegistryRateLimiter(redis_client, f"bench-{run}", config.rate_limit_table(), stats=stats)
    tracker = DeliveryTracker(Producer({"bootstrap.servers": kafka, **PRODUCER_OVERRIDES}))
    return index, limiter, tracker


def run_classic(pattern: np.ndarray, bootstrap: Bootstrap, redis_client, kafka: str, budget: int,
                batch: int = 5000) -> tuple[RecordingIndex, StatsCollector]:
    config = RunConfig(rate_limits=NO_LIMITS, strategy="classic")
    run = f"classic-{uuid.uuid4().hex[:8]}"
    stats = StatsCollector()
    index, limiter, tracker = _services(redis_client, kafka, run, stats, config)
    offset = 0
    while index.queries() < budget and offset < len(pattern):
        take = pattern[offset: offset + min(batch, max(1, budget - index.queries()))]
        offset += len(take)
        crawler = Crawler(bootstrap=bootstrap, index=index, limiter=limiter, tracker=tracker, config=config,
                          run_key=run, stats=stats)
        asyncio.run(crawler.run(take))
    return index, stats


def run_planned(seed_addrs: np.ndarray, document: dict, bootstrap: Bootstrap, delegated: dict[str, str],
                redis_client, kafka: str, probe_budget: int, budget: int | None, allocations: int):
    config = RunConfig(rate_limits=NO_LIMITS, delegated_urls=",".join(f"{r}={u}" for r, u in delegated.items()),
                       plan_probe_budget=probe_budget, plan_allocations_per_registry=allocations)
    run = f"planned-{uuid.uuid4().hex[:8]}"
    stats = StatsCollector()
    index, limiter, tracker = _services(redis_client, kafka, run, stats, config)
    resolved = KnownNetworkIndex(redis_client, redis_client, key=resolved_key(run), stats=stats)
    allocations_per_registry = allocations
    allocations, sources = asyncio.run(gather_sources(config, document, limiter.acquire, stats))
    items = build_items(allocations, probe_budget, allocations_per_registry)
    executor = PlanExecutor(bootstrap=bootstrap, index=index, resolved=resolved, limiter=limiter, tracker=tracker,
                            config=config, run_key=run, stats=stats, max_queries=budget)
    plan_out = asyncio.run(executor.run_plan(items))
    plan_queries = index.queries()
    tree = NetworkTree.from_redis(redis_client, f"whoiscrawl:run:{run}:known")
    seed_exec = PlanExecutor(bootstrap=bootstrap, index=index, resolved=resolved, limiter=limiter,
                             tracker=tracker, config=config, run_key=run, stats=stats)
    outcome = asyncio.run(seed_exec.run_seed(seed_addrs, tree))
    return index, stats, {"sources": sources, "walks": plan_out["walks"], "plan_queries": plan_queries,
                          "seed": {"answered": outcome.skipped, "looked_up": outcome.looked_up,
                                   "failed": outcome.failed}}


def curve(events: list[tuple[int, int, int]], total: int) -> dict[int, int | None]:
    """Queries needed to reach each threshold of the non-reserved space, from the networks' arrival order."""
    ev = np.asarray(sorted(events), dtype=np.int64).reshape(-1, 3)
    out: dict[int, int | None] = {}
    for pct in THRESHOLDS:
        need = total * pct / 100
        lo, hi = 1, len(ev)
        if not len(ev) or ipspace.union_size(map(tuple, ev[:, 1:].tolist())) < need:
            out[pct] = None
            continue
        while lo < hi:  # the fewest networks whose union reaches the threshold
            mid = (lo + hi) // 2
            if ipspace.union_size(map(tuple, ev[:mid, 1:].tolist())) >= need:
                hi = mid
            else:
                lo = mid + 1
        out[pct] = int(ev[lo - 1, 0])
    return out


def figures(name: str, universe, index: RecordingIndex, stats: StatsCollector, seed_addrs: np.ndarray,
            redis_client, run_key: str) -> dict[str, str]:
    total = ipspace.non_reserved_total()
    events = index.events
    found = {(s, e) for _q, s, e in events}
    covered = ipspace.union_size(found)
    queries = index.queries()
    q = curve(events, total)
    tree = NetworkTree.from_redis(redis_client, run_key)
    ms = tree.most_specific(seed_addrs)
    truth = universe.lookup_many(seed_addrs)
    have = truth >= 0
    ok = np.zeros(len(seed_addrs), bool)
    hit = ms >= 0
    ok[hit] = (tree.starts[ms[hit]] == universe.starts[np.maximum(truth[hit], 0)].astype(np.int64)) & \
              (tree.ends[ms[hit]] == universe.ends[np.maximum(truth[hit], 0)].astype(np.int64)) & have[hit]
    seed_pct = 100.0 * ok[have].sum() / max(1, have.sum())
    allocated = ipspace.union_size(zip(universe.starts[universe.levels == 0].astype(np.int64).tolist(),
                                       universe.ends[universe.levels == 0].astype(np.int64).tolist()))
    print(f"{name}: {queries:,} queries, {len(found):,} networks found "
          f"({100.0 * len(found) / len(universe):.2f}% of the universe's {len(universe):,}), "
          f"{queries / max(1, len(found)):.3f} queries per network")
    print(f"  coverage {100.0 * covered / total:.2f}% of the non-reserved space, "
          f"{100.0 * covered / allocated:.2f}% of the allocated space; "
          + ", ".join(f"{p}% after {v if v is not None else 'never'}" for p, v in q.items()))
    print(f"  seed: {ok[have].sum():,} of {have.sum():,} allocated seed addresses at their most specific network "
          f"({seed_pct:.2f}%)")
    for registry in ("arin", "ripencc"):
        code = REGISTRIES.index(registry)
        spent = int(stats.total(f"lookup/{registry}/attempt"))
        s = np.array(sorted(found), dtype=np.int64).reshape(-1, 2)
        idx = universe.lookup_many(s[:, 0].astype(np.uint32)) if len(s) else np.zeros(0, np.int64)
        n = 0
        if len(s):
            mine = (idx >= 0) & (universe.registry_codes[np.maximum(idx, 0)] == code)
            n = int(mine.sum())
        print(f"  {registry}: {spent:,} queries, {n:,} networks found, {spent / max(1, n):.4f} queries per network")
    fmt = lambda v: "none" if v is None else str(v)  # noqa: E731
    return {**{f"{name}_q{p}": fmt(v) for p, v in q.items()},
            f"{name}_final_pct": f"{100.0 * covered / total:.2f}", f"{name}_queries": str(queries),
            f"{name}_seed_most_specific_pct": f"{seed_pct:.2f}"}


def main(argv: list[str] | None = None) -> int:
    stop_cleanly_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--queries", type=int, default=None,
                    help="the plan's query budget (its prefix queries go first, largest allocation first); "
                         "classic gets as many queries as planned spent in all (default: the whole plan)")
    ap.add_argument("--seed-size", type=int, default=20000)
    ap.add_argument("--allocations", type=int, default=0,
                    help="plan only each registry's N largest allocations (0: all; a shorter run)")
    ap.add_argument("--probe-budget", type=int, default=20000, help="probes per registry without search")
    args = ap.parse_args(argv)

    cache = Settings().home / "sim" / "cache"
    t0 = time.monotonic()
    universe = build_universe(seed=1, scale=args.scale, cache_dir=cache)
    pattern = seed.classic_pattern()
    pattern = pattern[np.random.default_rng(2018).permutation(len(pattern))]
    seed_addrs = pattern[: args.seed_size]
    with tempfile.TemporaryDirectory(prefix="whoiscrawl-strategybench-") as tmp:
        tmp_path = Path(tmp)
        redis_server = RedisServer(tmp_path / "redis", free_port()).start()
        broker = KafkaBroker(tmp_path / "kafka-home", free_port(), free_port())
        sim = None
        try:
            broker.ensure_jars()
            broker.format_storage()
            broker.start(timeout_s=120)
            broker.create_topics({"results": 8, "metrics": 1})
            sim, bootstrap_url = start_simulator(args.scale, 1, cache)
            base = bootstrap_url.replace("/bootstrap/ipv4.json", "")
            delegated = json.loads(urllib.request.urlopen(f"{base}/_delegated", timeout=10).read())
            document, where = load_document(bootstrap_url)
            bootstrap = Bootstrap(document, where)
            client = redis_server.client()
            print(f"universe: scale {args.scale}, {len(universe):,} networks; seed {len(seed_addrs):,} "
                  f"classic-pattern addresses; ready in {time.monotonic() - t0:.0f}s")

            t1 = time.monotonic()
            p_index, p_stats, p_info = run_planned(seed_addrs, document, bootstrap, delegated, client,
                                                    broker.bootstrap_servers, args.probe_budget, args.queries,
                                                    args.allocations)
            p_s = time.monotonic() - t1
            print(f"planned: {p_s:.0f}s; sources {json.dumps(p_info['sources'])}; walks {json.dumps(p_info['walks'])}; "
                  f"plan {p_info['plan_queries']:,} queries; seed {json.dumps(p_info['seed'])}")
            budget = p_index.queries()
            t1 = time.monotonic()
            c_index, c_stats = run_classic(pattern, bootstrap, client, broker.bootstrap_servers, budget)
            print(f"classic: {time.monotonic() - t1:.0f}s, budget {budget:,} queries")
            out = figures("classic", universe, c_index, c_stats, seed_addrs, client, c_index.index.key)
            out.update(figures("planned", universe, p_index, p_stats, seed_addrs, client, p_index.index.key))
        finally:
            if sim is not None:
                stop_simulator(sim)
            broker.stop(timeout_s=30)
            redis_server.stop()
    print(" ".join(f"{k}={v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
