"""A circuit breaker per registry: a registry that stopped answering costs a few cooldowns, not timeouts.

After ``down_after`` transport failures in a row (timeouts, refused
connections) the registry counts as down for ``cooldown_s``: its addresses wait
the cooldown out instead of each spending a timeout; then requests probe it
again, and one answer closes the breaker.
"""

from __future__ import annotations

import time
from typing import Callable

#: Failures that mean the registry did not answer at all (as opposed to answering badly).
TRANSPORT_FAILURES = ("timeout", "refused", "connection")


class RegistryBreaker:
    """One registry's breaker, for one crawl process."""

    def __init__(self, down_after: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.down_after = down_after
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.failures = 0
        self.down_until = 0.0

    def record(self, transport_failure: bool) -> bool:
        """Count one outcome; True when this one opened the breaker (it was closed before)."""
        if not transport_failure:
            self.failures = 0
            return False
        self.failures += 1
        if self.failures < self.down_after:
            return False
        was_open = self.is_open()
        self.down_until = self.clock() + self.cooldown_s
        return not was_open

    def is_open(self) -> bool:
        return self.down_until > self.clock()


class RegistryBreakers:
    """The breakers of one crawl process, one per registry, made on first use."""

    def __init__(self, down_after: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.down_after, self.cooldown_s, self.clock = down_after, cooldown_s, clock
        self._by_registry: dict[str, RegistryBreaker] = {}

    def __getitem__(self, registry: str) -> RegistryBreaker:
        breaker = self._by_registry.get(registry)
        if breaker is None:
            breaker = self._by_registry[registry] = RegistryBreaker(self.down_after, self.cooldown_s, self.clock)
        return breaker

    def record(self, registry: str, reason: str | None) -> bool:
        """Count one lookup's outcome (``reason``: a transient failure's, None for any answer); True if it opened."""
        return self[registry].record(reason in TRANSPORT_FAILURES)
