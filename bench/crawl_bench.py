"""End-to-end crawl throughput: whoiscrawl's engine against the ancestor's per-address pipeline, same run.

Both crawl the same seed addresses (the classic pattern, shuffled) against the registry simulator at
full scale (fast profile: no rate limits, so the figures measure the crawlers, not the politeness),
with real Redis and a real Kafka broker, at the same concurrency.

* whoiscrawl: bootstrap routing (no request), the known-network index, per-registry queues,
  idempotent producer with acks=all, networks indexed after the acknowledgement.
* the ancestor's pipeline, re-created faithfully: per address, GET the comma-joined CIDR string from
  Redis and ``netaddr.all_matching_cidrs`` over it; a HEAD request to ARIN to learn the registry from
  the redirect; the RDAP GET at that registry; ipwhois parsing; the result to Kafka; the string
  rewritten with the new CIDRs.

Prints figures, then last one line:
``crawl_addresses_per_s=<a> ancestor_addresses_per_s=<b> speedup=<x> requests_per_address=<r> ancestor_requests_per_address=<q>``

    python bench/crawl_bench.py [--addresses 3000] [--concurrency 8] [--scale 1.0]
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

import aiohttp
import netaddr
import numpy as np
from confluent_kafka import Producer
from ipwhois.net import Net
from ipwhois.rdap import RDAP
from simulator_bench import start_simulator, stop_simulator

from whoiscrawl.crawl import ipspace, seed
from whoiscrawl.crawl.bootstrap import Bootstrap, load_document
from whoiscrawl.crawl.engine import Crawler
from whoiscrawl.crawl.kafka_io import PRODUCER_OVERRIDES, DeliveryTracker
from whoiscrawl.crawl.netindex import KnownNetworkIndex
from whoiscrawl.crawl.config import RunConfig
from whoiscrawl.crawl.ratelimit import RegistryRateLimiter
from whoiscrawl.crawl.stats import StatsCollector
from whoiscrawl.crawl.registries import REGISTRIES, registry_for_url
from whoiscrawl.devtools.services import free_port
from whoiscrawl.devtools.services.kafka_broker import KafkaBroker
from whoiscrawl.devtools.services.redis_server import RedisServer
from whoiscrawl.settings import Settings

NO_LIMITS = ",".join(f"{r}=100000/1" for r in REGISTRIES)


def sim_requests(stats_url: str) -> int:
    with urllib.request.urlopen(stats_url, timeout=10) as resp:
        return int(json.loads(resp.read())["requests"])


def run_whoiscrawl(addrs: np.ndarray, bootstrap: str, redis_client, kafka: str, concurrency: int):
    config = RunConfig(rate_limits=NO_LIMITS, http_concurrency_per_registry=concurrency)
    doc, where = load_document(bootstrap)
    key = f"bench-{uuid.uuid4().hex[:8]}"
    stats = StatsCollector()
    crawler = Crawler(bootstrap=Bootstrap(doc, where),
                      index=KnownNetworkIndex(redis_client, redis_client, key=f"whoiscrawl:run:{key}:known",
                                              sync_interval_s=0.25, stats=stats),
                      limiter=RegistryRateLimiter(redis_client, "bench", config.rate_limit_table(), stats=stats),
                      tracker=DeliveryTracker(Producer({"bootstrap.servers": kafka, **PRODUCER_OVERRIDES})),
                      config=config, run_key=key, stats=stats)
    return asyncio.run(crawler.run(addrs))


async def _ancestor(addrs: list[int], arin_url: str, redis_client, kafka: str, workers: int) -> dict:
    """The ancestor's worker loop, one task per Celery worker slot."""
    key = f"ancestor-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": kafka})
    counts = {"skipped": 0, "looked_up": 0, "failed": 0}
    todo = list(reversed(addrs))
    loop = asyncio.get_running_loop()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async def worker() -> None:
            while todo:
                addr = todo.pop()
                ip = ipspace.to_str(addr)
                blob = (redis_client.get(key) or b"").decode()
                cidrs = [c for c in blob.split(",") if c]
                # netaddr over the whole list, in a thread as a Celery worker process would burn its CPU
                if cidrs and await loop.run_in_executor(None, netaddr.all_matching_cidrs, ip, cidrs):
                    counts["skipped"] += 1
                    continue
                async with session.head(f"{arin_url}ip/{ip}", allow_redirects=False) as head:
                    location = head.headers.get("Location") if head.status in (301, 302, 303, 307) else None
                url = location or f"{arin_url}ip/{ip}"
                async with session.get(url, allow_redirects=False) as resp:
                    raw = await resp.read()
                    status = resp.status
                if status != 200:
                    counts["failed"] += 1
                    continue
                try:  # the ancestor's parse: ipwhois over the answer
                    parsed = RDAP(Net(ip)).lookup(response=json.loads(raw), bootstrap=True, root_ent_check=False)
                    record = {"query": ip, "registry": registry_for_url(url), **(parsed.get("network") or {})}
                    cidrs = [c.strip() for c in (record.get("cidr") or "").split(",") if c.strip()]
                except Exception:
                    counts["failed"] += 1
                    continue
                producer.produce("results", key=str(record.get("handle")).encode(), value=json.dumps(record).encode())
                producer.poll(0)
                counts["looked_up"] += 1
                # the ancestor rewrote the whole comma-joined string for every new block
                current = (redis_client.get(key) or b"").decode()
                redis_client.set(key, ",".join(filter(None, [current, *cidrs])))

        await asyncio.gather(*(worker() for _ in range(workers)))
    producer.flush(60)
    counts["final_string_bytes"] = len(redis_client.get(key) or b"")
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--addresses", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=8, help="per registry for whoiscrawl; x5 workers for the ancestor")
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args(argv)

    addrs = seed.classic_pattern()
    addrs = addrs[np.random.default_rng(2018).permutation(len(addrs))][: args.addresses]
    with tempfile.TemporaryDirectory(prefix="whoiscrawl-crawlbench-") as tmp:
        tmp_path = Path(tmp)
        redis_server = RedisServer(tmp_path / "redis", free_port()).start()
        broker = KafkaBroker(tmp_path / "kafka-home", free_port(), free_port())
        sim, bootstrap_url = None, ""
        try:
            broker.ensure_jars()
            broker.format_storage()
            broker.start(timeout_s=120)
            broker.create_topics({"results": 8, "metrics": 1})
            sim, bootstrap_url = start_simulator(args.scale, 1, Settings().home / "sim" / "cache")
            stats_url = bootstrap_url.replace("/bootstrap/ipv4.json", "/_stats")
            doc = json.loads(urllib.request.urlopen(bootstrap_url, timeout=10).read())
            arin_url = next(u for _p, urls in doc["services"] for u in urls if "/arin/" in u)
            client = redis_server.client()
            print(f"seed: {len(addrs)} classic-pattern addresses; simulator scale {args.scale} (fast profile)")

            before = sim_requests(stats_url)
            t0 = time.monotonic()
            outcome = run_whoiscrawl(addrs, bootstrap_url, client, broker.bootstrap_servers, args.concurrency)
            ours_s = time.monotonic() - t0
            ours_requests = sim_requests(stats_url) - before
            print(f"whoiscrawl: {ours_s:.1f} s, {outcome.looked_up} looked up, {outcome.skipped} skipped, "
                  f"{outcome.failed} failed, {ours_requests} requests")

            before = sim_requests(stats_url)
            t0 = time.monotonic()
            anc = asyncio.run(_ancestor(addrs.tolist(), arin_url, client, broker.bootstrap_servers,
                                        args.concurrency * len(REGISTRIES)))
            anc_s = time.monotonic() - t0
            anc_requests = sim_requests(stats_url) - before
            print(f"ancestor:   {anc_s:.1f} s, {anc['looked_up']} looked up, {anc['skipped']} skipped, "
                  f"{anc['failed']} failed, {anc_requests} requests; known-CIDR string "
                  f"{anc['final_string_bytes']:,} bytes, rewritten on every lookup")
        finally:
            if sim is not None:
                stop_simulator(sim)
            broker.stop(timeout_s=30)
            redis_server.stop()
    ours_rate = len(addrs) / ours_s
    anc_rate = len(addrs) / anc_s
    print(f"crawl_addresses_per_s={ours_rate:.0f} ancestor_addresses_per_s={anc_rate:.0f} "
          f"speedup={ours_rate / anc_rate:.2f} requests_per_address={ours_requests / len(addrs):.3f} "
          f"ancestor_requests_per_address={anc_requests / len(addrs):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
