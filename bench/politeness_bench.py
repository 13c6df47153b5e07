"""Politeness under a wrong budget: a registry that admits 20 requests per 2 s, a crawl budgeted 10x higher.

The simulator's APNIC admits 20 queries per 2 s per client, answers 429 with Retry-After past that,
and blocks a client (403 for 60 s) after 50 over-limit queries within a minute (the realistic
profile's blocking, which the ancestor ran into). The engine crawls APNIC addresses with 32 connections, once with the right
budget (the baseline) and once with a budget 10x too high, each for a fixed window (the chunk
deadline); the 429s, the host-wide pause (Retry-After) and the adaptive rate must keep the crawl
unblocked and near the admitted rate. Real Redis and a real Kafka broker.

Prints figures per run, then last one line:
``blocks=<n> admitted_rate_used_pct=<p> throttles=<t> baseline_used_pct=<b> ratio_to_baseline=<r>``

    python bench/politeness_bench.py [--window-s 30]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from crawlkit import sample_addresses  # noqa: E402
from simulator_bench import stop_cleanly_on_sigterm  # noqa: E402

from whoiscrawl.crawl.bootstrap import Bootstrap, load_document  # noqa: E402
from whoiscrawl.crawl.config import RunConfig  # noqa: E402
from whoiscrawl.crawl.engine import Crawler  # noqa: E402
from whoiscrawl.crawl.kafka_io import PRODUCER_OVERRIDES, DeliveryTracker  # noqa: E402
from whoiscrawl.crawl.netindex import KnownNetworkIndex  # noqa: E402
from whoiscrawl.crawl.ratelimit import RegistryRateLimiter  # noqa: E402
from whoiscrawl.crawl.stats import StatsCollector  # noqa: E402
from whoiscrawl.devtools.services import free_port  # noqa: E402
from whoiscrawl.devtools.services.kafka_broker import KafkaBroker  # noqa: E402
from whoiscrawl.devtools.services.redis_server import RedisServer  # noqa: E402
from whoiscrawl.simulator.server import SimulatorThread  # noqa: E402
from whoiscrawl.simulator.universe import build_universe  # noqa: E402

ADMITS, PER_S = 20, 2.0
#: The realistic profile's blocking (50 over-limit queries within a minute start a 60 s block of 403s),
#: over a short window so that a run of seconds holds many of them.
POLICY = {"limits": [[ADMITS, PER_S]], "style": "429", "block_after": 50, "block_window_s": 60.0,
          "block_s": 60.0, "block_style": "403"}


def crawl(sim, addrs, redis_client, kafka: str, budget: str, window_s: float) -> dict:
    sim.set_faults({"rate_limits": {"apnic": POLICY}, "per_registry": {"apnic": {"latency_ms": 40, "jitter_ms": 40}}})
    before = sim.stats()["registries"].get("apnic", {})
    config = RunConfig.from_values({"rate_limits": budget, "http_concurrency_per_registry": 32,
                                    "chunk_deadline_s": window_s, "max_throttles": 1000, "http_timeout_s": 5.0})
    doc, where = load_document(str(sim.bootstrap_path))
    key = f"polite-{uuid.uuid4().hex[:8]}"
    stats = StatsCollector()
    index = KnownNetworkIndex(redis_client, redis_client, key=f"whoiscrawl:run:{key}:known", stats=stats)
    limiter = RegistryRateLimiter(redis_client, f"host-{key}", config.rate_limit_table(), stats=stats)
    tracker = DeliveryTracker(Producer({"bootstrap.servers": kafka, **PRODUCER_OVERRIDES}))
    crawler = Crawler(bootstrap=Bootstrap(doc, where), index=index, limiter=limiter, tracker=tracker,
                      config=config, run_key=key, stats=stats)
    t0 = time.monotonic()
    outcome = asyncio.run(crawler.run(np.asarray(addrs, dtype=np.uint32)))
    elapsed = time.monotonic() - t0
    after = sim.stats()["registries"]["apnic"]
    diff = {k: after.get(k, 0) - before.get(k, 0) for k in ("requests", "rate_limited", "blocked", "blocks")}
    admitted = diff["requests"] - diff["rate_limited"] - diff["blocked"]
    return {"budget": budget, "seconds": round(elapsed, 1), **diff, "admitted": admitted,
            "used_pct": round(100 * admitted / (elapsed * ADMITS / PER_S), 1), "looked_up": outcome.looked_up,
            "deferred": outcome.deferred, "failed": outcome.failed,
            "throttles": int(sum(v for k, v in stats.as_dict().items() if k.startswith("throttle/apnic/received"))),
            "rate_cuts": int(stats["ratelimit/apnic/rate_cut"]),
            "factor_end": round(limiter.rate_factor("apnic"), 3),
            "paused": {k.rsplit("/", 1)[-1]: v for k, v in stats.as_dict().items() if k.startswith("ratelimit/apnic/paused")},
            "waited": {k.rsplit("/", 1)[-1]: round(v, 1) for k, v in stats.as_dict().items()
                       if k.startswith("ratelimit/apnic/waited")}}


def main(argv: list[str] | None = None) -> int:
    stop_cleanly_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--window-s", type=float, default=30.0, help="seconds each crawl runs (its chunk deadline)")
    args = ap.parse_args(argv)
    universe = build_universe(seed=1, scale=0.05)
    addrs = sample_addresses(universe, 4000, seed=3, registries={"apnic"}, allocated=True)
    with tempfile.TemporaryDirectory(prefix="whoiscrawl-politeness-") as tmp:
        tmp_path = Path(tmp)
        redis_server = RedisServer(tmp_path / "redis", free_port()).start()
        broker = KafkaBroker(tmp_path / "kafka-home", free_port(), free_port())
        try:
            broker.ensure_jars()
            broker.format_storage()
            broker.start(timeout_s=180)
            broker.create_topics({"results": 4, "metrics": 1})
            with SimulatorThread(universe) as sim:
                print(f"APNIC admits {ADMITS} per {PER_S:g} s and blocks after {POLICY['block_after']} excess "
                      f"queries a minute; {len(addrs)} APNIC addresses; 32 connections; {args.window_s:g} s each")
                base = crawl(sim, addrs, redis_server.client(), broker.bootstrap_servers,
                             f"apnic={ADMITS}/{PER_S:g}", args.window_s)
                print("right budget:  ", base)
                sim.set_faults({"profile": "fast"})  # forget the first crawl's windows and blocks
                high = crawl(sim, addrs, redis_server.client(), broker.bootstrap_servers,
                             f"apnic={ADMITS * 10}/{PER_S:g}", args.window_s)
                print("budget 10x high:", high)
        finally:
            broker.stop(timeout_s=30)
            redis_server.stop()
    print(f"blocks={high['blocks']} admitted_rate_used_pct={high['used_pct']} throttles={high['throttles']} "
          f"baseline_used_pct={base['used_pct']} ratio_to_baseline={high['used_pct'] / max(base['used_pct'], 1e-9):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
