"""The fleet's pieces that need no root: names and addresses, the shared Airflow config, secrets, pidfiles."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest

from whoiscrawl.orchestration.fleet import FLEET_KINDS, FleetError, provider_for
from whoiscrawl.orchestration.hostname import host_address
from whoiscrawl.devtools.celery_env import CELERY_BROKER_DB, CELERY_QUEUE, FleetSecrets, celery_env
from whoiscrawl.devtools.namespace_fleet import LocalFleet, ManagedProcess
from whoiscrawl.devtools.netns import FleetNetwork, NetworkError
from whoiscrawl.settings import Settings


def test_names_and_addresses_derive_from_the_fleet_id_and_subnet(tmp_path: Path):
    net = FleetNetwork("wc", "10.213.0.0/24", tmp_path / "network.json")
    assert (net.bridge, net.bridge_address) == ("wc-br", "10.213.0.1")
    h1, h3 = net.host(1), net.host(3)
    assert (h1.netns, h1.veth, h1.peer, h1.address) == ("wc-h1", "wc-h1", "wc-h1p", "10.213.0.2")
    assert h3.address == "10.213.0.4"
    assert h1.exec_prefix()[-3:] == ["netns", "exec", "wc-h1"]
    longest = FleetNetwork("abcdefgh", "10.0.0.0/16", tmp_path / "n2.json")
    assert len(longest.host(longest.max_hosts).peer) <= 15  # Linux interface names: 15 characters at most
    with pytest.raises(NetworkError):
        net.host(net.max_hosts + 1)
    with pytest.raises(NetworkError):
        net.host(0)


@pytest.mark.parametrize("fleet_id,subnet", [
    ("WC", "10.213.0.0/24"),          # upper case
    ("toolong99", "10.213.0.0/24"),   # 9 characters
    ("w-c", "10.213.0.0/24"),         # a dash would blur the name scheme
    ("wc", "8.8.8.0/24"),             # not private: traffic must stay on this machine
    ("wc", "10.213.0.0/30"),          # too small for a bridge and hosts
    ("wc", "10.213.0.1/24"),          # host bits set
])
def test_bad_fleet_ids_and_subnets_are_refused(tmp_path: Path, fleet_id: str, subnet: str):
    with pytest.raises(NetworkError):
        FleetNetwork(fleet_id, subnet, tmp_path / "network.json")


def test_nothing_is_recorded_before_it_is_created(tmp_path: Path):
    net = FleetNetwork("wc", "10.213.0.0/24", tmp_path / "network.json")
    assert net.recorded_hosts() == []
    assert net.remove_host(1) is False  # not ours: untouched, whatever exists under that name


def test_every_process_of_a_fleet_shares_one_configuration(tmp_path: Path):
    settings = Settings({"HOME": str(tmp_path)}, environ={})
    secrets = FleetSecrets.generate()
    coordinator = celery_env(settings, "10.213.0.1", secrets, tmp_path / "c")
    worker = celery_env(settings, "10.213.0.1", secrets, tmp_path / "w")
    shared = ["AIRFLOW__CORE__EXECUTOR", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__BROKER_URL",
              "AIRFLOW__CELERY__RESULT_BACKEND", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
              "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__OPERATORS__DEFAULT_QUEUE"]
    assert {k: coordinator[k] for k in shared} == {k: worker[k] for k in shared}
    assert coordinator["AIRFLOW_HOME"] != worker["AIRFLOW_HOME"]
    assert coordinator["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert coordinator["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] == CELERY_QUEUE
    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not installed: name the driver
    assert coordinator["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert coordinator["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
    assert coordinator["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"].startswith("postgresql+asyncpg://")
    # Celery's queues live apart from the crawl's state (db 0)
    assert CELERY_BROKER_DB != 0
    assert coordinator["AIRFLOW__CELERY__BROKER_URL"].endswith(f"/{CELERY_BROKER_DB}")
    assert f":{settings.POSTGRES_PORT}/" in coordinator["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert coordinator["AIRFLOW__CORE__HOSTNAME_CALLABLE"] == "whoiscrawl.orchestration.hostname.host_address"


def test_secrets_are_created_once_readable_only_by_their_owner(tmp_path: Path):
    path = tmp_path / "fleet" / "secrets.json"
    first = FleetSecrets.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert FleetSecrets.load_or_create(path) == first
    assert FleetSecrets.generate() != first


def test_hosts_get_their_replica_and_name_and_no_foreign_airflow_settings(tmp_path: Path, monkeypatch):
    # a shell that sourced the plain stack's connections must not leak them into the fleet
    monkeypatch.setenv("AIRFLOW_CONN_REDIS_DEFAULT", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    local = LocalFleet(Settings({"HOME": str(tmp_path), "FLEET_ID": "wu", "FLEET_SUBNET": "10.213.9.0/24",
                                 "REPLICA_PORT": 16390}, environ={}), out=lambda _t: None)
    worker = local.worker_env(2)
    assert worker["WHOISCRAWL_REDIS_REPLICA_URL"] == "redis://127.0.0.1:16390/0"
    assert worker["WHOISCRAWL_HOST_ID"] == "wu-h2"
    assert worker["WHOISCRAWL_HOST_ADDRESS"] == "10.213.9.3"
    assert worker["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert "AIRFLOW_CONN_REDIS_DEFAULT" not in worker  # workers get connections from the api-server
    coordinator = local.coordinator_env()
    assert coordinator["AIRFLOW_CONN_REDIS_DEFAULT"].startswith("redis://crawl:")
    assert "@10.213.9.1:" in coordinator["AIRFLOW_CONN_REDIS_DEFAULT"]
    # the Celery broker logs in as its own user; no worker gets the crawl's or the admin's Redis password
    creds = local.credentials()
    assert f"redis://celery:{creds.redis_celery}@10.213.9.1:" in worker["AIRFLOW__CELERY__BROKER_URL"]
    assert not {creds.redis_admin, creds.redis_crawl, creds.redis_replica, creds.kafka_admin} & set(worker.values())
    assert coordinator["WHOISCRAWL_BIND_HOST"] == "10.213.9.1"
    assert coordinator["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] == "False"


def test_a_pidfile_names_our_process_only_while_its_start_time_matches(tmp_path: Path):
    proc = ManagedProcess("sleeper", tmp_path / "run" / "sleeper.pid", tmp_path / "logs" / "sleeper.log")
    pid = proc.start([sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ), tmp_path)
    try:
        assert proc.live_pid() == pid
        assert os.getpgid(pid) == pid  # its own group: stop() reaches all it started
        real = proc.pidfile.read_text()
        proc.pidfile.write_text(f"{pid} {int(real.split()[1]) + 1}\n")  # the same pid, another process
        assert proc.live_pid() is None
        assert proc.stop(timeout_s=1) is False  # not ours any more: left alone
        assert ManagedProcess.start_time(pid) is not None
        proc.pidfile.write_text(real)
        started = time.monotonic()
        assert proc.stop(timeout_s=10) is True
        assert time.monotonic() - started < 10
        assert ManagedProcess.start_time(pid) is None  # gone, or a zombie: not alive either way
        assert not proc.pidfile.exists()
    finally:
        try:
            os.killpg(pid, 9)
        except ProcessLookupError:
            pass


def test_fleet_kinds_and_teardown():
    assert "celery" in FLEET_KINDS
    assert provider_for("celery").teardown({"kind": "celery", "hosts": ["a@x"], "launched": []}) == {"released": []}
    with pytest.raises(FleetError):
        provider_for("nope")


def test_host_address_is_the_configured_address_else_the_hostname(monkeypatch):
    monkeypatch.setenv("WHOISCRAWL_HOST_ADDRESS", "10.213.0.7")
    assert host_address() == "10.213.0.7"
    monkeypatch.delenv("WHOISCRAWL_HOST_ADDRESS")
    import socket

    assert host_address() == socket.gethostname()
