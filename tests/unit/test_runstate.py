"""Cluster state in a real Redis: config with a bounded wait, chunks and networks that cross hosts."""

import re
import threading
import time

import numpy as np
import pytest

from whoiscrawl.crawl import runstate


def test_run_key_is_safe_for_redis_and_kafka():
    key = runstate.run_key("manual__2026-11-24T12:44:53.774475+00:00")
    assert key.startswith("manual__2026-11-24T12_44_53.774475_00_00-")
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", key)
    assert runstate.run_key("///").startswith("run-")


def test_run_ids_that_read_alike_get_different_keys():
    """Two run ids that the character replacement maps to the same text still get their own keys."""
    assert runstate.run_key("manual__a:b") != runstate.run_key("manual__a+b")
    assert runstate.run_key("x" * 300) != runstate.run_key("x" * 301)
    assert len(runstate.run_key("x" * 300)) <= 111
    assert runstate.run_key("manual__a:b") == runstate.run_key("manual__a:b")


def test_chunks_round_trip_exactly(redis_flush):
    client = redis_flush.client()
    addrs = np.array([0, 1, 0xFFFFFFFF, 16909060], dtype=np.uint32)
    runstate.write_chunk(client, "r1", 3, addrs)
    assert runstate.read_chunk(client, "r1", 3).tolist() == addrs.tolist()
    with pytest.raises(KeyError, match="chunk 4"):
        runstate.read_chunk(client, "r1", 4)


def test_networks_round_trip(redis_flush):
    client = redis_flush.client()
    nets = [{"registry": "arin", "start": "3.0.0.0", "end": "3.127.255.255", "handle": "x"},
            {"registry": "127.0.0.1:9", "start": "1.1.1.0", "end": "1.1.1.255", "handle": "y"}]
    runstate.write_networks(client, "r2", nets)
    assert runstate.read_networks(client, "r2") == [{k: n[k] for k in ("registry", "start", "end")} for n in nets]
    with pytest.raises(KeyError, match="drain_results"):
        runstate.read_networks(client, "nope")


def test_workers_wait_for_the_config_then_get_it(redis_flush):
    client = redis_flush.client()
    writer = threading.Timer(0.5, lambda: runstate.write_config(client, {"kafka": {"bootstrap.servers": "k:1"}},
                                                              "r3", {"bootstrap": "b"}))
    writer.start()
    t0 = time.monotonic()
    cfg, run = runstate.read_config(client, "r3", wait_s=10, poll_s=0.1)
    assert time.monotonic() - t0 >= 0.4
    assert cfg["kafka"] == {"bootstrap.servers": "k:1"} and run == {"bootstrap": "b"}
    with pytest.raises(TimeoutError, match="not in Redis"):
        runstate.read_config(client, "missing", wait_s=0.3, poll_s=0.1)
