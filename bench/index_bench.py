"""Benchmark the known-network index against the ancestor's comma-joined CIDR string.

Starts its own redis-server master and replica (temporary folder, free ports)
and stops them at the end. Measures, in one run:

* checks per second at 50,000 and at 1,000,000 networks: a reader process
  (its own index object, reading from the replica) checks random addresses in
  batches like a crawl chunk, each batch including its sync with Redis;
* the ancestor's check at 50,000 networks: GET one comma-joined string from
  Redis, split it, ``netaddr.all_matching_cidrs(ip, cidrs)`` -- as its worker
  did for every address. It takes about half a second per address, so only a
  few addresses are timed;
* bytes replicated per added network (growth of ``master_repl_offset`` / adds),
  for single adds (the crawl's path) and batched adds, and for the ancestor's
  rewrite of its string.

The last line printed is the summary, for scripts:
``speedup_vs_ancestor_50k=<x> checks_per_s_1m=<c> slowdown_1m_vs_50k=<y> bytes_per_add=<z>``

Run: ``python bench/index_bench.py [--batches N] [--batch-size N] [--ancestor-addrs N]``
"""

from __future__ import annotations

import argparse
import ipaddress
import tempfile
import time
from pathlib import Path

import netaddr
import numpy as np
import redis

from whoiscrawl.crawl.netindex import KnownNetworkIndex
from whoiscrawl.devtools.services import free_port
from whoiscrawl.devtools.services.redis_server import RedisServer

# Prefix lengths of networks as registries hand them out: mostly /24, some larger, a few smaller.
PREFIXES = np.arange(16, 33)
WEIGHTS = np.array([0.1, 0.1, 0.2, 0.4, 1, 2, 3, 4, 60, 3, 3, 3, 4, 3, 3, 2, 7], dtype=float)
WEIGHTS /= WEIGHTS.sum()
UNICAST_LO, UNICAST_HI = 1 << 24, 224 << 24  # 1.0.0.0 up to 223.255.255.255


def random_networks(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` aligned CIDR blocks (/16../32, heavy on /24) in unicast space: int64 array (n, 2)."""
    prefix = rng.choice(PREFIXES, size=n, p=WEIGHTS)
    size = np.left_shift(np.int64(1), (32 - prefix).astype(np.int64))
    start = rng.integers(UNICAST_LO, UNICAST_HI, size=n, dtype=np.int64)
    start -= start % size
    return np.stack([start, start + size - 1], axis=1)


def random_addresses(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(UNICAST_LO, UNICAST_HI, size=n, dtype=np.int64)


def to_cidr(start: int, end: int) -> str:
    prefix = 32 - (int(end) - int(start) + 1).bit_length() + 1
    return f"{ipaddress.IPv4Address(int(start))}/{prefix}"


def repl_offset(conn: redis.Redis) -> int:
    return int(conn.info("replication")["master_repl_offset"])


def wait_replica(master: redis.Redis, timeout_ms: int = 10_000) -> None:
    if master.wait(1, timeout_ms) < 1:
        raise RuntimeError("replica did not acknowledge the writes in time")


def measure_checks(master: redis.Redis, replica: redis.Redis, key: str, rng: np.random.Generator,
                   batches: int, batch_size: int) -> dict[str, float]:
    """A fresh reader: time its first (whole-log) sync, then batches of checks each with its sync."""
    reader = KnownNetworkIndex(master, replica, key=key, sync_interval_s=0.0)
    t0 = time.perf_counter()
    entries = reader.sync()
    join_s = time.perf_counter() - t0
    batches_addrs = [random_addresses(rng, batch_size) for _ in range(batches)]
    hits = 0
    t0 = time.perf_counter()
    for addrs in batches_addrs:
        hits += int(reader.contains_many(addrs).sum())  # syncs with the replica, then searches
    elapsed = time.perf_counter() - t0
    assert reader.stats["index/all/sync"] == batches + 1 and reader.stats["index/all/replica_fallback"] == 0
    return {"join_s": join_s, "entries": entries, "checks_per_s": batches * batch_size / elapsed,
            "hit_ratio": hits / (batches * batch_size), "intervals": reader.interval_count()}


def measure_ancestor(master: redis.Redis, cidrs: list[str], rng: np.random.Generator, n_addrs: int,
                     index: KnownNetworkIndex) -> dict[str, float]:
    """The ancestor's worker: GET the joined string, split it, all_matching_cidrs, per address."""
    key = "bench:ancestor:cidrs"
    master.set(key, ",".join(cidrs))
    addrs = [int(a) for a in random_addresses(rng, n_addrs - 1)]
    addrs.append(int(netaddr.IPNetwork(cidrs[0]).first) + 1)  # at least one known address
    times = []
    for addr in addrs:
        ip = str(ipaddress.IPv4Address(addr))
        t0 = time.perf_counter()
        joined = master.get(key).decode()
        matches = netaddr.all_matching_cidrs(ip, joined.split(","))
        times.append(time.perf_counter() - t0)
        assert bool(matches) == index.contains(addr), f"index and ancestor disagree on {ip}"
    # its replication cost: every new block rewrote the whole string
    before = repl_offset(master)
    master.set(key, ",".join(cidrs) + ",192.0.2.0/24")
    rewrite_bytes = repl_offset(master) - before
    master.delete(key)
    return {"s_per_check": float(np.mean(times)), "addrs": len(addrs), "rewrite_bytes": rewrite_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=200, help="check batches per size (default 200)")
    parser.add_argument("--batch-size", type=int, default=10_000, help="addresses per batch (default 10,000)")
    parser.add_argument("--ancestor-addrs", type=int, default=5, help="addresses timed the ancestor's way")
    parser.add_argument("--single-adds", type=int, default=2_000, help="single adds timed for bytes per add")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    with tempfile.TemporaryDirectory(prefix="index-bench-") as tmp:
        master_srv = RedisServer(Path(tmp) / "master", free_port(), die_with_parent=True,
                                 extra={"repl-diskless-sync-delay": "0"})
        replica_srv = None
        try:
            master_srv.start()
            replica_srv = RedisServer(Path(tmp) / "replica", free_port(), die_with_parent=True,
                                      replicaof=(master_srv.host, master_srv.port)).start()
            replica_srv.wait_master_link()
            master, replica = master_srv.client(), replica_srv.client()
            key = "bench:known"
            writer = KnownNetworkIndex(master, replica, key=key)

            # --- 50,000 networks: bulk, then single adds like a crawl, measuring replication ---
            nets = random_networks(rng, 1_000_000)
            n_single = min(args.single_adds, 50_000)
            t0 = time.perf_counter()
            writer.add_many(nets[: 50_000 - n_single])
            bulk_s = time.perf_counter() - t0
            before = repl_offset(master)
            t0 = time.perf_counter()
            for start, end in nets[50_000 - n_single: 50_000]:
                writer.add(int(start), int(end))
            single_s = time.perf_counter() - t0
            bytes_per_add = (repl_offset(master) - before) / n_single
            wait_replica(master)
            assert writer.network_count() == 50_000
            r50 = measure_checks(master, replica, key, rng, args.batches, args.batch_size)

            cidrs = [to_cidr(s, e) for s, e in nets[:50_000]]
            anc = measure_ancestor(master, cidrs, rng, args.ancestor_addrs, writer)

            # --- 1,000,000 networks ---------------------------------------------------------
            before = repl_offset(master)
            t0 = time.perf_counter()
            writer.add_many(nets[50_000:])
            bulk_1m_s = time.perf_counter() - t0
            batch_bytes_per_add = (repl_offset(master) - before) / (len(nets) - 50_000)
            wait_replica(master)
            assert writer.network_count() == len(nets)
            r1m = measure_checks(master, replica, key, rng, args.batches, args.batch_size)
            master.close()
            replica.close()
        finally:
            if replica_srv is not None:
                replica_srv.stop()
            master_srv.stop()

    speedup = anc["s_per_check"] * r50["checks_per_s"]
    slowdown = r50["checks_per_s"] / r1m["checks_per_s"]
    checks = args.batches * args.batch_size
    print(f"networks: random CIDRs /16../32 (mostly /24) in unicast space, seed {args.seed}")
    print(f"checks: {args.batches} batches of {args.batch_size:,} random addresses per size "
          f"({checks:,} checks), each batch including its sync with the replica")
    for name, r in (("50k", r50), ("1m", r1m)):
        print(f"  {name:>3}: {r['checks_per_s']:>14,.0f} checks/s   late join read {r['entries']:,} records "
              f"in {r['join_s'] * 1000:.0f} ms   {r['intervals']:,} merged intervals   "
              f"hit ratio {r['hit_ratio']:.4f}")
    print(f"ancestor at 50k (GET + split + netaddr.all_matching_cidrs per address; only "
          f"{anc['addrs']} addresses timed, it is slow): {anc['s_per_check']:.3f} s per check "
          f"= {1 / anc['s_per_check']:.2f} checks/s")
    print(f"adds: {50_000 - n_single:,} bulk in {bulk_s:.2f} s, {n_single:,} single in {single_s:.2f} s "
          f"({n_single / single_s:,.0f}/s), {len(nets) - 50_000:,} bulk in {bulk_1m_s:.2f} s")
    print(f"replicated bytes per add: {bytes_per_add:.1f} single (crawl path), "
          f"{batch_bytes_per_add:.2f} batched; ancestor rewrote {anc['rewrite_bytes']:,} bytes per add at 50k")
    print(f"speedup_vs_ancestor_50k={speedup:.0f} checks_per_s_1m={r1m['checks_per_s']:.0f} "
          f"slowdown_1m_vs_50k={slowdown:.2f} bytes_per_add={bytes_per_add:.1f}")


if __name__ == "__main__":
    main()
