"""Fault tests: the crawl on real services and the simulator, with one fault injected at a time.

They reuse the integration tests' crawl harness (``crawlkit``) and its service fixtures.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from crawlkit import CrawlHarness, small_universe  # noqa: E402

from whoiscrawl.simulator.server import SimulatorThread  # noqa: E402


@pytest.fixture(scope="session")
def universe():
    return small_universe()


@pytest.fixture(scope="module")
def simulator(universe) -> Iterator[SimulatorThread]:
    """One simulator per module, fast profile; each test sets the faults it needs and clears them."""
    with SimulatorThread(universe) as sim:
        yield sim


@pytest.fixture
def clean_faults(simulator) -> Iterator[SimulatorThread]:
    yield simulator
    simulator.set_faults({"malformed": {r: None for r in ("arin", "ripencc", "apnic", "lacnic", "afrinic")},
                          "up": ["arin", "ripencc", "apnic", "lacnic", "afrinic"]})


@pytest.fixture
def fault_harness(redis_flush, kafka, simulator) -> CrawlHarness:
    return CrawlHarness(redis_flush, kafka, str(simulator.bootstrap_path))
