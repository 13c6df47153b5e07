"""Redis clients for the crawl, resolved the same way everywhere.

Order: the ``WHOISCRAWL_REDIS_URL`` setting, else the Airflow connection
``redis_default`` (through the redis provider's hook), else the local stack's
Redis. Each host reads from its own replica (``WHOISCRAWL_REDIS_REPLICA_URL``)
when it has one.
"""

from __future__ import annotations

import redis

from whoiscrawl.settings import Settings


def master_url(settings: Settings, conn_id: str = "redis_default") -> str:
    if settings.REDIS_URL:
        return settings.REDIS_URL
    try:
        from airflow.providers.redis.hooks.redis import RedisHook

        conn = RedisHook.get_connection(conn_id)
        # as the provider's hook reads it: the database number lives in the extra, not in the path
        db = int(conn.extra_dejson.get("db") or 0)
        auth = f":{conn.password}@" if conn.password else ""
        return f"redis://{auth}{conn.host or '127.0.0.1'}:{conn.port or 6379}/{db}"
    except Exception:  # no Airflow, or no such connection: the local stack
        return f"redis://{settings.BIND_HOST}:{settings.REDIS_PORT}/0"


def redis_clients(settings: Settings | None = None, conn_id: str = "redis_default") -> tuple[redis.Redis, redis.Redis]:
    """(master, replica); the replica is the master itself on a single host."""
    settings = settings or Settings()
    master = redis.Redis.from_url(master_url(settings, conn_id), socket_timeout=10,
                                  socket_connect_timeout=5, health_check_interval=30)
    replica = master
    if settings.REDIS_REPLICA_URL:
        # fail fast: the index falls back to the master while the replica is away
        replica = redis.Redis.from_url(settings.REDIS_REPLICA_URL, socket_timeout=5,
                                       socket_connect_timeout=1, health_check_interval=30)
    return master, replica
