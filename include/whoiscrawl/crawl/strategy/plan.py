"""The plan of a planned crawl: what to walk, where it came from, and how it is split.

Built once per run by the plan task: each registry's delegated file (or, when
it cannot be had, the registry's ranges in the bootstrap file) gives the
allocations to walk, largest first. Address probes, for registries without
relation searches, are a budget per registry shared out by allocation size.
Items are dealt to chunks round-robin per registry, so every chunk carries a
share of every registry's work and each registry's budget is spread over the
fleet. Chunks and the summary live in the run's Redis state.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import redis

from whoiscrawl.crawl import ipspace
from whoiscrawl.crawl.bootstrap import Bootstrap
from whoiscrawl.crawl.config import RunConfig
from whoiscrawl.crawl.registries import REGISTRIES, registry_for_url
from whoiscrawl.crawl.stats import StatsCollector
from whoiscrawl.crawl.strategy.sources import (
    SEARCH_CONFORMANCE,
    Allocation,
    DelegatedError,
    fetch_conformance,
    fetch_delegated,
    parse_urls,
    real_defaults,
)


def plan_key(run: str) -> str:
    return f"whoiscrawl:run:{run}:plan"


def resolved_key(run: str) -> str:
    """The index of ranges whose every address's most specific network is known (merged is fine there)."""
    return f"whoiscrawl:run:{run}:resolved"


def bootstrap_ranges(document: dict[str, Any]) -> dict[str, list[tuple[int, int]]]:
    """Each registry's IPv4 ranges in an RFC 9224 document."""
    out: dict[str, list[tuple[int, int]]] = {}
    for entry in document.get("services") or []:
        prefixes, urls = entry[0], entry[1]
        registry = registry_for_url(urls[0]) if urls else ""
        if registry in REGISTRIES:
            out.setdefault(registry, []).extend(ipspace.network_range(p) for p in prefixes)
    return {r: sorted(v) for r, v in out.items()}


async def gather_sources(config: RunConfig, document: dict[str, Any], acquire,
                         stats: StatsCollector | None = None) -> tuple[dict[str, list[Allocation]], dict[str, Any]]:
    """Allocations per registry and where each registry's came from (``delegated`` or ``bootstrap``)."""
    urls = parse_urls(config.delegated_urls, defaults=real_defaults(document))
    ranges = bootstrap_ranges(document)
    allocations: dict[str, list[Allocation]] = {}
    sources: dict[str, Any] = {}
    timeout = aiohttp.ClientTimeout(total=max(60.0, config.http_timeout_s))
    services: dict[str, str] = {}
    for service in Bootstrap(document, names=config.registry_names).services:  # its URL choice: HTTPS first
        services.setdefault(service.registry, service.base_url)
    async with aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": config.user_agent}) as session:
        for registry in REGISTRIES:
            url = urls.get(registry, "")
            error = "no delegated file configured"
            conformance = (await fetch_conformance(session, registry, services[registry], acquire)
                           if registry in services else None)
            # None: not known before the first answer (the walk then learns it from that answer)
            search = None if conformance is None else SEARCH_CONFORMANCE in conformance
            if stats is not None:
                stats.count("plan", registry, "search", {True: "offered", False: "not_offered"}.get(search, "unknown"))
            if url:
                try:
                    rows = await fetch_delegated(session, registry, url, acquire)
                    if rows:
                        allocations[registry] = rows
                        sources[registry] = {"allocations": "delegated", "url": url, "rows": len(rows),
                                             "search": search}
                        continue
                    error = "the file lists no ipv4 allocation"
                except DelegatedError as exc:
                    error = str(exc)
            blocks = ranges.get(registry, [])
            allocations[registry] = [Allocation(registry, s, e, "bootstrap") for s, e in blocks]
            sources[registry] = {"allocations": "bootstrap", "error": error, "rows": len(blocks), "search": search}
    return allocations, sources


def searchable(sources: dict[str, Any]) -> set[str]:
    """Registries whose ``help`` advertised relation searches."""
    return {r for r, s in sources.items() if s.get("search")}


def build_items(allocations: dict[str, list[Allocation]], probe_budget: int, per_registry: int = 0) -> list[dict[str, Any]]:
    """One item per allocation, largest first; each carries its share of the registry's probe budget.

    ``per_registry`` > 0 keeps only that many of each registry's largest allocations.
    """
    items = []
    for registry, rows in allocations.items():
        # ``seq``: the row's place in the registry's whole list in address order; rows with consecutive
        # ones are neighbours, which a relation search may ask as one range
        seq = {id(a): i for i, a in enumerate(sorted(rows, key=lambda a: (a.start, a.end)))}
        rows = sorted(rows, key=lambda a: (-a.size, a.start))[:per_registry or None]
        total = sum(a.size for a in rows) or 1
        for a in rows:
            items.append({"registry": registry, "start": a.start, "end": a.end, "source": a.status,
                          "budget": int(probe_budget * a.size // total), "seq": seq[id(a)]})
    return items


def split_items(items: list[dict[str, Any]], chunks: int,
                contiguous: set[str] | frozenset[str] = frozenset()) -> list[list[dict[str, Any]]]:
    """Give every chunk a share of every registry's items.

    Items are dealt round-robin (largest first), so each chunk's share is alike; for the registries in
    ``contiguous`` (those with relation searches) each chunk gets a run of neighbours in address order
    instead, which its searches ask as ranges.
    """
    out: list[list[dict[str, Any]]] = [[] for _ in range(max(1, chunks))]
    seen: dict[str, int] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        if item["registry"] in contiguous:
            runs.setdefault(item["registry"], []).append(item)
            continue
        i = seen.get(item["registry"], 0)
        out[i % len(out)].append(item)
        seen[item["registry"]] = i + 1
    for run in runs.values():
        run.sort(key=lambda it: (it.get("seq", 0), it["start"]))
        share = -(-len(run) // len(out))
        for i in range(len(out)):
            out[i].extend(run[i * share:(i + 1) * share])
    return [c for c in out if c] or [[]]


def write_plan(client: redis.Redis, run: str, chunks: list[list[dict[str, Any]]], summary: dict[str, Any]) -> None:
    pipe = client.pipeline(transaction=True)
    for i, chunk in enumerate(chunks):
        pipe.hset(plan_key(run), str(i), json.dumps(chunk, separators=(",", ":")))
    pipe.hset(plan_key(run), "summary", json.dumps(summary))
    pipe.execute()


def read_plan_chunk(client: redis.Redis, run: str, chunk: int) -> list[dict[str, Any]]:
    raw = client.hget(plan_key(run), str(chunk))
    if raw is None:
        raise KeyError(f"run {run}: no plan chunk {chunk}")
    return json.loads(raw)


def read_summary(client: redis.Redis, run: str) -> dict[str, Any] | None:
    raw = client.hget(plan_key(run), "summary")
    return json.loads(raw) if raw is not None else None
