"""Every malformed answer the issue lists, served by the simulator, becomes a retry or a failure with a reason.

One lookup per kind through the real client (no engine): nothing raises out of the client, and a
gzip bomb or an endless chunked body costs no more than a few MB over the body cap.
"""

from __future__ import annotations

import asyncio
import tracemalloc

import aiohttp
import pytest
from crawlkit import sample_addresses

from whoiscrawl.crawl.bootstrap import Bootstrap, load_document
from whoiscrawl.crawl.rdap_client import REQUEST_HEADERS, Fail, Ok, RdapClient, Retry, Throttle
from whoiscrawl.crawl.stats import StatsCollector

CAP = 1 << 20


async def _free(_registry: str) -> None:
    return None


def lookup(simulator, addr: int, max_body_bytes: int = CAP):
    async def go():
        doc, where = load_document(str(simulator.bootstrap_path))
        bootstrap = Bootstrap(doc, where)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), auto_decompress=False,
                                         headers=REQUEST_HEADERS) as session:
            client = RdapClient(session, bootstrap, StatsCollector(), _free, max_body_bytes=max_body_bytes)
            return await client.lookup(addr, bootstrap.route(addr))
    return asyncio.run(go())


@pytest.fixture(scope="module")
def apnic_addr(universe) -> int:
    return int(sample_addresses(universe, 1, registries={"apnic"}, allocated=True)[0])


EXPECTED = {
    # JSON shapes: the record is kept, the bad parts dropped
    "notices_not_list": (Ok, None),
    "roles_not_strings": (Ok, None),
    "entities_not_list": (Ok, None),
    "huge_record": (Ok, None),
    "deep_json": (Retry, "bad_body/too_deep"),
    # HTTP the client cannot read: transient (a proxy's hiccup), retried then failed by the policy
    "oversized_header": (Retry, "malformed_http"),
    "bad_status_line": (Retry, "malformed_http"),
    "bad_content_length": (Retry, "malformed_http"),
    "bad_chunking": (Retry, None),
    "non_http": (Retry, "malformed_http"),
    # final for the address
    "bad_location_port": (Fail, "redirect_bad_location"),
    "ipv6_location": (Fail, "redirect_bad_location"),
    "gzip_bomb": (Fail, "body_too_large"),
    "endless_chunked": (Fail, "body_too_large"),
    # an unreadable date is no date: the default pause
    "retry_after_overflow": (Throttle, "http_429"),
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_a_malformed_answer_is_a_retry_or_a_failure_with_a_reason(kind, clean_faults, apnic_addr):
    clean_faults.set_faults({"malformed": {"apnic": kind}})
    result = lookup(clean_faults, apnic_addr)
    kind_of, reason = EXPECTED[kind]
    assert isinstance(result, kind_of), (kind, result)
    if reason is not None:
        assert result.reason == reason, (kind, result)
    if isinstance(result, Ok):
        record = result.record
        assert all(isinstance(r, str) for e in record["entities"] for r in e["roles"])
        assert isinstance(record["handle"], str)
    if isinstance(result, Throttle):
        assert 0 < result.pause_s <= 600


@pytest.mark.parametrize("kind", ["gzip_bomb", "endless_chunked"])
def test_a_bomb_costs_no_more_than_a_few_mb_over_the_cap(kind, clean_faults, apnic_addr):
    clean_faults.set_faults({"malformed": {"apnic": kind}})
    lookup(clean_faults, apnic_addr)  # the simulator builds its bomb once, outside the measurement
    tracemalloc.start()
    try:
        result = lookup(clean_faults, apnic_addr)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(result, Fail) and result.reason == "body_too_large"
    print(f"{kind}: peak {peak / 1e6:.1f} MB traced for a {CAP / 1e6:.1f} MB cap")
    assert peak < CAP + 8 * 1e6, peak
