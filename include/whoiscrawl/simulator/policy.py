"""Per-client rate limits of each simulated registry, and what happens past them.

The ``realistic`` profile follows what the registries document or were seen
doing: LACNIC allows 10 queries a minute and 1,000 an hour per client, answers
past that with HTTP 200 and a "Rate Limit Notice" (no network), and bans a
client that keeps going for about five minutes; the others answer 429 with
Retry-After (RIPE's style) and block persistent offenders with 403.  The
``fast`` profile has no limits, for tests and benchmarks.  Windows are fixed
(they start at a client's first query), which is how the documented limits read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from whoiscrawl.crawl.registries import REGISTRIES

LIMIT_STYLES = ("429", "notice")   # how an over-limit query is answered
BLOCK_STYLES = ("403", "drop")     # how a blocked client is answered


@dataclass(frozen=True)
class RateLimit:
    queries: int
    window_s: float


@dataclass(frozen=True)
class RegistryPolicy:
    """Limits of one registry; an empty ``limits`` means unlimited."""

    limits: tuple[RateLimit, ...] = ()
    style: str = "429"
    block_after: int = 0        # over-limit queries within block_window_s that start a block (0: never)
    block_window_s: float = 60.0
    block_s: float = 60.0
    block_style: str = "403"

    def to_dict(self) -> dict[str, Any]:
        return {"limits": [[lim.queries, lim.window_s] for lim in self.limits], "style": self.style,
                "block_after": self.block_after, "block_window_s": self.block_window_s,
                "block_s": self.block_s, "block_style": self.block_style}

    def updated(self, changes: Mapping[str, Any]) -> "RegistryPolicy":
        """A copy with fields from a JSON-ish mapping (``limits`` as [[n, seconds], ...])."""
        values: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "limits":
                values["limits"] = tuple(RateLimit(int(n), float(w)) for n, w in value)
            elif key in ("block_after",):
                values[key] = int(value)
            elif key in ("block_window_s", "block_s"):
                values[key] = float(value)
            elif key == "style":
                if value not in LIMIT_STYLES:
                    raise ValueError(f"style must be one of {LIMIT_STYLES}, not {value!r}")
                values[key] = value
            elif key == "block_style":
                if value not in BLOCK_STYLES:
                    raise ValueError(f"block_style must be one of {BLOCK_STYLES}, not {value!r}")
                values[key] = value
            else:
                raise ValueError(f"unknown rate-limit field {key!r}")
        return replace(self, **values)


_PER_SECOND = RegistryPolicy(limits=(RateLimit(10, 1.0),), style="429",
                             block_after=50, block_window_s=60.0, block_s=60.0, block_style="403")

PROFILES: dict[str, dict[str, RegistryPolicy]] = {
    "fast": {name: RegistryPolicy() for name in REGISTRIES},
    "realistic": {
        "arin": _PER_SECOND,
        "ripencc": _PER_SECOND,
        "apnic": _PER_SECOND,
        "afrinic": _PER_SECOND,
        "lacnic": RegistryPolicy(limits=(RateLimit(10, 60.0), RateLimit(1000, 3600.0)), style="notice",
                                 block_after=10, block_window_s=60.0, block_s=300.0, block_style="drop"),
    },
}

#: Latency (fixed ms, jitter ms) a profile adds before every answer.
PROFILE_LATENCY_MS: dict[str, tuple[float, float]] = {"fast": (0.0, 0.0), "realistic": (80.0, 120.0)}


@dataclass
class _ClientWindow:
    window_start: list[float]
    count: list[int]
    excess_start: float = 0.0
    excess: int = 0
    blocked_until: float = 0.0


@dataclass(frozen=True)
class Decision:
    """Outcome for one query: ``ok``, ``limited`` (retry_after_s) or ``blocked``."""

    verdict: str
    retry_after_s: int = 0
    block_started: bool = False
    limit: RateLimit | None = None


OK = Decision("ok")


@dataclass
class RateLimiter:
    """Counts queries per (registry, client address) against the registry's policy."""

    policies: dict[str, RegistryPolicy] = field(default_factory=lambda: dict(PROFILES["fast"]))
    _clients: dict[tuple[str, str], _ClientWindow] = field(default_factory=dict)

    def set_policy(self, registry: str, policy: RegistryPolicy) -> None:
        self.policies[registry] = policy
        for key in [k for k in self._clients if k[0] == registry]:
            del self._clients[key]

    def check(self, registry: str, client: str, now: float) -> Decision:
        policy = self.policies[registry]
        if not policy.limits:
            return OK
        state = self._clients.get((registry, client))
        if state is None:
            state = _ClientWindow([now] * len(policy.limits), [0] * len(policy.limits))
            self._clients[(registry, client)] = state
        if state.blocked_until > now:
            return Decision("blocked", retry_after_s=math.ceil(state.blocked_until - now))
        retry = 0
        violated: RateLimit | None = None
        for k, limit in enumerate(policy.limits):
            if now - state.window_start[k] >= limit.window_s:
                state.window_start[k] = now
                state.count[k] = 0
            state.count[k] += 1
            if state.count[k] > limit.queries:
                wait = max(1, math.ceil(state.window_start[k] + limit.window_s - now))
                if wait > retry:
                    retry, violated = wait, limit
        if violated is None:
            return OK
        if now - state.excess_start >= policy.block_window_s:
            state.excess_start = now
            state.excess = 0
        state.excess += 1
        if policy.block_after and state.excess >= policy.block_after:
            state.blocked_until = now + policy.block_s
            state.excess = 0
            return Decision("blocked", retry_after_s=math.ceil(policy.block_s), block_started=True)
        return Decision("limited", retry_after_s=retry, limit=violated)
