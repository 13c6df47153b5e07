"""One RDAP lookup: fetch at the right registry, follow safe redirects, classify the answer.

The client never sleeps and never retries by itself: it returns what happened
(``Ok``, ``Retry``, ``Throttle``, ``Fail``) and the engine applies the retry
policy (``policy.decide``), so that every decision is made and counted in one
place. Per request, in this order: rate-limit slot (``acquire``) → fetch →
redirect (allowlisted hosts only, a new slot per hop) → classify (throttle,
retry, fail) → parse. Routing happens before (``routing.Router``).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from urllib.parse import urljoin, urlsplit

import aiohttp

from whoiscrawl.crawl import ipspace
from whoiscrawl.crawl.bootstrap import Bootstrap, Service, netloc
from whoiscrawl.crawl.records import BadResponse, build_record, rate_limit_notice
from whoiscrawl.crawl.registries import registry_for_url
from whoiscrawl.crawl.stats import StatsCollector

REDIRECT_STATUSES = (301, 302, 303, 307, 308)


@dataclass
class Ok:
    """A network record; ``service`` is where it was found, ``redirected`` whether a redirect led there."""
    record: dict
    registry: str
    service: Service | None = None
    redirected: bool = False


@dataclass
class Retry:
    """Transient: try again later (timeouts, refused connections, 5xx, bad bodies)."""
    reason: str
    registry: str
    after_s: float | None = None


@dataclass
class Throttle:
    """The registry asked us to slow down: pause it on this host for ``pause_s``."""
    reason: str
    registry: str
    pause_s: float


@dataclass
class Fail:
    """Final for this address (not found, unsafe redirect, ...)."""
    reason: str
    registry: str | None


Result = Ok | Retry | Throttle | Fail


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


_NOTICE_WINDOW = re.compile(r"(\d+)\s+quer(?:y|ies)\s+per\s+(\d*)\s*(second|minute|hour)s?", re.I)
_UNIT_S = {"second": 1.0, "minute": 60.0, "hour": 3600.0}


def notice_window_s(text: str) -> float | None:
    """The window a rate-limit notice names ("maxed at 10 queries per 1 minutes" -> 60 s), if any."""
    m = _NOTICE_WINDOW.search(text or "")
    if not m:
        return None
    return float(m.group(2) or 1) * _UNIT_S[m.group(3).lower()]


def _normalise_host(entry: str) -> str:
    entry = entry.strip().lower()
    if "://" in entry:
        return netloc(entry)
    return entry if ":" in entry else f"{entry}:443"


class RdapClient:
    """Performs lookups over one aiohttp session; safe to share between the engine's workers."""

    def __init__(self, session: aiohttp.ClientSession, bootstrap: Bootstrap, stats: StatsCollector,
                 acquire: Callable[[str], Awaitable[Any]], *, max_redirects: int = 3,
                 allowlist: str = "", throttle_pause_s: float = 60.0,
                 retry_after_max_s: float = 600.0) -> None:
        self.session = session
        self.bootstrap = bootstrap
        self.stats = stats
        self.acquire = acquire
        self.max_redirects = max_redirects
        self.allowed_hosts = bootstrap.hosts() | {_normalise_host(h) for h in allowlist.split(",") if h.strip()}
        self.throttle_pause_s = throttle_pause_s
        self.retry_after_max_s = retry_after_max_s

    async def lookup(self, addr: int, service: Service, rate_limited: bool = True) -> Result:
        addr_str = ipspace.to_str(addr)
        url = f"{service.base_url}ip/{addr_str}"
        registry = service.registry
        visited = {url}
        redirected = False
        for _hop in range(self.max_redirects + 1):
            if rate_limited:
                await self.acquire(registry)
            started = time.monotonic()
            try:
                async with self.session.get(url, allow_redirects=False) as resp:
                    status = resp.status
                    headers = resp.headers
                    raw = await resp.read() if status not in REDIRECT_STATUSES else b""
            except asyncio.TimeoutError:
                self.stats.count("response", registry, "error", "timeout")
                return Retry("timeout", registry)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                kind = "refused" if isinstance(exc, aiohttp.ClientConnectorError) else "connection"
                self.stats.count("response", registry, "error", kind)
                return Retry(kind, registry)
            self.stats.latency(registry, time.monotonic() - started)
            self.stats.count("response", registry, "status", str(status))

            if status in REDIRECT_STATUSES:
                location = headers.get("Location")
                if not location:
                    self.stats.count("redirect", registry, "refused", "no_location")
                    return Fail("redirect_without_location", registry)
                target = urljoin(url, location)
                if urlsplit(target).scheme not in ("http", "https") or netloc(target) not in self.allowed_hosts:
                    self.stats.count("redirect", registry, "refused", "host")
                    return Fail("redirect_refused", registry)
                if urlsplit(target).scheme == "http" and (urlsplit(url).scheme == "https" or netloc(target).endswith(":443")):
                    self.stats.count("redirect", registry, "refused", "scheme")  # a downgrade to plain http
                    return Fail("redirect_refused", registry)
                if target in visited:
                    self.stats.count("redirect", registry, "refused", "loop")
                    return Fail("redirect_loop", registry)
                visited.add(target)
                new_registry = registry_for_url(target)
                self.stats.count("redirect", registry, "followed", new_registry)
                registry, url, redirected = new_registry, target, True
                continue
            return self._classify(addr, registry, url, status, headers, raw, redirected)
        self.stats.count("redirect", registry, "refused", "too_many")
        return Fail("too_many_redirects", registry)

    def _classify(self, addr: int, registry: str, url: str, status: int, headers: Any,
                  raw: bytes, redirected: bool) -> Result:
        if status == 429 or status == 403:
            pause = parse_retry_after(headers.get("Retry-After"))
            if pause is not None and pause > self.retry_after_max_s:
                return Fail("retry_after_too_long", registry)
            return Throttle(f"http_{status}", registry, self.throttle_pause_s if pause is None else pause)
        if status == 404:
            return Fail("not_found", registry)
        if status == 400:
            return Fail("bad_request", registry)
        if status != 200:
            return Retry(f"http_{status}", registry, parse_retry_after(headers.get("Retry-After")))
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            kind = "html" if raw.lstrip()[:1] == b"<" else "not_json"
            return Retry(f"bad_body/{kind}", registry)
        notice = rate_limit_notice(body)
        if notice is not None:  # pause for the window the notice names: then the budget is whole again
            return Throttle("rate_limit_notice", registry, notice_window_s(notice) or self.throttle_pause_s)
        try:
            record = build_record(addr, registry, body, url)
        except BadResponse as exc:
            return Retry(f"bad_body/{exc.reason}", registry)
        return Ok(record, registry, Service(registry, url.rsplit("/ip/", 1)[0] + "/"), redirected)
