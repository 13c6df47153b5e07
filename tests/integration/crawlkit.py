"""Helpers for tests on real services: a small simulator universe, seed samples, a crawl harness."""

from __future__ import annotations

import asyncio
import json
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

UNIVERSE_SEED = 1
UNIVERSE_SCALE = 0.01
#: The simulator's fast profile has no limits; budgets this high keep tests quick (RATE_LIMITS="" for the defaults).
FAST_SIMULATOR_LIMITS = "arin=500/1,ripencc=500/1,apnic=500/1,lacnic=500/1,afrinic=500/1"


@lru_cache(maxsize=None)
def small_universe():
    from whoiscrawl.simulator.universe import build_universe

    return build_universe(seed=UNIVERSE_SEED, scale=UNIVERSE_SCALE)


def read_topic(broker, topic: str) -> list[dict[str, Any]]:
    from whoiscrawl.crawl.kafka_io import make_consumer, read_all

    consumer = make_consumer({"bootstrap.servers": broker.bootstrap_servers}, group_id=f"test-{uuid.uuid4().hex[:8]}")
    try:
        return [json.loads(v) for _k, v in read_all(consumer, topic)]
    finally:
        consumer.close()


def sample_addresses(universe, n: int, seed: int = 0, registries: set[str] | None = None,
                     allocated: bool | None = None) -> np.ndarray:
    """Random addresses of the classic seed pattern, optionally only those a given set of registries owns."""
    from whoiscrawl.crawl import seed as seedmod

    rng = np.random.default_rng(seed)
    pool = seedmod.classic_pattern()
    pool = pool[rng.permutation(len(pool))][: max(n * 60, 20000)]
    idx = universe.lookup_many(pool)
    keep = np.ones(len(pool), bool)
    if allocated is True:
        keep &= idx >= 0
    if registries is not None:
        owners = np.array([universe.owner(int(a)) or "" for a in pool])
        keep &= np.isin(owners, list(registries))
    return pool[keep][:n]


class CrawlHarness:
    """Runs the real engine on real Redis, Kafka and the simulator, and reads back what it produced."""

    def __init__(self, redis_server, broker, bootstrap: str) -> None:
        self.redis_server = redis_server
        self.broker = broker
        self.bootstrap = bootstrap

    def run(self, addrs: np.ndarray, run_key: str | None = None, index_key: str | None = None,
            replica=None, **overrides: Any):
        """Crawl ``addrs``; the index reads ``replica`` (a client of the host's replica) when given."""
        from confluent_kafka import Producer

        from whoiscrawl.crawl.bootstrap import Bootstrap, load_document
        from whoiscrawl.crawl.engine import Crawler
        from whoiscrawl.crawl.kafka_io import PRODUCER_OVERRIDES, DeliveryTracker
        from whoiscrawl.crawl.netindex import KnownNetworkIndex
        from whoiscrawl.crawl.config import RunConfig
        from whoiscrawl.crawl.ratelimit import RegistryRateLimiter
        from whoiscrawl.crawl.stats import StatsCollector

        run_key = run_key or f"test-{uuid.uuid4().hex[:10]}"
        config = RunConfig.from_values({"retry_backoff_s": 0.05, "http_timeout_s": 3.0,
                                        "rate_limits": FAST_SIMULATOR_LIMITS, "registry_down_cooldown_s": 1.0,
                                        **overrides})
        doc, where = load_document(self.bootstrap)
        client = self.redis_server.client()
        tracker = DeliveryTracker(Producer({"bootstrap.servers": self.broker.bootstrap_servers,
                                            **PRODUCER_OVERRIDES}))
        stats = StatsCollector()
        index = KnownNetworkIndex(client, replica or client, key=index_key or f"whoiscrawl:run:{run_key}:known",
                                  sync_interval_s=0.25, stats=stats)
        limiter = RegistryRateLimiter(client, f"host-{run_key}", config.rate_limit_table(), stats=stats)
        crawler = Crawler(bootstrap=Bootstrap(doc, where), index=index, limiter=limiter, tracker=tracker,
                          config=config, run_key=run_key, stats=stats)
        outcome = asyncio.run(crawler.run(np.asarray(addrs, dtype=np.uint32)))
        return outcome, crawler

    def records(self, run_key: str) -> list[dict[str, Any]]:
        return [r for r in read_topic(self.broker, "results") if r.get("run") == run_key]


def write_json(path: Path, doc: dict) -> str:
    path.write_text(json.dumps(doc))
    return str(path)
