import email.utils
import time

from whoiscrawl.crawl import ipspace
from whoiscrawl.crawl.bootstrap import Service, netloc
from whoiscrawl.crawl.rdap_client import parse_retry_after
from whoiscrawl.crawl.routing import LearnedRoutes, learned_range


def test_retry_after_as_seconds_or_http_date():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 0 ") == 0.0
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after(date, now=now) <= 31
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


def test_netloc_names_default_ports():
    assert netloc("https://rdap.arin.net/registry/") == "rdap.arin.net:443"
    assert netloc("http://127.0.0.1:18081/arin/") == "127.0.0.1:18081"
    assert netloc("http://RDAP.example/") == "rdap.example:80"


def rec(start, end, parent=None):
    return {"start": start, "end": end, "parent_handle": parent}


def test_learned_range_widens_to_a_parseable_parent_only():
    s, e = ipspace.to_int("193.0.0.0"), ipspace.to_int("193.0.7.255")
    assert learned_range(rec("193.0.0.0", "193.0.7.255", "193.0.0.0 - 193.0.23.255")) == \
        (s, ipspace.to_int("193.0.23.255"))
    assert learned_range(rec("179.0.0.0", "179.0.1.255", "179.0.0.0/16")) == \
        (ipspace.to_int("179.0.0.0"), ipspace.to_int("179.0.255.255"))
    # ARIN handles, RIPE's whole-space legacy parent and parents that do not contain the network teach only the network
    assert learned_range(rec("193.0.0.0", "193.0.7.255", "NET-193-0-0-0-0")) == (s, e)
    assert learned_range(rec("193.0.0.0", "193.0.7.255", "0.0.0.0 - 255.255.255.255")) == (s, e)
    assert learned_range(rec("193.0.0.0", "193.0.7.255", "10.0.0.0 - 10.0.0.255")) == (s, e)


def test_learned_routes_find_the_enclosing_learned_range():
    routes = LearnedRoutes()
    a = Service("ripencc", "http://r/ripencc/")
    b = Service("arin", "http://a/arin/")
    routes.learn(ipspace.to_int("130.59.0.0"), ipspace.to_int("130.59.255.255"), a)
    routes.learn(ipspace.to_int("130.60.0.0"), ipspace.to_int("130.60.0.255"), b)
    routes.learn(ipspace.to_int("130.59.10.0"), ipspace.to_int("130.59.10.255"), b)  # nested
    assert routes.route(ipspace.to_int("130.59.31.80")) is a
    assert routes.route(ipspace.to_int("130.59.10.7")) is b
    assert routes.route(ipspace.to_int("130.60.0.9")) is b
    assert routes.route(ipspace.to_int("130.61.0.1")) is None
    assert routes.route(ipspace.to_int("1.1.1.1")) is None
    assert len(routes) == 3


def test_rate_limit_notice_names_its_window():
    from whoiscrawl.crawl.rdap_client import notice_window_s

    assert notice_window_s("Rate Limit is maxed at 10 queries per 1 minutes.") == 60.0
    assert notice_window_s("maxed at 1000 queries per 1 hour") == 3600.0
    assert notice_window_s("5 queries per second") == 1.0
    assert notice_window_s("slow down") is None


def test_a_rate_limit_notice_pause_is_capped_like_retry_after():
    import json as _json

    from whoiscrawl.crawl.bootstrap import Bootstrap
    from whoiscrawl.crawl.rdap_client import RdapClient, Throttle
    from whoiscrawl.crawl.stats import StatsCollector

    client = RdapClient(None, Bootstrap({"services": []}), StatsCollector(), None, retry_after_max_s=600.0)
    body = {"notices": [{"title": "Rate Limit Notice",
                         "description": ["Rate Limit is maxed at 10 queries per 99999 minutes."]}]}
    result = client._classify(1, "lacnic", "http://x/lacnic/ip/0.0.0.1", 200, {}, _json.dumps(body).encode(), False)
    assert isinstance(result, Throttle) and result.pause_s == 600.0
    body["notices"][0]["description"] = ["Rate Limit is maxed at 10 queries per 1 minutes."]
    result = client._classify(1, "lacnic", "http://x/lacnic/ip/0.0.0.1", 200, {}, _json.dumps(body).encode(), False)
    assert result.pause_s == 60.0


def test_retry_after_that_overflows_or_is_not_a_number_is_no_pause_length():
    assert parse_retry_after("Fri, 31 Dec 99999 23:59:59 GMT") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after("1e400") == float("inf")  # longer than any cap: the address is failed
