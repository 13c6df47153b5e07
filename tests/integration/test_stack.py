"""The real Kafka 4 broker and the whole local stack, on free loopback ports in temporary homes.

Needs java and mvn (the broker's jars come from Maven Central once, then from
~/.m2) and redis-server; skipped with the install hint when one is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from whoiscrawl.devtools.services import MissingDependency, free_port
from whoiscrawl.devtools.services.kafka_broker import KafkaBroker, KafkaBrokerError
from whoiscrawl.devtools.services.procs import PidFile

pytestmark = pytest.mark.integration

N_MESSAGES = 2000


def _processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (to prove nothing was left behind)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and text in (PidFile.cmdline(int(name)) or ""):
            found.append(int(name))
    return found


def _start_broker(home: Path, attempts: int = 3) -> KafkaBroker:
    """A broker on free ports, retrying when another process took a port in between."""
    for attempt in range(attempts):
        broker = KafkaBroker(home, free_port(), free_port())
        try:
            return broker.start(timeout_s=90)
        except MissingDependency as exc:
            pytest.skip(str(exc))
        except KafkaBrokerError as exc:
            broker.stop(timeout_s=15)
            if "already in use" not in str(exc) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("kafka-home")
    started = time.monotonic()
    broker = _start_broker(home)
    print(f"\nbroker up in {time.monotonic() - started:.1f} s (jars, format and start)")
    try:
        yield broker
    finally:
        broker.stop(timeout_s=30)


def _produce(broker: KafkaBroker, topic: str, n: int) -> None:
    errors: list[KafkaError] = []
    producer = Producer(broker.client_config(**{"enable.idempotence": True, "acks": "all",
                                                "linger.ms": 5}))
    for i in range(n):
        producer.produce(topic, key=f"net-{i % 97}", value=json.dumps({"i": i}),
                         on_delivery=lambda err, msg: errors.append(err) if err else None)
        producer.poll(0)
    assert producer.flush(30) == 0, "messages still undelivered after 30 s"
    assert errors == []


def _consume_all(broker: KafkaBroker, topic: str, expected: int, timeout_s: float = 60) -> list[int]:
    consumer = Consumer(broker.client_config(**{"group.id": f"test-{uuid.uuid4()}",
                                                "auto.offset.reset": "earliest",
                                                "enable.auto.commit": False}))
    seen: list[int] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        while len(seen) < expected and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            seen.append(json.loads(msg.value())["i"])
    finally:
        consumer.close()
    return seen


def test_broker_topics_idempotent_produce_consume_restart(broker: KafkaBroker):
    assert broker.is_running() and broker.healthy()
    pid = broker.pid
    assert pid is not None and os.getpgid(pid) == pid != os.getpgid(0)
    assert "node.id=1" in broker.config_path.read_text()
    cluster_id = broker.cluster_id()

    assert sorted(broker.create_topics({"results": 8, "metrics": 1})) == ["metrics", "results"]
    assert broker.create_topics({"results": 8, "metrics": 1}) == []  # idempotent
    topics = broker.admin().list_topics(timeout=10).topics
    assert len(topics["results"].partitions) == 8
    assert len(topics["metrics"].partitions) == 1

    _produce(broker, "results", N_MESSAGES)
    seen = _consume_all(broker, "results", N_MESSAGES)
    assert sorted(seen) == list(range(N_MESSAGES))

    broker.stop(timeout_s=30)
    assert not broker.is_running()
    assert PidFile.argv(pid) is None
    assert not broker.pidfile.path.exists()

    started = time.monotonic()
    broker.start(timeout_s=90)
    print(f"\nbroker restart in {time.monotonic() - started:.1f} s")
    assert broker.format_storage() is False  # already formatted: not formatted again
    assert broker.cluster_id() == cluster_id
    topics = broker.admin().list_topics(timeout=10).topics
    assert len(topics["results"].partitions) == 8
    assert sorted(_consume_all(broker, "results", N_MESSAGES)) == list(range(N_MESSAGES))


def test_second_broker_on_same_ports_fails_clearly(broker: KafkaBroker, tmp_path: Path):
    other = KafkaBroker(tmp_path, broker.port, free_port())
    with pytest.raises(KafkaBrokerError, match=f"port {broker.port} .* already in use"):
        other.start(timeout_s=10)
    assert broker.healthy()


def test_stop_leaves_no_process(broker: KafkaBroker, tmp_path: Path):
    # reuse the jars the module's broker fetched: this test is about processes, not Maven
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "libs").symlink_to(broker.libs_dir, target_is_directory=True)
    broker = _start_broker(tmp_path)
    assert broker.jars_complete()
    config = str(broker.config_path)
    assert _processes_mentioning(config)
    # a second object for the same home (e.g. `stack down` in another process) stops it
    KafkaBroker(tmp_path, broker.port, broker.controller_port).stop(timeout_s=30)
    assert _processes_mentioning(config) == []
    assert not broker.is_running()
    broker.stop()  # idempotent


def test_stack_redis_keeps_data_across_down_and_up(tmp_path: Path):
    from whoiscrawl.settings import Settings
    from whoiscrawl.devtools.stack import Stack

    settings = Settings({"HOME": str(tmp_path), "REDIS_PORT": free_port()}, environ={})
    redis_service = Stack(settings, out=lambda line: None).service("redis")
    try:
        redis_service.start()
    except MissingDependency as exc:
        pytest.skip(str(exc))
    try:
        pid = redis_service.pidfile.live_pid()
        assert pid is not None and redis_service.healthy()
        import redis

        creds = Stack(settings, out=lambda line: None).credentials
        with pytest.raises(redis.AuthenticationError):  # no login, no entry
            redis.Redis(host="127.0.0.1", port=redis_service.port).ping()
        conn = redis.Redis(host="127.0.0.1", port=redis_service.port, username="crawl", password=creds.redis_crawl)
        conn.set("whoiscrawl:kept", "yes")
        conn.close()
        assert redis_service.stop(timeout_s=15) is True
        assert PidFile.argv(pid) is None and not redis_service.healthy(timeout_s=0.5)
        redis_service.start()
        conn = redis.Redis(host="127.0.0.1", port=redis_service.port, username="crawl", password=creds.redis_crawl)
        assert conn.get("whoiscrawl:kept") == b"yes"
        conn.close()
    finally:
        redis_service.stop(timeout_s=15)


# --- the whole stack through its command line ----------------------------------------------

def _simulator_available() -> bool:
    try:
        return importlib.util.find_spec("whoiscrawl.simulator.__main__") is not None
    except ImportError:
        return False


def _run_stack(env: dict[str, str], *args: str, timeout_s: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "whoiscrawl.devtools.stack", *args], env=env,
                          capture_output=True, text=True, timeout=timeout_s)


@pytest.mark.skipif(not _simulator_available(), reason="the registry simulator (whoiscrawl.simulator) is not there yet")
def test_stack_up_status_down(tmp_path: Path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHOISCRAWL_")}
    base = free_port()
    env.update({
        "WHOISCRAWL_HOME": str(home),
        "WHOISCRAWL_BIND_HOST": "127.0.0.1",
        "WHOISCRAWL_REDIS_PORT": str(free_port()),
        "WHOISCRAWL_KAFKA_PORT": str(free_port()),
        "WHOISCRAWL_KAFKA_CONTROLLER_PORT": str(free_port()),
        # the simulator takes six ports from its base; pick a base whose next five look free too
        "WHOISCRAWL_SIM_BASE_PORT": str(base),
    })
    try:
        up = _run_stack(env, "up", "--sim-scale", "0.01")
        if up.returncode != 0 and "apt-get install" in up.stderr:
            pytest.skip(up.stderr.strip())
        assert up.returncode == 0, up.stdout + up.stderr
        status = _run_stack(env, "status", timeout_s=60)
        assert status.returncode == 0, status.stdout + status.stderr
        lines = status.stdout.splitlines()
        assert [line.split()[0] for line in lines] == ["redis", "kafka", "simulator"]
        assert all(line.rstrip().endswith("healthy") for line in lines)

        env_file = (home / "airflow-connections.env").read_text()
        assert f"@127.0.0.1:{env['WHOISCRAWL_REDIS_PORT']}/0" in env_file
        assert (home / "airflow-connections.env").stat().st_mode & 0o777 == 0o600
        assert f'"bootstrap.servers":"127.0.0.1:{env["WHOISCRAWL_KAFKA_PORT"]}"' in env_file
        url = next(line.split("=", 1)[1] for line in env_file.splitlines()
                   if line.startswith("WHOISCRAWL_SIM_BOOTSTRAP_URL="))
        with urllib.request.urlopen(url.strip("'"), timeout=10) as response:
            assert response.status == 200
            assert "services" in json.loads(response.read())

        again = _run_stack(env, "up", "--sim-scale", "0.01", timeout_s=120)
        assert again.returncode == 0, again.stdout + again.stderr
        assert again.stdout.count("already running") == 3

        pids = [int(line.split()[1]) for line in lines]
    finally:
        down = _run_stack(env, "down", timeout_s=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert all(PidFile.argv(pid) is None for pid in pids)
    assert _processes_mentioning(str(home)) == []
    status = _run_stack(env, "status", timeout_s=60)
    assert status.returncode == 1
