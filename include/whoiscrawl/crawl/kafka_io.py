"""Kafka clients for results and telemetry, from a librdkafka config dict.

The caller brings the config (the DAG's tasks read it from a setting or the
Airflow connection ``kafka_default``); the coordinator publishes it to Redis, and every crawl process adds what the crawl
needs on top (``PRODUCER_OVERRIDES``: an idempotent producer with
``acks=all``, so an address is done only once its result is acknowledged).
The consumer reads exact offset ranges.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Iterator

import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from whoiscrawl.errors import WhoiscrawlError

PRODUCER_OVERRIDES: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "zstd",
    "linger.ms": 20,
    "message.timeout.ms": 120_000,  # a broker that is down long enough fails the delivery, never silently
}


def make_consumer(config: dict[str, Any], group_id: str, offset_reset: str = "earliest") -> Consumer:
    """A consumer that reads explicit offset ranges: no commits, and end-of-partition events.

    ``offset_reset="error"``: an offset that is gone raises instead of jumping silently.
    """
    return Consumer({**config, "group.id": group_id, "enable.auto.commit": False,
                     "auto.offset.reset": offset_reset, "enable.partition.eof": True})


def end_offsets(consumer: Consumer, topic: str, timeout_s: float = 30.0) -> dict[int, int]:
    """High watermark of every partition of ``topic``: where the next message will land."""
    meta = consumer.list_topics(topic, timeout=timeout_s)
    if topic not in meta.topics or meta.topics[topic].error is not None:
        raise KafkaException(f"topic {topic!r} not found on the broker")
    out = {}
    for p in meta.topics[topic].partitions:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
        out[p] = high
    return out


def watermarks(consumer: Consumer, topic: str, timeout_s: float = 30.0) -> dict[int, tuple[int, int]]:
    """(low, high) watermark of every partition of ``topic``: the oldest offset still kept, the next one."""
    meta = consumer.list_topics(topic, timeout=timeout_s)
    if topic not in meta.topics or meta.topics[topic].error is not None:
        raise KafkaException(f"topic {topic!r} not found on the broker")
    return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            for p in meta.topics[topic].partitions}


def read_range(consumer: Consumer, topic: str, start: dict[int, int], end: dict[int, int],
               timeout_s: float = 300.0) -> Iterator[tuple[bytes | None, bytes]]:
    """Every message of ``topic`` from ``start`` (inclusive) to ``end`` (exclusive) per partition."""
    todo = {p: (start.get(p, 0), e) for p, e in end.items() if e > start.get(p, 0)}
    if not todo:
        return
    consumer.assign([TopicPartition(topic, p, s) for p, (s, _e) in todo.items()])
    deadline = time.monotonic() + timeout_s
    remaining = dict(todo)
    try:
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: still waiting for offsets {remaining} after {timeout_s}s")
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == -191:  # _PARTITION_EOF
                    continue
                raise KafkaException(msg.error())
            p, off = msg.partition(), msg.offset()
            if p in remaining and off < remaining[p][1]:
                yield msg.key(), msg.value()
                if off + 1 >= remaining[p][1]:
                    del remaining[p]
    finally:
        consumer.unassign()


def read_all(consumer: Consumer, topic: str, timeout_s: float = 60.0) -> Iterator[tuple[bytes | None, bytes]]:
    """Every message currently in ``topic``."""
    ends = end_offsets(consumer, topic)
    yield from read_range(consumer, topic, {p: 0 for p in ends}, ends, timeout_s)


class RecordTooLarge(WhoiscrawlError, ValueError):
    """A message longer than the tracker's ``max_bytes``: not produced (the broker would refuse it)."""


def encode_json(value: Any) -> bytes:
    """A message's JSON (UTF-8, compact): orjson, or the json module for what orjson will not encode."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False).encode()


class DeliveryTracker:
    """Calls back once Kafka acknowledged (or finally refused) each produced message."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.pending = 0
        self.failed = 0

    def produce(self, topic: str, key: str | None, value: dict,
                on_done: Callable[[Exception | None], None], max_bytes: int | None = None) -> None:
        def _callback(err, _msg):
            self.pending -= 1
            if err is not None:
                self.failed += 1
            on_done(None if err is None else KafkaException(err))

        payload = encode_json(value)
        if max_bytes is not None and len(payload) > max_bytes:
            raise RecordTooLarge(f"{len(payload)} bytes > {max_bytes}")
        while True:
            try:
                self.producer.produce(topic, key=key.encode() if key else None, value=payload,
                                      on_delivery=_callback)
                break
            except BufferError:  # local queue full: serve callbacks, then try again
                self.producer.poll(0.1)
        self.pending += 1

    def poll(self, timeout_s: float = 0.0) -> int:
        return self.producer.poll(timeout_s)

    def flush(self, timeout_s: float = 120.0) -> int:
        """Wait for every acknowledgement; returns the number still undelivered (0 on success)."""
        left = self.producer.flush(timeout_s)
        return left
