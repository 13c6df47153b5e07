"""Services that fail under a long crawl: Redis restarts and resyncs, re-runs of a cleared run.

Real redis-server processes; Kafka and the simulator where a crawl is part of the fault.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import numpy as np
import pytest
from crawlkit import sample_addresses
from faultkit import check_nothing_lost

from whoiscrawl.crawl import runstate
from whoiscrawl.crawl.kafka_io import end_offsets, make_consumer, read_range
from whoiscrawl.crawl.netindex import KnownNetworkIndex
from whoiscrawl.crawl.ratelimit import RateLimits, RegistryRateLimiter
from whoiscrawl.devtools.services import free_port
from whoiscrawl.devtools.services.redis_server import RedisServer
from whoiscrawl.devtools.stack import TOPIC_CONFIG

pytestmark = pytest.mark.integration

LACNIC = RateLimits.parse("")  # the documented 10 per minute and 1,000 per hour


def _full_syncs(master) -> int:
    return int(master.client().info("stats")["sync_full"])


def test_rate_budgets_survive_a_replica_full_resync(redis_master, redis_replica, redis_flush):
    """The crawl keeps budgets on the master; the same keys on a writable replica are lost by a full resync."""
    now = time.time()
    on_master = RegistryRateLimiter(redis_master.client(), "host-a", LACNIC)
    on_replica = RegistryRateLimiter(redis_replica.client(), "host-b", LACNIC)
    for limiter in (on_master, on_replica):
        for _ in range(10):
            limiter.reserve("lacnic", now)
        assert limiter.reserve("lacnic", now) > 59  # the 11th request of the minute waits
        limiter.pause("lacnic", 3600, "rate limit notice", now)
    before = _full_syncs(redis_master)
    replica = redis_replica.client()
    replica.execute_command("REPLICAOF", "NO", "ONE")  # a new replication id: the way back is a full sync
    replica.execute_command("REPLICAOF", redis_master.host, str(redis_master.port))
    redis_replica.wait_master_link(timeout_s=20)
    assert _full_syncs(redis_master) > before
    # the replica's local budget is gone (what the crawl saw before: LACNIC's next slot 3,600 s -> 0 s)
    assert on_replica.paused_until("lacnic") is None
    assert on_replica.reserve("lacnic", now) == 0.0
    # the master's is whole: the pause and the window hold
    assert on_master.paused_until("lacnic") == pytest.approx(now + 3600, abs=1)
    assert on_master.reserve("lacnic", now) >= 3599


def test_a_replica_stopped_mid_crawl_costs_only_reads_from_the_master(universe, fault_harness, clean_faults,
                                                                       redis_flush, tmp_path):
    """The host's replica stops while the crawl runs: index reads fall back to the master, nothing is lost."""
    master = redis_flush
    replica = RedisServer(tmp_path / "replica", free_port(), replicaof=(master.host, master.port),
                          replica_read_only=False, die_with_parent=True).start(timeout_s=10)
    addrs = sample_addresses(universe, 600, seed=31)
    before = clean_faults.stats()["requests"]
    done: dict = {}

    def crawl() -> None:
        try:
            done["outcome"], done["crawler"] = fault_harness.run(addrs, run_key=key, replica=replica.client(),
                                                                 HTTP_CONCURRENCY_PER_REGISTRY=1)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            done["error"] = exc

    key = f"replica-{uuid.uuid4().hex[:8]}"
    try:
        replica.wait_master_link(timeout_s=10)
        worker = threading.Thread(target=crawl)
        worker.start()
        deadline = time.monotonic() + 60
        while clean_faults.stats()["requests"] - before < 40 and worker.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.is_alive(), "the crawl ended before the replica could be stopped"
        replica.stop(timeout_s=10)
        worker.join(timeout=120)
    finally:
        replica.stop(timeout_s=5)
    assert "error" not in done, done.get("error")
    outcome, crawler = done["outcome"], done["crawler"]
    assert crawler.stats["index/all/replica_fallback"] >= 1
    assert set(outcome.failed_by_reason) <= {"not_found", "no_registry"}, outcome.failed_by_reason
    assert outcome.deferred == 0
    figures = check_nothing_lost(universe, addrs, [outcome], fault_harness.records(key))
    print("replica stopped:", figures, "fallback reads", crawler.stats["index/all/replica_fallback"])


def test_a_killed_master_restarts_with_its_index_and_run_state(tmp_path):
    """AOF everysec, as the local stack starts its master: a SIGKILL loses at most the last second."""
    extra = {"appendonly": "yes", "appendfsync": "everysec"}
    port = free_port()
    server = RedisServer(tmp_path / "redis", port, extra=extra, die_with_parent=True).start(timeout_s=10)
    try:
        client = server.client()
        key = runstate.run_key(f"manual__{uuid.uuid4().hex}")
        addrs = np.arange(1000, 1100, dtype=np.uint32)
        runstate.write_chunk(client, key, 0, addrs)
        runstate.write_config(client, {"kafka": {}}, key, {"attempt": runstate.new_attempt(client, key)})
        index = KnownNetworkIndex(client, client, key=runstate.index_key(key, 1))
        index.add(1000, 1049)
        time.sleep(1.5)  # one fsync period
        os.kill(server.pid, signal.SIGKILL)
        server.stop(timeout_s=5)
        server = RedisServer(tmp_path / "redis", port, extra=extra, die_with_parent=True).start(timeout_s=10)
        client = server.client()
        assert np.array_equal(runstate.read_chunk(client, key, 0), addrs)
        _cluster, run = runstate.read_config(client, key, wait_s=1)
        assert run["attempt"] == 1
        index = KnownNetworkIndex(client, client, key=runstate.index_key(key, 1))
        index.sync()
        assert index.contains(1000) and index.contains(1049) and not index.contains(1050)
        assert 0 < client.ttl(f"whoiscrawl:run:{key}:chunk:0") <= runstate.RUN_TTL_S
    finally:
        server.stop(timeout_s=5)


def test_run_state_lives_as_long_as_chunks_keep_coming(redis_flush):
    client = redis_flush.client()
    key = runstate.run_key("manual__long")
    runstate.write_chunk(client, key, 0, np.arange(10, dtype=np.uint32))
    KnownNetworkIndex(client, client, key=runstate.index_key(key, 1)).add(1, 2)
    client.expire(f"whoiscrawl:run:{key}:chunk:0", 5)  # as if weeks had passed since it was written
    assert runstate.keep_alive(client, key) >= 2
    for name in client.scan_iter(match=f"whoiscrawl:run:{key}:*"):
        assert client.ttl(name) > runstate.RUN_TTL_S - 60, name  # the index too: nothing outlives the run


def _records_since(kafka, start: dict[int, int], run_key: str) -> list[dict]:
    import json

    consumer = make_consumer({"bootstrap.servers": kafka.bootstrap_servers}, group_id=f"t-{uuid.uuid4().hex[:6]}")
    try:
        end = end_offsets(consumer, "results")
        return [r for r in (json.loads(v) for _k, v in read_range(consumer, "results", start, end))
                if r.get("run") == run_key]
    finally:
        consumer.close()


def _offsets(kafka) -> dict[int, int]:
    consumer = make_consumer({"bootstrap.servers": kafka.bootstrap_servers}, group_id=f"t-{uuid.uuid4().hex[:6]}")
    try:
        return end_offsets(consumer, "results")
    finally:
        consumer.close()


def test_a_rerun_of_a_cleared_run_is_as_complete_as_the_first(universe, fault_harness, clean_faults, kafka):
    addrs = sample_addresses(universe, 60, seed=21, allocated=True)
    client = fault_harness.redis_server.client()
    key = runstate.run_key(f"manual__{uuid.uuid4().hex}")
    # first run: configure (offsets, attempt), crawl
    start1, attempt1 = _offsets(kafka), runstate.new_attempt(client, key)
    first, _ = fault_harness.run(addrs, run_key=key, index_key=runstate.index_key(key, attempt1))
    first_records = _records_since(kafka, start1, key)
    check_nothing_lost(universe, addrs, [first], first_records)
    # the run is cleared and runs again: configure records new offsets (the old records lie before them)
    start2 = _offsets(kafka)
    stale, _ = fault_harness.run(addrs, run_key=key, index_key=runstate.index_key(key, attempt1))
    assert stale.looked_up == 0  # the fault: with the first attempt's index every address is skipped
    attempt2 = runstate.new_attempt(client, key)
    assert attempt2 == attempt1 + 1 and not client.exists(runstate.index_key(key, attempt1) + ":log")
    second, _ = fault_harness.run(addrs, run_key=key, index_key=runstate.index_key(key, attempt2))
    records = _records_since(kafka, start2, key)
    figures = check_nothing_lost(universe, addrs, [stale, second], records)
    # exactly as complete as the first run: the same networks
    assert {(r["registry"], r["handle"]) for r in records} == {(r["registry"], r["handle"]) for r in first_records}
    print("rerun:", figures, "first run networks", len({r["handle"] for r in first_records}))


def test_the_local_results_topic_is_kept_until_drained(kafka):
    """The stack creates its results topic with these settings: the real broker applies them."""
    from confluent_kafka.admin import ConfigResource

    name = f"results-{uuid.uuid4().hex[:6]}"
    assert kafka.create_topics({name: 1}, config={name: TOPIC_CONFIG["results_topic"]}) == [name]
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    admin = kafka.admin()  # kept alive until its answer came
    configs = admin.describe_configs([resource])[resource].result(timeout=30)
    assert configs["retention.ms"].value == "-1" and configs["retention.bytes"].value == "-1"
