"""Named counters for every crawl decision, Scrapy-style (``retry/reason/429``, ``skip/known_network``).

The six counters the ancestor printed are kept under their original names so
that its operators recognise them; everything else is a slash-separated name
with the reason last.
"""

from __future__ import annotations

from collections import Counter, defaultdict

#: The ancestor's six telemetry counters, in its order.
WITHIN_KNOWN = "Within Known CIDR Block"
AWAITING_REGISTRY = "Awaiting Registry"
FOUND_REGISTRY = "Found Registry"
LOOKING_UP = "Looking up WHOIS"
GOT_WHOIS = "Got WHOIS"
FAILED = "Failed to lookup WHOIS"
ANCESTOR_COUNTERS: tuple[str, ...] = (WITHIN_KNOWN, AWAITING_REGISTRY, FOUND_REGISTRY,
                                      LOOKING_UP, GOT_WHOIS, FAILED)


class Stats:
    """Counters plus latency samples per registry (for percentiles in telemetry)."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter({name: 0 for name in ANCESTOR_COUNTERS})
        self._latency: dict[str, list[float]] = defaultdict(list)

    def inc(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def latency(self, registry: str, seconds: float) -> None:
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
        return {name: int(self.counters[name]) for name in ANCESTOR_COUNTERS}

    def as_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in sorted(self.counters.items())}

    def merge(self, other: "Stats") -> None:
        self.counters.update(other.counters)
        for reg, samples in other._latency.items():
            self._latency[reg].extend(samples)
