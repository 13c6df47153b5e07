"""`whoiscrawl crawl` turns its flags and --param NAME=VALUE into the DAG run's Params (values as JSON when
they parse); flags not given are left out so the DAG's defaults apply."""

from __future__ import annotations

import pytest

from whoiscrawl import cli
from whoiscrawl.devtools import demo


@pytest.fixture
def captured(monkeypatch):
    got = []
    monkeypatch.setattr(demo, "run_crawl", lambda params: got.append(params) or 0)
    return got


def test_flags_and_params_become_the_runs_params(captured):
    assert cli.main(["crawl", "--seed", "seed.txt", "--bootstrap", "http://127.0.0.1:1/b.json", "--limit", "50",
                     "--param", "limit=null", "--param", "strategy=breadth", "--param", "chunks=3"]) == 0
    assert captured == [{"seed": "seed.txt", "bootstrap": "http://127.0.0.1:1/b.json", "limit": None,
                         "strategy": "breadth", "chunks": 3}]


def test_no_flags_keep_the_dags_defaults(captured):
    assert cli.main(["crawl"]) == 0
    assert captured == [{}]


def test_a_param_without_a_value_is_refused(captured):
    with pytest.raises(SystemExit):
        cli.main(["crawl", "--param", "limit"])
    assert captured == []
