"""The RIRs' delegated-extended statistics files: where they are, and the allocations they list.

A planned crawl starts from what each registry publishes about its own space:
one row per allocation or assignment. The IPv4 ``value`` column is a host
count, not a prefix length, so a row may need several CIDRs. The files are
plain HTTP(S) downloads, one GET per registry, taken from the same per-host
rate budget as RDAP queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping
from urllib.parse import urlsplit

import aiohttp

from whoiscrawl.crawl import ipspace
from whoiscrawl.crawl.registries import REAL_HOSTS, REGISTRIES
from whoiscrawl.errors import WhoiscrawlError

#: Where the real registries publish their files.
DEFAULT_URLS: dict[str, str] = {
    "arin": "https://ftp.arin.net/pub/stats/arin/delegated-arin-extended-latest",
    "ripencc": "https://ftp.ripe.net/pub/stats/ripencc/delegated-ripencc-extended-latest",
    "apnic": "https://ftp.apnic.net/stats/apnic/delegated-apnic-extended-latest",
    "lacnic": "https://ftp.lacnic.net/pub/stats/lacnic/delegated-lacnic-extended-latest",
    "afrinic": "https://ftp.afrinic.net/pub/stats/afrinic/delegated-afrinic-extended-latest",
}

#: The conformance value of RFC 9910 relation searches.
SEARCH_CONFORMANCE = "rirSearch1"

#: Row statuses that are someone's space (``available`` and ``reserved`` rows are not).
HELD_STATUSES = ("allocated", "assigned")


class DelegatedError(WhoiscrawlError):
    """A delegated file that cannot be fetched or read."""


@dataclass(frozen=True)
class Allocation:
    """One delegated row: [start, end] inclusive, as held by ``registry``."""
    registry: str
    start: int
    end: int
    status: str
    country: str = ""

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def cidrs(self) -> list[str]:
        return ipspace.range_to_cidrs(self.start, self.end)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def real_defaults(document: dict[str, Any]) -> dict[str, str]:
    """The real files' URLs, for the registries the bootstrap reaches at their real RDAP hosts only.

    A registry reached elsewhere (the simulator, a mirror) is another universe: the real file would plan
    the wrong allocations, and fetching it from a test stack would leave the machine. Name its file in
    ``delegated_urls``, or its plan uses its bootstrap ranges.
    """
    real = set()
    for entry in document.get("services") or []:
        for url in (entry[1] if isinstance(entry, list) and len(entry) > 1 else []):
            host = (urlsplit(str(url)).hostname or "").lower()
            if host in REAL_HOSTS:
                real.add(REAL_HOSTS[host])
    return {r: u for r, u in DEFAULT_URLS.items() if r in real}


def parse_urls(text: str, defaults: dict[str, str] | None = None) -> dict[str, str]:
    """``registry=url,...`` over ``defaults`` (the real files' URLs); a registry set to nothing has no file."""
    urls = dict(DEFAULT_URLS if defaults is None else defaults)
    for item in (text or "").split(","):
        if not item.strip():
            continue
        registry, sep, url = item.partition("=")
        registry = registry.strip().lower()
        if not sep or registry not in REGISTRIES:
            raise ValueError(f"delegated URL entry {item.strip()!r}: expected registry=url with one of "
                             f"{', '.join(REGISTRIES)}")
        url = url.strip()
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"delegated URL for {registry} must be http(s): {url!r}")
        urls[registry] = url
    return urls


def parse_delegated(text: str, registry: str | None = None) -> list[Allocation]:
    """The held IPv4 rows of a delegated(-extended) file, in file order.

    Comments, the version line, summary lines, other resource types and
    rows of other registries (when ``registry`` is given) are left out; a
    malformed IPv4 row raises, naming its line (a half-read plan is worse
    than none: the caller falls back to the bootstrap's ranges).
    """
    out: list[Allocation] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split("|")
        if len(fields) < 7 or fields[2] != "ipv4" or fields[1] == "*" or fields[3] == "*":
            continue  # version line, summaries, asn/ipv6 rows
        reg, cc, _type, start_text, value, _date, status = fields[:7]
        if registry is not None and reg != registry:
            continue
        if status not in HELD_STATUSES:
            continue
        try:
            start = ipspace.to_int(start_text)
            hosts = int(value)
        except ValueError:
            raise DelegatedError(f"delegated file line {number}: bad ipv4 row {line!r}") from None
        end = start + hosts - 1
        if hosts <= 0 or end > 0xFFFFFFFF:
            raise DelegatedError(f"delegated file line {number}: {hosts} hosts from {start_text} leave IPv4")
        out.append(Allocation(reg, start, end, status, cc))
    return out


async def fetch_delegated(session: aiohttp.ClientSession, registry: str, url: str,
                          acquire: Callable[[str], Awaitable[Any]]) -> list[Allocation]:
    """One GET of the registry's file within its rate budget; DelegatedError when it cannot be had."""
    await acquire(registry)
    try:
        async with session.get(url, allow_redirects=True, headers={"Accept": "text/plain"}) as resp:
            if resp.status != 200:
                raise DelegatedError(f"{registry} delegated file {url}: HTTP {resp.status}")
            raw = await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DelegatedError(f"{registry} delegated file {url}: {type(exc).__name__}: {exc}") from None
    return parse_delegated(raw.decode("utf-8", errors="replace"), registry)


async def fetch_conformance(session: aiohttp.ClientSession, registry: str, base_url: str,
                            acquire: Callable[[str], Awaitable[Any]]) -> list[str] | None:
    """The registry's ``rdapConformance`` from its ``help`` answer (RFC 9082), None when it cannot be had.

    It says before any lookup whether the registry offers relation searches (``rirSearch1``), which
    decides how its allocations are dealt to chunks (runs of neighbours, for searches over ranges).
    """
    await acquire(registry)
    url = base_url.rstrip("/") + "/help"
    try:
        async with session.get(url, allow_redirects=True,
                               headers={"Accept": "application/rdap+json, application/json"}) as resp:
            if resp.status != 200:
                return None
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    values = body.get("rdapConformance") if isinstance(body, dict) else None
    return [v for v in values if isinstance(v, str)] if isinstance(values, list) else None


def urls_for(mapping: Mapping[str, str], registries: list[str]) -> dict[str, str]:
    """The URL of each registry that has one."""
    return {r: mapping[r] for r in registries if mapping.get(r)}
