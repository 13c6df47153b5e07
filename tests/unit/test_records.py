import json
from pathlib import Path

import pytest

from whoiscrawl.crawl import ipspace
from whoiscrawl.crawl.records import BadResponse, build_record, network_bounds, rate_limit_notice

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rdap"


def load(rel):
    return json.loads((FIXTURES / rel).read_text())


@pytest.mark.parametrize("rel,query,registry,handle,start,end,cidrs,country", [
    ("arin/13.72.183.192_whoisit.json", "13.72.183.192", "arin", "NET-13-64-0-0-1", "13.64.0.0",
     "13.107.255.255", ["13.64.0.0/11", "13.96.0.0/13", "13.104.0.0/14"], None),
    ("arin/74.125.225.229_ipwhois-2015.json", "74.125.225.229", "arin", "NET-74-125-0-0-1", "74.125.0.0",
     "74.125.255.255", ["74.125.0.0/16"], None),
    ("ripe/62.239.237.1_ipwhois-2015.json", "62.239.237.1", "ripencc", "62.239.237.0 - 62.239.237.255",
     "62.239.237.0", "62.239.237.255", ["62.239.237.0/24"], "GB"),
    ("apnic/1.1.1.1_whoisit-recorded-20240726.json", "1.1.1.1", "apnic", "1.1.1.0 - 1.1.1.255", "1.1.1.0",
     "1.1.1.255", ["1.1.1.0/24"], "AU"),
    ("lacnic/179.0.0.0-23_rdap-client.json", "179.0.1.7", "lacnic", "179.0.0.0/23", "179.0.0.0",
     "179.0.1.255", ["179.0.0.0/23"], None),
    ("afrinic/196.11.240.215_ipwhois-2015.json", "196.11.240.215", "afrinic", "196.11.239.0 - 196.11.246.255",
     "196.11.239.0", "196.11.246.255",
     ["196.11.239.0/24", "196.11.240.0/22", "196.11.244.0/23", "196.11.246.0/24"], "ZA"),
])
def test_real_responses_become_records(rel, query, registry, handle, start, end, cidrs, country):
    body = load(rel)
    rec = build_record(ipspace.to_int(query), registry, body, "http://x/ip/" + query)
    assert rec["handle"] == handle
    assert (rec["start"], rec["end"]) == (start, end)
    assert rec["cidrs"] == cidrs
    assert rec["country"] == country
    assert rec["registry"] == registry and rec["query"] == query
    assert rec["raw"] is body
    assert rec["entities"], "every fixture names at least one entity"
    assert all(set(e) == {"handle", "roles", "name", "email"} for e in rec["entities"])


def test_arin_nested_pocs_are_flattened_with_emails():
    rec = build_record(ipspace.to_int("13.72.183.192"), "arin", load("arin/13.72.183.192_whoisit.json"), "u")
    handles = {e["handle"] for e in rec["entities"]}
    assert "MSFT" in handles and len(handles) > 1
    assert any(e["email"] for e in rec["entities"])


def test_query_outside_the_network_is_rejected():
    with pytest.raises(BadResponse) as err:
        build_record(ipspace.to_int("8.8.8.8"), "apnic", load("apnic/1.1.1.1_rdap-client.json"), "u")
    assert err.value.reason == "query_outside_network"


@pytest.mark.parametrize("body,reason", [
    ([], "not_an_object"),
    ("<html>", "not_an_object"),
    ({"errorCode": 404, "title": "Not Found"}, "rdap_error"),
    ({"handle": "x"}, "no_network"),
    ({"startAddress": "1.2.3.4", "endAddress": "1.2.3.0"}, "bad_range"),
    ({"startAddress": "banana", "endAddress": "1.2.3.0"}, "no_network"),
])
def test_bad_bodies_name_their_reason(body, reason):
    with pytest.raises(BadResponse) as err:
        network_bounds(body)
    assert err.value.reason == reason


def test_lacnic_rate_limit_notice_is_recognised():
    body = {"notices": [{"title": "Rate Limit Notice",
                         "description": ["Rate Limit is maxed at 10 queries per 1 minutes."]}]}
    assert "10 queries" in rate_limit_notice(body)
    assert rate_limit_notice(load("lacnic/179.0.0.0-23_rdap-client.json")) is None
