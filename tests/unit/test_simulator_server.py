"""The simulator over HTTP: bootstrap, answers against the ground truth, redirects, errors, stats."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simulator_helpers import dotted, get, small_universe
from whoiscrawl.crawl.registries import REGISTRIES, registry_for_url
from whoiscrawl.simulator import sources
from whoiscrawl.simulator.server import REDIRECT_STATUS, SimulatorThread


@pytest.fixture(scope="module")
def universe():
    return small_universe()


@pytest.fixture(scope="module")
def sim(universe):
    with SimulatorThread(universe, profile="fast") as running:
        yield running


def test_bootstrap_mirrors_iana_with_simulator_urls(sim):
    served = get(sim.bootstrap_url).json()
    written = json.loads(sim.bootstrap_path.read_text())
    assert served["services"] == written["services"]
    iana = sources.read_bootstrap()
    assert sorted(p for prefixes, _ in served["services"] for p in prefixes) == sorted(
        p for prefixes, _ in iana["services"] for p in prefixes)
    for prefixes, urls in served["services"]:
        (url,) = urls
        registry = registry_for_url(url)
        assert url == sim.base_urls[registry]
        for prefix in prefixes:
            assert sources.read_slash8().bootstrap[int(prefix.split(".")[0])] == registry


def test_registries_listen_on_their_own_ports(sim):
    ports = [sim.ports[name] for name in ("base", *REGISTRIES)]
    assert len(set(ports)) == 6
    for name in REGISTRIES:
        assert sim.base_urls[name] == f"http://127.0.0.1:{sim.ports[name]}/{name}/"
        assert registry_for_url(sim.base_urls[name]) == name


def test_answers_equal_the_ground_truth(sim, universe):
    addrs = universe.random_allocated_addresses(150, seed=21)
    for addr in addrs.tolist():
        index = universe.lookup(addr)
        net = universe.network(index)
        answer = get(f"{sim.base_urls[net.registry]}ip/{dotted(addr)}")
        assert answer.status == 200
        assert answer.headers["content-type"] == "application/rdap+json"
        body = answer.json()
        assert (body["handle"], body["startAddress"], body["endAddress"]) == (
            net.handle, dotted(net.start), dotted(net.end))


def test_prefix_query_returns_the_network_enclosing_the_whole_prefix(sim, universe):
    child = int(np.flatnonzero(universe.levels == 2)[0])
    net = universe.network(child)
    length = 32 - (net.end - net.start + 1).bit_length() + 1
    body = get(f"{sim.base_urls[net.registry]}ip/{dotted(net.start)}/{length}").json()
    assert body["handle"] == net.handle
    wide_start = net.start & ~((1 << (33 - length)) - 1)
    wide_end = wide_start + (1 << (33 - length)) - 1
    enclosing = universe.network(universe.lookup_range(wide_start, wide_end))
    assert enclosing.handle != net.handle and enclosing.start <= wide_start and enclosing.end >= wide_end
    wider = get(f"{sim.base_urls[net.registry]}ip/{dotted(wide_start)}/{length - 1}").json()
    assert wider["handle"] == enclosing.handle


def test_out_of_region_queries_redirect_to_the_holder(sim, universe):
    addrs = universe.random_allocated_addresses(40, seed=22)
    seen = set()
    for addr in addrs.tolist():
        holder = universe.owner(addr)
        for registry in REGISTRIES:
            if registry == holder:
                continue
            answer = get(f"{sim.base_urls[registry]}ip/{dotted(addr)}")
            assert answer.status == REDIRECT_STATUS[registry]
            assert answer.headers["location"] == f"{sim.base_urls[holder]}ip/{dotted(addr)}"
            seen.add(answer.status)
    assert seen == {301, 302, 307}


def test_transferred_space_redirects_from_the_bootstrap_registry(sim, universe):
    addrs = universe.random_allocated_addresses(20_000, seed=23)
    moved = [a for a in addrs.tolist() if universe.owner(a) != universe.bootstrap_registry(a)][:10]
    assert moved
    for addr in moved:
        first = get(f"{sim.base_urls[universe.bootstrap_registry(addr)]}ip/{dotted(addr)}")
        assert first.status in (301, 302, 307)
        final = get(first.headers["location"])
        assert final.status == 200
        assert final.json()["handle"] == universe.network(universe.lookup(addr)).handle


def test_unallocated_and_reserved_space_is_404_with_an_rdap_error(sim, universe):
    free = [int(s) for s, n in zip(universe._seg_start.tolist(), universe._seg_net.tolist())
            if n < 0 and not universe.is_reserved(int(s))]
    addr = free[len(free) // 2]
    home = universe.bootstrap_registry(addr)
    answer = get(f"{sim.base_urls[home]}ip/{dotted(addr)}")
    assert answer.status == 404
    body = answer.json()
    assert int(body["errorCode"]) == 404 and body["title"] and isinstance(body["description"], list)
    other = next(r for r in REGISTRIES if r != home)
    assert get(f"{sim.base_urls[other]}ip/{dotted(addr)}").headers["location"].startswith(sim.base_urls[home])
    for registry in REGISTRIES:  # reserved space is 404 everywhere, no redirect
        answer = get(f"{sim.base_urls[registry]}ip/10.1.2.3")
        assert answer.status == 404 and int(answer.json()["errorCode"]) == 404


@pytest.mark.parametrize("query", ["1.2.3.999", "1.2.3", "1.2.3.4/33", "1.2.3.4/24", "banana", "01.2.3.4"])
def test_malformed_queries_are_400_with_an_rdap_error(sim, query):
    answer = get(f"{sim.base_urls['ripencc']}ip/{query}")
    assert answer.status == 400
    body = answer.json()
    assert body["errorCode"] == 400 and body["title"] == "Bad Request"


def test_apnic_errors_carry_a_string_error_code(sim):
    assert get(f"{sim.base_urls['apnic']}ip/1.2.3").json()["errorCode"] == "400"


def test_help_and_unsupported_object_classes(sim):
    for registry in REGISTRIES:
        answer = get(f"{sim.base_urls[registry]}help")
        assert answer.status == 200 and answer.json()["rdapConformance"]
    assert get(f"{sim.base_urls['arin']}autnum/3333").status == 501
    assert get(f"{sim.base_urls['arin']}nonsense/1").status == 400
    assert get(sim.base_urls["arin"].replace("/arin/", "/ripencc/") + "ip/1.2.3.4").status == 404


def test_keep_alive_serves_many_requests_on_one_connection(sim, universe):
    import http.client
    from urllib.parse import urlsplit

    addr = int(universe.random_allocated_addresses(1, seed=24)[0])
    registry = universe.owner(addr)
    parts = urlsplit(sim.base_urls[registry])
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        for _ in range(20):
            conn.request("GET", f"{parts.path}ip/{dotted(addr)}")
            response = conn.getresponse()
            response.read()
            assert response.status == 200 and not response.will_close
    finally:
        conn.close()


def test_stats_count_requests_by_registry_status_and_client(universe):
    addr = int(universe.random_allocated_addresses(1, seed=25)[0])
    holder = universe.owner(addr)
    other = next(r for r in REGISTRIES if r != holder)
    with SimulatorThread(universe) as fresh:
        for _ in range(3):
            assert get(f"{fresh.base_urls[holder]}ip/{dotted(addr)}").status == 200
        get(f"{fresh.base_urls[other]}ip/{dotted(addr)}")
        get(f"{fresh.base_urls[holder]}ip/1.2.3")
        get(f"{fresh.base_urls[holder]}ip/10.0.0.1")
        stats = fresh.stats()
        over_http = get(fresh.bootstrap_url.replace("/bootstrap/ipv4.json", "/_stats")).json()
    assert stats["requests"] == 6 == over_http["requests"]
    assert stats["responses"] == {"200": 3, "400": 1, "404": 1, str(REDIRECT_STATUS[other]): 1}
    assert stats["redirects"] == 1 and stats["bad_requests"] == 1 and stats["not_found"] == 1
    assert stats["registries"][holder]["requests"] == 5
    assert stats["registries"][other]["redirects"] == 1
    assert stats["clients"]["127.0.0.1"]["requests"] == 6


def test_head_answers_like_get_without_a_body_and_other_methods_get_405(sim, universe):
    addr = int(universe.random_allocated_addresses(1, seed=5)[0])
    net = universe.network(universe.lookup(addr))
    url = f"{sim.base_urls[net.registry]}ip/{dotted(addr)}"
    full, head = get(url), get(url, method="HEAD")
    assert head.status == full.status == 200
    assert head.body == b""
    assert head.headers["content-length"] == str(len(full.body))
    other = "ripencc" if net.registry != "ripencc" else "arin"
    redirect = get(f"{sim.base_urls[other]}ip/{dotted(addr)}", method="HEAD")
    assert redirect.status == REDIRECT_STATUS[other]
    assert redirect.headers["location"].startswith(sim.base_urls[net.registry])
    refused = get(url, method="DELETE")
    assert refused.status == 405 and "GET" in refused.headers["allow"]
