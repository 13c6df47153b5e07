"""Cluster state in Redis: the configuration workers need and the seed chunks they crawl.

The coordinator writes (the ancestor's ``set_config``); workers on any host
read, and wait with a bounded retry until the configuration is there. Chunks
are stored as packed big-endian uint32 arrays so that a worker on another
machine needs nothing but Redis to know its addresses.
"""

from __future__ import annotations

import json
import re
import time
import zlib
from typing import Any

import numpy as np
import redis

CONFIG_KEY = "whoiscrawl:config"
CHUNK_TTL_S = 7 * 24 * 3600


def run_key(run_id: str) -> str:
    """A Redis- and Kafka-safe name for an Airflow run id."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("_")[:120] or "run"


def _run_prefix(key: str) -> str:
    return f"whoiscrawl:run:{key}"


def index_key(key: str) -> str:
    return f"{_run_prefix(key)}:known"


def write_config(client: redis.Redis, cluster: dict[str, Any], key: str, run: dict[str, Any]) -> None:
    """Cluster-wide settings (Kafka, ...) and this run's settings, in one transaction."""
    pipe = client.pipeline(transaction=True)
    pipe.hset(CONFIG_KEY, mapping={k: json.dumps(v) for k, v in cluster.items()})
    pipe.hset(f"{_run_prefix(key)}:config", mapping={k: json.dumps(v) for k, v in run.items()})
    pipe.expire(f"{_run_prefix(key)}:config", CHUNK_TTL_S)
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
    client.set(f"{_run_prefix(key)}:chunk:{chunk}", np.asarray(addrs, dtype=">u4").tobytes(), ex=CHUNK_TTL_S)


def read_chunk(client: redis.Redis, key: str, chunk: int) -> np.ndarray:
    blob = client.get(f"{_run_prefix(key)}:chunk:{chunk}")
    if blob is None:
        raise KeyError(f"chunk {chunk} of run {key!r} is not in Redis")
    return np.frombuffer(blob, dtype=">u4").astype(np.uint32)


def write_networks(client: redis.Redis, key: str, networks: list[dict[str, Any]]) -> None:
    """The run's distinct networks (registry, start, end), for the report task on whatever host."""
    rows = [[n["registry"], n["start"], n["end"]] for n in networks]
    blob = zlib.compress(json.dumps(rows, separators=(",", ":")).encode(), 6)
    client.set(f"{_run_prefix(key)}:networks", blob, ex=CHUNK_TTL_S)


def read_networks(client: redis.Redis, key: str) -> list[dict[str, Any]]:
    blob = client.get(f"{_run_prefix(key)}:networks")
    if blob is None:
        raise KeyError(f"the networks of run {key!r} are not in Redis (did drain_results run?)")
    return [{"registry": r, "start": s, "end": e} for r, s, e in json.loads(zlib.decompress(blob))]
