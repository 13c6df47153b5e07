"""DAG Params reach only configured folders and origins; crawl processes take only allowlisted Kafka keys from Redis.

The task-level tests run the DAG's real task functions against a real Redis: a refused Param must fail
before the task touches Redis or the disk, and a forged cluster config must fail before a Kafka client exists.
"""

from __future__ import annotations

import json
import os

import pytest

from whoiscrawl.crawl import runstate
from whoiscrawl.crawl.config import RunConfig
from whoiscrawl.crawl.netindex import KnownNetworkIndex
from whoiscrawl.crawl.stats import StatsCollector
from whoiscrawl.orchestration import tasks
from whoiscrawl.orchestration.confinement import ParamRefused, confine_params
from whoiscrawl.orchestration.connections import KafkaConfigRefused, cluster_kafka_config, worker_kafka_config
from whoiscrawl.settings import Settings


@pytest.fixture
def settings(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "seeds").mkdir(parents=True)
    for name in [k for k in os.environ if k.startswith("WHOISCRAWL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("WHOISCRAWL_HOME", str(home))
    monkeypatch.setenv("WHOISCRAWL_BOOTSTRAP_URL_ALLOWLIST", "http://127.0.0.1:18080")
    return Settings()


@pytest.mark.parametrize("param, value", [
    ("seed", "/etc/passwd"), ("seed", "../../etc/passwd"), ("seed", "~/x"),
    ("output_dir", "/tmp"), ("output_dir", "../seeds"),
    ("bootstrap", "/etc/passwd"), ("bootstrap", "http://169.254.169.254/latest/meta-data/"),
    ("bootstrap", "http://127.0.0.1:18081/bootstrap.json"), ("bootstrap", "file:///etc/passwd"),
    ("bootstrap", "ftp://example.org/x.json"),
    ("delegated_urls", "arin=http://169.254.169.254/latest/meta-data/"),
    ("delegated_urls", "lacnic=https://ftp.lacnic.net/x,arin=file:///etc/passwd"),
])
def test_params_outside_the_base_folders_or_allowlist_are_refused_naming_the_param(settings, param, value):
    with pytest.raises(ParamRefused) as caught:
        confine_params({param: value}, settings)
    assert caught.value.param == param
    assert f"Param {param!r}" in str(caught.value)


def test_a_symlink_out_of_the_seed_folder_is_refused(settings, tmp_path):
    (settings.seed_base_dir / "innocent.txt").symlink_to("/etc/passwd")
    with pytest.raises(ParamRefused, match="seed"):
        confine_params({"seed": "innocent.txt"}, settings)


def test_params_inside_the_base_folders_and_allowed_urls_pass_resolved(settings):
    (settings.seed_base_dir / "mine.txt").write_text("1.1.1.1\n")
    checked = confine_params({"seed": "mine.txt", "output_dir": str(settings.output_base_dir / "a"),
                              "bootstrap": "http://127.0.0.1:18080/bootstrap/ipv4.json", "limit": 3}, settings)
    assert checked["seed"] == str((settings.seed_base_dir / "mine.txt").resolve())
    assert checked["output_dir"] == str((settings.output_base_dir / "a").resolve())
    assert checked["limit"] == 3
    assert confine_params({"bootstrap": "https://data.iana.org/rdap/ipv4.json"}, settings)["bootstrap"]
    assert confine_params({"seed": "classic", "bootstrap": ""}, settings)["seed"] == "classic"
    delegated = "arin=http://127.0.0.1:18080/pub/x,ripencc=https://ftp.ripe.net/y,lacnic="
    assert confine_params({"delegated_urls": delegated}, settings)["delegated_urls"] == delegated


def test_prepare_seed_refuses_etc_passwd_before_any_io(settings, monkeypatch):
    """The seed Param that once returned /etc/passwd's lines in the XCom: refused before Redis or the disk."""
    monkeypatch.setenv("WHOISCRAWL_REDIS_URL", "redis://127.0.0.1:1/0")  # touching Redis would be a ConnectionError
    with pytest.raises(ParamRefused, match="'seed'"):
        tasks.prepare_seed({"seed": "/etc/passwd", "chunks": 1}, "manual__passwd")
    assert not settings.output_base_dir.exists()  # nothing written either


def test_prepare_seed_keeps_invalid_lines_out_of_the_xcom(settings, redis_flush, monkeypatch):
    monkeypatch.setenv("WHOISCRAWL_REDIS_URL", redis_flush.url)
    (settings.seed_base_dir / "list.txt").write_text("1.1.1.1\nsecretuser:x:0:0:Secret:/home/q:/bin/sh\n8.8.8.8\n")
    xcom = tasks.prepare_seed({"seed": "list.txt", "chunks": 1, "limit": None}, "manual__list")
    assert xcom["seed"]["invalid"] == 1
    assert xcom["seed"]["invalid_examples"] == [{"line_no": 2, "length": 39, "reason": "not an IPv4 address"}]
    assert "secretuser" not in json.dumps(xcom)


def test_the_cluster_config_carries_no_credentials():
    own = {"bootstrap.servers": "10.0.0.1:9092", "security.protocol": "SASL_PLAINTEXT",
           "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "crawl", "sasl.password": "s3cret"}
    published = cluster_kafka_config(own)
    assert "sasl.password" not in published and "sasl.username" not in published
    assert worker_kafka_config(published, own) == own


@pytest.mark.parametrize("cluster, match", [
    ({"bootstrap.servers": "h:9092", "plugin.library.paths": "/tmp/evil.so"}, "plugin.library.paths"),
    ({"bootstrap.servers": "h:9092", "sasl.password": "x"}, "sasl.password"),
    ({"bootstrap.servers": "h:9092", "sasl.mechanism": "PLAIN"}, "PLAIN"),
    ({"bootstrap.servers": "h:9092", "security.protocol": "SASL_PLAINTEXT", "ssl.ca.location": "/x"}, "ssl.ca"),
    ({"bootstrap.servers": "not a server"}, "host:port"),
    ({}, "bootstrap.servers"),
    ("junk", "bootstrap.servers"),
])
def test_a_crawl_process_refuses_kafka_keys_outside_the_allowlist(cluster, match):
    with pytest.raises(KafkaConfigRefused, match=match):
        worker_kafka_config(cluster, {"sasl.username": "crawl", "sasl.password": "s3cret"})


def test_crawl_chunk_refuses_a_forged_cluster_config_before_making_a_kafka_client(settings, redis_flush, monkeypatch):
    monkeypatch.setenv("WHOISCRAWL_REDIS_URL", redis_flush.url)
    monkeypatch.setenv("WHOISCRAWL_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    master = redis_flush.client()
    key = "forged"
    runstate.write_config(master, {"kafka": {"bootstrap.servers": "127.0.0.1:1",
                                             "plugin.library.paths": "/tmp/evil.so"}}, key,
                          {"run_config": RunConfig().as_dict(), "bootstrap": {"document": {"services": []}, "source": "x"}})
    with pytest.raises(KafkaConfigRefused, match="plugin.library.paths"):
        tasks.crawl_chunk({"run": key, "chunk": 0})


def test_one_whole_space_range_in_the_index_log_does_not_make_the_crawl_skip_everything(redis_flush):
    master = redis_flush.client()
    master.append("whoiscrawl:test:known:log", (0).to_bytes(4, "big") + ((1 << 32) - 1).to_bytes(4, "big"))
    master.append("whoiscrawl:test:known:log", (0x01010100).to_bytes(4, "big") + (0x010101FF).to_bytes(4, "big"))
    stats = StatsCollector()
    index = KnownNetworkIndex(master, key="whoiscrawl:test:known", stats=stats)
    index.sync()
    assert index.contains_many([0x08080808, 0x01010101]).tolist() == [False, True]
    assert stats["index/all/refused_range"] == 1
    index.add_many([(0, (1 << 24) - 1), (0, 1 << 24)])  # a /8 is kept; one address more is not
    assert index.contains(5) and stats["index/all/refused_range"] == 2
