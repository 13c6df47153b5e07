"""KnownNetworkIndex against brute force, across processes, replicas and resets, on a real Redis."""

from __future__ import annotations

import numpy as np
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis_testing import wait_for_all_replicas

from whoiscrawl.crawl.netindex import KnownNetworkIndex, merge_intervals
from whoiscrawl.devtools.services import free_port
from whoiscrawl.devtools.services.redis_server import RedisServer

BASE = 0x0A000000  # 10.0.0.0: every random network lands in a 1M-address window, so they nest and overlap


def random_networks(rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
    """CIDR blocks /12../32 (nested inside each other) mixed with arbitrary overlapping ranges."""
    nets = []
    for _ in range(n):
        if rng.random() < 0.7:
            prefix = int(rng.integers(12, 33))
            size = 1 << (32 - prefix)
            start = BASE + (int(rng.integers(0, 1 << 20)) // size) * size
            nets.append((start, start + size - 1))
        else:
            start = BASE + int(rng.integers(0, 1 << 20))
            nets.append((start, min(start + int(rng.integers(0, 3000)), (1 << 32) - 1)))
    return nets


def brute_contains(nets: list[tuple[int, int]], addrs: np.ndarray) -> np.ndarray:
    arr = np.array(nets, dtype=np.int64).reshape(-1, 2)
    return ((arr[:, 0][None, :] <= addrs[:, None]) & (addrs[:, None] <= arr[:, 1][None, :])).any(axis=1)


def brute_covering(nets: list[tuple[int, int]], addr: int) -> tuple[int, int] | None:
    merged: list[list[int]] = []
    for s, e in sorted(nets):
        if merged and s <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    for s, e in merged:
        if s <= addr <= e:
            return s, e
    return None


def probe_addresses(rng: np.random.Generator, nets: list[tuple[int, int]], n: int) -> np.ndarray:
    edges = [x for s, e in nets[:300] for x in (s - 1, s, e, e + 1)]
    rand = BASE - 10 + rng.integers(0, (1 << 20) + 20, size=n)
    return np.clip(np.concatenate([rand, edges, [0, (1 << 32) - 1]]), 0, (1 << 32) - 1).astype(np.int64)


@pytest.fixture
def clients(redis_flush, redis_replica):
    master, replica = redis_flush.client(), redis_replica.client()
    yield master, replica
    master.close()
    replica.close()


def test_merge_intervals_matches_brute_force():
    rng = np.random.default_rng(7)
    nets = random_networks(rng, 500)
    s, e = merge_intervals(*np.array(nets).T)
    assert np.all(s[1:] > e[:-1] + 1)  # disjoint and not adjacent
    addrs = probe_addresses(rng, nets, 3000)
    i = np.searchsorted(s, addrs, side="right") - 1
    got = (i >= 0) & (e[np.maximum(i, 0)] >= addrs)
    assert np.array_equal(got, brute_contains(nets, addrs))


def test_matches_brute_force_on_nested_and_overlapping_networks(clients):
    master, replica = clients
    rng = np.random.default_rng(20240601)
    nets = random_networks(rng, 2000)
    writer = KnownNetworkIndex(master, replica)
    for start, end in nets[:300]:
        writer.add(start, end)
    writer.add_many(nets[300:1200])
    writer.compact()  # both levels populated: main from the first half, delta from the rest
    writer.add_many(nets[1200:], batch_records=97)
    wait_for_all_replicas(master)
    reader = KnownNetworkIndex(master, replica)
    addrs = probe_addresses(rng, nets, 5000)
    expected = brute_contains(nets, addrs)
    assert expected.any() and not expected.all()
    for index in (writer, reader):
        assert np.array_equal(index.contains_many(addrs), expected)
        for a in addrs[:: 25]:
            assert index.contains(int(a)) == bool(brute_contains(nets, np.array([a]))[0])
            assert index.covering(int(a)) == brute_covering(nets, int(a))
    assert reader.stats["index/all/sync_entries"] == len(nets)
    assert writer.network_count() == len(nets)
    assert reader.stats["index/all/replica_fallback"] == 0


def test_two_processes_see_each_other_through_the_replica(clients, redis_replica):
    master, replica = clients
    a, b = KnownNetworkIndex(master, replica), KnownNetworkIndex(master, replica)
    before = replica.info("commandstats").get("cmdstat_getrange", {}).get("calls", 0)
    assert not b.contains(0x01020304)
    a.add(0x01020300, 0x010203FF)
    wait_for_all_replicas(master)
    assert b.contains(0x01020304)
    b.add(0x08080800, 0x08080BFF)
    wait_for_all_replicas(master)
    assert a.contains(0x08080A00) and not a.contains(0x08080C00)
    after = replica.info("commandstats")["cmdstat_getrange"]["calls"]
    assert after > before  # reads went to the replica, not the master
    assert a.stats["index/all/replica_fallback"] == b.stats["index/all/replica_fallback"] == 0


def test_own_adds_are_seen_at_once_even_if_the_replica_lags(redis_flush):
    master = redis_flush.client()
    stale = redis_flush.client(db=1)  # a "replica" that never receives anything: maximal lag
    index = KnownNetworkIndex(master, stale)
    other = KnownNetworkIndex(master, stale)
    index.add(100, 200)
    assert index.contains(150) and index.covering(150) == (100, 200)
    assert not other.contains(150)  # others only learn through the (lagging) replica
    # a reset seen by this process but not yet by its replica: old networks go, new ones stay
    index.reset()
    index.add(300, 400)
    assert not index.contains(150)
    assert index.contains(350)
    assert index.stats["index/all/replica_behind"] >= 1
    master.close()
    stale.close()


def test_replica_down_falls_back_to_master(redis_flush, tmp_path):
    master = redis_flush.client()
    replica_server = RedisServer(tmp_path, free_port(),
                                 replicaof=(redis_flush.host, redis_flush.port)).start()
    try:
        replica_server.wait_master_link()
        replica = replica_server.client(retry=Retry(NoBackoff(), 0), socket_connect_timeout=1)
        index = KnownNetworkIndex(master, replica, replica_retry_s=60)
        writer = KnownNetworkIndex(master)
        writer.add(1000, 2000)
        wait_for_all_replicas(master)
        assert index.contains(1500)
        assert index.stats["index/all/replica_fallback"] == 0
        replica_server.stop()
        writer.add(5000, 6000)
        assert index.contains(5500)  # read from the master
        assert index.contains(1500) and not index.contains(4999)
        assert index.stats["index/all/replica_fallback"] == 3  # counted on every read while it is down
    finally:
        replica_server.stop()
        master.close()


def test_reset_and_truncation_rebuild(clients):
    master, replica = clients
    a, b = KnownNetworkIndex(master, replica), KnownNetworkIndex(master, replica)
    a.add_many([(10, 20), (30, 40)])
    wait_for_all_replicas(master)
    assert b.contains(35)
    a.reset()
    a.add(50, 60)
    wait_for_all_replicas(master)
    assert not b.contains(35) and b.contains(55)
    assert b.stats["index/all/rebuilt/epoch"] == 1
    assert a.network_count() == 1
    # someone deletes the log without bumping the epoch: the master is authoritative
    solo = KnownNetworkIndex(master)
    assert solo.contains(55)
    master.delete(solo.log_key)
    assert not solo.contains(55)
    assert solo.stats["index/all/rebuilt/truncated"] == 1


def test_late_joiner_reads_the_whole_log_in_chunks(clients):
    master, replica = clients
    rng = np.random.default_rng(3)
    nets = random_networks(rng, 1000)
    KnownNetworkIndex(master, replica).add_many(nets)
    wait_for_all_replicas(master)
    late = KnownNetworkIndex(master, replica, read_chunk_records=64)
    assert late.sync() == len(nets)
    assert late.sync() == 0  # afterwards only the tail
    addrs = probe_addresses(rng, nets, 2000)
    assert np.array_equal(late.contains_many(addrs), brute_contains(nets, addrs))


def test_rejects_bad_ranges(clients):
    index = KnownNetworkIndex(*clients)
    for bad in [(5, 4), (-1, 3), (0, 1 << 32)]:
        with pytest.raises(ValueError):
            index.add(*bad)
    assert index.network_count() == 0


def _bytes_per_add(master: redis.Redis, index: KnownNetworkIndex, rng: np.random.Generator, adds: int) -> float:
    before = master.info("replication")["master_repl_offset"]
    for start, end in random_networks(rng, adds):
        index.add(start, end)
    return (master.info("replication")["master_repl_offset"] - before) / adds


def test_replication_traffic_per_add_does_not_grow_with_the_index(clients):
    master, replica = clients
    rng = np.random.default_rng(11)
    index = KnownNetworkIndex(master, replica)
    index.add_many(random_networks(rng, 1000))
    at_1k = _bytes_per_add(master, index, rng, 200)
    index.add_many(random_networks(rng, 19_000))
    assert index.network_count() >= 20_000
    at_20k = _bytes_per_add(master, index, rng, 200)
    assert 0 < at_1k < 128  # a fixed-size record plus the command around it
    assert at_20k <= at_1k + 2  # not a byte more per add with 20x the networks (PINGs aside)


def test_covering_joins_pieces_across_levels_and_at_the_edges(clients):
    index = KnownNetworkIndex(*clients)
    top = (1 << 32) - 1
    index.add_many([(0, 10), (30, 40), (top - 255, top)])
    index.compact()
    index.add_many([(11, 29), (top - 300, top - 256)])  # delta pieces touching main ones on both sides
    assert index.covering(5) == index.covering(20) == index.covering(40) == (0, 40)
    assert index.covering(top) == (top - 300, top)
    assert index.covering(41) is None
    assert index.contains_many([0, 41, top]).tolist() == [True, False, True]
    assert index.interval_count() == 2
    with pytest.raises(ValueError):
        index.contains_many([-1])
    with pytest.raises(ValueError):
        index.contains(1 << 32)
