"""RDAP bodies: same keys and value types as each registry's newest real response."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simulator_helpers import NEWEST_FIXTURE, fixture, shape, small_universe
from whoiscrawl.crawl.registries import REGISTRIES
from whoiscrawl.simulator import responses
from whoiscrawl.simulator.server import parse_ip_query

BASE_URLS = {name: f"http://127.0.0.1:{18081 + i}/{name}/" for i, name in enumerate(REGISTRIES)}


@pytest.fixture(scope="module")
def universe():
    return small_universe()


@pytest.fixture(scope="module")
def renderer(universe):
    return responses.Renderer(universe, BASE_URLS)


def _networks(universe, registry: str, level: int, count: int) -> list[int]:
    code = REGISTRIES.index(registry)
    idx = np.flatnonzero((universe.registry_codes == code) & (universe.levels == level))
    assert idx.size, (registry, level)
    return idx[:: max(1, idx.size // count)][:count].tolist()


@pytest.mark.parametrize("registry", REGISTRIES)
def test_top_level_network_has_the_real_shape(universe, renderer, registry):
    real = fixture(NEWEST_FIXTURE[registry])
    for index in _networks(universe, registry, 0, 20):
        body = renderer.network_dict(index, f"{BASE_URLS[registry]}ip/1.2.3.4")
        assert shape(body) == shape(real)
        assert [n["title"] for n in body["notices"]] == [n["title"] for n in real["notices"]]
        # the fixtures predate RFC 9910; ARIN and RIPE now also advertise its searches
        searches = responses.LOOKUP_SEARCH_CONFORMANCE if registry in ("arin", "ripencc") else []
        assert body["rdapConformance"] == real["rdapConformance"] + searches
        assert shape(body["entities"][0]) == shape(real["entities"][0])


@pytest.mark.parametrize("registry", REGISTRIES)
def test_sub_assignment_has_the_real_shape(universe, renderer, registry):
    real_shape = shape(fixture(NEWEST_FIXTURE[registry]))
    if registry == "apnic":  # APNIC names the parent only below its allocations (see responses.py)
        real_shape["parentHandle"] = "str"
    for index in _networks(universe, registry, 2, 10):
        body = renderer.network_dict(index, f"{BASE_URLS[registry]}ip/1.2.3.4")
        assert shape(body) == real_shape
        assert body["parentHandle" if registry != "lacnic" else "handle"]


@pytest.mark.parametrize("registry", REGISTRIES)
def test_network_fields_come_from_the_universe(universe, renderer, registry):
    index = _networks(universe, registry, 1, 1)[0]
    net = universe.network(index)
    query = f"{BASE_URLS[registry]}ip/1.2.3.4"
    body = renderer.network_dict(index, query)
    assert body["handle"] == net.handle
    assert body["objectClassName"] == "ip network" and body["ipVersion"] == "v4"
    assert (body["startAddress"], body["endAddress"]) == (
        f"{net.start >> 24}.{net.start >> 16 & 255}.{net.start >> 8 & 255}.{net.start & 255}",
        f"{net.end >> 24}.{net.end >> 16 & 255}.{net.end >> 8 & 255}.{net.end & 255}")
    assert body["type"] == net.type
    if "parentHandle" in body:
        assert body["parentHandle"] == net.parent_handle
    if "cidr0_cidrs" in body:
        assert [(c["v4prefix"], c["length"]) for c in body["cidr0_cidrs"]] == [
            (f"{s >> 24}.{s >> 16 & 255}.{s >> 8 & 255}.{s & 255}", n) for s, n in net.cidrs]
    if "country" in body:
        assert body["country"] == net.country
    assert query in json.dumps(body) or registry == "afrinic" and query in json.dumps(body["notices"])


def test_arin_nests_validated_pocs_inside_the_registrant(universe, renderer):
    body = renderer.network_dict(_networks(universe, "arin", 0, 1)[0], BASE_URLS["arin"] + "ip/3.0.0.0")
    registrant = body["entities"][0]
    assert registrant["roles"] == ["registrant"]
    pocs = registrant["entities"]
    assert {role for poc in pocs for role in poc["roles"]} >= {"abuse", "technical", "administrative"}
    real_poc = fixture(NEWEST_FIXTURE["arin"])["entities"][0]["entities"][0]
    for poc in pocs:
        assert shape(poc) == shape(real_poc)
        assert poc["status"] == ["validated"] and poc["handle"].endswith("-ARIN")
    assert body["links"][0]["href"] == BASE_URLS["arin"] + "ip/" + body["startAddress"]


def test_ripe_lists_stub_entities_and_one_abuse_vcard(universe, renderer):
    body = renderer.network_dict(_networks(universe, "ripencc", 1, 1)[0], BASE_URLS["ripencc"] + "ip/2.0.0.1")
    with_vcard = [e for e in body["entities"] if "vcardArray" in e]
    assert [e["roles"] for e in with_vcard] == [["abuse"]]
    assert all(shape(e) == {"handle": "str", "roles": "list", "objectClassName": "str"}
               for e in body["entities"] if "vcardArray" not in e)
    assert [e["eventAction"] for e in body["events"]] == ["last changed"]


@pytest.mark.parametrize("registry, real_file", [("apnic", "errors/apnic-400_rdap-client.json"),
                                                 ("ripencc", "errors/ripe-501_icann-rdap.json")])
def test_error_bodies_follow_the_registry_style(registry, real_file):
    real = fixture(real_file)
    body = json.loads(responses.error_body(registry, 400, "Bad Request", ["malformed"]))
    assert shape(body) == shape(real)
    assert str(body["errorCode"]) == "400"


@pytest.mark.parametrize("registry", REGISTRIES)
def test_every_error_body_is_an_rdap_error_object(registry):
    body = json.loads(responses.error_body(registry, 404, "Not Found", ["nothing here"]))
    assert int(body["errorCode"]) == 404
    assert isinstance(body["title"], str) and body["description"] == ["nothing here"]
    assert "rdap_level_0" in body["rdapConformance"]
    help_body = json.loads(responses.help_body(registry))
    assert help_body["rdapConformance"] and help_body["notices"]


def test_lacnic_rate_limit_notice_has_no_network():
    body = json.loads(responses.rate_limit_notice_body(10, 1))
    assert body["notices"] == [{"title": "Rate Limit Notice",
                                "description": ["Rate Limit is maxed at 10 queries per 1 minutes."]}]
    assert "handle" not in body and "startAddress" not in body


@pytest.mark.parametrize("text, expected", [
    ("1.2.3.4", (0x01020304, 0x01020304)),
    ("0.0.0.0", (0, 0)),
    ("255.255.255.255", (0xFFFFFFFF, 0xFFFFFFFF)),
    ("10.0.0.0/8", (0x0A000000, 0x0AFFFFFF)),
    ("1.1.1.0%2F24", (0x01010100, 0x010101FF)),
    ("0.0.0.0/0", (0, 0xFFFFFFFF)),
    ("1.2.3.4/32", (0x01020304, 0x01020304)),
    ("1.2.3.256", None), ("1.2.3", None), ("1.2.3.4.5", None), ("01.2.3.4", None), ("a.b.c.d", None),
    ("1.2.3.4/33", None), ("1.2.3.4/24", None), ("1.2.3.0/-1", None), ("1.2.3.0/", None), ("", None),
    ("1.2.3.4/024", None), ("１.2.3.4", None),
])
def test_query_parsing_is_strict(text, expected):
    assert parse_ip_query(text) == expected


def test_rendering_is_deterministic(universe):
    index = _networks(universe, "apnic", 1, 1)[0]
    first = responses.Renderer(universe, BASE_URLS).network_body(index, "q")
    second = responses.Renderer(universe, BASE_URLS, cache_size=0).network_body(index, "q")
    assert first == second
