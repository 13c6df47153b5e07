"""The crawl engine: a chunk of seed addresses in, every address accounted for.

Each address ends as exactly one of: skipped (inside a network already
known), looked up (its result acknowledged by Kafka), or failed (with a
reason). Registries proceed concurrently, each with its own queue and
workers, so a slow or down registry never stalls the others; a transient
failure sends the address to the back of its registry's queue ("retried
later") until ``MAX_ATTEMPTS`` is spent.

A network is added to the known-network index only after Kafka acknowledged
its record: if the process dies before that, a retried chunk looks the
address up again instead of skipping it, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from whoiscrawl.crawl import ipspace
from whoiscrawl.crawl.bootstrap import Bootstrap, Service
from whoiscrawl.crawl.kafka_io import DeliveryTracker
from whoiscrawl.crawl.rdap_client import Fail, Ok, RdapClient, Retry, Throttle
from whoiscrawl.settings import Settings
from whoiscrawl.crawl.stats import AWAITING_REGISTRY, FAILED, FOUND_REGISTRY, GOT_WHOIS, LOOKING_UP, WITHIN_KNOWN, Stats
from whoiscrawl.crawl.telemetry import TelemetryReporter
from whoiscrawl.errors import WhoiscrawlError


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
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    host: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Job:
    addr: int
    service: Service
    attempts: int = 0
    throttles: int = 0
    not_before: float = 0.0
    last_reason: str = ""


#: Failures that mean the registry did not answer at all (as opposed to answering badly).
TRANSPORT_FAILURES = ("timeout", "refused", "connection")


class Crawler:
    """Runs one chunk. ``index`` is a KnownNetworkIndex, ``limiter`` a RegistryRateLimiter."""

    def __init__(self, *, bootstrap: Bootstrap, index: Any, limiter: Any, tracker: DeliveryTracker,
                 settings: Settings, run_key: str, chunk: int = 0,
                 telemetry: TelemetryReporter | None = None, host: str = "") -> None:
        self.bootstrap = bootstrap
        self.index = index
        self.limiter = limiter
        self.tracker = tracker
        self.settings = settings
        self.run_key = run_key
        self.chunk = chunk
        self.telemetry = telemetry
        self.host = host
        self.stats = Stats()
        self._reasons: Counter[str] = Counter()
        self._queues: dict[str, deque[_Job]] = {}
        self._outstanding: Counter[str] = Counter()
        self._skipped = self._looked_up = self._failed = 0
        self._acked_pending = 0
        # networks found but not yet acknowledged by Kafka: skipped here at once, shared only after the ack
        # (if the ack never comes the whole chunk fails and is retried, so skipping early loses nothing)
        self._unacked: dict[int, tuple[int, int]] = {}
        # circuit breaker: consecutive transport failures per registry, and until when it counts as down
        self._transport_failures: Counter[str] = Counter()
        self._down_until: dict[str, float] = {}

    def snapshot(self) -> Stats:
        """The crawl's counters with the rate limiter's and the index's (each counts its own decisions)."""
        combined = Stats()
        combined.merge(self.stats)
        for extra in (getattr(self.limiter, "stats", None), getattr(self.index, "stats", None)):
            if extra:
                combined.counters.update(extra)
        return combined

    # --- outcomes -----------------------------------------------------------
    def _skip(self) -> None:
        self._skipped += 1
        self.stats.inc(WITHIN_KNOWN)
        self.stats.inc("skip/known_network")

    def _fail(self, reason: str, registry: str | None) -> None:
        self._failed += 1
        self._reasons[reason] += 1
        self.stats.inc(FAILED)
        self.stats.inc(f"fail/reason/{reason}")
        if registry:
            self.stats.inc(f"fail/registry/{registry}")

    def _deliver(self, job: _Job, ok: Ok) -> None:
        record = ok.record
        record["run"] = self.run_key
        start, end = ipspace.to_int(record["start"]), ipspace.to_int(record["end"])
        self._acked_pending += 1
        token = id(record)
        self._unacked[token] = (start, end)

        def on_done(err: Exception | None) -> None:
            self._acked_pending -= 1
            self._unacked.pop(token, None)
            if err is not None:
                self.stats.inc("kafka/delivery_failed")
                return  # the chunk fails as a whole in run(); the address is not counted done
            self.index.add(start, end)
            self._looked_up += 1
            self.stats.inc(GOT_WHOIS)
            self.stats.inc("lookup/ok")
            self.stats.inc(f"lookup/ok/{ok.registry}")

        self.tracker.produce(self.settings.KAFKA_RESULTS_TOPIC, record["handle"], record, on_done)

    # --- workers -------------------------------------------------------------
    def _backoff(self, attempts: int, hint: float | None) -> float:
        if hint is not None:
            return min(hint, self.settings.RETRY_AFTER_MAX_S)
        base = self.settings.RETRY_BACKOFF_S * (2 ** max(0, attempts - 1))
        return base * (0.5 + random.random())

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
            delay = job.not_before - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.index.contains(job.addr) or self._in_unacked(job.addr):
                self._skip()
                self._finish(registry, wakeup)
                continue
            down_until = self._down_until.get(job.service.registry, 0.0)
            if down_until > time.monotonic():
                # the registry is down: this address spends an attempt without a request and waits it out
                job.attempts += 1
                self.stats.inc(f"retry/reason/registry_down/{job.service.registry}")
                if job.attempts >= self.settings.MAX_ATTEMPTS:
                    self._fail(job.last_reason or "registry_down", job.service.registry)
                    self._finish(registry, wakeup)
                else:
                    job.not_before = down_until
                    queue.append(job)
                continue
            self.stats.inc(LOOKING_UP)
            result = await client.lookup(job.addr, job.service)
            self._track_transport(result)
            if isinstance(result, Ok):
                self.limiter.on_success(result.registry)
                self._deliver(job, result)
            elif isinstance(result, Throttle):
                job.throttles += 1
                self.stats.inc(f"retry/reason/{result.reason}/{result.registry}")
                self.limiter.on_throttled(result.registry)
                self.limiter.pause(result.registry, result.pause_s, result.reason)
                if job.throttles > self.settings.MAX_THROTTLES:
                    self._fail("throttled", result.registry)
                else:
                    queue.append(job)
                    continue
            elif isinstance(result, Retry):
                job.attempts += 1
                job.last_reason = result.reason
                self.stats.inc(f"retry/reason/{result.reason}/{result.registry}")
                if job.attempts >= self.settings.MAX_ATTEMPTS:
                    self._fail(result.reason, result.registry)
                else:
                    job.not_before = time.monotonic() + self._backoff(job.attempts, result.after_s)
                    queue.append(job)
                    continue
            else:
                assert isinstance(result, Fail)
                self._fail(result.reason, result.registry)
            self._finish(registry, wakeup)

    def _track_transport(self, result: object) -> None:
        """Trip a registry's breaker after REGISTRY_DOWN_AFTER transport failures in a row.

        While it is down its addresses wait REGISTRY_DOWN_COOLDOWN_S instead of each spending a
        timeout, so a dead registry costs a chunk a few cooldowns, not addresses x attempts x timeout.
        """
        registry = getattr(result, "registry", None)
        if registry is None:
            return
        if isinstance(result, Retry) and result.reason in TRANSPORT_FAILURES:
            self._transport_failures[registry] += 1
            if self._transport_failures[registry] >= self.settings.REGISTRY_DOWN_AFTER:
                if self._down_until.get(registry, 0.0) <= time.monotonic():
                    self.stats.inc(f"breaker/open/{registry}")
                self._down_until[registry] = time.monotonic() + self.settings.REGISTRY_DOWN_COOLDOWN_S
        else:
            self._transport_failures[registry] = 0

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
                self.telemetry.maybe_report(self.snapshot())
            try:
                await asyncio.wait_for(stop.wait(), 0.02)
            except asyncio.TimeoutError:
                pass

    # --- entry point --------------------------------------------------------
    async def run(self, addrs: np.ndarray) -> ChunkOutcome:
        started = time.monotonic()
        total = len(addrs)
        self.index.sync()
        known = self.index.contains_many(addrs) if total else np.zeros(0, bool)
        for _ in range(int(known.sum())):
            self._skip()
        todo = np.asarray(addrs)[~known]
        self.stats.inc(AWAITING_REGISTRY, len(todo))

        timeout = aiohttp.ClientTimeout(total=self.settings.HTTP_TIMEOUT_S)
        per_registry = self.settings.HTTP_CONCURRENCY_PER_REGISTRY
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=per_registry + 2, ttl_dns_cache=300)
        headers = {"Accept": "application/rdap+json, application/json",
                   "User-Agent": self.settings.USER_AGENT}
        async with aiohttp.ClientSession(timeout=timeout, connector=connector, headers=headers) as session:
            client = RdapClient(session, self.bootstrap, self.stats, self.limiter.acquire,
                                max_redirects=self.settings.MAX_REDIRECTS,
                                allowlist=self.settings.REDIRECT_ALLOWLIST,
                                throttle_pause_s=self.settings.THROTTLE_PAUSE_S,
                                retry_after_max_s=self.settings.RETRY_AFTER_MAX_S)
            for addr in todo.tolist():
                service = client.route(addr)
                if service is None:
                    self._fail("no_registry", None)
                    continue
                self.stats.inc(FOUND_REGISTRY)
                self._queues.setdefault(service.registry, deque()).append(_Job(addr, service))
                self._outstanding[service.registry] += 1

            stop = asyncio.Event()
            housekeeping = asyncio.create_task(self._housekeeping(stop))
            try:
                workers = []
                for registry in self._queues:
                    wakeup = asyncio.Event()
                    for _ in range(per_registry):
                        workers.append(asyncio.create_task(self._worker(registry, client, wakeup)))
                await asyncio.gather(*workers)
            finally:
                stop.set()
                await housekeeping

        left = await asyncio.get_running_loop().run_in_executor(None, self.tracker.flush, 120.0)
        self.tracker.poll(0)
        if left or self._acked_pending or self.stats.counters["kafka/delivery_failed"]:
            raise ChunkDeliveryError(
                f"chunk {self.chunk}: {left} results unacknowledged, "
                f"{self.stats.counters['kafka/delivery_failed']} refused by Kafka; retry the chunk")
        final = self.snapshot()
        if self.telemetry:
            self.telemetry.maybe_report(final, final=True)
            self.tracker.flush(30.0)
        accounted = self._skipped + self._looked_up + self._failed
        if accounted != total:
            raise RuntimeError(f"chunk {self.chunk}: {accounted} of {total} addresses accounted for")
        return ChunkOutcome(
            chunk=self.chunk, addresses=total, skipped=self._skipped, looked_up=self._looked_up,
            failed=self._failed, failed_by_reason=dict(sorted(self._reasons.items())),
            counters=self.stats.ancestor_view(), stats=final.as_dict(),
            duration_s=round(time.monotonic() - started, 3), host=self.host,
        )
