"""Runs the planned crawl's requests with the crawl's own components.

Per request, as in the engine: route (``routing.Router``) → breaker → RDAP
request (``RdapClient``: the host's rate-limit slot per request, safe
redirects, classify) → ``policy.decide`` (retry with backoff, honour pauses,
cut the host's rate when throttled, fail). Every network an answer carries
goes to Kafka and enters the known-network index only once Kafka acknowledged
it; the ranges a walk resolved (every address's most specific network known)
are published only after the whole chunk's records were acknowledged, so a
chunk that dies is retried and nothing counts as found before it is safe.

A separate executor rather than the engine: the engine's unit of work is an
address that it skips once a network covering it is known, which is what
loses the most specific network; plan items are queries of other kinds
(prefixes, relation searches, probes) whose answers may be many networks.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import Counter, defaultdict
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import aiohttp
import numpy as np

from whoiscrawl.crawl import ipspace
from whoiscrawl.crawl.bootstrap import Bootstrap
from whoiscrawl.crawl.breaker import RegistryBreakers
from whoiscrawl.crawl.config import RunConfig
from whoiscrawl.crawl.engine import ChunkDeliveryError, ChunkOutcome
from whoiscrawl.crawl.kafka_io import DeliveryTracker
from whoiscrawl.crawl.policy import Job, RegistryDown, decide
from whoiscrawl.crawl.rdap_client import Fail, Ok, RdapClient, Retry, Throttle
from whoiscrawl.crawl.records import BadResponse, network_bounds, network_record
from whoiscrawl.crawl.routing import Router
from whoiscrawl.crawl.stats import StatsCollector
from whoiscrawl.crawl.strategy.sources import SEARCH_CONFORMANCE
from whoiscrawl.crawl.strategy.tree import NetworkTree
from whoiscrawl.crawl.strategy.walk import Range, SearchAnswer, probe_walk, search_walk
from whoiscrawl.crawl.telemetry import TelemetryReporter

_TRUNCATED = "limited search results"


def _relation_key(start: int, end: int) -> str:
    """A CIDR when the range is one, else RIPE's range handle (ARIN and RIPE both take it)."""
    cidrs = ipspace.range_to_cidrs(start, end)
    if len(cidrs) == 1:
        return cidrs[0]
    return f"{ipspace.to_str(start)}%20-%20{ipspace.to_str(end)}"


def _enclosing(networks: list[Range], start: int, end: int) -> Range | None:
    """A network of ``networks`` (sorted; ``rdap-down`` lists ones that do not nest) enclosing [start, end]."""
    i = bisect.bisect_right(networks, (start, 1 << 33)) - 1  # the last one starting at or before ``start``
    for j in range(i, max(-1, i - 4), -1):
        if networks[j][1] >= end:
            return networks[j]
    return None


def member_record(registry: str, body: dict, url: str) -> dict:
    """The result record of one network of a search answer (its query: the network's first address)."""
    start, end = network_bounds(body)
    return network_record(start, registry, body, url, start, end)


def parse_search(query: int, registry: str, body: dict, url: str) -> dict:
    """A relation search answer as ``{"members": [records], "truncated": bool, "conformance": [...]}``."""
    members = body.get("ipSearchResults")
    if not isinstance(members, list):
        raise BadResponse("no_search_results", "ipSearchResults missing")
    records = []
    for member in members:
        if not isinstance(member, dict):
            raise BadResponse("bad_search_member")
        records.append(member_record(registry, member, url))
    notices = body.get("notices") or []
    truncated = any(_TRUNCATED in str(n.get("title", "")) for n in notices if isinstance(n, dict))
    return {"members": records, "truncated": truncated, "conformance": list(body.get("rdapConformance") or [])}


class PlanExecutor:
    """Runs plan chunks (allocations to walk) and seed chunks (addresses to answer) for one run."""

    def __init__(self, *, bootstrap: Bootstrap, index: Any, resolved: Any, limiter: Any,
                 tracker: DeliveryTracker, config: RunConfig, run_key: str, chunk: int = 0,
                 stats: StatsCollector | None = None, telemetry: TelemetryReporter | None = None,
                 host: str = "", max_queries: int | None = None) -> None:
        self.router = Router(bootstrap)
        #: requests this executor may send in all (a benchmark's budget); None: as the plan needs
        self.max_queries = max_queries
        self._sent = 0
        self.index = index
        self.resolved = resolved
        self.limiter = limiter
        self.tracker = tracker
        self.config = config
        self.run_key = run_key
        self.chunk = chunk
        self.stats = stats if stats is not None else StatsCollector()
        self.telemetry = telemetry
        self.host = host
        self.client: RdapClient | None = None
        self.searchable: dict[str, bool] = {}
        self.walks: dict[str, Counter[str]] = defaultdict(Counter)
        self._breakers = RegistryBreakers(config.registry_down_after, config.registry_down_cooldown_s)
        self._delivered: set[Range] = set()
        self._pending = 0
        self._resolved: list[Range] = []
        #: the seed pass's failed addresses, (address, reason)
        self.failures: list[tuple[int, str]] = []
        self._acked: list[Range] = []

    # --- one request under the retry policy --------------------------------------------------
    async def _request(self, kind: str, addr: int, path: str | None = None, parse=None) -> Ok | Fail:
        """One query of ``kind`` routed by ``addr``, retried as the policy says; Ok or the final Fail."""
        service = self.router.route(addr)
        if service is None:
            return Fail("no_registry", None)
        assert self.client is not None
        job = Job(addr, service)
        while True:
            registry = job.service.registry
            breaker = self._breakers[registry]
            if self.max_queries is not None and self._sent >= self.max_queries:
                return Fail("budget_spent", registry)
            if breaker.is_open():
                result: Any = RegistryDown(registry, breaker.down_until)
            else:
                self._sent += 1
                self.stats.count("lookup", registry, "attempt")
                self.stats.count("plan", registry, "query", kind)
                result = await self.client.lookup(addr, service, path=path, parse=parse)
                if result.registry is not None:
                    if self._breakers.record(result.registry,
                                             result.reason if isinstance(result, Retry) else None):
                        self.stats.count("breaker", result.registry, "opened")
            action = decide(job, result, self.config)
            if action.count_attempt:
                job.attempts += 1
                reason = "registry_down" if isinstance(result, RegistryDown) else getattr(result, "reason", "")
                self.stats.count("attempt", action.registry, "transient", reason)
            if isinstance(result, Retry):
                job.last_reason = result.reason
            if action.kind == "deliver":
                assert isinstance(result, Ok)
                self.limiter.on_success(result.registry)
                if result.redirected and result.service is not None and "start" in result.record:
                    self.router.learn(result.record, result.service)
                    self.stats.count("route", result.registry, "learned")
                return result
            if isinstance(result, Throttle):
                job.throttles += 1
                self.stats.count("throttle", action.registry, "received", result.reason)
            if action.slow_down:
                self.limiter.on_throttled(action.registry)
            if action.pause_s is not None:
                self.limiter.pause(action.registry, action.pause_s, action.reason)
            if action.kind == "fail":
                if action.reason not in ("not_found", "bad_request"):
                    self.stats.count("plan", action.registry, "failed", action.reason)
                return Fail(action.reason, action.registry)
            wait = (action.not_before - time.monotonic()) if action.not_before is not None else action.delay_s
            if wait > 0:
                await asyncio.sleep(wait)

    def _deliver(self, record: dict, on_acked=None) -> Range:
        start, end = ipspace.to_int(record["start"]), ipspace.to_int(record["end"])
        if (start, end) in self._delivered:
            if on_acked is not None:
                on_acked()
            return start, end
        self._delivered.add((start, end))
        record["run"] = self.run_key
        registry = record["registry"]
        self._pending += 1

        def on_done(err: Exception | None) -> None:
            self._pending -= 1
            if err is not None:
                self.stats.count("kafka", None, "delivery_failed")
                return
            self._acked.append((start, end))  # to the index in batches (a search answer holds 100)
            self.stats.count("plan", registry, "found")
            if on_acked is not None:
                on_acked()

        self.tracker.produce(self.config.results_topic, record["handle"], record, on_done)
        return start, end

    # --- the three queries the walks use (walk.Queries) ---------------------------------------
    async def prefix(self, registry: str, start: int, end: int) -> Range | None:
        cidr = ipspace.range_to_cidrs(start, end)[0]
        result = await self._request("prefix", start, path=f"ip/{cidr}")
        if not isinstance(result, Ok):
            return None
        raw = result.record.get("raw") or {}
        self.searchable[result.registry] = SEARCH_CONFORMANCE in (raw.get("rdapConformance") or [])
        return self._deliver(result.record)

    async def search(self, registry: str, relation: str, start: int, end: int) -> SearchAnswer:
        result = await self._request("search", start, path=f"ips/rirSearch1/{relation}/{_relation_key(start, end)}",
                                     parse=parse_search)
        if isinstance(result, Fail):
            if result.reason == "not_found":
                return SearchAnswer()
            if result.reason == "bad_request":
                self.stats.count("plan", registry, "search", "refused")
                return SearchAnswer(refused=True)
            return SearchAnswer(failed=True)
        answer = result.record
        if answer["truncated"]:
            self.stats.count("plan", registry, "search", "truncated")
        networks = [self._deliver(member) for member in answer["members"]]
        return SearchAnswer(networks=networks, truncated=answer["truncated"])

    async def probe(self, registry: str, addr: int, kind: str = "probe") -> Range | None:
        result = await self._request(kind, addr)
        return self._deliver(result.record) if isinstance(result, Ok) else None

    # --- sessions and housekeeping -------------------------------------------------------------
    @asynccontextmanager
    async def _session(self) -> AsyncIterator[None]:
        cfg = self.config
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=cfg.http_concurrency_per_registry + 2,
                                         ttl_dns_cache=300)
        headers = {"Accept": "application/rdap+json, application/json", "User-Agent": cfg.user_agent}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=cfg.http_timeout_s),
                                         connector=connector, headers=headers) as session:
            self.client = RdapClient(session, self.router.bootstrap, self.stats, self.limiter.acquire,
                                     max_redirects=cfg.max_redirects, allowlist=cfg.redirect_allowlist,
                                     throttle_pause_s=cfg.throttle_pause_s, retry_after_max_s=cfg.retry_after_max_s)
            stop = asyncio.Event()
            housekeeping = asyncio.create_task(self._housekeeping(stop))
            try:
                yield
            finally:
                stop.set()
                await housekeeping
        await self._settle()

    def _index_acked(self) -> None:
        """Networks Kafka acknowledged since the last call, into the index in one write."""
        if self._acked:
            batch, self._acked = self._acked, []
            self.index.add_many(batch)

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.tracker.poll(0)
            self._index_acked()
            if self.telemetry and self.telemetry.due():
                self.telemetry.maybe_report(self.stats)
            try:
                await asyncio.wait_for(stop.wait(), 0.02)
            except asyncio.TimeoutError:
                pass

    async def _settle(self) -> None:
        """Every record acknowledged, or the chunk fails (and is retried); then publish what is resolved."""
        left = await asyncio.get_running_loop().run_in_executor(None, self.tracker.flush, 120.0)
        self.tracker.poll(0)
        self._index_acked()
        refused = self.stats["kafka/all/delivery_failed"]
        if left or self._pending or refused:
            raise ChunkDeliveryError(f"chunk {self.chunk}: {left} results unacknowledged, {refused} refused by "
                                     "Kafka; retry the chunk")
        if self._resolved:
            self.resolved.add_many(self._resolved)
        if self.telemetry:
            self.telemetry.maybe_report(self.stats, final=True)
            self.tracker.flush(30.0)

    # --- a plan chunk ----------------------------------------------------------------------------
    async def _concurrently(self, units: list[Any], work) -> None:
        """``work(unit)`` for every unit, in order, a few at once (the registry's HTTP concurrency)."""
        queue = list(units)
        queue.reverse()

        async def worker() -> None:
            while queue:
                await work(queue.pop())

        await asyncio.gather(*(worker() for _ in range(self.config.http_concurrency_per_registry)))

    async def run_plan(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Each registry's allocations: their own networks first (the coverage), then the networks inside.

        With ``plan_coverage_first`` every registry's coverage comes before any registry's walks (the
        fewest queries to each coverage level); without it each registry walks as soon as its own
        allocations are known (the shortest time when the registries' budgets differ widely).
        """
        started = time.monotonic()
        queues: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for item in sorted(items, key=lambda it: (it["start"] - it["end"], it["start"])):  # largest first
            queues[item["registry"]].append(item)
        async with self._session():
            if self.config.plan_coverage_first:
                # the listings first: a query each for 64 allocations, but slow answers, which would
                # otherwise lag behind the other registries' prefix queries
                listed = await asyncio.gather(*(self._list(r, q) for r, q in queues.items()))
                await asyncio.gather(*(self._cover_rest(rest, roots) for rest, roots in listed))
                await asyncio.gather(*(self._walk_inside(r, q, roots)
                                       for (r, q), (_rest, roots) in zip(queues.items(), listed)))
            else:
                async def registry_plan(registry: str, queue: list[dict[str, Any]]) -> None:
                    rest, roots = await self._list(registry, queue)
                    await self._cover_rest(rest, roots)
                    await self._walk_inside(registry, queue, roots)

                await asyncio.gather(*(registry_plan(r, q) for r, q in queues.items()))
        return {"chunk": self.chunk, "items": len(items), "host": self.host,
                "walks": {r: dict(c) for r, c in sorted(self.walks.items())},
                "stats": self.stats.as_dict(), "duration_s": round(time.monotonic() - started, 3)}

    async def _list(self, registry: str, items: list[dict[str, Any]]
                    ) -> tuple[list[dict[str, Any]], dict[int, Range | None]]:
        """The largest allocation's prefix query, then, where relation searches are offered, ``rdap-down``
        over runs of consecutive allocations (a hundred per query); the allocations still without their
        network (largest first) and the networks found, by ``id(item)``.

        ``items`` come largest first; the largest one's answer says whether the registry offers the searches.
        """
        roots: dict[int, Range | None] = {id(items[0]): await self._allocation(items[0])}
        rest = items[1:]
        if self.searchable.get(registry) and rest:
            listed = await self._list_allocations(registry, rest)
            for item in rest:
                root = _enclosing(listed, int(item["start"]), int(item["end"]))
                if root is not None:
                    roots[id(item)] = root
            rest = [it for it in rest if id(it) not in roots]
            self.stats.count("plan", registry, "allocations", "listed", n=len(items) - 1 - len(rest))
        return rest, roots

    async def _cover_rest(self, items: list[dict[str, Any]], roots: dict[int, Range | None]) -> None:
        """A prefix query for each allocation no listing covered, largest first."""
        async def allocation(item: dict[str, Any]) -> None:
            roots[id(item)] = await self._allocation(item)

        await self._concurrently(items, allocation)

    async def _walk_inside(self, registry: str, items: list[dict[str, Any]], roots: dict[int, Range | None]) -> None:
        """The networks inside the allocations (largest first): relation searches over runs, else gap probes."""
        probed = items
        if self.searchable.get(registry):
            groups = self._groups([it for it in items if roots.get(id(it)) is not None])
            await self._concurrently(groups, lambda group: self._search_group(registry, group))
            probed = [it for it in items if roots.get(id(it)) is None]
        await self._concurrently(probed, lambda item: self._probe_walk(item, roots.get(id(item))))

    def _groups(self, items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """Runs of consecutive allocations (``seq`` in address order), at most ``plan_search_group`` each."""
        out: list[list[dict[str, Any]]] = []
        for item in sorted(items, key=lambda it: (it.get("seq", -1), it["start"])):
            last = out[-1][-1] if out else None
            if (last is not None and item.get("seq") is not None and last.get("seq") is not None
                    and item["seq"] == last["seq"] + 1 and len(out[-1]) < self.config.plan_search_group):
                out[-1].append(item)
            else:
                out.append([item])
        out.sort(key=lambda g: g[0]["start"] - g[-1]["end"])  # the widest first
        return out

    async def _list_allocations(self, registry: str, items: list[dict[str, Any]]) -> list[Range]:
        """The networks ``rdap-down`` lists over each run of allocations (a lone one is left to its prefix)."""
        listed: list[Range] = []

        async def sweep(group: list[dict[str, Any]]) -> None:
            if len(group) < 2:
                return
            bounds = [(int(it["start"]), int(it["end"])) for it in group]
            self.stats.count("plan", registry, "walk", "allocations")
            result = await search_walk(self, registry, bounds[0][0], bounds[-1][1], relation="rdap-down",
                                       bounds=bounds, ask_halves=False)
            listed.extend(result.networks)

        await self._concurrently(self._groups(items), sweep)
        return sorted(listed)

    async def _search_group(self, registry: str, group: list[dict[str, Any]]) -> None:
        """``rdap-bottom`` over one allocation or a run of them; each allocation ends resolved."""
        bounds = [(int(it["start"]), int(it["end"])) for it in group]
        self.walks[registry]["search"] += len(group)
        self.stats.count("plan", registry, "walk", "search", n=len(group))
        result = await search_walk(self, registry, bounds[0][0], bounds[-1][1], bounds=bounds)
        if result.resolved:  # the allocations, not the space between them (another registry's, maybe)
            self._resolved.extend(bounds)

    async def _probe_walk(self, item: dict[str, Any], root: Range | None) -> None:
        registry = item["registry"]
        self.walks[registry]["probes"] += 1
        self.stats.count("plan", registry, "walk", "probes")
        result = await probe_walk(self, registry, int(item["start"]), int(item["end"]), int(item.get("budget", 0)),
                                  root=root, max_split=self.config.plan_probe_split)
        self._resolved.extend(result.resolved)

    async def _allocation(self, item: dict[str, Any]) -> Range | None:
        """The network the allocation is (its row may need several CIDRs; one answer usually covers all)."""
        start, end = int(item["start"]), int(item["end"])
        root = None
        cursor = start
        while cursor <= end:
            piece = ipspace.network_range(ipspace.range_to_cidrs(cursor, end)[0])
            found = await self.prefix(item["registry"], *piece)
            if found is None:
                cursor = piece[1] + 1
                continue
            if found[0] <= start and found[1] >= end:
                root = found
            cursor = max(piece[1], found[1]) + 1
        return root

    # --- a seed chunk ----------------------------------------------------------------------------
    async def run_seed(self, addrs: np.ndarray, tree: NetworkTree) -> ChunkOutcome:
        """Answer each address from the plan where its most specific network is known, look up the rest.

        The failed addresses and their reasons are kept in ``self.failures`` (for the chunk's record).
        """
        started = time.monotonic()
        self.failures.clear()
        addrs = np.asarray(addrs, dtype=np.uint32)
        total = len(addrs)
        self.resolved.sync()
        known = self.resolved.contains_many(addrs) & (tree.most_specific(addrs) >= 0) if total \
            else np.zeros(0, bool)
        answered = int(known.sum())
        if answered:
            self.stats.count("address", None, "skipped", "most_specific_known", n=answered)
        todo = addrs[~known].tolist()
        self.stats.count("address", None, "awaiting_registry", n=len(todo))
        reasons: Counter[str] = Counter()
        counts = Counter()

        async with self._session():
            queues: dict[str, list[int]] = defaultdict(list)
            for addr in todo:
                service = self.router.route(addr)
                if service is None:
                    reasons["no_registry"] += 1
                    self.failures.append((int(addr), "no_registry"))
                    self.stats.count("address", None, "failed", "no_registry")
                    continue
                self.stats.count("address", service.registry, "routed")
                queues[service.registry].append(addr)

            async def look_up(addr: int) -> None:
                result = await self._request("seed", addr)
                if isinstance(result, Ok):
                    registry = result.registry

                    def acked(registry=registry) -> None:
                        counts["looked_up"] += 1
                        self.stats.count("address", registry, "looked_up")

                    self._deliver(result.record, acked)
                else:
                    reasons[result.reason] += 1
                    self.failures.append((int(addr), result.reason))
                    self.stats.count("address", result.registry, "failed", result.reason)

            await asyncio.gather(*(self._concurrently(q, look_up) for q in queues.values()))
        failed = sum(reasons.values())
        if answered + counts["looked_up"] + failed != total:
            raise RuntimeError(f"chunk {self.chunk}: {answered + counts['looked_up'] + failed} of {total} "
                               "addresses accounted for")
        return ChunkOutcome(chunk=self.chunk, addresses=total, skipped=answered, looked_up=counts["looked_up"],
                            failed=failed, failed_by_reason=dict(sorted(reasons.items())),
                            counters=self.stats.ancestor_view(), stats=self.stats.as_dict(),
                            duration_s=round(time.monotonic() - started, 3), host=self.host)
