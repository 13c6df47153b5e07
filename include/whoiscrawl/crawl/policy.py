"""The retry and throttle policy: what to do with an address after one lookup, as a pure function.

``decide(job, result, config)`` returns an :class:`Action` and touches
nothing: the engine applies it (queue, fail, pause the registry, adapt its
rate) and counts it. Like Scrapy's retry decision, but a registry's own word
on when to come back (Retry-After, a rate-limit notice's window) is honoured,
never shortened, and capped by ``retry_after_max_s``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from whoiscrawl.crawl.bootstrap import Service
from whoiscrawl.crawl.config import RunConfig
from whoiscrawl.crawl.rdap_client import Fail, Ok, Result, Retry, Throttle


@dataclass
class Job:
    """One address on its way through a registry's queue."""
    addr: int
    service: Service
    attempts: int = 0
    throttles: int = 0
    not_before: float = 0.0
    last_reason: str = ""


@dataclass(frozen=True)
class RegistryDown:
    """Not an answer: the registry's breaker is open until ``until`` (monotonic seconds)."""
    registry: str
    until: float


@dataclass(frozen=True)
class Action:
    """``deliver`` the record, ``retry`` the address after ``delay_s``, or ``fail`` it with ``reason``.

    ``pause_s`` pauses the registry host-wide (None: no pause); ``slow_down`` cuts the host's rate.
    ``count_attempt`` says whether this outcome spends one of the address's attempts.
    """
    kind: Literal["deliver", "retry", "fail"]
    registry: str | None
    reason: str = ""
    delay_s: float = 0.0
    not_before: float | None = None
    pause_s: float | None = None
    slow_down: bool = False
    count_attempt: bool = False


def backoff_s(attempts: int, config: RunConfig, hint_s: float | None = None,
              rng: random.Random | None = None) -> float:
    """Delay before the next attempt: the registry's hint if it gave one (capped), else exponential with jitter."""
    if hint_s is not None:
        return min(hint_s, config.retry_after_max_s)
    base = config.retry_backoff_s * (2 ** max(0, attempts - 1))
    return base * (0.5 + (rng or random).random())


def decide(job: Job, result: Result | RegistryDown, config: RunConfig,
           rng: random.Random | None = None) -> Action:
    """The action for ``job`` after ``result``. Reads the job, never changes it."""
    if isinstance(result, Ok):
        return Action("deliver", result.registry)
    if isinstance(result, Fail):
        return Action("fail", result.registry, result.reason)
    if isinstance(result, Throttle):
        if job.throttles + 1 > config.max_throttles:
            return Action("fail", result.registry, "throttled", pause_s=result.pause_s, slow_down=True)
        # the pause holds every request of the host back, this one included: no delay of its own
        return Action("retry", result.registry, result.reason, pause_s=result.pause_s, slow_down=True)
    if isinstance(result, RegistryDown):
        if job.attempts + 1 >= config.max_attempts:
            return Action("fail", result.registry, job.last_reason or "registry_down", count_attempt=True)
        return Action("retry", result.registry, "registry_down", not_before=result.until, count_attempt=True)
    assert isinstance(result, Retry), result
    if job.attempts + 1 >= config.max_attempts:
        return Action("fail", result.registry, result.reason, count_attempt=True)
    return Action("retry", result.registry, result.reason, count_attempt=True,
                  delay_s=backoff_s(job.attempts + 1, config, result.after_s, rng))
