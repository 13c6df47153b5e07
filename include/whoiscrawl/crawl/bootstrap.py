"""RFC 9224 bootstrap: which registry serves an address, with no request per address.

The ancestor sent a HEAD request per address to learn its registry; the
bootstrap file answers the same question locally. The configure task loads it
once per run, from a path, from an http(s) URL (cached on disk for
``BOOTSTRAP_MAX_AGE_S``), or, by default, from IANA's file shipped in the
package, and every host routes with that one document. Longest prefix match,
as the RFC requires.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from whoiscrawl.crawl import ipspace
from whoiscrawl.crawl.registries import registry_for_url
from whoiscrawl.errors import WhoiscrawlError
from whoiscrawl.settings import Settings


#: Where IANA publishes the file; ``whoiscrawl bootstrap refresh`` with no source fetches it.
IANA_URL = "https://data.iana.org/rdap/ipv4.json"


class BootstrapError(WhoiscrawlError):
    """The bootstrap file is missing, unreachable or not an RFC 9224 IPv4 file."""


@dataclass(frozen=True)
class Service:
    registry: str
    base_url: str  # ends with "/"


class Bootstrap:
    """Prefix → RDAP service map from an RFC 9224 IPv4 bootstrap document."""

    def __init__(self, document: dict[str, Any], source: str = "", prefer_https: bool = True,
                 names: str = "") -> None:
        try:
            services = document["services"]
        except (KeyError, TypeError):
            raise BootstrapError(f"{source or 'bootstrap'}: no 'services' array") from None
        self.source = source
        self.names = parse_names(names)
        self.publication = document.get("publication")
        self.services: list[Service] = []
        # per prefix length: {network >> (32 - len): service index}
        self._by_length: dict[int, dict[int, int]] = {}
        for entry in services:
            if not (isinstance(entry, list) and len(entry) >= 2):
                raise BootstrapError(f"{source}: malformed service entry {entry!r}")
            prefixes, urls = entry[0], entry[1]
            url = self._choose_url(urls, prefer_https)
            if url is None:
                continue
            self.services.append(Service(self._name(url), url))
            index = len(self.services) - 1
            for prefix in prefixes:
                start, end = ipspace.network_range(prefix)
                length = 32 - (end - start + 1).bit_length() + 1
                self._by_length.setdefault(length, {})[start >> (32 - length) if length else 0] = index
        self._lengths = sorted(self._by_length, reverse=True)

    @staticmethod
    def _choose_url(urls: list[str], prefer_https: bool) -> str | None:
        ok = [u for u in urls if isinstance(u, str) and urlsplit(u).scheme in ("http", "https")]
        if not ok:
            return None
        if prefer_https:
            ok.sort(key=lambda u: urlsplit(u).scheme != "https")
        url = ok[0]
        return url if url.endswith("/") else url + "/"

    def _name(self, url: str) -> str:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        return self.names.get(netloc(url)) or self.names.get(host) or registry_for_url(url)

    def registry_for_url(self, url: str) -> str:
        """Name the registry behind a URL: a service host of this bootstrap keeps the service's name."""
        where = netloc(url)
        for service in self.services:
            if netloc(service.base_url) == where:
                return service.registry
        return self._name(url)

    def check_rate_limits(self, rate_limits: str) -> None:
        """A ``rate_limits`` entry naming no registry of this bootstrap is a mistake: say so before any crawl."""
        from whoiscrawl.crawl.ratelimit import RateLimits

        unknown = sorted(RateLimits.names_in(rate_limits) - set(self.registries()))
        if unknown:
            raise BootstrapError(
                f"rate_limits names {', '.join(unknown)}, not a registry of bootstrap {self.source or '(given)'} "
                f"(its registries: {', '.join(self.registries())}; name others with registry_names)")

    def route(self, addr: int) -> Service | None:
        """The service for an address (longest matching prefix), or None if no registry serves it."""
        for length in self._lengths:
            index = self._by_length[length].get(addr >> (32 - length) if length else 0)
            if index is not None:
                return self.services[index]
        return None

    def hosts(self) -> set[str]:
        """``host:port`` of every service, the default allowlist for redirects."""
        return {netloc(s.base_url) for s in self.services}

    def registries(self) -> list[str]:
        return sorted({s.registry for s in self.services})


def parse_names(text: str) -> dict[str, str]:
    """``"mirror.example:8443=arin,rdap.example=ripencc"``: host or host:port -> registry name."""
    names: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        host, sep, name = item.partition("=")
        if not sep or not host.strip() or not name.strip():
            raise BootstrapError(f"registry name {item!r}: expected host[:port]=name")
        host = host.strip().lower()
        names[netloc(host) if "://" in host else host] = name.strip().lower()
    return names


def netloc(url: str) -> str:
    """``host:port`` of a URL, with the scheme's default port: how hosts are compared for redirects."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{(parts.hostname or '').lower()}:{port}"


def default_document() -> dict[str, Any]:
    return json.loads(resources.files("whoiscrawl").joinpath("data/iana/rdap-bootstrap-ipv4.json").read_text())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A bootstrap URL is checked before it is fetched; a redirect would fetch an unchecked one."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102 (urllib's hook)
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} not followed", headers, fp)


def _fetch(url: str, timeout_s: float = 30.0) -> dict[str, Any]:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.build_opener(_NoRedirect).open(req, timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError) as exc:
        raise BootstrapError(f"cannot fetch bootstrap {url}: {exc}") from exc


def _cache_path(settings: Settings, url: str) -> Path:
    safe = "".join(c if c.isalnum() else "_" for c in url)[-120:]
    return settings.home / "bootstrap" / f"{safe}.json"


def load_document(source: str | None = None, settings: Settings | None = None,
                  refresh: bool = False, max_age_s: float = 86400) -> tuple[dict[str, Any], str]:
    """The bootstrap document named by ``source`` (empty: IANA's) and where it came from.

    ``settings`` gives the folder of the HTTP cache; ``max_age_s`` how long a fetched copy is used.
    """
    settings = settings or Settings()
    source = source or ""
    if not source:
        refreshed = _cache_path(settings, IANA_URL)
        if refreshed.exists() and not refresh:  # `bootstrap refresh` fetched a newer IANA file
            return json.loads(refreshed.read_text()), f"{IANA_URL} (refreshed copy)"
        if not refresh:
            return default_document(), "iana (shipped)"
        source = IANA_URL
    if urlsplit(source).scheme in ("http", "https"):
        cache = _cache_path(settings, source)
        fresh = cache.exists() and time.time() - cache.stat().st_mtime < max_age_s
        if fresh and not refresh:
            return json.loads(cache.read_text()), source
        try:
            doc = _fetch(source)
        except BootstrapError:
            if cache.exists() and not refresh:  # stale beats nothing; say so in the source
                return json.loads(cache.read_text()), source + " (stale cache)"
            raise
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, cache)
        return doc, source
    path = Path(source)
    try:
        return json.loads(path.read_text()), str(path)
    except (OSError, ValueError) as exc:
        raise BootstrapError(f"cannot read bootstrap file {path}: {exc}") from exc


def refresh(source: str | None = None, settings: Settings | None = None) -> Bootstrap:
    """Fetch the bootstrap file again (for URLs; IANA's when no source is set) and replace the cached copy."""
    settings = settings or Settings()
    doc, where = load_document(source, settings, refresh=True)
    return Bootstrap(doc, where)
