"""What each task of the DAG ``ipv4_whois_crawl`` does, as plain functions.

The DAG file only wires these together; the CLI and the tests call them
directly. Every function takes and returns JSON-able dicts (they travel as
XComs) and reaches services through the Airflow connections
``redis_default`` and ``kafka_default`` unless a ``WHOISCRAWL_*`` setting
overrides them.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
from pathlib import Path
from typing import Any

from whoiscrawl.crawl import runstate as cluster, seed
from whoiscrawl.crawl.bootstrap import get_bootstrap
from whoiscrawl.orchestration.connections import kafka_config, redis_clients
from whoiscrawl.results.coverage import coverage_report
from whoiscrawl.crawl.engine import Crawler
from whoiscrawl.crawl.kafka_io import DeliveryTracker, end_offsets, make_consumer, read_range, PRODUCER_OVERRIDES
from whoiscrawl.settings import Settings
from whoiscrawl.crawl.telemetry import TelemetryReporter, host_id

log = logging.getLogger(__name__)


def _settings(params: dict[str, Any] | None = None) -> Settings:
    overrides = {}
    params = params or {}
    if params.get("bootstrap"):
        overrides["BOOTSTRAP"] = params["bootstrap"]
    if params.get("rate_limits"):
        overrides["RATE_LIMITS"] = params["rate_limits"]
    return Settings(overrides)


def output_dir(params: dict[str, Any], key: str) -> Path:
    base = params.get("output_dir") or str(Settings().home / "runs")
    return Path(base).expanduser() / key


def prepare_seed(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Write the seed list (sqlite, kept with the run's output) and publish its chunks to Redis.

    Chunks go to Redis at once so that no later task, on whatever host, needs this host's files.
    """
    key = cluster.run_key(run_id)
    out = output_dir(params, key)
    db = out / "seed.sqlite"
    summary = seed.prepare_seed(db, source=params.get("seed") or "classic",
                                limit=params.get("limit"), random_seed=int(params.get("random_seed", 2018)))
    bounds = seed.chunk_bounds(summary.count, int(params.get("chunks") or 8))
    master, _ = redis_clients(_settings(params))
    for i, (offset, count) in enumerate(bounds):
        cluster.write_chunk(master, key, i, seed.read_range(db, offset, count))
    log.info("seed: %d addresses (%d invalid lines, %d reserved, %d duplicates) in %d chunks",
             summary.count, summary.invalid, summary.reserved, summary.duplicates, len(bounds))
    return {"run": key, "output_dir": str(out), "seed": summary.as_dict(),
            "chunks": [{"chunk": i, "offset": o, "count": c} for i, (o, c) in enumerate(bounds)]}


def configure_cluster(prepared: dict[str, Any], fleet: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
    """Publish the cluster config and the run's settings to Redis; note where this run's results start."""
    settings = _settings(params)
    key = prepared["run"]
    master, _ = redis_clients(settings)
    kafka = kafka_config(settings)
    consumer = make_consumer(kafka, group_id=f"whoiscrawl-offsets-{key}")
    try:
        start = end_offsets(consumer, settings.KAFKA_RESULTS_TOPIC)
    finally:
        consumer.close()
    cluster.write_config(master, {"kafka": kafka, "results_topic": settings.KAFKA_RESULTS_TOPIC,
                                  "metrics_topic": settings.KAFKA_METRICS_TOPIC},
                         key, {"bootstrap": settings.BOOTSTRAP, "rate_limits": settings.RATE_LIMITS,
                               "results_start": start, "fleet": fleet.get("kind", "local")})
    return [{"run": key, "chunk": c["chunk"], "count": c["count"]} for c in prepared["chunks"]]


def crawl_chunk(descriptor: dict[str, Any], attempt: int = 1) -> dict[str, Any]:
    """Crawl one chunk on this host; returns its outcome (every address accounted for)."""
    from confluent_kafka import Producer

    from whoiscrawl.crawl.netindex import KnownNetworkIndex
    from whoiscrawl.crawl.ratelimit import RateLimits, RegistryRateLimiter

    settings = Settings()
    key, chunk = descriptor["run"], int(descriptor["chunk"])
    master, replica = redis_clients(settings)
    cluster_cfg, run_cfg = cluster.read_config(replica, key)
    settings = _settings({"bootstrap": run_cfg.get("bootstrap"), "rate_limits": run_cfg.get("rate_limits")})
    addrs = cluster.read_chunk(master, key, chunk)  # the master: a lagging replica may not have it yet
    host = host_id(settings.HOST_ID)
    producer = Producer({**cluster_cfg["kafka"], **PRODUCER_OVERRIDES})
    tracker = DeliveryTracker(producer)
    telemetry = TelemetryReporter(tracker, cluster_cfg.get("metrics_topic", settings.KAFKA_METRICS_TOPIC),
                                  host, f"{host}:{os.getpid()}:{key}:{chunk}:{attempt}",
                                  settings.TELEMETRY_INTERVAL_S)
    index = KnownNetworkIndex(master, replica, key=cluster.index_key(key),
                              sync_interval_s=0.25)
    limiter = RegistryRateLimiter(replica, host, RateLimits.parse(settings.RATE_LIMITS))
    crawler = Crawler(bootstrap=get_bootstrap(settings.BOOTSTRAP, settings), index=index, limiter=limiter,
                      tracker=tracker, settings=settings, run_key=key, chunk=chunk, telemetry=telemetry,
                      host=host)
    outcome = asyncio.run(crawler.run(addrs))
    log.info("chunk %d: %d addresses, %d looked up, %d skipped, %d failed %s in %.1fs", chunk,
             outcome.addresses, outcome.looked_up, outcome.skipped, outcome.failed,
             outcome.failed_by_reason, outcome.duration_s)
    return outcome.as_dict()


def drain_results(prepared: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Read this run's results from Kafka into ``results.jsonl.gz``, one line per distinct network."""
    settings = _settings(params)
    key = prepared["run"]
    master, _ = redis_clients(settings)
    _cluster_cfg, run_cfg = cluster.read_config(master, key, wait_s=5)
    start = {int(p): int(o) for p, o in run_cfg["results_start"].items()}
    consumer = make_consumer(kafka_config(settings), group_id=f"whoiscrawl-drain-{key}")
    out = Path(prepared["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    networks: dict[tuple[str, str], dict[str, Any]] = {}
    messages = duplicates = 0
    try:
        end = end_offsets(consumer, settings.KAFKA_RESULTS_TOPIC)
        tmp = out / "results.jsonl.gz.tmp"
        with gzip.open(tmp, "wt", encoding="utf-8") as fh:
            for _k, value in read_range(consumer, settings.KAFKA_RESULTS_TOPIC, start, end):
                record = json.loads(value)
                if record.get("run") != key:
                    continue
                messages += 1
                ident = (record["registry"], record["handle"])
                if ident in networks:
                    duplicates += 1
                    continue
                networks[ident] = {k: record[k] for k in ("registry", "start", "end")}
                fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        os.replace(tmp, out / "results.jsonl.gz")
    finally:
        consumer.close()
    cluster.write_networks(master, key, list(networks.values()))
    log.info("drained %d result messages: %d distinct networks, %d duplicates", messages, len(networks), duplicates)
    return {"results": str(out / "results.jsonl.gz"), "messages": messages,
            "distinct_networks": len(networks), "duplicates": duplicates}


def report(drained: dict[str, Any], outcomes: list[dict[str, Any]], prepared: dict[str, Any],
           params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The coverage report: written to ``coverage.json`` and returned as the XCom."""
    master, _ = redis_clients(_settings(params))
    networks = cluster.read_networks(master, prepared["run"])
    result = coverage_report(networks, outcomes, prepared["seed"]["count"], run=prepared["run"])
    result["result_messages"] = drained["messages"]
    result["seed_invalid_lines"] = prepared["seed"]["invalid"]
    path = Path(prepared["output_dir"]) / "coverage.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    result["output_dir"] = prepared["output_dir"]
    return result
