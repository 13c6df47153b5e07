"""Fleet providers: one interface per kind, state that survives an XCom, a bounded wait, a release on failure."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from whoiscrawl.orchestration.fleet import FLEET_KINDS, PROVIDERS, FleetError, FleetProvider, bring_up, provider_for
from whoiscrawl.orchestration.fleet import celery as celery_fleet


def test_every_kind_has_a_provider_of_that_kind():
    assert FLEET_KINDS == ("local", "celery", "ec2")
    for kind in FLEET_KINDS:
        provider = provider_for(kind)
        assert isinstance(provider, FleetProvider) and provider.kind == kind
    assert set(PROVIDERS) == set(FLEET_KINDS)


def test_an_unknown_kind_names_the_known_ones():
    with pytest.raises(FleetError, match="'ec9'.*local, celery, ec2"):
        provider_for("ec9")


def test_the_local_fleet_is_this_machine_and_releases_nothing_however_often():
    local = provider_for("local")
    state = json.loads(json.dumps(local.provision({"fleet": "local"})))  # as an XCom carries it
    assert state["kind"] == "local"
    assert local.workers_ready(state) == {"hosts": [socket.gethostname()]}
    assert local.teardown(state) == local.teardown(state) == {"released": []}


def test_the_celery_fleet_waits_on_the_configured_queue(monkeypatch):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_QUEUE", "whoiscrawl")
    state = provider_for("celery").provision({"celery_wait_s": 7})
    assert state == {"kind": "celery", "queue": "whoiscrawl", "wait_s": 7.0}
    assert json.loads(json.dumps(state)) == state


def test_celery_workers_are_ready_only_on_the_tasks_queue(monkeypatch):
    answers = iter([{}, {"w2@h2": ["other"]}, {"w2@h2": ["other"], "w1@h1": ["default", "whoiscrawl"]}])
    monkeypatch.setattr(celery_fleet, "celery_workers", lambda: next(answers))
    monkeypatch.setattr(celery_fleet.time, "sleep", lambda _s: None)
    ready = provider_for("celery").workers_ready({"kind": "celery", "queue": "whoiscrawl", "wait_s": 60})
    assert ready == {"hosts": ["w1@h1"]}


def test_celery_workers_on_other_queues_end_the_wait_with_a_clear_error(monkeypatch):
    monkeypatch.setattr(celery_fleet, "celery_workers", lambda: {"w2@h2": ["other"]})
    with pytest.raises(FleetError, match=r"queue 'whoiscrawl' after 0 s; workers answering but on other "
                                         r"queues: \{'w2@h2': \['other'\]\}"):
        provider_for("celery").workers_ready({"kind": "celery", "queue": "whoiscrawl", "wait_s": 0})


class Recorder(FleetProvider):
    """A provider that launches nothing and notes each call, in order."""

    kind = "recorder"

    def __init__(self, answers: bool) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def provision(self, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("provision")
        return {"kind": self.kind, "instance_ids": ["i-1"]}

    def workers_ready(self, state: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("workers_ready")
        if not self.answers:
            raise FleetError("no worker answered")
        return {"hosts": ["h1"]}

    def teardown(self, state: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("teardown")
        return {"released": state["instance_ids"]}


def test_bring_up_records_the_state_before_the_wait():
    provider = Recorder(answers=True)
    recorded = []
    result = bring_up(provider, {}, record=lambda s: (recorded.append(s), provider.calls.append("record")))
    assert provider.calls == ["provision", "record", "workers_ready"]
    assert recorded == [{"kind": "recorder", "instance_ids": ["i-1"]}]
    assert result == {"kind": "recorder", "instance_ids": ["i-1"], "hosts": ["h1"]}


def test_bring_up_releases_what_it_launched_when_no_worker_answers():
    provider = Recorder(answers=False)
    with pytest.raises(FleetError, match="no worker answered"):
        bring_up(provider, {}, record=lambda _s: None)
    assert provider.calls == ["provision", "workers_ready", "teardown"]
