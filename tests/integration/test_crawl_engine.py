"""The crawl engine against the simulator, on real Redis and Kafka: accounting, politeness, redirects, faults."""

from __future__ import annotations

import json
import threading
import time
import uuid

import numpy as np
import pytest
from crawlkit import sample_addresses, write_json

from whoiscrawl.crawl import ipspace
from whoiscrawl.crawl.engine import ChunkDeliveryError
from whoiscrawl.simulator.server import SimulatorThread

pytestmark = pytest.mark.integration


def truth(universe, addr: int):
    i = universe.lookup(int(addr))
    return None if i is None else universe.network(i)


def check_records_against_truth(universe, records):
    for rec in records:
        net = truth(universe, ipspace.to_int(rec["query"]))
        assert net is not None, rec["query"]
        assert (rec["handle"], rec["registry"]) == (net.handle, net.registry), rec["query"]
        assert (ipspace.to_int(rec["start"]), ipspace.to_int(rec["end"])) == (net.start, net.end)


def test_every_address_is_accounted_for_and_results_equal_the_universe(universe, harness_factory):
    addrs = sample_addresses(universe, 1500, seed=11)
    with SimulatorThread(universe, profile="fast") as sim:
        h = harness_factory(str(sim.bootstrap_path))
        key = f"acct-{uuid.uuid4().hex[:8]}"
        outcome, crawler = h.run(addrs, run_key=key)
        served = sim.stats()
    assert outcome.addresses == len(addrs)
    assert outcome.skipped + outcome.looked_up + outcome.failed == len(addrs)
    assert outcome.looked_up > 100 and outcome.skipped > 0
    records = h.records(key)
    assert len(records) == outcome.looked_up  # one acknowledged record per looked-up address
    check_records_against_truth(universe, records)
    # only unallocated space fails, and it really is unallocated
    assert set(outcome.failed_by_reason) <= {"not_found", "no_registry"}
    queried = {r["query"] for r in records}
    found = np.array([[ipspace.to_int(r["start"]), ipspace.to_int(r["end"])] for r in records])
    for a in addrs.tolist():
        if ipspace.to_str(a) in queried:
            continue
        inside = ((found[:, 0] <= a) & (a <= found[:, 1])).any()
        assert inside or truth(universe, a) is None, ipspace.to_str(a)
    # no request is spent on routing: requests = lookups (+ redirects), nothing else
    assert served["requests"] <= outcome.looked_up + outcome.failed + served["redirects"] + 5
    assert crawler.stats.ancestor_view()["Got WHOIS"] == outcome.looked_up


def test_realistic_profile_is_never_blocked(universe, harness_factory):
    """LACNIC allows 10 a minute: 11 LACNIC addresses take over a minute, with zero blocks."""
    lacnic = sample_addresses(universe, 11, seed=3, registries={"lacnic"}, allocated=True)
    others = sample_addresses(universe, 60, seed=4, registries={"arin", "ripencc", "apnic", "afrinic"},
                              allocated=True)
    assert len(lacnic) == 11
    addrs = np.concatenate([lacnic, others])
    with SimulatorThread(universe, profile="realistic") as sim:
        h = harness_factory(str(sim.bootstrap_path))
        key = f"polite-{uuid.uuid4().hex[:8]}"
        started = time.monotonic()
        outcome, crawler = h.run(addrs, run_key=key, RATE_LIMITS="")  # the documented default budgets
        elapsed = time.monotonic() - started
        served = sim.stats()
    assert served["blocks"] == 0 and served["blocked"] == 0
    assert served["rate_limited"] == 0, {r: v.get("rate_limited") for r, v in served["registries"].items()}
    assert outcome.failed == 0, outcome.failed_by_reason
    assert outcome.skipped + outcome.looked_up == len(addrs)
    lacnic_requests = served["registries"]["lacnic"]["requests"]
    if lacnic_requests > 10:
        assert elapsed >= 60 * ((lacnic_requests - 1) // 10) - 1  # the budget really was waited for


def _transferred(universe, n: int):
    """Allocated seed addresses whose owner is not the registry the IANA bootstrap names."""
    pool = sample_addresses(universe, 4000, seed=21, allocated=True)
    picked = [a for a in pool.tolist()
              if universe.owner(a) and universe.bootstrap_registry(a)
              and universe.owner(a) != universe.bootstrap_registry(a)]
    return np.array(picked[:n], dtype=np.uint32)


def test_redirects_are_followed_to_the_owner_and_learned(universe, harness_factory):
    addrs = _transferred(universe, 40)
    assert len(addrs) >= 10, "the universe has inter-RIR transfers"
    with SimulatorThread(universe, profile="fast") as sim:
        h = harness_factory(str(sim.bootstrap_path))
        key = f"redir-{uuid.uuid4().hex[:8]}"
        outcome, crawler = h.run(addrs, run_key=key, HTTP_CONCURRENCY_PER_REGISTRY=1)
    records = h.records(key)
    assert outcome.failed == 0, outcome.failed_by_reason
    check_records_against_truth(universe, records)
    followed = sum(v for k, v in crawler.stats.values.items() if k.startswith("redirect/") and "/followed/" in k)
    assert followed >= 1
    assert all(r["registry"] == universe.owner(ipspace.to_int(r["query"])) for r in records)


def test_redirect_to_a_host_outside_the_bootstrap_is_refused(universe, harness_factory, tmp_path):
    pool = _transferred(universe, 400)
    owners = [universe.owner(int(a)) for a in pool]
    owner = max(set(owners), key=owners.count)
    addrs = np.array([a for a, o in zip(pool.tolist(), owners) if o == owner][:20], dtype=np.uint32)
    with SimulatorThread(universe, profile="fast") as sim:
        doc = json.loads(sim.bootstrap_path.read_text())
        # the owner's real port is no longer named by the bootstrap file: its host is not allowed
        for service in doc["services"]:
            if any(f"/{owner}/" in u for u in service[1]):
                service[1] = [u.replace("127.0.0.1", "127.0.0.2") for u in service[1]]
        bootstrap = write_json(tmp_path / "b.json", doc)
        h = harness_factory(bootstrap)
        outcome, crawler = h.run(addrs, run_key=f"refuse-{uuid.uuid4().hex[:8]}")
        served = sim.stats()
    assert outcome.failed_by_reason == {"redirect_refused": len(addrs)}
    assert crawler.stats.total(area="redirect", event="refused") == len(addrs)
    # the refused target was never contacted
    assert served["registries"].get(owner, {}).get("requests", 0) == 0


@pytest.mark.parametrize("mode", ["refuse", "timeout"])
def test_a_down_registry_fails_its_addresses_with_a_reason_and_stalls_no_one(universe, harness_factory, mode):
    lacnic = sample_addresses(universe, 6, seed=5, registries={"lacnic"}, allocated=True)
    others = sample_addresses(universe, 150, seed=6, registries={"arin", "ripencc", "apnic"}, allocated=True)
    addrs = np.concatenate([lacnic, others])
    with SimulatorThread(universe, profile="fast", faults={"down": {"lacnic": mode}}) as sim:
        h = harness_factory(str(sim.bootstrap_path))
        outcome, crawler = h.run(addrs, run_key=f"down-{uuid.uuid4().hex[:8]}", MAX_ATTEMPTS=3,
                                 HTTP_TIMEOUT_S=1.0)
    expected_reason = "refused" if mode == "refuse" else "timeout"
    assert outcome.failed_by_reason == {expected_reason: len(lacnic)}
    assert outcome.looked_up + outcome.skipped == len(others)
    counters = crawler.stats
    retries = counters[f"attempt/lacnic/transient/{expected_reason}"] + counters["attempt/lacnic/transient/registry_down"]
    assert retries == 3 * len(lacnic)  # every attempt counted, then failed with the reason


def test_a_dead_registry_costs_a_few_cooldowns_not_a_timeout_per_attempt(universe, harness_factory):
    """200 addresses x 3 attempts x 1 s timeout would be 75 s over 8 workers; the breaker makes it seconds."""
    lacnic = sample_addresses(universe, 200, seed=12, registries={"lacnic"}, allocated=True)
    assert len(lacnic) == 200
    with SimulatorThread(universe, profile="fast", faults={"down": {"lacnic": "timeout"}}) as sim:
        h = harness_factory(str(sim.bootstrap_path))
        started = time.monotonic()
        outcome, crawler = h.run(lacnic, run_key=f"dead-{uuid.uuid4().hex[:8]}", MAX_ATTEMPTS=3,
                                 HTTP_TIMEOUT_S=1.0, REGISTRY_DOWN_AFTER=8, REGISTRY_DOWN_COOLDOWN_S=2.0)
        elapsed = time.monotonic() - started
        served = sim.stats()
    assert outcome.failed == len(lacnic)
    assert set(outcome.failed_by_reason) <= {"timeout", "registry_down"}
    assert crawler.stats["breaker/lacnic/opened"] >= 1
    assert elapsed < 30
    # only a few probes per cooldown reached the dead registry, not one per address and attempt
    assert served["registries"]["lacnic"]["requests"] < 100


def test_a_registry_that_comes_back_is_retried_later_and_succeeds(universe, harness_factory):
    lacnic = sample_addresses(universe, 5, seed=7, registries={"lacnic"}, allocated=True)
    with SimulatorThread(universe, profile="fast", faults={"down": {"lacnic": "refuse"}}) as sim:
        h = harness_factory(str(sim.bootstrap_path))
        timer = threading.Timer(1.5, lambda: sim.set_faults({"up": ["lacnic"]}))
        timer.start()
        try:
            outcome, crawler = h.run(lacnic, run_key=f"back-{uuid.uuid4().hex[:8]}", MAX_ATTEMPTS=8,
                                     RETRY_BACKOFF_S=0.3)
        finally:
            timer.cancel()
    assert outcome.failed == 0, outcome.failed_by_reason
    assert crawler.stats["attempt/lacnic/transient/refused"] >= 1


def test_5xx_storms_html_pages_and_truncated_bodies_are_retried_and_lose_nothing(universe, harness_factory):
    addrs = sample_addresses(universe, 300, seed=8, allocated=True)
    faults = {"error_rate": 0.25, "html_rate": 0.1, "truncate_rate": 0.1}
    with SimulatorThread(universe, profile="fast", faults=faults) as sim:
        h = harness_factory(str(sim.bootstrap_path))
        key = f"faults-{uuid.uuid4().hex[:8]}"
        outcome, crawler = h.run(addrs, run_key=key, MAX_ATTEMPTS=12)
    assert outcome.failed == 0, outcome.failed_by_reason
    counters = crawler.stats
    assert sum(v for k, v in counters.values.items() if k.startswith("attempt/") and "/transient/http_5" in k) > 0
    assert sum(v for k, v in counters.values.items() if k.startswith("attempt/") and k.endswith("/transient/bad_body/html")) > 0
    check_records_against_truth(universe, h.records(key))


def test_rate_limit_answers_pause_the_registry_on_this_host(universe, harness_factory):
    """A registry stricter than our budget answers 429 / a notice: we pause as asked and end without a block."""
    apnic = sample_addresses(universe, 25, seed=9, registries={"apnic"}, allocated=True)
    with SimulatorThread(universe, profile="fast") as sim:
        sim.set_faults({"rate_limits": {"apnic": {"limits": [[5, 1.0]], "style": "429",
                                                  "block_after": 30, "block_s": 60}}})
        h = harness_factory(str(sim.bootstrap_path))
        outcome, crawler = h.run(apnic, run_key=f"429-{uuid.uuid4().hex[:8]}", RATE_LIMITS="apnic=50/1",
                                 HTTP_CONCURRENCY_PER_REGISTRY=4)
        served = sim.stats()
    assert served["rate_limited"] >= 1
    assert served["blocks"] == 0
    assert outcome.failed == 0, outcome.failed_by_reason
    assert crawler.stats["throttle/apnic/received/http_429"] == served["registries"]["apnic"]["rate_limited"]


def test_a_broker_that_is_down_fails_the_chunk_and_marks_nothing_done(universe, redis_flush, tmp_path):
    """Nothing is counted done (or added to the index) without Kafka's acknowledgement."""
    import asyncio

    from confluent_kafka import Producer

    from whoiscrawl.crawl.bootstrap import Bootstrap, load_document
    from whoiscrawl.crawl.engine import Crawler
    from whoiscrawl.crawl.kafka_io import PRODUCER_OVERRIDES, DeliveryTracker
    from whoiscrawl.crawl.netindex import KnownNetworkIndex
    from whoiscrawl.crawl.ratelimit import RateLimits, RegistryRateLimiter
    from whoiscrawl.crawl.config import RunConfig
    from whoiscrawl.devtools.services import free_port

    addrs = sample_addresses(universe, 20, seed=10, allocated=True)
    with SimulatorThread(universe, profile="fast") as sim:
        client = redis_flush.client()
        producer = Producer({"bootstrap.servers": f"127.0.0.1:{free_port()}", **PRODUCER_OVERRIDES,
                             "message.timeout.ms": 2000})
        index = KnownNetworkIndex(client, client, key="whoiscrawl:run:nokafka:known")
        config = RunConfig(retry_backoff_s=0.05)
        doc, where = load_document(str(sim.bootstrap_path))
        crawler = Crawler(bootstrap=Bootstrap(doc, where), index=index,
                          limiter=RegistryRateLimiter(client, "h", RateLimits.parse("")),
                          tracker=DeliveryTracker(producer), config=config, run_key="nokafka")
        with pytest.raises(ChunkDeliveryError, match="retry the chunk"):
            asyncio.run(crawler.run(addrs))
    index.sync()
    assert index.network_count() == 0
    assert crawler.stats.ancestor_view()["Got WHOIS"] == 0
