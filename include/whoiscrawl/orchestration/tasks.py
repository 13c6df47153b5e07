"""What each task of the DAG ``ipv4_whois_crawl`` does, as plain functions.

The DAG file only wires these together; the CLI and the tests call them
directly. Every function takes and returns JSON-able dicts (they travel as
XComs) and reaches services through the Airflow connections
``redis_default`` and ``kafka_default`` unless a ``WHOISCRAWL_*`` setting
overrides them.
"""

from __future__ import annotations

import asyncio
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
from whoiscrawl.errors import WhoiscrawlError
from whoiscrawl.orchestration.fleet.ec2 import fleet_cost_of_run
from whoiscrawl.orchestration.storage import copy_to_s3
from whoiscrawl.results import chunks as chunk_store, coverage_map
from whoiscrawl.results.chunks import DEFERRED
from whoiscrawl.results.coverage import coverage_report, status_counts
from whoiscrawl.results.changes import write_changes
from whoiscrawl.results.drain import drain_to_outputs
from whoiscrawl.results.lookup import resolve_run
from whoiscrawl.results.recrawl import SplitFollowUps, completed_runs, plan as recrawl_plan, read_plan, write_plan
from whoiscrawl.crawl.engine import Crawler
from whoiscrawl.crawl.kafka_io import DeliveryTracker, end_offsets, make_consumer, PRODUCER_OVERRIDES
from whoiscrawl.settings import Settings
from whoiscrawl.crawl.telemetry import TelemetryReporter, host_id

log = logging.getLogger(__name__)


#: DAG Params that set a crawl tunable of the run config (empty: the coordinator's environment, else the default).
RUN_CONFIG_PARAMS = ("bootstrap", "rate_limits", "strategy", "delegated_urls")


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


def previous_run(params: dict[str, Any], run_type: str = "manual") -> Path | None:
    """The earlier run a re-crawl starts from: the ``previous_run`` Param, else for a scheduled run the
    newest completed run in the output folder; ``none`` (or nothing found): a full crawl."""
    name = str(params.get("previous_run") or "").strip()
    base = output_dir(params, "")  # the folder the runs are in
    if name.lower() == "none":
        return None
    if name:
        return resolve_run(name, [base])
    done = completed_runs([base]) if run_type == "scheduled" else []
    return done[-1] if done else None


def prepare_seed(params: dict[str, Any], run_id: str, run_type: str = "manual") -> dict[str, Any]:
    """Write the seed list (sqlite, kept with the run's output) and publish its chunks to Redis.

    Chunks go to Redis at once so that no later task, on whatever host, needs this host's files.
    A re-crawl's seed is its plan (results/recrawl.py): one probe per known network, then gap samples.
    """
    params = confine_params(params)  # before any I/O: the Params name only what this machine allows
    key = runstate.run_key(run_id)
    out = output_dir(params, key)
    db = out / "seed.sqlite"
    source, limit, recrawl = params.get("seed") or "classic", params.get("limit"), None
    previous = previous_run(params, run_type)
    if previous is not None:
        planned = recrawl_plan(previous, limit, int(params.get("gap_samples") or 0), int(params.get("random_seed", 2018)))
        source, limit = str(write_plan(out, planned)), None
        recrawl = {"previous": str(previous), "probes": len(planned["probes"]), "gaps": len(planned["gaps"]),
                   "known": planned["known"], "unprobeable": planned["unprobeable"]}
    summary = seed.prepare_seed(db, source=source, limit=limit, random_seed=int(params.get("random_seed", 2018)))
    bounds = seed.chunk_bounds(summary.count, int(params.get("chunks") or 8))
    master, _ = redis_clients(Settings())
    for i, (offset, count) in enumerate(bounds):
        runstate.write_chunk(master, key, i, seed.read_range(db, offset, count))
    # a re-crawl's probes and what each re-checks (empty for other runs: a re-run never keeps an old one)
    runstate.write_recheck(master, key, planned["probes"] if previous is not None else [],
                           planned["ranges"] if previous is not None else [])
    log.info("seed: %d addresses (%d invalid lines, %d reserved, %d duplicates) in %d chunks",
             summary.count, summary.invalid, summary.reserved, summary.duplicates, len(bounds))
    copy_to_s3(params, key, db)
    return {"run": key, "output_dir": str(out), "seed": summary.as_dict(), "recrawl": recrawl,
            "chunks": [{"chunk": i, "offset": o, "count": c} for i, (o, c) in enumerate(bounds)]}


def configure_cluster(prepared: dict[str, Any], fleet: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
    """Publish the cluster config and the run config to Redis; note where this run's results start.

    The bootstrap document is resolved here, once, and travels with the run: every host routes alike.
    """
    settings = Settings()
    config = build_run_config(confine_params(params, settings))
    if prepared.get("recrawl"):  # the re-crawl's probes are its plan: every probe looked up, no allocation walk
        config = config.with_overrides({"skip_known_networks": 0, "strategy": "classic"})
    key = prepared["run"]
    master, _ = redis_clients(settings)
    kafka = kafka_config(settings)
    document, source = load_document(config.bootstrap, settings, max_age_s=config.bootstrap_max_age_s)
    # refuse a bad document, or budgets for registries it does not have, here: not on every host
    Bootstrap(document, source, names=config.registry_names).check_rate_limits(config.rate_limits)
    consumer = make_consumer(kafka, group_id=f"whoiscrawl-offsets-{key}")
    try:
        start = end_offsets(consumer, config.results_topic)
    finally:
        consumer.close()
    attempt = runstate.new_attempt(master, key)  # a re-run's index starts empty, like its result offsets
    runstate.write_config(master, {"kafka": cluster_kafka_config(kafka)}, key,
                          {"run_config": config.as_dict(), "bootstrap": {"document": document, "source": source},
                           "results_start": start, "fleet": fleet.get("kind", "local"), "attempt": attempt})
    log.info("run config: %s", config.to_json())
    return [{"run": key, "chunk": c["chunk"], "count": c["count"]} for c in prepared["chunks"]]


def crawl_chunk(descriptor: dict[str, Any], attempt: int = 1) -> dict[str, Any]:
    """Crawl one chunk on this host; returns its outcome (every address accounted for)."""
    from confluent_kafka import Producer
    import numpy as np

    from whoiscrawl.crawl.netindex import KnownNetworkIndex
    from whoiscrawl.crawl.ratelimit import RegistryRateLimiter

    settings = Settings()  # this host's endpoints; everything about the crawl comes from the run
    key, chunk = descriptor["run"], int(descriptor["chunk"])
    master, replica = redis_clients(settings)
    cluster_cfg, run_state, config = read_run(replica, key)
    if config.strategy == "planned":
        return crawl_seed_planned(descriptor, attempt)
    # Redis says where the broker is; the credentials are this host's own (docs/security.md)
    kafka = worker_kafka_config(cluster_cfg.get("kafka"), kafka_config(settings))
    bootstrap = Bootstrap(run_state["bootstrap"]["document"], run_state["bootstrap"]["source"],
                          names=config.registry_names)
    runstate.keep_alive(master, key)  # the run's state lives as long as its chunks keep coming
    # the master: a lagging replica may not have it yet; a continuation is what an earlier try deferred
    continuation = runstate.read_continuation(master, key, chunk)
    addrs = runstate.read_chunk(master, key, chunk) if continuation is None else continuation
    host = host_id(settings.HOST_ID)
    producer = Producer({**kafka, **PRODUCER_OVERRIDES})
    tracker = DeliveryTracker(producer)
    telemetry = TelemetryReporter(tracker, config.metrics_topic, host,
                                  f"{host}:{os.getpid()}:{key}:{chunk}:{attempt}", config.telemetry_interval_s)
    stats = StatsCollector()
    index = KnownNetworkIndex(master, replica, key=runstate.index_key(key, int(run_state.get("attempt", 0))),
                              sync_interval_s=0.25, stats=stats)
    # budgets on the master: a replica's full resync would wipe its local writes (the next slot, a pause)
    limiter = RegistryRateLimiter(master, host, config.rate_limit_table(), stats=stats)
    recheck = runstate.read_recheck(master, key, only=addrs)  # a re-crawl: what this chunk's probes re-check
    followups = SplitFollowUps(recheck) if recheck else None
    crawler = Crawler(bootstrap=bootstrap, index=index, limiter=limiter, tracker=tracker, config=config,
                      run_key=key, chunk=chunk, stats=stats, telemetry=telemetry, host=host, followups=followups)
    outcome = asyncio.run(crawler.run(addrs))
    if outcome.deferred or continuation is not None:  # hand the rest on; clearing this task crawls it
        runstate.write_continuation(master, key, chunk, np.asarray(crawler.deferred, dtype=np.uint32))
    runstate.keep_alive(master, key)
    chunk_store.write_chunk_result(master, key, int(run_state.get("attempt", 0)), outcome.as_dict(),
                                   crawler.failures + [(a, DEFERRED) for a in crawler.deferred],
                                   continuation=continuation is not None)
    log.info("chunk %d: %d addresses, %d looked up, %d skipped, %d failed %s, %d deferred in %.1fs", chunk,
             outcome.addresses, outcome.looked_up, outcome.skipped, outcome.failed,
             outcome.failed_by_reason, outcome.deferred, outcome.duration_s)
    return outcome.as_dict()


def drain_results(prepared: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """This run's results from Kafka into the run's datasets (results/drain.py), after failed chunks too."""
    settings = Settings()
    key = prepared["run"]
    master, _ = redis_clients(settings)
    _cluster_cfg, run_state, config = read_run(master, key, wait_s=5)
    start = {int(p): int(o) for p, o in run_state["results_start"].items()}
    seed_parts = [runstate.read_chunk(master, key, int(c["chunk"])) for c in prepared["chunks"]]
    consumer = make_consumer(kafka_config(settings), group_id=f"whoiscrawl-drain-{key}", offset_reset="error")
    try:
        drained = drain_to_outputs(consumer, config.results_topic, key, start, Path(prepared["output_dir"]),
                                   seed_parts, chunk_store.read_chunk_results(master, key, int(run_state.get("attempt", 0))))
    finally:
        consumer.close()
    runstate.write_networks(master, key, drained.pop("network_list"))
    for name in drained["files"]:
        copy_to_s3(params, key, Path(prepared["output_dir"]) / name)
    return drained


class ChunksFailed(WhoiscrawlError):
    """Some chunks never finished: the outputs hold the rest, and the run must not look complete."""


def report(drained: dict[str, Any], prepared: dict[str, Any],
           params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The coverage report: written to ``coverage.json`` and returned as the XCom.

    Runs after failed chunks too: it counts the chunks that finished, names the ones that did not,
    and then fails (after writing) so the run does not look complete.
    """
    master, _ = redis_clients(Settings())
    key = prepared["run"]
    networks = runstate.read_networks(master, key)
    _cluster_cfg, run_state, config = read_run(master, key, wait_s=5)
    results = chunk_store.read_chunk_results(master, key, int(run_state.get("attempt", 0)))
    finished = chunk_store.finished_chunks(results)
    outcomes = chunk_store.chunk_outcomes(results)
    result = coverage_report(networks, outcomes, prepared["seed"]["count"], run=key)
    status = status_counts(outcomes)
    result["queries"] = status["queries"]
    result["queries_per_covered_address"] = (status["queries"] / result["addresses_covered"]
                                             if result["addresses_covered"] else None)
    result["addresses_covered_per_query"] = (result["addresses_covered"] / status["queries"]
                                             if status["queries"] else None)
    result["per_registry_status"] = status["per_registry"]
    result["per_status"] = drained["addresses"]
    result["curve"] = drained["curve"]
    result["chunks"] = len(prepared["chunks"])
    result["failed_chunks"] = sorted(set(range(len(prepared["chunks"]))) - set(finished))
    result["run_config"] = config.as_dict()
    result["result_messages"] = drained["messages"]
    result["seed_invalid_lines"] = prepared["seed"]["invalid"]
    from whoiscrawl.crawl.strategy.plan import read_summary

    result["strategy"] = config.strategy
    result["plan"] = read_summary(master, prepared["run"])  # which sources each registry's plan used
    result.update(fleet_cost_of_run(master, prepared["run"], result["addresses_covered"]))
    out = Path(prepared["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    result["files"] = drained["files"] + ["coverage.json", "coverage.png"]
    (out / "coverage.json").write_text(json.dumps(result, indent=2))
    coverage_map.render(networks, result, out / "coverage.png")
    result["output_dir"] = prepared["output_dir"]
    if result["failed_chunks"]:
        raise ChunksFailed(f"run {key}: chunks {result['failed_chunks']} of {result['chunks']} did not finish; "
                           f"{out / 'coverage.json'} and the datasets hold the others")
    return result


# --- the planned crawl (crawl/strategy) ---------------------------------------------------------------
def _plan_components(descriptor: dict[str, Any], attempt: int, kind: str):
    """What a planned-crawl task needs on this host: the run's config, Redis, Kafka, an executor."""
    from confluent_kafka import Producer

    from whoiscrawl.crawl.netindex import KnownNetworkIndex
    from whoiscrawl.crawl.ratelimit import RegistryRateLimiter
    from whoiscrawl.crawl.strategy.executor import PlanExecutor
    from whoiscrawl.crawl.strategy.plan import resolved_key

    settings = Settings()
    key, chunk = descriptor["run"], int(descriptor["chunk"])
    master, replica = redis_clients(settings)
    cluster_cfg, run_state, config = read_run(replica, key)
    host = host_id(settings.HOST_ID)
    kafka = worker_kafka_config(cluster_cfg.get("kafka"), kafka_config(settings))  # credentials: this host's
    tracker = DeliveryTracker(Producer({**kafka, **PRODUCER_OVERRIDES}))
    telemetry = TelemetryReporter(tracker, config.metrics_topic, host,
                                  f"{host}:{os.getpid()}:{key}:{kind}{chunk}:{attempt}", config.telemetry_interval_s)
    stats = StatsCollector()
    executor = PlanExecutor(
        bootstrap=Bootstrap(run_state["bootstrap"]["document"], run_state["bootstrap"]["source"]),
        index=KnownNetworkIndex(master, replica, key=runstate.index_key(key, int(run_state.get("attempt", 0))),
                                sync_interval_s=0.25, stats=stats),
        resolved=KnownNetworkIndex(master, replica, key=resolved_key(key), stats=stats),
        limiter=RegistryRateLimiter(master, host, config.rate_limit_table(), stats=stats),
        tracker=tracker, config=config, run_key=key, chunk=chunk, stats=stats, telemetry=telemetry, host=host)
    return master, config, executor


def plan_crawl(prepared: dict[str, Any], configured: list[dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan (``planned`` strategy): each registry's allocations, split into chunks; none for ``classic``."""
    from whoiscrawl.crawl.ratelimit import RegistryRateLimiter
    from whoiscrawl.crawl.strategy import plan

    del configured  # only ordering: the run config is in Redis
    settings = Settings()
    key = prepared["run"]
    master, _ = redis_clients(settings)
    _cluster_cfg, run_state, config = read_run(master, key, wait_s=5)
    if config.strategy != "planned":
        return []
    stats = StatsCollector()
    limiter = RegistryRateLimiter(master, host_id(settings.HOST_ID), config.rate_limit_table(), stats=stats)
    allocations, sources = asyncio.run(plan.gather_sources(config, run_state["bootstrap"]["document"],
                                                           limiter.acquire, stats))
    items = plan.build_items(allocations, config.plan_probe_budget, config.plan_allocations_per_registry)
    chunks = plan.split_items(items, int(params.get("chunks") or 8), contiguous=plan.searchable(sources))
    summary = {"sources": sources, "items": len(items), "chunks": len(chunks)}
    plan.write_plan(master, key, chunks, summary)
    log.info("plan: %d allocations in %d chunks; sources %s", len(items), len(chunks), json.dumps(sources))
    return [{"run": key, "chunk": i, "items": len(c)} for i, c in enumerate(chunks)]


def crawl_plan(descriptor: dict[str, Any], attempt: int = 1) -> dict[str, Any]:
    """Walk one plan chunk's allocations on this host (prefix queries, relation searches, probes)."""
    from whoiscrawl.crawl.strategy.plan import read_plan_chunk

    master, _config, executor = _plan_components(descriptor, attempt, "plan")
    items = read_plan_chunk(master, descriptor["run"], int(descriptor["chunk"]))
    outcome = asyncio.run(executor.run_plan(items))
    log.info("plan chunk %d: %d allocations, walks %s in %.1fs", outcome["chunk"], outcome["items"],
             outcome["walks"], outcome["duration_s"])
    return outcome


def crawl_seed_planned(descriptor: dict[str, Any], attempt: int = 1) -> dict[str, Any]:
    """A seed chunk after the plan: addresses answered from the networks found, the rest looked up."""
    from whoiscrawl.crawl.strategy.tree import NetworkTree

    master, _config, executor = _plan_components(descriptor, attempt, "seed")
    key = descriptor["run"]
    addrs = runstate.read_chunk(master, key, int(descriptor["chunk"]))
    _cluster_cfg, run_state, _config = read_run(master, key, wait_s=5)
    tree = NetworkTree.from_redis(master, runstate.index_key(key, int(run_state.get("attempt", 0))))  # every walk's
    outcome = asyncio.run(executor.run_seed(addrs, tree))
    chunk_store.write_chunk_result(master, key, int(run_state.get("attempt", 0)), outcome.as_dict(),
                                   executor.failures)
    log.info("chunk %d (planned): %d addresses, %d answered from the plan, %d looked up, %d failed %s in %.1fs",
             outcome.chunk, outcome.addresses, outcome.skipped, outcome.looked_up, outcome.failed,
             outcome.failed_by_reason, outcome.duration_s)
    return outcome.as_dict()


def report_changes(prepared: dict[str, Any]) -> dict[str, Any] | None:
    """A re-crawl's change report against the run it started from: ``changes.jsonl.gz`` and its summary.

    None for a full crawl (the DAG task then skips, and the changes Asset gets no event).
    """
    if not prepared.get("recrawl"):
        return None
    out = Path(prepared["output_dir"])
    planned = read_plan(out) or {}
    summary = write_changes(Path(prepared["recrawl"]["previous"]), out, checked=planned.get("checked"))
    summary.update({k: prepared["recrawl"][k] for k in ("probes", "gaps", "known", "unprobeable")})
    log.info("changes: %s", summary)
    return summary
