"""A crawl process SIGKILLed mid-chunk, and the Kafka broker killed and restarted mid-crawl: nothing lost.

Last in the fault tests: the broker test restarts the session's broker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from crawlkit import sample_addresses
from faultkit import check_nothing_lost

from whoiscrawl.crawl.engine import ChunkDeliveryError
from whoiscrawl.crawl.netindex import KnownNetworkIndex

pytestmark = pytest.mark.integration

SLOW = "arin=20/1,ripencc=20/1,apnic=20/1,lacnic=20/1,afrinic=20/1"  # a crawl of a few seconds


def test_a_worker_killed_mid_chunk_loses_nothing_when_the_chunk_runs_again(universe, fault_harness, kafka,
                                                                           clean_faults, tmp_path):
    addrs = sample_addresses(universe, 150, seed=31, allocated=True)
    key = f"sigkill-{uuid.uuid4().hex[:8]}"
    conf = tmp_path / "child.json"
    conf.write_text(json.dumps({"redis_port": fault_harness.redis_server.port, "kafka": kafka.bootstrap_servers,
                                "bootstrap": fault_harness.bootstrap, "run_key": key,
                                "addrs": [int(a) for a in addrs], "overrides": {"RATE_LIMITS": SLOW}}))
    child = subprocess.Popen([sys.executable, str(Path(__file__).with_name("crawl_child.py")), str(conf)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    client = fault_harness.redis_server.client()
    index = KnownNetworkIndex(client, client, key=f"whoiscrawl:run:{key}:known")
    deadline = time.monotonic() + 120
    while index.sync() >= 0 and index.position < 10 and time.monotonic() < deadline:
        assert child.poll() is None, "the crawl ended before it could be killed"
        time.sleep(0.2)
    os.kill(child.pid, signal.SIGKILL)  # our own child, by its pid
    child.wait(timeout=10)
    before = len(fault_harness.records(key))
    assert 0 < before < len(addrs)
    # the task's retry: same run, same index; what was acknowledged is skipped, the rest looked up
    again, _ = fault_harness.run(addrs, run_key=key)
    records = fault_harness.records(key)
    assert again.skipped > 0
    figures = check_nothing_lost(universe, addrs, [again], records, earlier_records=before, max_duplicates=before)
    assert figures["not_delivered"] <= again.failed
    print("sigkill:", figures, "records before the kill", before)


def test_the_broker_killed_and_restarted_mid_crawl_loses_nothing(universe, fault_harness, kafka, clean_faults):
    addrs = sample_addresses(universe, 150, seed=41, allocated=True)
    key = f"brokerkill-{uuid.uuid4().hex[:8]}"
    result: dict = {}

    def crawl() -> None:
        try:
            result["outcome"], _ = fault_harness.run(addrs, run_key=key, RATE_LIMITS=SLOW)
        except ChunkDeliveryError as exc:  # the broker stayed away longer than message.timeout.ms
            result["error"] = exc

    thread = threading.Thread(target=crawl)
    thread.start()
    time.sleep(2.0)
    os.kill(kafka.pid, signal.SIGKILL)
    kafka.stop(timeout_s=10)
    time.sleep(2.0)
    kafka.start(timeout_s=180)
    thread.join(timeout=300)
    assert not thread.is_alive()
    outcomes = []
    if "error" in result:  # the chunk failed as a whole and names the cause; its retry completes it
        assert "unacknowledged" in str(result["error"]) or "refused" in str(result["error"])
        retry, _ = fault_harness.run(addrs, run_key=key)
        outcomes.append(retry)
    else:
        outcomes.append(result["outcome"])
    records = fault_harness.records(key)
    figures = check_nothing_lost(universe, addrs, outcomes, records,
                                 earlier_records=len(records) - sum(o.looked_up for o in outcomes))
    print("broker kill:", figures, "chunk failed first:", "error" in result)
