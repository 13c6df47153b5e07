"""The EC2 provider's pure parts: options, user-data, group rules, the wait for workers, the boot's environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from whoiscrawl.orchestration.fleet import FleetError
from whoiscrawl.orchestration.fleet import celery as celery_fleet
from whoiscrawl.orchestration.fleet.ec2 import Ec2Options, Ec2Provider, builder_user_data, worker_user_data
from whoiscrawl.orchestration.fleet.worker_boot import (celery_hostname, own_address, read_join_file, replica_server,
                                                        worker_env)
from whoiscrawl.settings import Settings

PARAMS = {"run": "r1", "ec2_coordinator": "10.1.2.3", "ec2_base_ami_id": "ami-1", "ec2_project_url": "https://x/p.tgz"}


def test_options_default_what_is_optional_and_check_the_rest():
    opts = Ec2Options.from_params({**PARAMS, "ec2_region": None, "ec2_subnet_id": ""})
    assert (opts.region, opts.workers, opts.subnet_id, opts.keep_ami) == ("us-east-1", 2, None, False)
    with pytest.raises(FleetError, match="ec2_workers=0.*ec2_max_price=0"):
        Ec2Options.from_params({**PARAMS, "ec2_workers": 0, "ec2_max_price": 0})


def test_the_worker_user_data_has_nothing_per_host():
    settings = Settings({"REDIS_PORT": 1111, "REPLICA_PORT": 2222}, environ={})
    script = worker_user_data(Ec2Options.from_params(PARAMS), settings)
    assert script.startswith("#!/bin/bash\n")
    assert "--coordinator 10.1.2.3 --redis-port 1111 --replica-port 2222" in script
    assert "/opt/whoiscrawl/.venv/bin/python -m whoiscrawl.orchestration.fleet.worker_boot" in script
    builder = builder_user_data(Ec2Options.from_params(PARAMS))
    assert "https://x/p.tgz" in builder and builder.rstrip().endswith("poweroff")


def test_the_group_admits_only_itself_and_the_coordinator():
    settings = Settings({"REDIS_PORT": 1, "KAFKA_PORT": 2, "POSTGRES_PORT": 3, "AIRFLOW_API_PORT": 4,
                         "WORKER_LOG_PORT": 5}, environ={})
    rules = Ec2Provider(settings).ingress_rules("sg-1", "10.1.2.3")
    assert [r["FromPort"] for r in rules] == [1, 2, 3, 4, 5]
    for rule in rules:
        assert [r["CidrIp"] for r in rule["IpRanges"]] == ["10.1.2.3/32"]
        assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == ["sg-1"]


STATE = {"kind": "ec2", "workers": [{"id": "i-1", "address": "10.0.0.5"}, {"id": "i-2", "address": "10.0.0.6"}],
         "ready_wait_s": 60, "poll_s": 0}


def test_workers_are_ready_when_every_one_answers_celery(monkeypatch):
    answers = iter([{}, {celery_hostname("10.0.0.5"): ["whoiscrawl"]},
                    {celery_hostname("10.0.0.5"): ["whoiscrawl"], celery_hostname("10.0.0.6"): ["whoiscrawl"]}])
    monkeypatch.setattr(celery_fleet, "celery_workers", lambda: next(answers))
    assert Ec2Provider().workers_ready(STATE) == {"hosts": ["whoiscrawl-10-0-0-5@10.0.0.5",
                                                            "whoiscrawl-10-0-0-6@10.0.0.6"]}


def test_a_worker_that_never_answers_is_named(monkeypatch):
    monkeypatch.setattr(celery_fleet, "celery_workers", lambda: {celery_hostname("10.0.0.5"): ["whoiscrawl"]})
    with pytest.raises(FleetError, match=r"after 0 s: i-2 \(whoiscrawl-10-0-0-6@10.0.0.6\)"):
        Ec2Provider().workers_ready({**STATE, "ready_wait_s": 0})


def test_the_boot_takes_the_published_config_and_adds_only_what_is_its_own(tmp_path: Path):
    config = {"env": {"AIRFLOW__CELERY__BROKER_URL": "redis://10.1.2.3:1/1"}, "queue": "whoiscrawl", "concurrency": 2}
    env = worker_env(config, "10.0.0.5", 2222, tmp_path)
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://10.1.2.3:1/1"
    assert env["WHOISCRAWL_REDIS_REPLICA_URL"] == "redis://127.0.0.1:2222/0"
    assert env["WHOISCRAWL_HOST_ADDRESS"] == "10.0.0.5" and env["WHOISCRAWL_HOST_ID"] == "whoiscrawl-10-0-0-5"
    assert own_address("127.0.0.1", 9) == "127.0.0.1"
    lines = replica_server(config, "10.1.2.3", 1, 2222, tmp_path).config_lines()
    assert "replicaof 10.1.2.3 1" in lines and "bind 127.0.0.1" in lines
    assert not any(line.startswith(("user ", "masterauth")) for line in lines)  # a cluster without logins


def test_the_boot_gives_its_replica_the_published_logins_and_keeps_them_private(tmp_path: Path):
    config = {"env": {}, "queue": "q", "concurrency": 1, "redis": {"crawl": "c-pw", "replica": "r-pw"},
              "settings": {"BOOTSTRAP_URL_ALLOWLIST": "http://10.1.2.3:8", "REDIS_URL": "redis://elsewhere"}}
    server = replica_server(config, "10.1.2.3", 1, 2222, tmp_path / "redis")
    lines = server.config_lines()
    assert "masteruser replica" in lines and "masterauth r-pw" in lines
    assert any(line.startswith("user crawl on >c-pw ~whoiscrawl:*") or
               (line.startswith("user crawl on >c-pw") and "~whoiscrawl:*" in line) for line in lines)
    assert "user default off resetpass resetkeys resetchannels -@all" in lines
    admin = next(line for line in lines if line.startswith("user admin on >"))
    other = replica_server(config, "10.1.2.3", 1, 2222, tmp_path / "other").config_lines()
    assert admin not in other  # the local admin password is made per boot
    path = server.write_config()
    assert path.stat().st_mode & 0o777 == 0o600
    env = worker_env(config, "10.0.0.5", 2222, tmp_path)
    assert env["WHOISCRAWL_BOOTSTRAP_URL_ALLOWLIST"] == "http://10.1.2.3:8"
    assert env.get("WHOISCRAWL_REDIS_URL") != "redis://elsewhere"  # only the confinement settings are taken
    join = tmp_path / "join.json"
    join.write_text('{"user": "celery", "password": "b-pw"}')
    assert read_join_file(join) == ("celery", "b-pw") and read_join_file(None) is None
