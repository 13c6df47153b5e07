from whoiscrawl.crawl.stats import ANCESTOR_COUNTERS, FAILED, GOT_WHOIS, WITHIN_KNOWN, StatsCollector
from whoiscrawl.crawl.telemetry import aggregate, build_report


def report(host, reporter, ts, got, skipped=0, failed=0):
    s = StatsCollector()
    s.inc("address/ripencc/looked_up", got)
    s.inc("address/all/skipped/known_network", skipped)
    s.inc("address/arin/failed/not_found", failed)
    s.inc("throttle/lacnic/received/http_429", 2)
    s.latency("lacnic", 0.2)
    r = build_report(s, host, reporter)
    r["timestamp"] = ts
    return r


def test_aggregate_takes_the_latest_report_of_each_reporter_and_sums():
    reports = [
        report("h1", "h1:1", 1.0, got=5),
        report("h1", "h1:1", 2.0, got=9, skipped=3),   # newer: replaces the first
        report("h2", "h2:1", 1.5, got=4, failed=1),
        report("h2", "h2:1", 1.0, got=1),              # older, arriving late: ignored
        report("h2", "h2:2", 3.0, got=2),
    ]
    agg = aggregate(reports)
    assert agg[GOT_WHOIS] == 9 + 4 + 2
    assert agg[WITHIN_KNOWN] == 3
    assert agg[FAILED] == 1
    assert agg["reporters"] == 3
    assert agg["hosts"]["h1"][GOT_WHOIS] == 9 and agg["hosts"]["h2"][GOT_WHOIS] == 6
    keys = [k for k in agg if k in ANCESTOR_COUNTERS]
    assert keys == sorted(keys)  # keys sorted, like the ancestor's command


def test_report_carries_the_six_counters_per_registry_figures_and_latency():
    r = report("h", "h:1", 1.0, got=3)
    assert all(name in r for name in ANCESTOR_COUNTERS)
    assert r["per_registry"]["lacnic"]["throttle/received/http_429"] == 2
    assert r["latency"]["lacnic"]["n"] == 1


def test_per_registry_counters_whatever_the_registry_position():
    s = StatsCollector()
    s.inc("redirect/arin/followed/ripencc", 4)
    s.inc("ratelimit/lacnic/waited/window", 7)
    s.inc("ratelimit/lacnic/paused/rate_limit_notice", 1)
    s.inc("response/apnic/status/200", 9)
    s.inc("address/all/skipped/known_network", 3)  # not per registry
    per = build_report(s, "h", "h:1")["per_registry"]
    assert per["arin"] == {"redirect/followed/ripencc": 4}
    assert per["lacnic"] == {"ratelimit/waited/window": 7, "ratelimit/paused/rate_limit_notice": 1}
    assert per["apnic"] == {"response/status/200": 9}
    assert set(per) == {"arin", "lacnic", "apnic"}
