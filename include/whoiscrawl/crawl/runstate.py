"""Cluster state in Redis: the configuration workers need and the seed chunks they crawl.

The coordinator writes (the ancestor's ``set_config``); workers on any host
read, and wait with a bounded retry until the configuration is there. Chunks
are stored as packed big-endian uint32 arrays so that a worker on another
machine needs nothing but Redis to know its addresses.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import zlib
from typing import Any

import numpy as np
import redis

CONFIG_KEY = "whoiscrawl:config"
#: How long a run's state outlives its last chunk: every chunk refreshes it (``keep_alive``), so a run
#: that crawls for weeks keeps its state, and an abandoned one is cleaned up by Redis.
RUN_TTL_S = 30 * 24 * 3600


def run_key(run_id: str) -> str:
    """A Redis-, Kafka- and path-safe name for an Airflow run id, unique per run id.

    The readable part is the run id with unsafe characters replaced; a short hash of the raw run id
    follows, so two run ids that read alike after the replacement never share a key.
    """
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("_.")[:100] or "run"
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:10]
    return f"{readable}-{digest}"


def _run_prefix(key: str) -> str:
    return f"whoiscrawl:run:{key}"


def index_key(key: str, attempt: int = 0) -> str:
    """The known-network index of one attempt of the run (a fresh one for every configure)."""
    return f"{_run_prefix(key)}:attempt:{attempt}:known" if attempt else f"{_run_prefix(key)}:known"


def new_attempt(client: redis.Redis, key: str) -> int:
    """Start a new attempt of the run (each configure of it): its index starts empty.

    A re-run records new result start offsets, so it must not skip addresses because of networks found
    by an earlier attempt (their records lie before those offsets): the earlier attempt's index is
    dropped (with the continuations of deferred chunks) and the new attempt indexes under its own name.
    """
    attempt = int(client.incr(f"{_run_prefix(key)}:attempts"))
    client.expire(f"{_run_prefix(key)}:attempts", RUN_TTL_S)
    stale = [k for pattern in ("*known*", "chunk:*:continuation")
             for k in client.scan_iter(match=f"{_run_prefix(key)}:{pattern}", count=1000)]
    if stale:
        client.delete(*stale)
    return attempt


def keep_alive(client: redis.Redis, key: str) -> int:
    """Refresh the expiry of every key of the run (called by every chunk); returns how many."""
    keys = list(client.scan_iter(match=f"{_run_prefix(key)}:*", count=1000))
    pipe = client.pipeline(transaction=False)
    for name in keys:
        pipe.expire(name, RUN_TTL_S)
    pipe.execute()
    return len(keys)


def write_config(client: redis.Redis, cluster: dict[str, Any], key: str, run: dict[str, Any]) -> None:
    """Cluster-wide settings (Kafka, ...) and this run's settings, in one transaction."""
    pipe = client.pipeline(transaction=True)
    pipe.hset(CONFIG_KEY, mapping={k: json.dumps(v) for k, v in cluster.items()})
    pipe.hset(f"{_run_prefix(key)}:config", mapping={k: json.dumps(v) for k, v in run.items()})
    pipe.expire(f"{_run_prefix(key)}:config", RUN_TTL_S)
    pipe.execute()


def read_config(client: redis.Redis, key: str, wait_s: float = 120.0,
                poll_s: float = 1.0) -> tuple[dict[str, Any], dict[str, Any]]:
    """(cluster, run) configuration; waits until the coordinator wrote it, at most ``wait_s``."""
    deadline = time.monotonic() + wait_s
    last_error: Exception | None = None
    while True:
        try:
            cluster = client.hgetall(CONFIG_KEY)
            run = client.hgetall(f"{_run_prefix(key)}:config")
            if cluster and run:
                decode = lambda h: {k.decode(): json.loads(v) for k, v in h.items()}  # noqa: E731
                return decode(cluster), decode(run)
        except redis.RedisError as exc:  # replica or master not reachable yet
            last_error = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"cluster configuration for run {key!r} not in Redis after {wait_s}s"
                               + (f" (last error: {last_error})" if last_error else ""))
        time.sleep(poll_s)


def write_chunk(client: redis.Redis, key: str, chunk: int, addrs: np.ndarray) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.set(f"{_run_prefix(key)}:chunk:{chunk}", np.asarray(addrs, dtype=">u4").tobytes(), ex=RUN_TTL_S)
    pipe.delete(f"{_run_prefix(key)}:chunk:{chunk}:continuation")  # a new seed: nothing of old tries is left
    pipe.execute()


def read_chunk(client: redis.Redis, key: str, chunk: int) -> np.ndarray:
    blob = client.get(f"{_run_prefix(key)}:chunk:{chunk}")
    if blob is None:
        raise KeyError(f"chunk {chunk} of run {key!r} is not in Redis")
    return np.frombuffer(blob, dtype=">u4").astype(np.uint32)


def write_recheck(client: redis.Redis, key: str, probes: np.ndarray, ranges: np.ndarray) -> None:
    """A re-crawl's probes and the range of the known network each re-checks (12 bytes a probe)."""
    rows = np.column_stack([np.asarray(probes, dtype=np.int64), np.asarray(ranges, dtype=np.int64).reshape(-1, 2)])
    client.set(f"{_run_prefix(key)}:recheck", rows.astype(">u4").tobytes(), ex=RUN_TTL_S)


def read_recheck(client: redis.Redis, key: str, only: np.ndarray | None = None) -> dict[int, tuple[int, int]]:
    """probe address -> (start, end) of the network it re-checks; empty when the run is not a re-crawl.

    ``only``: a chunk's addresses; the map is cut to them before it becomes a dict (a re-crawl of
    millions of networks has millions of probes, a chunk only its share).
    """
    blob = client.get(f"{_run_prefix(key)}:recheck")
    if not blob:
        return {}
    rows = np.frombuffer(blob, dtype=">u4").reshape(-1, 3).astype(np.int64)
    if only is not None:
        rows = rows[np.isin(rows[:, 0], np.asarray(only, dtype=np.int64))]
    return {int(a): (int(s), int(e)) for a, s, e in rows.tolist()}


def write_continuation(client: redis.Redis, key: str, chunk: int, addrs: np.ndarray) -> None:
    """The addresses a chunk deferred at its deadline (empty: none left); the next try crawls these."""
    name = f"{_run_prefix(key)}:chunk:{chunk}:continuation"
    client.set(name, np.asarray(addrs, dtype=">u4").tobytes(), ex=RUN_TTL_S)


def read_continuation(client: redis.Redis, key: str, chunk: int) -> np.ndarray | None:
    """What is left of the chunk after an earlier try's deadline, or None if no try deferred anything."""
    blob = client.get(f"{_run_prefix(key)}:chunk:{chunk}:continuation")
    return None if blob is None else np.frombuffer(blob, dtype=">u4").astype(np.uint32)


def write_networks(client: redis.Redis, key: str, networks: list[dict[str, Any]]) -> None:
    """The run's distinct networks (registry, start, end), for the report task on whatever host."""
    rows = [[n["registry"], n["start"], n["end"]] for n in networks]
    blob = zlib.compress(json.dumps(rows, separators=(",", ":")).encode(), 6)
    client.set(f"{_run_prefix(key)}:networks", blob, ex=RUN_TTL_S)


def read_networks(client: redis.Redis, key: str) -> list[dict[str, Any]]:
    blob = client.get(f"{_run_prefix(key)}:networks")
    if blob is None:
        raise KeyError(f"the networks of run {key!r} are not in Redis (did drain_results run?)")
    return [{"registry": r, "start": s, "end": e} for r, s, e in json.loads(zlib.decompress(blob))]
