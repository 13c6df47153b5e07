"""The crawl engine: a chunk of seed addresses in, every address accounted for.

Each address ends as exactly one of: skipped (inside a network already
known), looked up (its result acknowledged by Kafka), or failed (with a
reason). Registries proceed concurrently, each with its own queue and
workers, so a slow or down registry never stalls the others. The engine is
the loop that applies the components, in this order: index check → routing
(``routing.Router``) → breaker (``breaker.RegistryBreakers``) → lookup
(``rdap_client``, which takes a rate-limit slot per request) → the retry
policy's action (``policy.decide``): deliver, send the address to the back of
its registry's queue, or fail it; pause the registry and cut its rate on the
host when the registry asked. Every decision is counted in the one
``StatsCollector`` the engine shares with the limiter and the index.

A network is added to the known-network index only after Kafka acknowledged
its record: if the process dies before that, a retried chunk looks the
address up again instead of skipping it, so nothing is lost.

No answer ends a chunk: besides the causes handled where they arise (the
client's classification, the parser's validation), one catch point per lookup
turns an unexpected exception into a failure of that address with reason
``internal/<ExceptionName>``. At the chunk's deadline (``chunk_deadline_s``)
the engine stops taking new lookups, lets the ones in flight finish, and
reports the addresses it did not finish as ``deferred`` (``Crawler.deferred``):
the caller hands them on as a continuation, they are neither failed nor lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import aiohttp
import numpy as np

from whoiscrawl.crawl import ipspace
from whoiscrawl.crawl.bootstrap import Bootstrap
from whoiscrawl.crawl.breaker import RegistryBreakers
from whoiscrawl.crawl.config import RunConfig
from whoiscrawl.crawl.kafka_io import DeliveryTracker, RecordTooLarge
from whoiscrawl.crawl.policy import Action, Job, RegistryDown, decide
from whoiscrawl.crawl.rdap_client import Ok, RdapClient, Result, Retry, Throttle
from whoiscrawl.crawl.routing import Router
from whoiscrawl.crawl.stats import StatsCollector
from whoiscrawl.crawl.telemetry import TelemetryReporter
from whoiscrawl.errors import WhoiscrawlError

log = logging.getLogger(__name__)


class ChunkDeliveryError(WhoiscrawlError):
    """Kafka did not acknowledge every result; the chunk must be retried (nothing is counted done)."""


@dataclass
class ChunkOutcome:
    """What one chunk did: returned as the crawl task's XCom, summed by the coverage report."""
    chunk: int
    addresses: int = 0
    skipped: int = 0
    looked_up: int = 0
    failed: int = 0
    deferred: int = 0
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    stats: dict[str, int | float] = field(default_factory=dict)
    duration_s: float = 0.0
    host: str = ""
    #: follow-up addresses (not of the seed) the chunk looked up, e.g. the rest of a re-checked network split
    followed_up: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Crawler:
    """Runs one chunk. ``index`` is a KnownNetworkIndex, ``limiter`` a RegistryRateLimiter.

    ``stats`` is the collector the index and the limiter count into as well (one set of figures).
    """

    def __init__(self, *, bootstrap: Bootstrap, index: Any, limiter: Any, tracker: DeliveryTracker,
                 config: RunConfig, run_key: str, chunk: int = 0, stats: StatsCollector | None = None,
                 telemetry: TelemetryReporter | None = None, host: str = "",
                 followups: Callable[[int, int, int], Iterable[int]] | None = None) -> None:
        self.router = Router(bootstrap)
        #: ``followups(addr, start, end)``: more addresses to look up after ``addr`` answered with the
        #: network ``start..end`` (a re-crawl's split networks); they are not seed addresses
        self.followups = followups
        self._follow_addrs: set[int] = set()
        self._followed_up = 0
        self._wakeups: dict[str, asyncio.Event] = {}
        self.index = index
        self.limiter = limiter
        self.tracker = tracker
        self.config = config
        self.run_key = run_key
        self.chunk = chunk
        self.telemetry = telemetry
        self.host = host
        self.stats = stats if stats is not None else StatsCollector()
        self._reasons: Counter[str] = Counter()
        self._queues: dict[str, deque[Job]] = {}
        self._outstanding: Counter[str] = Counter()
        self._skipped = self._looked_up = self._failed = 0
        #: addresses not finished by the chunk's deadline: handed on, neither failed nor lost
        self.deferred: list[int] = []
        #: (address, reason) of every failed address: the per-address outcomes the datasets need
        self.failures: list[tuple[int, str]] = []
        self._deadline = float("inf")
        self._acked_pending = 0
        # networks found but not yet acknowledged by Kafka: skipped here at once, shared only after the ack
        # (if the ack never comes the whole chunk fails and is retried, so skipping early loses nothing)
        self._unacked: dict[int, tuple[int, int]] = {}
        self._breakers = RegistryBreakers(config.registry_down_after, config.registry_down_cooldown_s)

    # --- outcomes -----------------------------------------------------------
    def _skip(self, n: int = 1) -> None:
        self._skipped += n
        self.stats.count("address", None, "skipped", "known_network", n=n)

    def _fail(self, reason: str, registry: str | None, addr: int) -> None:
        if addr in self._follow_addrs:
            self.stats.count("follow_up", registry, "failed", reason)
            return
        self._failed += 1
        self.failures.append((addr, reason))
        self._reasons[reason] += 1
        self.stats.count("address", registry, "failed", reason)

    def _defer(self, job: Job) -> None:
        if job.addr in self._follow_addrs:  # not a seed address: nothing to hand on
            self.stats.count("follow_up", job.service.registry, "dropped", "deadline")
            return
        self.deferred.append(job.addr)
        self.stats.count("address", job.service.registry, "deferred")

    def _deliver(self, ok: Ok, addr: int) -> None:
        record = ok.record
        record["run"] = self.run_key
        start, end = ipspace.to_int(record["start"]), ipspace.to_int(record["end"])
        token = id(record)

        def on_done(err: Exception | None) -> None:
            self._acked_pending -= 1
            self._unacked.pop(token, None)
            if err is not None:
                self.stats.count("kafka", None, "delivery_failed")
                return  # the chunk fails as a whole in run(); the address is not counted done
            self.index.add(start, end)
            if addr in self._follow_addrs:
                self._followed_up += 1
                self.stats.count("follow_up", ok.registry, "looked_up")
                return
            self._looked_up += 1
            self.stats.count("address", ok.registry, "looked_up")

        limit = self.config.max_record_bytes
        try:
            self.tracker.produce(self.config.results_topic, record["handle"], record, on_done, max_bytes=limit)
        except RecordTooLarge:  # keep the parsed record, drop the registry's raw answer
            record["raw"] = None
            record["raw_dropped"] = "too_large"
            self.stats.count("kafka", ok.registry, "raw_dropped")
            try:
                self.tracker.produce(self.config.results_topic, record["handle"], record, on_done, max_bytes=limit)
            except RecordTooLarge:
                self._fail("record_too_large", ok.registry, addr)
                return
        self._acked_pending += 1
        self._unacked[token] = (start, end)

    # --- applying the policy ---------------------------------------------------
    def _apply(self, job: Job, result: Result | RegistryDown, action: Action) -> bool:
        """Carry out ``action`` for ``job``; True when the address is finished (delivered or failed)."""
        registry = action.registry
        if action.count_attempt:
            job.attempts += 1
            reason = "registry_down" if isinstance(result, RegistryDown) else getattr(result, "reason", action.reason)
            self.stats.count("attempt", registry, "transient", reason)
        if isinstance(result, Retry):
            job.last_reason = result.reason
        if action.kind == "deliver":
            assert isinstance(result, Ok)
            self.limiter.on_success(registry)
            if result.redirected and result.service is not None:
                self.router.learn(result.record, result.service)
                self.stats.count("route", registry, "learned")
            self._deliver(result, job.addr)
            self._follow_up(job, result)
            return True
        if isinstance(result, Throttle):
            job.throttles += 1
            self.stats.count("throttle", registry, "received", result.reason)
        if action.slow_down:
            self.limiter.on_throttled(registry)
        if action.pause_s is not None:
            self.limiter.pause(registry, action.pause_s, action.reason)
        if action.kind == "fail":
            self._fail(action.reason, registry, job.addr)
            return True
        if action.not_before is not None:
            job.not_before = action.not_before
        elif action.delay_s > 0:
            job.not_before = time.monotonic() + action.delay_s
        self._queues[job.service.registry].append(job)
        return False

    def _follow_up(self, job: Job, ok: Ok) -> None:
        """Queue what ``followups`` asks for after this answer, at the same registry."""
        if self.followups is None:
            return
        start, end = ipspace.to_int(ok.record["start"]), ipspace.to_int(ok.record["end"])
        registry = job.service.registry
        for addr in self.followups(job.addr, start, end):
            self._follow_addrs.add(int(addr))
            self.stats.count("follow_up", registry, "queued")
            self._queues[registry].append(Job(int(addr), job.service))
            self._outstanding[registry] += 1
        if registry in self._wakeups:
            self._wakeups[registry].set()

    def _record_transport(self, result: Result) -> None:
        """Feed the registry's breaker: a transport failure counts, any answer closes it."""
        if self._breakers.record(result.registry, result.reason if isinstance(result, Retry) else None):
            self.stats.count("breaker", result.registry, "opened")

    # --- workers -------------------------------------------------------------
    async def _worker(self, registry: str, client: RdapClient, wakeup: asyncio.Event) -> None:
        queue = self._queues[registry]
        while True:
            if not queue:
                if self._outstanding[registry] == 0:
                    wakeup.set()  # let sibling workers notice the queue is finished
                    return
                wakeup.clear()
                await wakeup.wait()
                continue
            job = queue.popleft()
            try:
                finished = await self._step(job, client)
            except Exception as exc:  # noqa: BLE001 - the one catch point: a bug in one answer ends one address
                log.exception("chunk %d: lookup of %s raised", self.chunk, ipspace.to_str(job.addr))
                self._fail(f"internal/{type(exc).__name__}", job.service.registry, job.addr)
                finished = True
            if finished:
                self._finish(registry, wakeup)

    async def _step(self, job: Job, client: RdapClient) -> bool:
        """One pass of ``job`` through index check, breaker and lookup; True when the address is finished."""
        delay = min(job.not_before, self._deadline) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if time.monotonic() >= self._deadline:
            self._defer(job)
            return True
        if self.config.skip_known_networks and (self.index.contains(job.addr) or self._in_unacked(job.addr)):
            if job.addr in self._follow_addrs:
                self.stats.count("follow_up", job.service.registry, "skipped")
            else:
                self._skip()
            return True
        breaker = self._breakers[job.service.registry]
        if breaker.is_open():
            # the registry is down: this address spends an attempt without a request and waits it out
            down = RegistryDown(job.service.registry, breaker.down_until)
            return self._apply(job, down, decide(job, down, self.config))
        self.stats.count("lookup", job.service.registry, "attempt")
        try:
            result = await asyncio.wait_for(client.lookup(job.addr, job.service),
                                            self._deadline - time.monotonic())
        except asyncio.TimeoutError:  # the chunk's time ran out while this lookup waited or ran
            self._defer(job)
            return True
        if result.registry is not None:
            self._record_transport(result)
        return self._apply(job, result, decide(job, result, self.config))

    def _in_unacked(self, addr: int) -> bool:
        return any(start <= addr <= end for start, end in self._unacked.values())

    def _finish(self, registry: str, wakeup: asyncio.Event) -> None:
        self._outstanding[registry] -= 1
        if self._outstanding[registry] == 0:
            wakeup.set()

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        """Serve Kafka delivery callbacks, catch up with the index, report telemetry."""
        last_sync = 0.0
        while not stop.is_set():
            self.tracker.poll(0)
            now = time.monotonic()
            if now - last_sync > 1.0:
                self.index.sync()
                last_sync = now
            if self.telemetry and self.telemetry.due():
                self.telemetry.maybe_report(self.stats)
            try:
                await asyncio.wait_for(stop.wait(), 0.02)
            except asyncio.TimeoutError:
                pass

    # --- entry point --------------------------------------------------------
    async def run(self, addrs: np.ndarray) -> ChunkOutcome:
        started = time.monotonic()
        self._deadline = started + self.config.chunk_deadline_s
        total = len(addrs)
        self.index.sync()
        known = self.index.contains_many(addrs) if total and self.config.skip_known_networks \
            else np.zeros(total, bool)
        if known.any():
            self._skip(int(known.sum()))
        todo = np.asarray(addrs)[~known]
        self.stats.count("address", None, "awaiting_registry", n=len(todo))

        cfg = self.config
        timeout = aiohttp.ClientTimeout(total=cfg.http_timeout_s)
        per_registry = cfg.http_concurrency_per_registry
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=per_registry + 2, ttl_dns_cache=300)
        headers = {"Accept": "application/rdap+json, application/json", "User-Agent": cfg.user_agent}
        async with aiohttp.ClientSession(timeout=timeout, connector=connector, headers=headers,
                                         auto_decompress=False) as session:
            client = RdapClient(session, self.router.bootstrap, self.stats, self.limiter.acquire,
                                max_redirects=cfg.max_redirects, allowlist=cfg.redirect_allowlist,
                                throttle_pause_s=cfg.throttle_pause_s, retry_after_max_s=cfg.retry_after_max_s,
                                max_body_bytes=cfg.max_body_bytes)
            for addr in todo.tolist():
                service = self.router.route(addr)
                if service is None:
                    self._fail("no_registry", None, addr)
                    continue
                self.stats.count("address", service.registry, "routed")
                self._queues.setdefault(service.registry, deque()).append(Job(addr, service))
                self._outstanding[service.registry] += 1

            stop = asyncio.Event()
            housekeeping = asyncio.create_task(self._housekeeping(stop))
            try:
                workers = []
                for registry in self._queues:
                    wakeup = self._wakeups[registry] = asyncio.Event()
                    for _ in range(per_registry):
                        workers.append(asyncio.create_task(self._worker(registry, client, wakeup)))
                await asyncio.gather(*workers)
            finally:
                stop.set()
                await housekeeping

        left = await asyncio.get_running_loop().run_in_executor(None, self.tracker.flush, 120.0)
        self.tracker.poll(0)
        refused = self.stats["kafka/all/delivery_failed"]
        if left or self._acked_pending or refused:
            raise ChunkDeliveryError(
                f"chunk {self.chunk}: {left} results unacknowledged, {refused} refused by Kafka; retry the chunk")
        if self.telemetry:
            self.telemetry.maybe_report(self.stats, final=True)
            self.tracker.flush(30.0)
        accounted = self._skipped + self._looked_up + self._failed + len(self.deferred)
        if accounted != total:
            raise RuntimeError(f"chunk {self.chunk}: {accounted} of {total} addresses accounted for")
        return ChunkOutcome(
            chunk=self.chunk, addresses=total, skipped=self._skipped, looked_up=self._looked_up,
            failed=self._failed, deferred=len(self.deferred), failed_by_reason=dict(sorted(self._reasons.items())),
            counters=self.stats.ancestor_view(), stats=self.stats.as_dict(),
            duration_s=round(time.monotonic() - started, 3), host=self.host, followed_up=self._followed_up,
        )
