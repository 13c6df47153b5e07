"""The run config: typed, frozen, strict on what it reads back, the same document on every host."""

import dataclasses

import pytest

from whoiscrawl.crawl.config import ConfigError, RunConfig


def test_it_round_trips_through_json_and_is_frozen():
    cfg = RunConfig(rate_limits="lacnic=5/60", http_timeout_s=2, results_topic="r2")
    back = RunConfig.from_json(cfg.to_json())
    assert back == cfg and isinstance(back.http_timeout_s, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.max_attempts = 9  # type: ignore[misc]


def test_a_worker_environment_cannot_change_a_run_it_reads(monkeypatch):
    cfg = RunConfig(results_topic="results")
    monkeypatch.setenv("WHOISCRAWL_KAFKA_RESULTS_TOPIC", "elsewhere")
    assert RunConfig.from_env().results_topic == "elsewhere"  # the coordinator's environment counts...
    assert RunConfig.from_json(cfg.to_json()).results_topic == "results"  # ...a worker's does not


def test_bad_values_are_refused_with_the_field_named():
    with pytest.raises(ConfigError, match="max_attempts"):
        RunConfig(max_attempts=0)
    with pytest.raises(ConfigError, match="rate_limits"):
        RunConfig(rate_limits="lacnic=fast")
    with pytest.raises(ConfigError, match="http_timeout_s"):
        RunConfig.from_values({"http_timeout_s": "soon"})
    with pytest.raises(ConfigError, match="expected int"):
        RunConfig(max_attempts=True)


def test_a_config_written_by_other_code_is_refused():
    with pytest.raises(ConfigError, match="lacks"):
        RunConfig.from_json('{"max_attempts": 3}')
    doc = RunConfig().as_dict() | {"surprise": 1}
    with pytest.raises(ConfigError, match="unknown field"):
        RunConfig.from_values(doc)


def test_params_override_the_environment_and_empty_params_do_not():
    env = {"WHOISCRAWL_RATE_LIMITS": "arin=5/1"}
    assert RunConfig.from_env({"rate_limits": ""}, environ=env).rate_limits == "arin=5/1"
    assert RunConfig.from_env({"rate_limits": "arin=7/1"}, environ=env).rate_limits == "arin=7/1"
