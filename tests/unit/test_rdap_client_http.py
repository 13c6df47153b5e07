"""RdapClient against small real HTTP servers on loopback: redirect loops, bad redirects, bad bodies, throttles."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from aiohttp import web

from whoiscrawl.crawl import ipspace
from whoiscrawl.crawl.bootstrap import Bootstrap
from whoiscrawl.crawl.rdap_client import Fail, Ok, RdapClient, Retry, Throttle
from whoiscrawl.crawl.routing import Router
from whoiscrawl.crawl.stats import StatsCollector

FIXTURE = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "rdap" / "apnic"
                      / "1.1.1.1_whoisit-recorded-20240726.json").read_text())
ADDR = ipspace.to_int("1.1.1.1")
PORTS: dict[str, int] = {}  # the current servers' ports, for handlers that redirect between them


async def _acquire(_registry: str) -> None:
    return None


async def lookup_against(handler, allowlist: str = "", max_redirects: int = 3):
    """Serve ``handler`` on two loopback ports (registries 'apnic' and 'arin') and look 1.1.1.1 up."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    sites = [web.TCPSite(runner, "127.0.0.1", 0) for _ in range(2)]
    for site in sites:
        await site.start()
    ports = [addr[1] for addr in runner.addresses]
    PORTS.update(apnic=ports[0], arin=ports[1])
    doc = {"services": [[["1.0.0.0/8"], [f"http://127.0.0.1:{ports[0]}/apnic/"]],
                        [["3.0.0.0/8"], [f"http://127.0.0.1:{ports[1]}/arin/"]]]}
    bootstrap = Bootstrap(doc)
    stats = StatsCollector()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            client = RdapClient(session, bootstrap, stats, _acquire, max_redirects=max_redirects,
                                allowlist=allowlist)
            result = await client.lookup(ADDR, bootstrap.route(ADDR))
    finally:
        await runner.cleanup()
    return result, stats, ports


def run(handler, **kw):
    return asyncio.run(lookup_against(handler, **kw))


def test_a_redirect_loop_is_detected():
    async def handler(request):
        other = "/arin/" if request.path.startswith("/apnic/") else "/apnic/"
        raise web.HTTPFound(f"{other}ip/1.1.1.1")  # same host: apnic -> arin -> apnic ...
    result, stats, _ = run(handler)
    assert isinstance(result, Fail) and result.reason == "redirect_loop"
    assert stats["redirect/apnic/refused/loop"] + stats["redirect/arin/refused/loop"] == 1


def test_too_many_redirects_are_refused():
    async def handler(request):
        n = int(request.query.get("n", "0"))
        raise web.HTTPMovedPermanently(f"{request.path}?n={n + 1}")
    result, stats, _ = run(handler, max_redirects=3)
    assert isinstance(result, Fail) and result.reason == "too_many_redirects"
    assert stats["response/apnic/status/301"] == 4


def test_a_redirect_off_the_bootstrap_hosts_is_refused_unless_allowlisted():
    async def handler(request):
        if request.path.startswith("/apnic/"):
            raise web.HTTPTemporaryRedirect("http://localhost:9/elsewhere/ip/1.1.1.1")
        return web.json_response(FIXTURE)
    result, stats, _ = run(handler)
    assert isinstance(result, Fail) and result.reason == "redirect_refused"
    assert stats["redirect/apnic/refused/host"] == 1
    # allowlisted: followed (and the target here refuses connections, a transient failure)
    result, _, _ = run(handler, allowlist="localhost:9")
    assert isinstance(result, Retry) and result.reason == "refused"


def test_a_redirect_to_plain_http_on_an_https_port_is_refused_even_when_the_host_is_allowlisted():
    async def handler(request):
        raise web.HTTPFound("http://localhost:443/ip/1.1.1.1")
    result, stats, _ = run(handler, allowlist="localhost")  # localhost:443, i.e. https://localhost
    assert isinstance(result, Fail) and result.reason == "redirect_refused"
    assert stats["redirect/apnic/refused/scheme"] == 1 and stats["redirect/apnic/refused/host"] == 0


def test_a_redirect_without_location_or_to_a_non_http_scheme_fails():
    async def no_location(request):
        return web.Response(status=302)
    assert run(no_location)[0].reason == "redirect_without_location"

    async def ftp(request):
        raise web.HTTPFound("ftp://127.0.0.1/ip/1.1.1.1")
    assert run(ftp)[0].reason == "redirect_refused"


def test_following_a_redirect_to_another_registry_names_the_owner_and_learns_the_range():
    async def handler(request):
        if request.path.startswith("/apnic/"):
            raise web.HTTPFound(f"http://127.0.0.1:{PORTS['arin']}/arin/ip/1.1.1.1")
        return web.json_response(FIXTURE, content_type="application/rdap+json")
    result, stats, ports = run(handler)
    assert isinstance(result, Ok) and result.registry == "arin"
    assert result.record["url"] == f"http://127.0.0.1:{ports[1]}/arin/ip/1.1.1.1"
    assert stats["redirect/apnic/followed/arin"] == 1
    assert result.redirected and result.service.registry == "arin"
    router = Router(Bootstrap({"services": [[["1.0.0.0/8"], [f"http://127.0.0.1:{ports[0]}/apnic/"]]]}))
    router.learn(result.record, result.service)  # what the engine does with a redirected answer
    assert router.route(ADDR).registry == "arin"


def test_bad_bodies_and_throttles_are_classified():
    async def html(request):
        return web.Response(text="<html><body>Service temporarily unavailable</body></html>",
                            content_type="text/html")
    r = run(html)[0]
    assert isinstance(r, Retry) and r.reason == "bad_body/html"

    async def truncated(request):
        return web.Response(body=json.dumps(FIXTURE)[:100].encode(), content_type="application/rdap+json")
    r = run(truncated)[0]
    assert isinstance(r, Retry) and r.reason == "bad_body/not_json"

    async def storm(request):
        return web.Response(status=503, headers={"Retry-After": "7"})
    r = run(storm)[0]
    assert isinstance(r, Retry) and r.reason == "http_503" and r.after_s == 7

    async def too_many(request):
        return web.json_response({"errorCode": 429, "title": "Too Many Requests"}, status=429,
                                 headers={"Retry-After": "12"})
    r = run(too_many)[0]
    assert isinstance(r, Throttle) and r.pause_s == 12 and r.registry == "apnic"

    async def too_long(request):
        return web.Response(status=429, headers={"Retry-After": "86400"})
    assert run(too_long)[0].reason == "retry_after_too_long"

    async def notice(request):
        return web.json_response({"notices": [{"title": "Rate Limit Notice",
                                               "description": ["Rate Limit is maxed at 10 queries per 1 minutes."]}]})
    r = run(notice)[0]
    assert isinstance(r, Throttle) and r.reason == "rate_limit_notice" and r.pause_s == 60

    async def wrong_network(request):
        body = dict(FIXTURE, startAddress="8.8.8.0", endAddress="8.8.8.255")
        return web.json_response(body)
    r = run(wrong_network)[0]
    assert isinstance(r, Retry) and r.reason == "bad_body/query_outside_network"

    async def missing(request):
        return web.json_response({"errorCode": 404, "title": "Not Found"}, status=404)
    assert run(missing)[0].reason == "not_found"

    async def fine(request):
        return web.json_response(FIXTURE, content_type="application/rdap+json")
    r = run(fine)[0]
    assert isinstance(r, Ok) and r.record["handle"] == "1.1.1.0 - 1.1.1.255"
