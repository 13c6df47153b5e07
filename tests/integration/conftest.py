"""Fixtures for tests on real services: a small simulator universe, a crawl harness (Kafka: tests/conftest.py)."""

from __future__ import annotations

import pytest
from crawlkit import CrawlHarness, small_universe


@pytest.fixture(scope="session")
def universe():
    return small_universe()


@pytest.fixture
def harness_factory(redis_flush, kafka):
    def make(bootstrap: str) -> CrawlHarness:
        return CrawlHarness(redis_flush, kafka, bootstrap)
    return make
