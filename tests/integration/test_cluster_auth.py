"""Redis and Kafka let no one in without credentials, and each Redis user does only what it needs (real servers).

The servers are started the way the local stack and the fleet start them, with credentials the
project generates; the passwords must appear in no command line, environment or log of the servers.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import redis
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from whoiscrawl.crawl.netindex import KnownNetworkIndex
from whoiscrawl.crawl.ratelimit import RegistryRateLimiter
from whoiscrawl.devtools.credentials import ClusterCredentials
from whoiscrawl.devtools.services import MissingDependency, free_port
from whoiscrawl.devtools.services.kafka_broker import KafkaBroker
from whoiscrawl.devtools.services.redis_server import RedisServer, RedisServerError

pytestmark = pytest.mark.integration


def _proc_text(pid: int) -> str:
    return "\n".join(Path(f"/proc/{pid}/{name}").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                     for name in ("cmdline", "environ"))


@pytest.fixture(scope="module")
def creds(tmp_path_factory) -> ClusterCredentials:
    home = tmp_path_factory.mktemp("auth-home")
    created = ClusterCredentials.load_or_create(home)
    assert (home / "credentials.json").stat().st_mode & 0o777 == 0o600
    assert ClusterCredentials.load_or_create(home) == created  # generated once per home
    return created


@pytest.fixture(scope="module")
def acl_master(tmp_path_factory, creds):
    server = RedisServer(tmp_path_factory.mktemp("acl-master"), free_port(), users=creds.redis_acl(),
                         auth=("admin", creds.redis_admin), extra={"repl-diskless-sync-delay": "0"},
                         die_with_parent=True)
    try:
        server.start()
    except MissingDependency as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


def _as(server: RedisServer, user: str, creds: ClusterCredentials) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port, username=user, password=creds.redis_password(user),
                       socket_timeout=5)


def test_redis_refuses_a_client_without_credentials_or_with_a_wrong_password(acl_master, creds):
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=acl_master.host, port=acl_master.port).get("whoiscrawl:config")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=acl_master.host, port=acl_master.port, username="crawl", password="guess").ping()
    assert acl_master.config_path.stat().st_mode & 0o777 == 0o600
    text = _proc_text(acl_master.pid) + acl_master.log_tail(500)
    assert not [s for s in creds.secrets() if s in text]


def test_the_crawl_user_reaches_the_crawls_keys_and_nothing_else(acl_master, creds):
    crawl = _as(acl_master, "crawl", creds)
    index = KnownNetworkIndex(crawl, key="whoiscrawl:run:t:known")  # a Lua script, MULTI, GETRANGE
    index.add_many([(100, 200)])
    assert KnownNetworkIndex(crawl, key="whoiscrawl:run:t:known").contains(150)
    limiter = RegistryRateLimiter(crawl, "h1")  # Lua reservations, pauses, the adaptive rate
    assert limiter.reserve("arin") >= 0
    limiter.pause("arin", 1.0, "retry-after")
    limiter.on_throttled("arin")
    assert limiter.paused_until("arin") is not None and 0 < limiter.rate_factor("arin") <= 1
    crawl.hset("whoiscrawl:config", "kafka", "{}")
    for forbidden in (lambda: crawl.set("other", "x"), lambda: crawl.get("_kombu.binding.whoiscrawl"),
                      crawl.flushall, lambda: crawl.config_get("requirepass"), lambda: crawl.keys("*"),
                      lambda: crawl.acl_list(), lambda: crawl.execute_command("SHUTDOWN")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            forbidden()


def test_replicas_log_in_with_a_replication_only_user(acl_master, creds, tmp_path):
    replica = RedisServer(tmp_path / "replica", free_port(), replicaof=(acl_master.host, acl_master.port),
                          users=creds.redis_acl("admin", "crawl"), auth=("admin", creds.redis_admin),
                          masterauth=("replica", creds.redis_replica), die_with_parent=True)
    replica.start()
    try:
        replica.wait_master_link(timeout_s=15)
        _as(acl_master, "crawl", creds).set("whoiscrawl:probe", "1")
        assert acl_master.client().wait(1, 5000) >= 1
        assert _as(replica, "crawl", creds).get("whoiscrawl:probe") == b"1"  # the host's tasks read it
        with pytest.raises(redis.exceptions.NoPermissionError):
            _as(acl_master, "replica", creds).get("whoiscrawl:probe")  # replication, not data
    finally:
        replica.stop()


def test_the_celery_user_has_no_admin_commands(acl_master, creds):
    celery = _as(acl_master, "celery", creds)
    celery.execute_command("SELECT", 1)
    celery.lpush("whoiscrawl", "message")
    for forbidden in (celery.flushall, lambda: celery.config_set("dir", "/tmp"), lambda: celery.acl_list()):
        with pytest.raises(redis.exceptions.NoPermissionError):
            forbidden()


def test_protected_mode_off_needs_a_password(tmp_path):
    with pytest.raises(RedisServerError, match="protected-mode"):
        RedisServer(tmp_path, free_port(), extra={"protected-mode": "no"}).config_lines()


@pytest.fixture(scope="module")
def sasl_kafka(tmp_path_factory, creds):
    broker = KafkaBroker(tmp_path_factory.mktemp("sasl-kafka"), free_port(), free_port(),
                         scram_users=creds.kafka_users())
    try:
        broker.start(timeout_s=120)
    except MissingDependency as exc:
        pytest.skip(str(exc))
    try:
        broker.create_topics({"results": 1})
        yield broker
    finally:
        broker.stop(timeout_s=30)


def test_kafka_refuses_a_client_without_credentials_or_with_a_wrong_password(sasl_kafka, creds):
    quiet = {"log_level": 0, "error_cb": lambda err: None}
    for config in ({"bootstrap.servers": sasl_kafka.bootstrap_servers},
                   {"bootstrap.servers": sasl_kafka.bootstrap_servers, **creds.kafka_client("crawl"),
                    "sasl.password": "guess"}):
        with pytest.raises(KafkaException):
            AdminClient({**config, **quiet}).list_topics(timeout=5)


def test_kafka_lets_the_crawl_user_produce_and_keeps_the_passwords_out_of_sight(sasl_kafka, creds):
    producer = Producer({"bootstrap.servers": sasl_kafka.bootstrap_servers, **creds.kafka_client("crawl"),
                         "enable.idempotence": True, "acks": "all"})
    delivered = []
    producer.produce("results", key=b"k", value=uuid.uuid4().hex.encode(),
                     on_delivery=lambda err, msg: delivered.append(err))
    producer.flush(30)
    assert delivered == [None]
    assert sasl_kafka.config_path.stat().st_mode & 0o777 == 0o600
    assert not (sasl_kafka.kafka_dir / "format.args").exists()
    text = _proc_text(sasl_kafka.pid) + sasl_kafka.log_path.read_text(errors="replace")
    assert not [s for s in creds.secrets() if s in text]
    # the controller listener is on loopback only; the client listener requires SASL
    props = sasl_kafka.properties()
    assert props["listeners"].startswith("SASL_PLAINTEXT://") and "CONTROLLER://127.0.0.1:" in props["listeners"]
    assert os.environ.get("AIRFLOW_CONN_KAFKA_DEFAULT") is None or "AIRFLOW" not in _proc_text(sasl_kafka.pid)
