"""Fuzz the classifier and the parser with mutated real answers: nothing raises, every outcome is a result.

Hypothesis mutates the real fixtures (replace any value with any JSON value, drop keys, nest deeply)
and the client's classification of the body (the same code a live lookup runs) must return Ok,
Retry, Throttle or Fail, and an Ok record must be what the pipeline expects (text where text is
queried, JSON-serialisable). Bounded: 250 examples, about 15 s on a shared machine.
"""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from whoiscrawl.crawl import ipspace
from whoiscrawl.crawl.bootstrap import Bootstrap
from whoiscrawl.crawl.rdap_client import Fail, Ok, RdapClient, Retry, Throttle
from whoiscrawl.crawl.stats import StatsCollector

FIXTURES = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "rdap").rglob("*.json"))
BODIES = [json.loads(p.read_text()) for p in FIXTURES]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def _paths(value, max_depth: int = 12):
    """Paths to every value of a document, down to ``max_depth`` (an earlier nesting mutation goes deeper)."""
    stack = [((), value)]
    while stack:
        prefix, node = stack.pop()
        yield prefix
        if len(prefix) >= max_depth:
            continue
        if isinstance(node, dict):
            stack.extend((prefix + (k,), v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((prefix + (i,), v) for i, v in enumerate(node))


def _set(doc, path, new):
    if not path:
        return new
    node = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = new
    return doc


@st.composite
def mutated(draw):
    body = json.loads(json.dumps(draw(st.sampled_from(BODIES))))
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(body))
        path = draw(st.sampled_from(paths))
        how = draw(st.sampled_from(["replace", "drop", "nest", "stringify"]))
        if how == "drop" and path:
            parent = body
            for step in path[:-1]:
                parent = parent[step]
            del parent[path[-1]]
            continue
        node = body
        for step in path:
            node = node[step]
        if how == "nest":
            new = node
            for _ in range(draw(st.integers(50, 400))):
                new = [new]
        elif how == "stringify":
            try:
                new = json.dumps(node)
            except RecursionError:
                new = "deep"
        else:
            new = draw(json_values)
        body = _set(body, path, new)
    return body


def _query_for(body) -> int:
    start = body.get("startAddress") if isinstance(body, dict) else None
    try:
        return ipspace.to_int(str(start).split("/")[0])
    except Exception:  # noqa: BLE001 - a mutated start address: any address will do
        return ipspace.to_int("1.1.1.1")


CLIENT = RdapClient(None, Bootstrap({"services": []}), StatsCollector(), None)  # type: ignore[arg-type]


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(mutated())
def test_a_mutated_real_answer_never_raises_out_of_the_classifier(body):
    try:
        raw = json.dumps(body).encode()
    except RecursionError:  # deeper than the encoder goes: the client would see it as text anyway
        return
    result = CLIENT._classify(_query_for(body), "apnic", "http://127.0.0.1:1/apnic/ip/1.1.1.1", 200, {},
                              raw, False)
    assert isinstance(result, (Ok, Retry, Throttle, Fail))
    if isinstance(result, Ok):
        record = result.record
        json.dumps(record)
        assert isinstance(record["handle"], str)
        for field in ("name", "type", "country", "parent_handle"):
            assert record[field] is None or isinstance(record[field], str)
        assert all(isinstance(r, str) for e in record["entities"] for r in e["roles"])
