"""Shared pytest fixtures: real services started on free ports in temporary folders.

Keep this file generic; fixtures specific to one module belong next to its tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from whoiscrawl.devtools.services import MissingDependency, free_port
from whoiscrawl.devtools.services.kafka_broker import KafkaBroker
from whoiscrawl.devtools.services.redis_server import RedisServer, RedisServerError


def start_redis(data_dir: Path, attempts: int = 3, **kwargs) -> RedisServer:
    """Start a RedisServer on a free port, retrying if another process took the port first."""
    last: Exception | None = None
    for attempt in range(attempts):
        kwargs.setdefault("die_with_parent", True)  # a killed test run must not leave servers behind
        server = RedisServer(data_dir / f"try{attempt}", free_port(), **kwargs)
        try:
            return server.start(timeout_s=10)
        except RedisServerError as exc:
            server.stop(timeout_s=5)
            last = exc
    raise last  # type: ignore[misc]


@pytest.fixture(scope="session")
def redis_master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server for the whole session; tests that need a clean one use ``redis_flush``."""
    try:
        # no 5 s wait for more replicas before a full sync: tests link replicas one at a time
        server = start_redis(tmp_path_factory.mktemp("redis-master"),
                             extra={"repl-diskless-sync-delay": "0"})
    except MissingDependency as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop(timeout_s=10)


@pytest.fixture(scope="session")
def redis_replica(redis_master: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A writable replica of ``redis_master`` (like a fleet host's local Redis), linked and synced."""
    server = start_redis(tmp_path_factory.mktemp("redis-replica"),
                         replicaof=(redis_master.host, redis_master.port), replica_read_only=False)
    try:
        server.wait_master_link(timeout_s=10)
        yield server
    finally:
        server.stop(timeout_s=10)


def flush_redis(*servers: RedisServer) -> None:
    """Empty every database of the given servers (a master's FLUSHALL also reaches its replicas)."""
    for server in servers:
        if server.is_running():
            conn = server.client()
            try:
                conn.flushall()
            finally:
                conn.close()


@pytest.fixture
def redis_flush(redis_master: RedisServer) -> Iterator[RedisServer]:
    """The session master, emptied before and after the test."""
    flush_redis(redis_master)
    yield redis_master
    flush_redis(redis_master)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A real Kafka broker (KRaft, one node) for the session, with the crawl's topics."""
    home = tmp_path_factory.mktemp("kafka-home")
    broker = KafkaBroker(home, free_port(), free_port())
    try:
        broker.ensure_jars()
        broker.format_storage()
        broker.start(timeout_s=120)
    except MissingDependency as exc:
        pytest.skip(str(exc))
    try:
        broker.create_topics({"results": 4, "metrics": 1})
        yield broker
    finally:
        broker.stop(timeout_s=30)
