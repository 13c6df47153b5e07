"""Redis and Kafka for the crawl, resolved the same way everywhere.

Order: the ``WHOISCRAWL_*`` setting (``REDIS_URL``, ``KAFKA_BOOTSTRAP_SERVERS``),
else the Airflow connection (``redis_default``, ``kafka_default``) through its
provider's hook. A task whose connection is missing fails with
:class:`ConnectionMissing` naming it: a silent fallback would crawl against
whatever listens on this host's loopback. Only the CLI, which runs next to the
local stack, asks for that fallback (``local_fallback=True``). Each host reads
Redis from its own replica (``WHOISCRAWL_REDIS_REPLICA_URL``) when it has one,
with the master connection's user and password unless the replica URL names its own.

The cluster config in Redis carries only :data:`CLUSTER_KAFKA_KEYS` of the
Kafka config (where the broker is, how to authenticate); a crawl process takes
its SASL credentials from its own ``kafka_default`` connection and refuses any
other key (:class:`KafkaConfigRefused`): whoever can write one Redis key must not
choose a librdkafka plugin to load or where the results' credentials go in clear.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar
from urllib.parse import quote, urlsplit

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


def _local_credentials(settings: Settings):
    """The local stack's credentials (its 0600 file under the home), for the CLI's fallback; None if absent."""
    from whoiscrawl.devtools.credentials import FILE_NAME, ClusterCredentials

    if not (settings.home / FILE_NAME).exists():
        return None
    return ClusterCredentials.load_or_create(settings.home)


def redis_login(conn_id: str) -> tuple[str, str] | None:
    """(user, password) of a Redis connection, or None when it is not defined or has no password."""
    def read() -> tuple[str, str] | None:
        from airflow.providers.redis.hooks.redis import RedisHook

        conn = RedisHook.get_connection(conn_id)
        return (conn.login or "default", conn.password) if conn.password else None

    return _from_airflow(read)


def url_login(url: str) -> tuple[str, str] | None:
    """(user, password) named by a ``redis://user:password@host`` URL, or None."""
    from urllib.parse import unquote

    parts = urlsplit(url)
    if not parts.password:
        return None
    return unquote(parts.username or "default"), unquote(parts.password)


def master_url(settings: Settings, conn_id: str = "redis_default", local_fallback: bool = False) -> str:
    """URL of the Redis master; ``local_fallback``: the local stack's when the connection is missing."""
    if settings.REDIS_URL:
        return settings.REDIS_URL

    def read() -> str:
        from airflow.providers.redis.hooks.redis import RedisHook

        conn = RedisHook.get_connection(conn_id)
        # as the provider's hook reads it: the database number lives in the extra, not in the path
        db = int(conn.extra_dejson.get("db") or 0)
        auth = f"{quote(conn.login or '', safe='')}:{quote(conn.password, safe='')}@" if conn.password else ""
        return f"redis://{auth}{conn.host or '127.0.0.1'}:{conn.port or 6379}/{db}"

    url = _from_airflow(read)
    if url is not None:
        return url
    if local_fallback:
        creds = _local_credentials(settings)
        auth = f"crawl:{creds.redis_crawl}@" if creds else ""
        return f"redis://{auth}{settings.BIND_HOST}:{settings.REDIS_PORT}/0"
    raise ConnectionMissing(conn_id, "REDIS_URL")


def redis_clients(settings: Settings | None = None, conn_id: str = "redis_default",
                  local_fallback: bool = False) -> tuple[redis.Redis, redis.Redis]:
    """(master, replica); the replica is the master itself on a single host."""
    settings = settings or Settings()
    master = redis.Redis.from_url(master_url(settings, conn_id, local_fallback), socket_timeout=10,
                                  socket_connect_timeout=5, health_check_interval=30)
    replica = master
    if settings.REDIS_REPLICA_URL:
        # the host's replica knows the same crawl user as the master (docs/security.md)
        auth = {}
        if not urlsplit(settings.REDIS_REPLICA_URL).password:
            kwargs = master.connection_pool.connection_kwargs
            auth = {"username": kwargs.get("username"), "password": kwargs.get("password")}
        # fail fast: the index falls back to the master while the replica is away
        replica = redis.Redis.from_url(settings.REDIS_REPLICA_URL, socket_timeout=5,
                                       socket_connect_timeout=1, health_check_interval=30, **auth)
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
        creds = _local_credentials(settings)
        return {"bootstrap.servers": f"{settings.BIND_HOST}:{settings.KAFKA_PORT}",
                **(creds.kafka_client("crawl") if creds else {})}
    raise ConnectionMissing(conn_id, "KAFKA_BOOTSTRAP_SERVERS")


#: The only Kafka settings the cluster config in Redis carries and a crawl process reads from it.
CLUSTER_KAFKA_KEYS = ("bootstrap.servers", "security.protocol", "sasl.mechanism")
#: Settings a crawl process takes from its own connection, never from Redis.
CREDENTIAL_KAFKA_KEYS = ("sasl.username", "sasl.password")
_ALLOWED_VALUES = {"security.protocol": ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"),
                   # SCRAM never sends the password: a forged broker address learns nothing from the login
                   "sasl.mechanism": ("SCRAM-SHA-256", "SCRAM-SHA-512")}


class KafkaConfigRefused(WhoiscrawlError):
    """The cluster config in Redis holds a Kafka setting a crawl process does not take from there."""


def cluster_kafka_config(config: dict[str, Any]) -> dict[str, Any]:
    """What the configure task publishes of its Kafka config: the allowlisted keys, no credentials."""
    return {k: config[k] for k in CLUSTER_KAFKA_KEYS if k in config}


def worker_kafka_config(cluster: Any, own: dict[str, Any]) -> dict[str, Any]:
    """A crawl process's Kafka config: the cluster config's allowlisted keys, checked, plus its own credentials."""
    if not isinstance(cluster, dict) or not cluster.get("bootstrap.servers"):
        raise KafkaConfigRefused("the cluster config in Redis (whoiscrawl:config) has no kafka bootstrap.servers")
    refused = sorted(k for k in cluster if k not in CLUSTER_KAFKA_KEYS)
    if refused:
        raise KafkaConfigRefused(f"the cluster config in Redis (whoiscrawl:config) sets Kafka keys a crawl "
                                 f"process does not take from there: {', '.join(refused)} (allowed: "
                                 f"{', '.join(CLUSTER_KAFKA_KEYS)}; credentials come from the connection)")
    for key, value in cluster.items():
        if not isinstance(value, str):
            raise KafkaConfigRefused(f"cluster config Kafka key {key!r} is not a string")
        if key in _ALLOWED_VALUES and value.upper() not in _ALLOWED_VALUES[key]:
            raise KafkaConfigRefused(f"cluster config Kafka key {key!r}={value!r}: allowed "
                                     f"{', '.join(_ALLOWED_VALUES[key])}")
    for server in cluster["bootstrap.servers"].split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit() or any(c in host for c in "/@ "):
            raise KafkaConfigRefused(f"cluster config Kafka bootstrap.servers: {server!r} is not host:port")
    return {**cluster, **{k: own[k] for k in CREDENTIAL_KAFKA_KEYS if k in own}}
