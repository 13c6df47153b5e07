"""Redis and Kafka for the crawl, resolved the same way everywhere.

Order: the ``WHOISCRAWL_*`` setting (``REDIS_URL``, ``KAFKA_BOOTSTRAP_SERVERS``),
else the Airflow connection (``redis_default``, ``kafka_default``) through its
provider's hook. A task whose connection is missing fails with
:class:`ConnectionMissing` naming it: a silent fallback would crawl against
whatever listens on this host's loopback. Only the CLI, which runs next to the
local stack, asks for that fallback (``local_fallback=True``). Each host reads
Redis from its own replica (``WHOISCRAWL_REDIS_REPLICA_URL``) when it has one.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import redis

from whoiscrawl.errors import WhoiscrawlError
from whoiscrawl.settings import Settings

T = TypeVar("T")


class ConnectionMissing(WhoiscrawlError):
    """An Airflow connection a task needs is not defined; the message says how to define it."""

    def __init__(self, conn_id: str, setting: str) -> None:
        super().__init__(f"the Airflow connection {conn_id!r} is not defined: define it (e.g. the environment "
                         f"variable AIRFLOW_CONN_{conn_id.upper()}, or `airflow connections add {conn_id}`), "
                         f"or set WHOISCRAWL_{setting}")
        self.conn_id = conn_id


def _from_airflow(read: Callable[[], T]) -> T | None:
    """What ``read`` gets from an Airflow connection, or None when Airflow or the connection is absent."""
    try:
        from airflow.exceptions import AirflowNotFoundException
    except ImportError:
        return None
    try:
        return read()
    except AirflowNotFoundException:
        return None


def master_url(settings: Settings, conn_id: str = "redis_default", local_fallback: bool = False) -> str:
    """URL of the Redis master; ``local_fallback``: the local stack's when the connection is missing."""
    if settings.REDIS_URL:
        return settings.REDIS_URL

    def read() -> str:
        from airflow.providers.redis.hooks.redis import RedisHook

        conn = RedisHook.get_connection(conn_id)
        # as the provider's hook reads it: the database number lives in the extra, not in the path
        db = int(conn.extra_dejson.get("db") or 0)
        auth = f":{conn.password}@" if conn.password else ""
        return f"redis://{auth}{conn.host or '127.0.0.1'}:{conn.port or 6379}/{db}"

    url = _from_airflow(read)
    if url is not None:
        return url
    if local_fallback:
        return f"redis://{settings.BIND_HOST}:{settings.REDIS_PORT}/0"
    raise ConnectionMissing(conn_id, "REDIS_URL")


def redis_clients(settings: Settings | None = None, conn_id: str = "redis_default",
                  local_fallback: bool = False) -> tuple[redis.Redis, redis.Redis]:
    """(master, replica); the replica is the master itself on a single host."""
    settings = settings or Settings()
    master = redis.Redis.from_url(master_url(settings, conn_id, local_fallback), socket_timeout=10,
                                  socket_connect_timeout=5, health_check_interval=30)
    replica = master
    if settings.REDIS_REPLICA_URL:
        # fail fast: the index falls back to the master while the replica is away
        replica = redis.Redis.from_url(settings.REDIS_REPLICA_URL, socket_timeout=5,
                                       socket_connect_timeout=1, health_check_interval=30)
    return master, replica


def kafka_config(settings: Settings | None = None, conn_id: str = "kafka_default",
                 local_fallback: bool = False) -> dict[str, Any]:
    """librdkafka config: the connection's extra (e.g. ``{"bootstrap.servers": ...}``), as the provider's hook builds it."""
    settings = settings or Settings()
    if settings.KAFKA_BOOTSTRAP_SERVERS:
        return {"bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS}

    def read() -> dict[str, Any]:
        from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook

        return KafkaBaseHook(kafka_config_id=conn_id)._build_config()

    config = _from_airflow(read)
    if config is not None:
        return config
    if local_fallback:
        return {"bootstrap.servers": f"{settings.BIND_HOST}:{settings.KAFKA_PORT}"}
    raise ConnectionMissing(conn_id, "KAFKA_BOOTSTRAP_SERVERS")
