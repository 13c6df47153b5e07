"""Faults during a crawl, on real Redis and Kafka and the simulator: the chunk finishes, nothing is lost.

Each test injects one fault and checks (``faultkit.check_nothing_lost``): every address accounted for,
one record per looked-up address, no duplicates, every allocated address delivered or failed with a
reason that names the cause.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from crawlkit import sample_addresses
from faultkit import check_nothing_lost

from whoiscrawl.crawl import ipspace

pytestmark = pytest.mark.integration

#: One kind of malformed answer per registry, all at once.
MALFORMED = {"arin": "deep_json", "ripencc": "non_http", "apnic": "huge_record", "lacnic": "entities_not_list",
             "afrinic": "gzip_bomb"}


def test_malformed_answers_from_every_registry_end_no_chunk(universe, fault_harness, clean_faults):
    addrs = sample_addresses(universe, 80, seed=5, allocated=True)
    clean_faults.set_faults({"malformed": MALFORMED})
    key = f"malformed-{uuid.uuid4().hex[:8]}"
    outcome, crawler = fault_harness.run(addrs, run_key=key, MAX_ATTEMPTS=2)
    records = fault_harness.records(key)
    figures = check_nothing_lost(universe, addrs, [outcome], records)
    reasons = set(outcome.failed_by_reason)
    # the causes are named: too deep (arin), not HTTP (ripencc), a gzip bomb (afrinic)
    assert reasons <= {"bad_body/too_deep", "malformed_http", "body_too_large", "not_found"}, reasons
    assert {"bad_body/too_deep", "malformed_http", "body_too_large"} <= reasons, reasons
    assert not any(r.startswith("internal/") for r in reasons)
    # over-long records went without their raw answer; badly typed entities still gave records
    delivered = {r["registry"] for r in records}
    assert {"apnic", "lacnic"} <= delivered, delivered
    assert all(r.get("raw_dropped") == "too_large" for r in records if r["registry"] == "apnic")
    assert crawler.stats["kafka/apnic/raw_dropped"] >= 1
    print("malformed:", figures, outcome.failed_by_reason)


def test_a_chunk_out_of_time_defers_the_rest_and_a_continuation_finishes_it(universe, fault_harness, clean_faults):
    addrs = sample_addresses(universe, 30, seed=8, registries={"lacnic"}, allocated=True)
    key = f"deadline-{uuid.uuid4().hex[:8]}"
    # LACNIC's documented 10 per minute: the 3 s deadline leaves most addresses for later
    first, crawler = fault_harness.run(addrs, run_key=key, RATE_LIMITS="", CHUNK_DEADLINE_S=3.0)
    assert first.deferred > 0 and first.failed == 0
    assert first.skipped + first.looked_up + first.deferred == len(addrs)
    deferred = np.asarray(crawler.deferred, dtype=np.uint32)
    assert set(deferred.tolist()) <= set(int(a) for a in addrs)
    records = fault_harness.records(key)
    assert not {r["query"] for r in records} & {ipspace.to_str(int(a)) for a in deferred}
    check_nothing_lost(universe, addrs, [first], records, deferred=deferred)
    # the continuation (what crawl_chunk hands on) with a fresh budget finishes the chunk
    fault_harness.redis_server.client().delete(*fault_harness.redis_server.client().keys("whoiscrawl:rate:*"))
    second, _ = fault_harness.run(deferred, run_key=key)
    assert second.deferred == 0
    figures = check_nothing_lost(universe, addrs, [first, second], fault_harness.records(key))
    assert figures["not_delivered"] == 0
    print("deadline:", figures, "first deferred", first.deferred)
