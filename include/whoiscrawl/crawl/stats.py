"""One stats collector for every crawl decision, with one key grammar.

A key is ``area/registry/event[/reason]``: ``address/lacnic/failed/not_found``,
``ratelimit/arin/waited_s``, ``index/all/replica_fallback`` (``all`` when the
stat belongs to no registry). The engine, the rate limiter and the index all
count into the one collector they are given, so a chunk has one set of figures
and telemetry splits them per registry by the key alone.

Every key must match a stat declared in :data:`CATALOG`: an undeclared one is
a programming error, raised the first time it is counted, so ``docs/stats.md``
(generated from the catalog) always lists every stat there is.

The six counters the ancestor printed are a view computed from these stats
(:meth:`StatsCollector.ancestor_view`), not a second set of increments.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping

#: The ancestor's six telemetry counters, in its order.
WITHIN_KNOWN = "Within Known CIDR Block"
AWAITING_REGISTRY = "Awaiting Registry"
FOUND_REGISTRY = "Found Registry"
LOOKING_UP = "Looking up WHOIS"
GOT_WHOIS = "Got WHOIS"
FAILED = "Failed to lookup WHOIS"
ANCESTOR_COUNTERS: tuple[str, ...] = (WITHIN_KNOWN, AWAITING_REGISTRY, FOUND_REGISTRY,
                                      LOOKING_UP, GOT_WHOIS, FAILED)

#: The registry part of a key for stats that belong to no registry.
ALL = "all"


@dataclass(frozen=True)
class Stat:
    """A declared stat: ``key`` with ``{registry}``, ``{reason}``, ... placeholders; ``unit`` count or s."""
    key: str
    doc: str
    unit: str = "count"
    ancestor: str = ""  # the ancestor counter this stat adds to, if any

    def pattern(self) -> re.Pattern[str]:
        parts = []
        for piece in re.split(r"(\{[a-z_]+\})", self.key):
            if piece == "{reason}":
                parts.append(r"[^\s]+")  # a reason may have its own slashes: bad_body/html
            elif piece.startswith("{"):
                parts.append(r"[A-Za-z0-9_.:\-]+")
            else:
                parts.append(re.escape(piece))
        return re.compile("".join(parts) + r"\Z")


CATALOG: tuple[Stat, ...] = (
    # --- what became of each address (the accounting: skipped + looked up + failed = addresses)
    Stat("address/all/skipped/{reason}", "Addresses not looked up because a known network covers them "
         "(`known_network`: in the index or awaiting Kafka's ack).", ancestor=WITHIN_KNOWN),
    Stat("address/all/awaiting_registry", "Addresses left to look up after the index check at the chunk's start.",
         ancestor=AWAITING_REGISTRY),
    Stat("address/{registry}/routed", "Addresses the bootstrap (or a learned transfer) routed to the registry.",
         ancestor=FOUND_REGISTRY),
    Stat("address/{registry}/looked_up", "Addresses whose record Kafka acknowledged.", ancestor=GOT_WHOIS),
    Stat("address/{registry}/failed/{reason}", "Addresses that ended failed, by reason (`all`: no registry "
         "routes them).", ancestor=FAILED),
    # --- requests and answers
    Stat("lookup/{registry}/attempt", "Lookups started (each attempt of an address; redirects are part of one).",
         ancestor=LOOKING_UP),
    Stat("response/{registry}/status/{reason}", "HTTP answers by status code."),
    Stat("response/{registry}/error/{reason}", "Requests that got no usable HTTP answer: `timeout`, `refused`, `connection`, "
         "`malformed_http` (not HTTP as the client reads it), `too_large` (body over `max_body_bytes`), "
         "`bad_encoding`."),
    Stat("response/{registry}/latency_s", "Seconds spent waiting for answers (sum; percentiles in telemetry).",
         unit="s"),
    Stat("redirect/{registry}/followed/{reason}", "Redirects followed, by the registry they lead to."),
    Stat("redirect/{registry}/refused/{reason}", "Redirects not followed: `host` (not allowlisted), `scheme`, "
         "`loop`, `too_many`, `no_location`, `bad_location` (a Location that is no URL)."),
    Stat("route/{registry}/learned", "Ranges learned from a redirect to this registry (later addresses go straight there)."),
    # --- the retry/throttle policy's decisions
    Stat("attempt/{registry}/transient/{reason}", "Attempts that ended in a transient failure, by reason (`timeout`, "
         "`http_503`, `bad_body/html`, `registry_down`, ...): the address is retried, or failed once its attempts "
         "are spent."),
    Stat("throttle/{registry}/received/{reason}", "Answers asking us to slow down (`http_429`, `http_403`, "
         "`rate_limit_notice`)."),
    Stat("breaker/{registry}/opened", "Times the registry's circuit breaker opened (it counts as down)."),
    Stat("kafka/all/delivery_failed", "Result records Kafka refused (the chunk fails and is retried)."),
    Stat("kafka/{registry}/raw_dropped", "Result records sent without the registry's raw answer because they "
         "were longer than `max_record_bytes`."),
    Stat("address/{registry}/deferred", "Addresses not finished by the chunk's deadline, handed on as a "
         "continuation (neither failed nor lost)."),
    Stat("follow_up/{registry}/queued", "Follow-up addresses queued after an answer (a re-crawl: the rest of a "
         "re-checked network that came back narrower, e.g. split)."),
    Stat("follow_up/{registry}/looked_up", "Follow-up addresses looked up (their networks delivered)."),
    Stat("follow_up/{registry}/failed/{reason}", "Follow-up addresses that failed, by reason (not seed failures)."),
    Stat("follow_up/{registry}/skipped", "Follow-up addresses inside a network already known."),
    Stat("follow_up/{registry}/dropped/{reason}", "Follow-up addresses given up (`deadline`: the chunk's time ran "
         "out; they are not seed addresses, so nothing is handed on)."),
    # --- the host's rate budget (ratelimit.RegistryRateLimiter)
    Stat("ratelimit/{registry}/granted", "Request slots granted."),
    Stat("ratelimit/{registry}/waited/{reason}", "Slots granted after a wait, by cause: `window`, `queue`, `pace`, `pause`."),
    Stat("ratelimit/{registry}/waited_s", "Seconds slots waited for the budget (sum).", unit="s"),
    Stat("ratelimit/{registry}/paused/{reason}", "Host-wide pauses set, by reason (`retry-after`, `rate-limit-notice`)."),
    Stat("ratelimit/{registry}/repaused", "Slots that, once due, met a pause set after their reservation."),
    Stat("ratelimit/{registry}/released", "Reserved slots given back unused (a pause grew over them)."),
    Stat("ratelimit/{registry}/throttled", "Throttle answers reported to the adaptive rate."),
    Stat("ratelimit/{registry}/rate_cut", "Times the adaptive rate was cut for the host."),
    # --- the known-network index (netindex.KnownNetworkIndex)
    Stat("index/all/checks", "Addresses checked against the index."),
    Stat("index/all/adds", "Networks added to the index."),
    Stat("index/all/sync", "Catch-ups with the index's log."),
    Stat("index/all/sync_entries", "Log entries read while catching up."),
    Stat("index/all/replica_fallback", "Reads that went to the master because the replica was away."),
    Stat("index/all/replica_behind", "Catch-ups that found the replica behind the master."),
    Stat("index/all/rebuilt/{reason}", "Full reloads of the index (`epoch`: compacted or reset; `truncated`)."),
    Stat("index/all/compactions", "Compactions of the index's log."),
    Stat("index/all/reset", "Resets of the index."),
    # --- the planned crawl (crawl/strategy)
    Stat("plan/{registry}/query/{reason}", "Planned-crawl requests, by kind: `prefix` (an allocation), `search` "
         "(RFC 9910), `probe` (an address in a gap), `seed` (a seed address the plan could not answer)."),
    Stat("plan/{registry}/found", "Networks the planned crawl delivered (records acknowledged by Kafka)."),
    Stat("plan/{registry}/search/{reason}", "Relation searches: answers `truncated` at the registry's cap "
         "(continued after the last network listed) or `refused` as too large (split at an allocation "
         "boundary, else in halves); whether the registry's `help` advertised them when the plan was made: "
         "`offered`, `not_offered` or `unknown` (learnt from its first answer)."),
    Stat("plan/{registry}/walk/{reason}", "Allocations walked, by how: `search` (the registry advertises "
         "rirSearch1) or `probes`; `allocations`: runs of consecutive allocations listed with `rdap-down`."),
    Stat("plan/{registry}/allocations/listed", "Allocations whose network a `rdap-down` search listed, "
         "so they needed no prefix query of their own."),
    Stat("plan/{registry}/failed/{reason}", "Planned-crawl requests with no usable answer after the retry "
         "policy, by reason (the space they cover stays unresolved)."),
    Stat("index/all/refused_range", "Ranges wider than a /8 (or with start > end) dropped where the index "
         "reads or adds them: one 0..2^32-1 record must not make a crawl skip everything."),
)


def _reason(text: str) -> str:
    """A key-safe reason: no blanks (they would end the key)."""
    return re.sub(r"\s+", "_", str(text).strip()) or "unspecified"


def key(area: str, registry: str | None, event: str, reason: str | None = None) -> str:
    """``area/registry/event[/reason]``; ``registry`` None means the stat belongs to no registry."""
    parts = [area, registry or ALL, event]
    if reason is not None:
        parts.append(_reason(reason))
    return "/".join(parts)


def registry_of(name: str) -> str | None:
    """The registry part of a key, or None for ``all``."""
    parts = name.split("/", 3)
    return parts[1] if len(parts) >= 3 and parts[1] != ALL else None


class StatsCollector:
    """Counts (ints or seconds as floats) and latency samples; the one collector of a crawl process."""

    def __init__(self, catalog: Iterable[Stat] = CATALOG) -> None:
        self.catalog = tuple(catalog)
        self._patterns = [(s, s.pattern()) for s in self.catalog]
        self._declared: dict[str, Stat] = {}
        self.values: Counter[str] = Counter()
        self._latency: dict[str, list[float]] = defaultdict(list)

    def stat_for(self, name: str) -> Stat:
        """The declared stat a key belongs to; ValueError if none (count only what is documented)."""
        stat = self._declared.get(name)
        if stat is None:
            for candidate, pattern in self._patterns:
                if pattern.match(name):
                    stat = self._declared[name] = candidate
                    break
            else:
                raise ValueError(f"stat {name!r} is not declared in whoiscrawl.crawl.stats.CATALOG")
        return stat

    def inc(self, name: str, n: int | float = 1) -> None:
        if name not in self._declared:
            self.stat_for(name)
        self.values[name] += n

    def count(self, area: str, registry: str | None, event: str, reason: str | None = None,
              n: int | float = 1) -> None:
        self.inc(key(area, registry, event, reason), n)

    def __getitem__(self, name: str) -> int | float:
        return self.values.get(name, 0)

    def total(self, prefix: str = "", *, area: str | None = None, event: str | None = None) -> int | float:
        """Sum over keys that start with ``prefix`` and, if given, have this area and event."""
        out: int | float = 0
        for name, value in self.values.items():
            if not name.startswith(prefix):
                continue
            parts = name.split("/", 3)
            if area is not None and parts[0] != area:
                continue
            if event is not None and (len(parts) < 3 or parts[2] != event):
                continue
            out += value
        return out

    def latency(self, registry: str, seconds: float) -> None:
        self.inc(key("response", registry, "latency_s"), seconds)
        samples = self._latency[registry]
        if len(samples) < 100_000:  # bounded memory; percentiles stay representative
            samples.append(seconds)

    def latency_percentiles(self) -> dict[str, dict[str, float]]:
        out = {}
        for registry, samples in sorted(self._latency.items()):
            if not samples:
                continue
            ordered = sorted(samples)
            pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
            out[registry] = {"p50_ms": round(pick(0.50) * 1000, 1), "p90_ms": round(pick(0.90) * 1000, 1),
                             "p99_ms": round(pick(0.99) * 1000, 1), "n": len(ordered)}
        return out

    def ancestor_view(self) -> dict[str, int]:
        """The ancestor's six counters, computed from the stats that add to each."""
        view = {name: 0 for name in ANCESTOR_COUNTERS}
        for name, value in self.values.items():
            stat = self._declared.get(name) or self.stat_for(name)
            if stat.ancestor:
                view[stat.ancestor] += int(value)
        return view

    def as_dict(self) -> dict[str, int | float]:
        """Every stat, sorted; seconds keep their fraction."""
        return {k: (round(v, 6) if isinstance(v, float) else int(v)) for k, v in sorted(self.values.items())}

    def merge(self, other: "StatsCollector") -> None:
        self.values.update(other.values)
        self._declared.update(other._declared)
        for reg, samples in other._latency.items():
            self._latency[reg].extend(samples)

    def update(self, values: Mapping[str, int | float]) -> None:
        for name, value in values.items():
            self.inc(name, value)


def markdown() -> str:
    """docs/stats.md: every stat the crawl counts, from the catalog."""
    lines = ["# Crawl stats", "",
             "Generated from `whoiscrawl.crawl.stats.CATALOG` (`whoiscrawl stats --markdown`); a test keeps it current.",
             "", "A key is `area/registry/event[/reason]`; `registry` is `all` for stats of no registry. "
             "Each chunk's stats are in its XCom (`stats`), each host's in its telemetry reports on the "
             "metrics topic, and the run's sums in `coverage.json`.", "",
             "| stat | unit | ancestor counter | meaning |", "| --- | --- | --- | --- |"]
    for s in CATALOG:
        lines.append(f"| `{s.key}` | {s.unit} | {s.ancestor or ''} | {s.doc} |")
    return "\n".join(lines) + "\n"
