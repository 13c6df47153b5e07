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
import math
import re
import time
import zlib
from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from urllib.parse import urljoin, urlsplit

import aiohttp
import orjson

from whoiscrawl.crawl import ipspace
from whoiscrawl.crawl.bootstrap import Bootstrap, Service, netloc
from whoiscrawl.crawl.records import BadResponse, build_record, rate_limit_notice
from whoiscrawl.crawl.stats import StatsCollector
from whoiscrawl.errors import WhoiscrawlError

REDIRECT_STATUSES = (301, 302, 303, 307, 308)
#: Ask for the body as it is: a compressed one is decompressed here, never past the size cap.
REQUEST_HEADERS = {"Accept-Encoding": "identity"}
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class BodyTooLarge(WhoiscrawlError):
    """The answer's body (after decompression) passed the size cap."""


class BadEncoding(WhoiscrawlError):
    """A Content-Encoding this client cannot read, or a compressed body that does not decompress."""


async def read_capped(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The body, read as a stream and decompressed here, at most ``max_bytes`` (else BodyTooLarge).

    The session is built with ``auto_decompress=False`` so a gzip bomb never grows past the cap: every
    decompression step asks zlib for at most what the cap still allows.
    """
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        decoder = None
    elif encoding in _WBITS:
        decoder = zlib.decompressobj(_WBITS[encoding])
    else:
        raise BadEncoding(encoding)
    out = bytearray()
    async for piece in resp.content.iter_any():
        if decoder is None:
            out += piece
        else:
            try:
                data = piece
                while data:
                    out += decoder.decompress(data, max_bytes + 1 - len(out))
                    if len(out) > max_bytes:
                        break
                    data = decoder.unconsumed_tail
            except zlib.error as exc:
                raise BadEncoding(str(exc)) from None
        if len(out) > max_bytes:
            raise BodyTooLarge(len(out))
    return bytes(out)


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
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            seconds = when.timestamp() - (now if now is not None else time.time())
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)  # may be inf: longer than any cap, so the caller refuses it


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


def decode_json(raw: bytes) -> Any:
    """An answer's JSON: orjson (a search answer of a hundred networks is half a megabyte), and the json
    module's reading where orjson refuses (integers past 64 bits; nesting past 1,024 is RecursionError).
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "recursion" in str(exc):
            raise RecursionError(str(exc)) from None
    return json.loads(raw)


class RdapClient:
    """Performs lookups over one aiohttp session; safe to share between the engine's workers."""

    def __init__(self, session: aiohttp.ClientSession, bootstrap: Bootstrap, stats: StatsCollector,
                 acquire: Callable[[str], Awaitable[Any]], *, max_redirects: int = 3,
                 allowlist: str = "", throttle_pause_s: float = 60.0,
                 retry_after_max_s: float = 600.0, max_body_bytes: int = 1 << 20) -> None:
        self.session = session
        self.bootstrap = bootstrap
        self.stats = stats
        self.acquire = acquire
        self.max_redirects = max_redirects
        self.allowed_hosts = bootstrap.hosts() | {_normalise_host(h) for h in allowlist.split(",") if h.strip()}
        self.throttle_pause_s = throttle_pause_s
        self.retry_after_max_s = retry_after_max_s
        self.max_body_bytes = max_body_bytes

    async def lookup(self, addr: int, service: Service, rate_limited: bool = True, *,
                     path: str | None = None, parse: Callable[[int, str, dict, str], dict] | None = None) -> Result:
        """``ip/<addr>`` by default; ``path`` asks another query of the same service (a prefix, a
        relation search) and ``parse`` turns its body into the record (default: ``build_record``)."""
        addr_str = ipspace.to_str(addr)
        url = f"{service.base_url}{path or 'ip/' + addr_str}"
        registry = service.registry
        visited = {url}
        redirected = False
        for _hop in range(self.max_redirects + 1):
            if rate_limited:
                await self.acquire(registry)
            started = time.monotonic()
            try:
                async with self.session.get(url, allow_redirects=False, headers=REQUEST_HEADERS) as resp:
                    status = resp.status
                    headers = resp.headers
                    raw = await read_capped(resp, self.max_body_bytes) if status not in REDIRECT_STATUSES else b""
            except asyncio.TimeoutError:
                self.stats.count("response", registry, "error", "timeout")
                return Retry("timeout", registry)
            except BodyTooLarge:  # the same answer would come again: not worth another attempt
                self.stats.count("response", registry, "error", "too_large")
                return Fail("body_too_large", registry)
            except BadEncoding:
                self.stats.count("response", registry, "error", "bad_encoding")
                return Retry("bad_encoding", registry)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                kind = "refused" if isinstance(exc, aiohttp.ClientConnectorError) else "connection"
                self.stats.count("response", registry, "error", kind)
                return Retry(kind, registry)
            except (aiohttp.ClientResponseError, aiohttp.ClientError, ValueError):
                # not HTTP as aiohttp reads it: bad status line, oversized header, bad framing, a non-HTTP port
                self.stats.count("response", registry, "error", "malformed_http")
                return Retry("malformed_http", registry)
            self.stats.latency(registry, time.monotonic() - started)
            self.stats.count("response", registry, "status", str(status))

            if status in REDIRECT_STATUSES:
                location = headers.get("Location")
                if not location:
                    self.stats.count("redirect", registry, "refused", "no_location")
                    return Fail("redirect_without_location", registry)
                try:
                    target = urljoin(url, location)
                    allowed = urlsplit(target).scheme in ("http", "https") and netloc(target) in self.allowed_hosts
                except ValueError:  # a bad port, a broken IPv6 literal
                    self.stats.count("redirect", registry, "refused", "bad_location")
                    return Fail("redirect_bad_location", registry)
                if not allowed:
                    self.stats.count("redirect", registry, "refused", "host")
                    return Fail("redirect_refused", registry)
                if urlsplit(target).scheme == "http" and (urlsplit(url).scheme == "https" or netloc(target).endswith(":443")):
                    self.stats.count("redirect", registry, "refused", "scheme")  # a downgrade to plain http
                    return Fail("redirect_refused", registry)
                if target in visited:
                    self.stats.count("redirect", registry, "refused", "loop")
                    return Fail("redirect_loop", registry)
                visited.add(target)
                new_registry = self.bootstrap.registry_for_url(target)
                self.stats.count("redirect", registry, "followed", new_registry)
                registry, url, redirected = new_registry, target, True
                continue
            return self._classify(addr, registry, url, status, headers, raw, redirected, parse or build_record)
        self.stats.count("redirect", registry, "refused", "too_many")
        return Fail("too_many_redirects", registry)

    def _classify(self, addr: int, registry: str, url: str, status: int, headers: Any,
                  raw: bytes, redirected: bool,
                  parse: Callable[[int, str, dict, str], dict] = build_record) -> Result:
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
            body = decode_json(raw)
        except RecursionError:
            return Retry("bad_body/too_deep", registry)
        except (ValueError, UnicodeDecodeError):
            kind = "html" if raw.lstrip()[:1] == b"<" else "not_json"
            return Retry(f"bad_body/{kind}", registry)
        notice = rate_limit_notice(body)
        if notice is not None:  # pause for the window the notice names (capped): then the budget is whole again
            window = notice_window_s(notice) or self.throttle_pause_s
            return Throttle("rate_limit_notice", registry, min(window, self.retry_after_max_s))
        try:
            record = parse(addr, registry, body, url)
        except BadResponse as exc:
            return Retry(f"bad_body/{exc.reason}", registry)
        base = url.rsplit("/ip/", 1)[0] if "/ip/" in url else url.rsplit("/ips/", 1)[0]
        return Ok(record, registry, Service(registry, base + "/"), redirected)
