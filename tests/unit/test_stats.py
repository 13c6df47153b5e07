"""The stats collector: declared keys only, one grammar, the ancestor's counters as a view, floats kept."""

import pytest

from whoiscrawl.crawl.stats import FAILED, GOT_WHOIS, LOOKING_UP, WITHIN_KNOWN, StatsCollector, key, registry_of


def test_an_undeclared_stat_is_refused():
    s = StatsCollector()
    with pytest.raises(ValueError, match="not declared"):
        s.inc("retry/reason/http_429/lacnic")
    with pytest.raises(ValueError):
        s.count("address", "lacnic", "exploded")


def test_keys_follow_the_grammar_and_name_their_registry():
    assert key("address", "lacnic", "failed", "not_found") == "address/lacnic/failed/not_found"
    assert key("index", None, "checks") == "index/all/checks"
    assert registry_of("attempt/apnic/transient/bad_body/html") == "apnic"
    assert registry_of("index/all/checks") is None


def test_the_ancestor_counters_are_computed_from_the_stats():
    s = StatsCollector()
    s.count("address", None, "skipped", "known_network", n=3)
    s.count("address", "arin", "looked_up", n=2)
    s.count("address", "ripencc", "looked_up")
    s.count("address", "arin", "failed", "not_found")
    s.count("address", None, "failed", "no_registry")
    s.count("lookup", "arin", "attempt", n=5)
    s.count("response", "arin", "status", "200", n=5)  # adds to no ancestor counter
    view = s.ancestor_view()
    assert view[WITHIN_KNOWN] == 3 and view[GOT_WHOIS] == 3 and view[FAILED] == 2 and view[LOOKING_UP] == 5
    assert list(view)[0] == WITHIN_KNOWN


def test_seconds_keep_their_fraction():
    s = StatsCollector()
    s.count("ratelimit", "lacnic", "waited_s", n=0.25)
    s.count("ratelimit", "lacnic", "waited_s", n=0.5)
    assert s.as_dict()["ratelimit/lacnic/waited_s"] == 0.75
    s.latency("arin", 0.125)
    assert s.as_dict()["response/arin/latency_s"] == 0.125


def test_merge_and_totals():
    a, b = StatsCollector(), StatsCollector()
    a.count("redirect", "apnic", "refused", "loop")
    b.count("redirect", "arin", "refused", "host", n=2)
    b.count("redirect", "arin", "followed", "ripencc")
    a.merge(b)
    assert a.total(area="redirect", event="refused") == 3
    assert a.total("redirect/arin/") == 3
