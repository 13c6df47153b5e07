from whoiscrawl.results import coverage


def net(reg, start, end):
    return {"registry": reg, "start": start, "end": end}


def test_nested_and_overlapping_networks_count_once():
    nets = [
        net("arin", "8.0.0.0", "8.255.255.255"),      # /8
        net("arin", "8.8.8.0", "8.8.8.255"),          # nested inside
        net("ripencc", "8.255.255.0", "9.0.0.255"),   # overlaps the end, spills into 9/8
        net("apnic", "1.1.1.0", "1.1.1.255"),
    ]
    outcomes = [
        {"addresses": 10, "skipped": 3, "looked_up": 6, "failed": 1, "failed_by_reason": {"not_found": 1},
         "counters": {"Got WHOIS": 6, "Within Known CIDR Block": 3, "Failed to lookup WHOIS": 1}},
        {"addresses": 5, "skipped": 0, "looked_up": 4, "failed": 1, "failed_by_reason": {"timeout": 1},
         "counters": {"Got WHOIS": 4, "Failed to lookup WHOIS": 1}},
    ]
    r = coverage.coverage_report(nets, outcomes, seed_count=15, run="t")
    assert r["addresses_covered"] == (1 << 24) + 256 + 256
    assert r["per_registry"]["arin"]["addresses_covered"] == 1 << 24
    assert r["per_registry"]["arin"]["networks"] == 2
    assert r["per_registry"]["ripencc"]["addresses_covered"] == 512
    assert r["non_reserved_total"] == 3_702_257_664
    assert r["coverage_percent"] == round(100 * r["addresses_covered"] / 3_702_257_664, 4)
    assert (r["looked_up"], r["skipped"], r["failed"]) == (10, 3, 2)
    assert r["failed_by_reason"] == {"not_found": 1, "timeout": 1}
    assert r["counters"]["Got WHOIS"] == 10
    assert list(r["counters"]) == ["Within Known CIDR Block", "Awaiting Registry", "Found Registry",
                                   "Looking up WHOIS", "Got WHOIS", "Failed to lookup WHOIS"]
    assert r["distinct_networks"] == 4


def test_empty_report():
    r = coverage.coverage_report([], [], seed_count=0)
    assert r["addresses_covered"] == 0 and r["coverage_percent"] == 0.0
