"""Redis and Kafka endpoints: a setting, else the Airflow connection; the local stack only when the CLI asks."""

from __future__ import annotations

import json

import pytest

from whoiscrawl.orchestration.connections import ConnectionMissing, kafka_config, master_url
from whoiscrawl.settings import Settings


@pytest.fixture
def no_connections(monkeypatch, tmp_path):
    """Airflow with neither connection defined (nor one a developer's shell exported)."""
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    for name in ("AIRFLOW_CONN_REDIS_DEFAULT", "AIRFLOW_CONN_KAFKA_DEFAULT"):
        monkeypatch.delenv(name, raising=False)
    return Settings(environ={})


def test_a_missing_redis_connection_is_an_error_that_names_it(no_connections):
    with pytest.raises(ConnectionMissing) as err:
        master_url(no_connections)
    assert err.value.conn_id == "redis_default"
    message = str(err.value)
    assert "'redis_default'" in message and "AIRFLOW_CONN_REDIS_DEFAULT" in message
    assert "WHOISCRAWL_REDIS_URL" in message


def test_a_missing_kafka_connection_is_an_error_that_names_it(no_connections):
    with pytest.raises(ConnectionMissing) as err:
        kafka_config(no_connections)
    assert err.value.conn_id == "kafka_default"
    message = str(err.value)
    assert "'kafka_default'" in message and "AIRFLOW_CONN_KAFKA_DEFAULT" in message
    assert "WHOISCRAWL_KAFKA_BOOTSTRAP_SERVERS" in message


def test_the_cli_falls_back_to_the_local_stack(no_connections):
    local = Settings({"BIND_HOST": "127.0.0.9", "REDIS_PORT": 16001, "KAFKA_PORT": 19001}, environ={})
    assert master_url(local, local_fallback=True) == "redis://127.0.0.9:16001/0"
    assert kafka_config(local, local_fallback=True) == {"bootstrap.servers": "127.0.0.9:19001"}


def test_a_defined_connection_wins_over_the_fallback(no_connections, monkeypatch):
    # as `whoiscrawl stack up` writes them; the Redis database number lives in the extra
    monkeypatch.setenv("AIRFLOW_CONN_REDIS_DEFAULT", json.dumps(
        {"conn_type": "redis", "host": "redis.example", "port": 6390, "password": "pw", "extra": {"db": 2}}))
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT", json.dumps(
        {"conn_type": "kafka", "extra": {"bootstrap.servers": "kafka.example:9092", "client.id": "wc"}}))
    assert master_url(no_connections, local_fallback=True) == "redis://:pw@redis.example:6390/2"
    assert kafka_config(no_connections, local_fallback=True) == {"bootstrap.servers": "kafka.example:9092",
                                                                 "client.id": "wc"}


def test_the_settings_win_over_any_connection(no_connections):
    given = Settings({"REDIS_URL": "redis://r.example:1/4", "KAFKA_BOOTSTRAP_SERVERS": "k.example:2"}, environ={})
    assert master_url(given) == "redis://r.example:1/4"
    assert kafka_config(given) == {"bootstrap.servers": "k.example:2"}
