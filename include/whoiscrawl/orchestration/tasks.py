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

from whoiscrawl.crawl import runstate, seed
from whoiscrawl.crawl.bootstrap import Bootstrap, load_document
from whoiscrawl.crawl.config import RunConfig
from whoiscrawl.crawl.stats import StatsCollector
from whoiscrawl.orchestration.confinement import confine_params, output_base
from whoiscrawl.orchestration.connections import cluster_kafka_config, kafka_config, redis_clients, worker_kafka_config
from whoiscrawl.results.coverage import coverage_report
from whoiscrawl.crawl.engine import Crawler
from whoiscrawl.crawl.kafka_io import DeliveryTracker, end_offsets, make_consumer, read_range, PRODUCER_OVERRIDES
from whoiscrawl.settings import Settings
from whoiscrawl.crawl.telemetry import TelemetryReporter, host_id

log = logging.getLogger(__name__)


#: DAG Params that set a crawl tunable of the run config (empty: the coordinator's environment, else the default).
RUN_CONFIG_PARAMS = ("bootstrap", "rate_limits")


def build_run_config(params: dict[str, Any]) -> RunConfig:
    """The run's crawl tunables: ``WHOISCRAWL_*`` of the coordinator, then the DAG's Params."""
    return RunConfig.from_env({name: params.get(name) for name in RUN_CONFIG_PARAMS})


def read_run(client, key: str, wait_s: float = 120.0) -> tuple[dict[str, Any], dict[str, Any], RunConfig]:
    """(cluster config, run state, run config) as the configure task wrote them."""
    cluster_cfg, run_state = runstate.read_config(client, key, wait_s=wait_s)
    return cluster_cfg, run_state, RunConfig.from_values(run_state["run_config"])


def output_dir(params: dict[str, Any], key: str) -> Path:
    """``<output_dir Param or WHOISCRAWL_OUTPUT_BASE_DIR>/<run>``, refused outside that base folder."""
    return output_base(params.get("output_dir"), Settings()) / key


def prepare_seed(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Write the seed list (sqlite, kept with the run's output) and publish its chunks to Redis.

    Chunks go to Redis at once so that no later task, on whatever host, needs this host's files.
    """
    params = confine_params(params)  # before any I/O: the Params name only what this machine allows
    key = runstate.run_key(run_id)
    out = output_dir(params, key)
    db = out / "seed.sqlite"
    summary = seed.prepare_seed(db, source=params.get("seed") or "classic",
                                limit=params.get("limit"), random_seed=int(params.get("random_seed", 2018)))
    bounds = seed.chunk_bounds(summary.count, int(params.get("chunks") or 8))
    master, _ = redis_clients(Settings())
    for i, (offset, count) in enumerate(bounds):
        runstate.write_chunk(master, key, i, seed.read_range(db, offset, count))
    log.info("seed: %d addresses (%d invalid lines, %d reserved, %d duplicates) in %d chunks",
             summary.count, summary.invalid, summary.reserved, summary.duplicates, len(bounds))
    return {"run": key, "output_dir": str(out), "seed": summary.as_dict(),
            "chunks": [{"chunk": i, "offset": o, "count": c} for i, (o, c) in enumerate(bounds)]}


def configure_cluster(prepared: dict[str, Any], fleet: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
    """Publish the cluster config and the run config to Redis; note where this run's results start.

    The bootstrap document is resolved here, once, and travels with the run: every host routes alike.
    """
    settings = Settings()
    config = build_run_config(confine_params(params, settings))
    key = prepared["run"]
    master, _ = redis_clients(settings)
    kafka = kafka_config(settings)
    document, source = load_document(config.bootstrap, settings, max_age_s=config.bootstrap_max_age_s)
    Bootstrap(document, source)  # refuse a bad document here, not on every host
    consumer = make_consumer(kafka, group_id=f"whoiscrawl-offsets-{key}")
    try:
        start = end_offsets(consumer, config.results_topic)
    finally:
        consumer.close()
    runstate.write_config(master, {"kafka": cluster_kafka_config(kafka)}, key,
                          {"run_config": config.as_dict(), "bootstrap": {"document": document, "source": source},
                           "results_start": start, "fleet": fleet.get("kind", "local")})
    log.info("run config: %s", config.to_json())
    return [{"run": key, "chunk": c["chunk"], "count": c["count"]} for c in prepared["chunks"]]


def crawl_chunk(descriptor: dict[str, Any], attempt: int = 1) -> dict[str, Any]:
    """Crawl one chunk on this host; returns its outcome (every address accounted for)."""
    from confluent_kafka import Producer

    from whoiscrawl.crawl.netindex import KnownNetworkIndex
    from whoiscrawl.crawl.ratelimit import RegistryRateLimiter

    settings = Settings()  # this host's endpoints; everything about the crawl comes from the run
    key, chunk = descriptor["run"], int(descriptor["chunk"])
    master, replica = redis_clients(settings)
    cluster_cfg, run_state, config = read_run(replica, key)
    # Redis says where the broker is; the credentials are this host's own (docs/security.md)
    kafka = worker_kafka_config(cluster_cfg.get("kafka"), kafka_config(settings))
    bootstrap = Bootstrap(run_state["bootstrap"]["document"], run_state["bootstrap"]["source"])
    addrs = runstate.read_chunk(master, key, chunk)  # the master: a lagging replica may not have it yet
    host = host_id(settings.HOST_ID)
    producer = Producer({**kafka, **PRODUCER_OVERRIDES})
    tracker = DeliveryTracker(producer)
    telemetry = TelemetryReporter(tracker, config.metrics_topic, host,
                                  f"{host}:{os.getpid()}:{key}:{chunk}:{attempt}", config.telemetry_interval_s)
    stats = StatsCollector()
    index = KnownNetworkIndex(master, replica, key=runstate.index_key(key), sync_interval_s=0.25, stats=stats)
    limiter = RegistryRateLimiter(replica, host, config.rate_limit_table(), stats=stats)
    crawler = Crawler(bootstrap=bootstrap, index=index, limiter=limiter, tracker=tracker, config=config,
                      run_key=key, chunk=chunk, stats=stats, telemetry=telemetry, host=host)
    outcome = asyncio.run(crawler.run(addrs))
    log.info("chunk %d: %d addresses, %d looked up, %d skipped, %d failed %s in %.1fs", chunk,
             outcome.addresses, outcome.looked_up, outcome.skipped, outcome.failed,
             outcome.failed_by_reason, outcome.duration_s)
    return outcome.as_dict()


def drain_results(prepared: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Read this run's results from Kafka into ``results.jsonl.gz``, one line per distinct network."""
    settings = Settings()
    key = prepared["run"]
    master, _ = redis_clients(settings)
    _cluster_cfg, run_state, config = read_run(master, key, wait_s=5)
    start = {int(p): int(o) for p, o in run_state["results_start"].items()}
    consumer = make_consumer(kafka_config(settings), group_id=f"whoiscrawl-drain-{key}")
    out = Path(prepared["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    networks: dict[tuple[str, str], dict[str, Any]] = {}
    messages = duplicates = 0
    try:
        end = end_offsets(consumer, config.results_topic)
        tmp = out / "results.jsonl.gz.tmp"
        with gzip.open(tmp, "wt", encoding="utf-8") as fh:
            for _k, value in read_range(consumer, config.results_topic, start, end):
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
    runstate.write_networks(master, key, list(networks.values()))
    log.info("drained %d result messages: %d distinct networks, %d duplicates", messages, len(networks), duplicates)
    return {"results": str(out / "results.jsonl.gz"), "messages": messages,
            "distinct_networks": len(networks), "duplicates": duplicates}


def report(drained: dict[str, Any], outcomes: list[dict[str, Any]], prepared: dict[str, Any],
           params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The coverage report: written to ``coverage.json`` and returned as the XCom."""
    master, _ = redis_clients(Settings())
    networks = runstate.read_networks(master, prepared["run"])
    _cluster_cfg, _run_state, config = read_run(master, prepared["run"], wait_s=5)
    result = coverage_report(networks, outcomes, prepared["seed"]["count"], run=prepared["run"])
    result["run_config"] = config.as_dict()
    result["result_messages"] = drained["messages"]
    result["seed_invalid_lines"] = prepared["seed"]["invalid"]
    path = Path(prepared["output_dir"]) / "coverage.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    result["output_dir"] = prepared["output_dir"]
    return result
