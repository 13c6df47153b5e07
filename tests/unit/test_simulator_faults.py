"""Rate limits, blocks, down registries and injected faults, at start and at run time."""

from __future__ import annotations

import http.client
import socket
import time

import pytest

from simulator_helpers import dotted, get, post_json, raw_exchange, small_universe
from whoiscrawl.crawl.registries import REGISTRIES
from whoiscrawl.simulator.faults import Faults, parse_down
from whoiscrawl.simulator.policy import PROFILES, RateLimiter, RegistryPolicy, RateLimit
from whoiscrawl.simulator.server import SimulatorThread

NO_LATENCY = {"latency_ms": 0, "jitter_ms": 0}


@pytest.fixture(scope="module")
def universe():
    return small_universe()


@pytest.fixture(scope="module")
def owned(universe):
    """One allocated address per registry, as the query path for that registry."""
    addrs = universe.random_allocated_addresses(5000, seed=31)
    found: dict[str, str] = {}
    for addr in addrs.tolist():
        found.setdefault(universe.owner(addr), f"ip/{dotted(addr)}")
    assert set(found) == set(REGISTRIES)
    return found


def _faults_url(sim: SimulatorThread) -> str:
    return sim.bootstrap_url.replace("/bootstrap/ipv4.json", "/_faults")


# --- rate limits ---------------------------------------------------------------------

def test_lacnic_answers_a_notice_past_10_per_minute_then_blocks(universe, owned):
    url = None
    with SimulatorThread(universe, profile="realistic", faults=NO_LATENCY) as sim:
        url = sim.base_urls["lacnic"] + owned["lacnic"]
        for _ in range(10):
            answer = get(url)
            assert answer.status == 200 and "handle" in answer.json()
        policy = PROFILES["realistic"]["lacnic"]
        for _ in range(policy.block_after - 1):
            answer = get(url)
            assert answer.status == 200
            body = answer.json()
            assert "handle" not in body
            assert body["notices"][0]["title"] == "Rate Limit Notice"
            assert body["notices"][0]["description"] == ["Rate Limit is maxed at 10 queries per 1 minutes."]
        for _ in range(2):  # the block: connections are dropped without an answer
            with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
                get(url)
        stats = sim.stats()["registries"]["lacnic"]
    assert stats["rate_limited"] == policy.block_after - 1
    assert stats["blocks"] == 1 and stats["blocked"] == 2 and stats["dropped"] == 2
    assert stats["responses"] == {"200": 10 + policy.block_after - 1}


def test_429_with_retry_after_then_403_block_that_expires(universe, owned):
    limits = {"ripencc": {"limits": [[3, 60]], "block_after": 3, "block_s": 1.0, "block_window_s": 60}}
    with SimulatorThread(universe, profile="realistic", faults=NO_LATENCY) as sim:
        sim.set_faults(rate_limits=limits)
        url = sim.base_urls["ripencc"] + owned["ripencc"]
        assert [get(url).status for _ in range(3)] == [200, 200, 200]
        for _ in range(2):
            answer = get(url)
            assert answer.status == 429
            assert 1 <= int(answer.headers["retry-after"]) <= 60
            body = answer.json()
            assert body["errorCode"] == 429 and body["title"] == "Too Many Requests"
        blocked = get(url)
        assert blocked.status == 403 and int(blocked.json()["errorCode"]) == 403
        assert int(blocked.headers["retry-after"]) >= 1
        assert get(url).status == 403
        time.sleep(1.2)
        assert get(url).status == 429  # block over, the minute window still full
        # other registries and other clients are counted apart
        assert get(sim.base_urls["apnic"] + owned["apnic"]).status == 200
        try:
            other_client = get(url, source="127.0.0.2")
        except OSError:
            other_client = None  # no second loopback address here
        stats = sim.stats()
    if other_client is not None:
        assert other_client.status == 200
        assert stats["clients"]["127.0.0.2"]["requests"] == 1
    ripe = stats["registries"]["ripencc"]
    assert ripe["responses"]["429"] == 3 and ripe["responses"]["403"] == 2
    assert ripe["rate_limited"] == 3 and ripe["blocks"] == 1 and ripe["blocked"] == 2
    assert stats["clients"]["127.0.0.1"]["rate_limited"] == 3


def test_limiter_windows_reset():
    limiter = RateLimiter({"arin": RegistryPolicy(limits=(RateLimit(2, 10.0),))})
    assert [limiter.check("arin", "a", t).verdict for t in (0, 1, 2)] == ["ok", "ok", "limited"]
    assert limiter.check("arin", "a", 3).retry_after_s == 7
    assert limiter.check("arin", "b", 3).verdict == "ok"
    assert limiter.check("arin", "a", 10.5).verdict == "ok"


def test_fast_profile_does_not_limit(universe, owned):
    with SimulatorThread(universe, profile="fast") as sim:
        url = sim.base_urls["lacnic"] + owned["lacnic"]
        assert all(get(url).status == 200 for _ in range(40))
        assert sim.stats()["rate_limited"] == 0


# --- down registries -------------------------------------------------------------------

def test_registry_refuses_then_comes_back_at_run_time(universe, owned):
    with SimulatorThread(universe) as sim:
        url = sim.base_urls["arin"] + owned["arin"]
        assert get(url).status == 200
        config = post_json(_faults_url(sim), {"down": {"arin": "refuse"}}).json()
        assert config["faults"]["down"] == {"arin": "refuse"}
        with pytest.raises(ConnectionRefusedError):
            get(url)
        assert get(sim.base_urls["ripencc"] + owned["ripencc"]).status == 200
        sim.set_faults(up=["arin"])
        assert get(url).status == 200


def test_registry_down_at_start_and_timeout_mode(universe, owned):
    with SimulatorThread(universe, faults={"down": {"apnic": "refuse", "afrinic": "timeout"}}) as sim:
        with pytest.raises(ConnectionRefusedError):
            get(sim.base_urls["apnic"] + owned["apnic"])
        data, timed_out = raw_exchange(sim.base_urls["afrinic"] + owned["afrinic"], timeout_s=0.5)
        assert timed_out and data == b""
        sim.set_faults(down={"afrinic": None, "apnic": "up"})
        assert get(sim.base_urls["afrinic"] + owned["afrinic"]).status == 200
        assert get(sim.base_urls["apnic"] + owned["apnic"]).status == 200
        sim.set_faults(down={"arin": "timeout"})
        with pytest.raises(socket.timeout):
            get(sim.base_urls["arin"] + owned["arin"], timeout_s=0.5)
        stats = sim.stats()
    assert stats["registries"]["afrinic"]["unanswered"] == 1
    assert stats["registries"]["arin"]["unanswered"] == 1


def test_cli_style_down_spec():
    assert parse_down("arin") == ("arin", "refuse")
    assert parse_down("lacnic:timeout") == ("lacnic", "timeout")
    with pytest.raises(ValueError):
        parse_down("arin:sleep")
    with pytest.raises(ValueError):
        parse_down("nic")


# --- injected faults -------------------------------------------------------------------

def test_error_rate_gives_5xx(universe, owned):
    with SimulatorThread(universe, faults={"error_rate": 1.0}) as sim:
        statuses = {get(sim.base_urls["ripencc"] + owned["ripencc"]).status for _ in range(30)}
        assert statuses <= {500, 502, 503, 504} and len(statuses) > 1
        sim.set_faults(error_rate=0.0)
        assert get(sim.base_urls["ripencc"] + owned["ripencc"]).status == 200
        assert sim.stats()["server_errors"] == 30


def test_html_rate_gives_html_with_200(universe, owned):
    with SimulatorThread(universe, faults={"html_rate": 1.0}) as sim:
        answer = get(sim.base_urls["apnic"] + owned["apnic"])
        assert answer.status == 200
        assert answer.headers["content-type"].startswith("text/html")
        assert answer.body.lstrip().startswith(b"<!DOCTYPE html>")
        assert sim.stats()["html"] == 1


def test_truncate_rate_cuts_bodies_short(universe, owned):
    with SimulatorThread(universe, faults={"truncate_rate": 1.0}) as sim:
        for _ in range(5):
            data, timed_out = raw_exchange(sim.base_urls["arin"] + owned["arin"])
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            assert not timed_out and 0 < len(body) < length
        with pytest.raises(http.client.IncompleteRead):
            get(sim.base_urls["arin"] + owned["arin"])
        assert sim.stats()["truncated"] == 6


def test_latency_and_per_registry_override(universe, owned):
    with SimulatorThread(universe, faults={"latency_ms": 150, "jitter_ms": 50,
                                           "per_registry": {"lacnic": {"latency_ms": 0, "jitter_ms": 0}}}) as sim:
        t0 = time.perf_counter()
        assert get(sim.base_urls["arin"] + owned["arin"]).status == 200
        slow = time.perf_counter() - t0
        t0 = time.perf_counter()
        assert get(sim.base_urls["lacnic"] + owned["lacnic"]).status == 200
        fast = time.perf_counter() - t0
    assert slow >= 0.15
    assert fast < slow


def test_bad_fault_settings_are_rejected(universe):
    with SimulatorThread(universe) as sim:
        url = _faults_url(sim)
        assert post_json(url, {"error_rate": 2}).status == 400
        assert post_json(url, {"down": {"arin": "sleep"}}).status == 400
        assert post_json(url, {"bogus": 1}).status == 400
        assert post_json(url, {"rate_limits": {"arin": {"style": "teapot"}}}).status == 400
        current = get(url).json()
        assert current["faults"] == Faults().to_dict()
        assert post_json(url, {"profile": "realistic"}).json()["rate_limits"]["lacnic"]["style"] == "notice"
