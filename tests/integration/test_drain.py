"""The drain on the real broker: exactly once into the output, and loud about a retention gap."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from whoiscrawl.crawl import ipspace
from whoiscrawl.crawl.kafka_io import end_offsets, make_consumer
from whoiscrawl.devtools.services import free_port
from whoiscrawl.devtools.services.kafka_broker import KafkaBroker
from whoiscrawl.results.drain import ResultsGone, drain_to_outputs

pytestmark = pytest.mark.integration


def record(run: str, i: int) -> dict:
    start = ipspace.to_int("11.0.0.0") + i * 256
    return {"query": ipspace.to_str(start + 5), "registry": "arin", "handle": f"NET-{i}",
            "start": ipspace.to_str(start), "end": ipspace.to_str(start + 255), "cidrs": [ipspace.to_str(start) + "/24"],
            "name": f"N{i}", "type": "ASSIGNMENT", "country": "US", "parent_handle": None,
            "entities": [{"handle": "E1", "roles": ["registrant"], "name": "Example", "email": None}],
            "url": "http://127.0.0.1/x", "fetched_at": "2026-01-01T00:00:00Z",
            "raw": {"events": [{"eventAction": "registration", "eventDate": "2001-02-03T04:05:06Z"}]}, "run": run}


def produce(servers: str, topic: str, records: list[dict]) -> None:
    producer = Producer({"bootstrap.servers": servers, "enable.idempotence": True, "acks": "all"})
    for r in records:
        producer.produce(topic, key=r["handle"].encode(), value=json.dumps(r).encode())
    assert producer.flush(30) == 0


def create_topic(servers: str, topic: str, partitions: int, config: dict | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": servers})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                                  config=config or {})])[topic].result(30)


def drain(servers: str, topic: str, run: str, start: dict, out, seed_parts, chunk_results=None):
    consumer = make_consumer({"bootstrap.servers": servers}, group_id=f"t-{uuid.uuid4().hex[:6]}", offset_reset="error")
    try:
        return drain_to_outputs(consumer, topic, run, start, out, seed_parts, chunk_results or {})
    finally:
        consumer.close()


def offsets(servers: str, topic: str) -> dict[int, int]:
    consumer = make_consumer({"bootstrap.servers": servers}, group_id=f"t-{uuid.uuid4().hex[:6]}")
    try:
        return end_offsets(consumer, topic)
    finally:
        consumer.close()


def test_reruns_retried_chunks_and_other_runs_add_no_row(kafka, tmp_path, capsys):
    servers, topic = kafka.bootstrap_servers, f"results-{uuid.uuid4().hex[:6]}"
    create_topic(servers, topic, 3)
    produce(servers, topic, [record("older-run", i) for i in range(5)])  # an earlier run on the same topic
    start = offsets(servers, topic)
    mine = [record("run-a", i) for i in range(20)]
    produce(servers, topic, mine[:12])
    produce(servers, topic, [record("other-run", i) for i in range(7)])  # a concurrent run, interleaved
    produce(servers, topic, mine[8:])  # a retried chunk: 8..11 reach Kafka twice
    seed_parts = [np.array([ipspace.to_int(r["query"]) for r in mine[:10]]),
                  np.array([ipspace.to_int(r["query"]) + 1 for r in mine[10:]] + [ipspace.to_int("12.0.0.1")])]
    failures = {0: {"outcomes": [{"chunk": 0}], "failures": []},
                1: {"outcomes": [{"chunk": 1}], "failures": [(ipspace.to_int("12.0.0.1"), "not_found")]}}

    first = drain(servers, topic, "run-a", start, tmp_path, seed_parts, failures)
    assert (first["messages"], first["distinct_networks"], first["duplicates"], first["other_runs"]) == (24, 20, 4, 7)
    # not a terminal: plain progress lines, the range's every message counted (other runs' too)
    progress = [line for line in capsys.readouterr().err.splitlines() if line.startswith("drain: ")]
    assert progress[0] == "drain: started (31 messages)", progress
    assert progress[-1].startswith("drain: 24 records of the run, 4 duplicates: 31/31 messages"), progress
    nets = pq.read_table(tmp_path / "networks.parquet").to_pylist()
    assert sorted(n["handle"] for n in nets) == sorted(f"NET-{i}" for i in range(20))
    assert {n["run"] for n in nets} == {"run-a"}
    addrs = pq.read_table(tmp_path / "addresses.parquet").to_pylist()
    hows = {a["address"]: (a["how"], a["reason"], a["handle"]) for a in addrs}
    assert hows[mine[0]["query"]] == ("looked_up", None, "NET-0")
    assert hows[ipspace.to_str(ipspace.to_int(mine[15]["query"]) + 1)] == ("inside", None, "NET-15")
    assert hows["12.0.0.1"] == ("failed", "not_found", None)
    before = {p.name for p in tmp_path.iterdir()}

    again = drain(servers, topic, "run-a", start, tmp_path, seed_parts, failures)  # the drain task re-run
    assert again["distinct_networks"] == 20
    assert pq.read_table(tmp_path / "networks.parquet").num_rows == 20
    assert pq.read_table(tmp_path / "addresses.parquet").num_rows == 21
    assert {p.name for p in tmp_path.iterdir()} == before  # no leftovers, nothing appended

    # chunk 1 never finished: the drain still writes everything, names it, and its uncovered address is not_crawled
    partial = drain(servers, topic, "run-a", start, tmp_path, seed_parts, {0: failures[0]})
    assert partial["failed_chunks"] == [1] and partial["distinct_networks"] == 20
    rows = {a["address"]: a for a in pq.read_table(tmp_path / "addresses.parquet").to_pylist()}
    assert (rows["12.0.0.1"]["how"], rows["12.0.0.1"]["reason"], rows["12.0.0.1"]["chunk"]) == \
        ("not_crawled", "chunk_failed", 1)


class ShortRetentionBroker(KafkaBroker):
    """The real broker, checking retention every second instead of every five minutes."""

    def properties(self) -> dict[str, str]:
        return {**super().properties(), "log.retention.check.interval.ms": "1000"}


def test_messages_that_are_not_records_of_the_run_are_skipped_and_counted(kafka, tmp_path):
    """Anyone who reaches Kafka may write to `results`: the drain never dies on what it finds there."""
    servers, topic = kafka.bootstrap_servers, f"results-{uuid.uuid4().hex[:6]}"
    create_topic(servers, topic, 1)
    start = offsets(servers, topic)
    good = [record("run-b", i) for i in range(3)]
    forged = [{**record("run-b", 10), "registry": 7}, {**record("run-b", 11), "start": "not an address"},
              {**record("run-b", 12), "query": ["1.2.3.4"]}, {**record("run-b", 13), "entities": 5},
              {"run": "run-b"}, ["a", "list"]]
    producer = Producer({"bootstrap.servers": servers, "enable.idempotence": True, "acks": "all"})
    for value in [b"<html>not json</html>", b"\xff\xfe", b"null", *(json.dumps(f).encode() for f in forged)]:
        producer.produce(topic, key=b"x", value=value)
    assert producer.flush(30) == 0
    produce(servers, topic, good)
    seed = [np.array([ipspace.to_int(r["query"]) for r in good])]
    drained = drain(servers, topic, "run-b", start, tmp_path, seed, {0: {"outcomes": [{"chunk": 0}], "failures": []}})
    assert drained["invalid_messages"] == 3 + len(forged)
    assert (drained["messages"], drained["distinct_networks"]) == (3, 3)
    assert sorted(n["handle"] for n in pq.read_table(tmp_path / "networks.parquet").to_pylist()) == \
        ["NET-0", "NET-1", "NET-2"]


def test_a_retention_gap_fails_loudly_and_writes_nothing(tmp_path_factory, tmp_path):
    broker = ShortRetentionBroker(tmp_path_factory.mktemp("kafka-short"), free_port(), free_port())
    broker.ensure_jars()
    broker.format_storage()
    broker.start(timeout_s=120)
    try:
        servers, topic = broker.bootstrap_servers, "results"
        create_topic(servers, topic, 1, {"retention.ms": "2000", "segment.ms": "500"})
        start = offsets(servers, topic)
        produce(servers, topic, [record("run-r", i) for i in range(10)])
        deadline = time.monotonic() + 90
        low = 0
        while time.monotonic() < deadline and low == 0:
            time.sleep(1.0)
            produce(servers, topic, [record("later", 0)])  # rolls the old segment so retention can delete it
            consumer = make_consumer({"bootstrap.servers": servers}, group_id="probe")
            low, _high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
            consumer.close()
        assert low > start[0], "retention never deleted the first segment"
        out = tmp_path / "run"
        with pytest.raises(ResultsGone, match=r"partition 0: offsets 0\.\.\d+ \(\d+ records\) deleted"):
            drain(servers, topic, "run-r", start, out, [np.array([ipspace.to_int("11.0.0.5")])])
        assert not out.exists() or not any(out.iterdir())
    finally:
        broker.stop(timeout_s=30)


def test_the_metrics_reader_reads_only_what_is_new_with_one_consumer(kafka):
    """The UI page and the demo's progress poll the metrics topic through one MetricsReader each."""
    from whoiscrawl.orchestration.ui.figures import MetricsReader

    servers, topic = kafka.bootstrap_servers, f"metrics-{uuid.uuid4().hex[:6]}"
    create_topic(servers, topic, 2)
    producer = Producer({"bootstrap.servers": servers})
    for i in range(3):
        producer.produce(topic, key=b"h", value=json.dumps({"reporter": f"r{i}", "timestamp": i}).encode())
    producer.produce(topic, key=b"h", value=b"not json")
    assert producer.flush(30) == 0
    reader = MetricsReader({"bootstrap.servers": servers}, topic)
    try:
        assert sorted(r["reporter"] for r in reader.reports()) == ["r0", "r1", "r2"]
        for i in range(3, 5):
            producer.produce(topic, key=b"h", value=json.dumps({"reporter": f"r{i}", "timestamp": i}).encode())
        assert producer.flush(30) == 0
        consumer = reader._consumer
        assert sorted(r["reporter"] for r in reader.reports()) == ["r0", "r1", "r2", "r3", "r4"]  # none twice
        assert reader._consumer is consumer  # the same connection, poll after poll
    finally:
        reader.close()
