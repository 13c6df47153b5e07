"""Fixtures for tests on real services: a Kafka broker, a small simulator universe, a crawl harness."""

from __future__ import annotations

from typing import Iterator

import pytest
from crawlkit import CrawlHarness, small_universe

from whoiscrawl.devtools.services import MissingDependency, free_port
from whoiscrawl.devtools.services.kafka_broker import KafkaBroker


@pytest.fixture(scope="session")
def universe():
    return small_universe()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A real Kafka broker (KRaft, one node) for the session, with the crawl's topics."""
    home = tmp_path_factory.mktemp("kafka-home")
    broker = KafkaBroker(home, free_port(), free_port())
    try:
        broker.ensure_jars()
        broker.format_storage()
        broker.start(timeout_s=120)
    except MissingDependency as exc:
        pytest.skip(str(exc))
    try:
        broker.create_topics({"results": 4, "metrics": 1})
        yield broker
    finally:
        broker.stop(timeout_s=30)


@pytest.fixture
def harness_factory(redis_flush, kafka):
    def make(bootstrap: str) -> CrawlHarness:
        return CrawlHarness(redis_flush, kafka, bootstrap)
    return make
