"""Per-registry rate limits, shared by every crawl process of one source host.

Registries limit requests per client address, so the budget is one per registry
per source host, whatever the number of crawl processes on it. The ancestor gave
each worker its own limit and was blocked by LACNIC and AFRINIC; here every
process of a host reserves its requests under that host's keys on the master
Redis (``crawl_chunk`` passes it): a writable replica would keep such writes
local, but a full resync of the replica wipes them, and with them a pause of an
hour (LACNIC's next slot went from 3,600 s to 0 s); the master keeps them, in
its append-only file too.

Algorithm: a sliding-window log with reservations, in one Lua script, over all
windows of a registry at once. The script keeps the times of the latest
``max(count)`` grants (a Redis list, newest first) and gives the next request
the earliest time ``t >= now`` such that, for every window ``(count, period)``,
``t >= (count-th latest grant) + period`` -- so no interval of length ``period``
ever holds more than ``count`` grants -- and ``t`` is not inside a pause.
Paced (the default), grants are also at least ``period / count`` apart: a
budget set ten times too high then sends a few requests too many before the
first 429 comes back, not a burst of a whole window (RIPE and the simulator's
blocking profiles block a client after enough of those). It
records ``t`` at once and returns ``t - now``: the caller sleeps exactly that
long, and concurrent callers queue up in order without polling. (GCRA or a
token bucket would be one key smaller, but both let up to ``2*count - 1``
requests through in a sliding window when they allow a burst of ``count``.)

Time is passed into the script by the caller (the wall clock, shared by the
processes of one host), which lets tests drive it with a fake clock.
``margin_s`` is added to every period, and every period is stretched by ``margin_ratio``
(1% by default: 0.6 s of LACNIC's minute), so that timer lateness and network jitter
do not make the registry see more than ``count`` in its own window.

Adaptive rate: :meth:`RegistryRateLimiter.on_throttled` cuts the registry's
rate for the whole host, at most once per shortest period (a burst of 429s in
flight counts once): to 95% (``admitted_share``) of what the registry admitted
in its last window (the successes the host recorded), or by half when none is
known. A budget ten times too high converges in one cut instead of four, before
the excess of four bursts gets the host blocked; a right one loses only 5%. The
factor shrinks every window's count (a cut rate also has a smaller burst);
below one request per window it stretches the period instead.
:meth:`RegistryRateLimiter.on_success` adds one request per shortest window
back, once per window (additive increase), never above the configured limits,
but only ``recover_windows`` shortest windows after the last cut: every probe
above what the registry admits costs a 429 and a pause of up to a window, so a
host that probed every window would lose a third of its rate; probing every
twentieth loses a few percent, and a host still creeps back to a limit that rose.
:meth:`RegistryRateLimiter.pause` stops a registry host-wide until a time
(Retry-After, LACNIC's "Rate Limit Notice"); requests already waiting for a
slot check it again right before they go, and give their slot back when a
pause grew over it (a slot nobody sends in would count against the window).

Registries are independent: separate keys, separate reservations.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, NamedTuple

import redis

from whoiscrawl.crawl.stats import StatsCollector

__all__ = ["RateLimits", "RegistryRateLimiter", "Window"]


class Window(NamedTuple):
    """At most ``count`` requests in any interval of ``period_s`` seconds."""
    count: int
    period_s: float

    def __str__(self) -> str:
        return f"{self.count}/{self.period_s:g}"


#: The ancestor's 10 requests per second, for registries not named otherwise.
DEFAULT_WINDOWS: tuple[Window, ...] = (Window(10, 1.0),)
#: LACNIC documents 10 queries per minute and 1,000 per hour per client address.
BUILTIN: dict[str, tuple[Window, ...]] = {"lacnic": (Window(10, 60.0), Window(1000, 3600.0))}

_NAME = re.compile(r"^[A-Za-z0-9_.:\-]+$")


@dataclass(frozen=True)
class RateLimits:
    """Windows per registry; a registry not named gets ``default``."""
    windows: Mapping[str, tuple[Window, ...]] = field(default_factory=lambda: dict(BUILTIN))
    default: tuple[Window, ...] = DEFAULT_WINDOWS

    @classmethod
    def defaults(cls) -> "RateLimits":
        return cls()

    @classmethod
    def parse(cls, text: str) -> "RateLimits":
        """Parse ``"lacnic=10/60+1000/3600,arin=10/1"``; registries not named keep their defaults.

        The name ``default`` sets the windows of every registry not named.
        """
        windows = dict(BUILTIN)
        default = DEFAULT_WINDOWS
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, spec = item.partition("=")
            name = name.strip().lower()
            if not sep or not _NAME.match(name):
                raise ValueError(f"rate limit {item!r}: expected registry=count/seconds[+count/seconds...]")
            parsed = tuple(cls._window(item, w) for w in spec.split("+"))
            if name == "default":
                default = parsed
            else:
                windows[name] = parsed
        return cls(windows, default)

    @staticmethod
    def names_in(text: str) -> set[str]:
        """The registries a rate-limit text names (``default`` is not one)."""
        names = {item.partition("=")[0].strip().lower() for item in (text or "").split(",") if item.strip()}
        return names - {"default"}

    @staticmethod
    def _window(item: str, text: str) -> Window:
        count, sep, period = text.strip().partition("/")
        try:
            window = Window(int(count), float(period))
        except ValueError:
            raise ValueError(f"rate limit {item!r}: {text!r} is not count/seconds") from None
        if not sep or window.count < 1 or not window.period_s > 0:
            raise ValueError(f"rate limit {item!r}: {text!r} needs a count >= 1 and seconds > 0")
        return window

    def for_registry(self, registry: str) -> tuple[Window, ...]:
        return tuple(self.windows.get(registry, self.default))

    def __str__(self) -> str:
        parts = [f"{name}={'+'.join(map(str, ws))}" for name, ws in sorted(self.windows.items())]
        return ",".join([*parts, f"default={'+'.join(map(str, self.default))}"])


# KEYS: log, adapt, pause. ARGV: now, margin, n, count1, period1, ..., pace (1/0)
# Returns {delay, cause, factor} as strings (Lua numbers would be truncated to integers).
_RESERVE = """
local now = tonumber(ARGV[1])
local margin = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local factor = tonumber(redis.call('HGET', KEYS[2], 'factor') or '1')
local t = now
local cause = 'none'
local newest = redis.call('LINDEX', KEYS[1], 0)
if newest and tonumber(newest) > t then
  t = tonumber(newest)
  cause = 'queue'
end
local maxcount, maxperiod, gap = 1, 0, 0
local pace = tonumber(ARGV[4 + 2 * n]) == 1
for i = 0, n - 1 do
  -- the adapted rate shrinks the count (a smaller burst), never the period below the registry's window;
  -- below one request per window it stretches the period instead
  local scaled = tonumber(ARGV[4 + 2 * i]) * factor
  local count = 1
  local period = tonumber(ARGV[5 + 2 * i])
  if scaled >= 1 then count = math.floor(scaled) else period = period / scaled end
  period = period + margin
  if tonumber(ARGV[4 + 2 * i]) > maxcount then maxcount = tonumber(ARGV[4 + 2 * i]) end
  if period > maxperiod then maxperiod = period end
  if period / count > gap then gap = period / count end
  local old = redis.call('LINDEX', KEYS[1], count - 1)
  if old then
    local ready = tonumber(old) + period
    if ready >= t and ready > now then
      t = ready
      cause = 'window'
    end
  end
end
-- paced: grants at least period/count apart, so the registry never sees a burst it did not admit
if pace and newest and tonumber(newest) + gap > t then
  t = tonumber(newest) + gap
  cause = 'pace'
end
local paused = tonumber(redis.call('HGET', KEYS[3], 'until') or '0')
if paused >= t and paused > now then
  t = paused
  cause = 'pause'
end
local stamp = string.format('%.6f', t)
t = tonumber(stamp)
redis.call('LPUSH', KEYS[1], stamp)
redis.call('LTRIM', KEYS[1], 0, maxcount - 1)
redis.call('PEXPIRE', KEYS[1], math.ceil((maxperiod + t - now) * 1000) + 1000)
return {string.format('%.6f', t - now), cause, tostring(factor), stamp}
"""

# KEYS: log. ARGV: stamp. Gives back a reservation that will not be used (a pause grew over it), so that
# a slot nobody sends in does not count against the window.
_RELEASE = """
return redis.call('LREM', KEYS[1], 1, ARGV[1])
"""

# KEYS: pause. ARGV: now, seconds, reason. Extends a pause, never shortens it.
_PAUSE = """
local now = tonumber(ARGV[1])
local target = now + tonumber(ARGV[2])
local current = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if target > current then
  redis.call('HSET', KEYS[1], 'until', string.format('%.6f', target), 'reason', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil((target - now) * 1000) + 1000)
  return string.format('%.6f', target)
end
return string.format('%.6f', current)
"""

# KEYS: adapt, ok. ARGV: now, decrease, min_factor, holdoff, ttl_ms, period, count, share, recover.
# Returns {factor, cut(0/1)}. The cut goes to what the registry admitted in its last window (``share`` of
# the successes within ``period``; halved when none is known): a budget ten times too high converges in
# one step, a right one loses only the share.
_THROTTLED = """
local now = tonumber(ARGV[1])
local factor = tonumber(redis.call('HGET', KEYS[1], 'factor') or '1')
local cut_at = tonumber(redis.call('HGET', KEYS[1], 'cut_at') or '-1e18')
local admitted = 0
for _, t in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  if tonumber(t) > now - tonumber(ARGV[6]) then admitted = admitted + 1 end
end
local learned = tonumber(ARGV[8]) * admitted / tonumber(ARGV[7])
if now - cut_at < tonumber(ARGV[4]) then
  return {tostring(factor), 0}
end
local cut = factor * tonumber(ARGV[2])
if admitted > 0 then
  cut = math.min(factor, learned)
end
local stamp = string.format('%.6f', now)
local before = factor
factor = math.max(tonumber(ARGV[3]), cut)
-- the first increase after a cut waits ``recover`` seconds: the cut rate is what the registry admits
redis.call('HSET', KEYS[1], 'before', tostring(before), 'factor', tostring(factor), 'cut_at', stamp,
           'up_at', string.format('%.6f', now + tonumber(ARGV[9]) - tonumber(ARGV[4])))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
return {tostring(factor), 1}
"""

# KEYS: adapt, ok. ARGV: step, now, holdoff, keep, ttl_ms, share, grace. Records the success; returns
# the factor. Within ``grace`` of a cut, answers of requests sent before it still arrive: the factor rises
# to ``share`` of the successes of the last window (never above its value before the cut), so a cut made
# at the first 429, before the rest of the admitted burst had answered, does not undercount.
# Otherwise grows the factor by ``step`` at most once per ``holdoff`` (the shortest window), never above 1.
_SUCCESS = """
local now = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
redis.call('LPUSH', KEYS[2], string.format('%.6f', now))
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[5]))
local current = redis.call('HGET', KEYS[1], 'factor')
if not current then return '1' end
local cut_at = tonumber(redis.call('HGET', KEYS[1], 'cut_at') or '-1e18')
if now - cut_at < tonumber(ARGV[7]) then
  local admitted = 0
  for _, t in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    if tonumber(t) > now - period then admitted = admitted + 1 end
  end
  local before = tonumber(redis.call('HGET', KEYS[1], 'before') or current)
  local learned = math.min(before, tonumber(ARGV[6]) * admitted / tonumber(ARGV[4]))
  if learned > tonumber(current) then
    redis.call('HSET', KEYS[1], 'factor', tostring(learned))
    return tostring(learned)
  end
  return current
end
local up_at = tonumber(redis.call('HGET', KEYS[1], 'up_at') or '-1e18')
if now - up_at < tonumber(ARGV[3]) then return current end
local factor = math.min(1, tonumber(current) + tonumber(ARGV[1]))
if factor >= 1 then
  redis.call('HDEL', KEYS[1], 'factor', 'up_at')
  return '1'
end
redis.call('HSET', KEYS[1], 'factor', tostring(factor), 'up_at', string.format('%.6f', now))
return tostring(factor)
"""


def _reason(text: str) -> str:
    """A stats-safe reason name: lower case, words joined by dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unspecified"


class RegistryRateLimiter:
    """One host's request budget per registry, in that host's Redis; one object per process is fine."""

    def __init__(self, client: redis.Redis, host_id: str, limits: RateLimits | None = None,
                 key_prefix: str = "whoiscrawl:rate", *, clock: Callable[[], float] = time.time,
                 margin_s: float = 0.05, margin_ratio: float = 0.01, decrease: float = 0.5, increase: float = 1.0,
                 min_factor: float = 0.02, adapt_ttl_s: float = 86400.0, admitted_share: float = 0.95,
                 recover_windows: float = 20.0, pace: bool = True, stats: StatsCollector | None = None) -> None:
        if not 0 < decrease < 1 or not 0 < min_factor <= 1 or increase <= 0 or recover_windows < 1:
            raise ValueError("need 0 < decrease < 1, 0 < min_factor <= 1, increase > 0 and recover_windows >= 1")
        self.client = client
        self.host_id = host_id
        self.limits = limits or RateLimits.defaults()
        self.key_prefix = key_prefix
        self.clock = clock
        self.margin_s = margin_s
        self.margin_ratio = margin_ratio
        self.decrease = decrease
        self.increase = increase
        self.min_factor = min_factor
        self.adapt_ttl_s = adapt_ttl_s
        self.admitted_share = admitted_share
        self.recover_windows = recover_windows
        self.pace = pace
        self.stats = stats if stats is not None else StatsCollector()
        self._reserve = client.register_script(_RESERVE)
        self._pause = client.register_script(_PAUSE)
        self._throttled = client.register_script(_THROTTLED)
        self._success = client.register_script(_SUCCESS)
        self._release = client.register_script(_RELEASE)

    def _keys(self, registry: str) -> tuple[str, str, str]:
        # one hash tag per host and registry: the script's keys share a cluster slot
        base = f"{self.key_prefix}:{{{self.host_id}:{registry}}}"
        return f"{base}:log", f"{base}:adapt", f"{base}:pause"

    def _ok_key(self, registry: str) -> str:
        return f"{self.key_prefix}:{{{self.host_id}:{registry}}}:ok"

    def _shortest(self, registry: str) -> Window:
        return min(self.limits.for_registry(registry), key=lambda w: w.period_s)

    # --- reservations -----------------------------------------------------------------------
    def reserve(self, registry: str, now: float | None = None) -> float:
        """Reserve the registry's next slot for this host; return seconds to wait until it (>= 0)."""
        return self._reserve_slot(registry, now)[0]

    def _reserve_slot(self, registry: str, now: float | None = None) -> tuple[float, str]:
        """Reserve the next slot; return the wait and the slot's stamp (to give it back)."""
        now = self.clock() if now is None else now
        windows = self.limits.for_registry(registry)
        args: list[float | int | str] = [repr(float(now)), repr(float(self.margin_s)), len(windows)]
        for w in windows:
            # long windows get a proportional margin too: the registry's window may start a little
            # later than ours (its clock starts at the arrival of our first request)
            args += [w.count, repr(float(w.period_s) * (1.0 + self.margin_ratio))]
        args.append(1 if self.pace else 0)
        delay_text, cause, _factor, stamp = self._reserve(keys=self._keys(registry), args=args)
        delay = max(0.0, float(delay_text))
        cause = cause.decode() if isinstance(cause, bytes) else cause
        self.stats.count("ratelimit", registry, "granted")
        if delay > 0:
            self.stats.count("ratelimit", registry, "waited", cause)
            self.stats.count("ratelimit", registry, "waited_s", n=delay)
        return delay, stamp.decode() if isinstance(stamp, bytes) else stamp

    def release(self, registry: str, stamp: str) -> bool:
        """Give back a reserved slot that will not be used; True if it was still in the log."""
        log_key = self._keys(registry)[0]
        released = bool(int(self._release(keys=[log_key], args=[stamp])))
        if released:
            self.stats.count("ratelimit", registry, "released")
        return released

    async def acquire(self, registry: str) -> float:
        """Wait until this host may send one request to ``registry``; return the seconds waited."""
        started = time.monotonic()
        while True:
            now = self.clock()
            delay, stamp = await asyncio.to_thread(self._reserve_slot, registry, now)
            if delay <= 0:
                break
            await asyncio.sleep(delay)
            # a pause that began (or grew) after our reservation applies to us as well
            until = await asyncio.to_thread(self.paused_until, registry)
            if until is None or until <= now + delay + 1e-6:
                break
            self.stats.count("ratelimit", registry, "repaused")
            await asyncio.to_thread(self.release, registry, stamp)
        return time.monotonic() - started

    # --- pauses -------------------------------------------------------------------------------
    def pause(self, registry: str, seconds: float, reason: str, now: float | None = None) -> float:
        """Stop requests to ``registry`` from this whole host for ``seconds``; return the pause's end."""
        now = self.clock() if now is None else now
        name = _reason(reason)
        _log, _adapt, key = self._keys(registry)
        until = float(self._pause(keys=[key], args=[repr(float(now)), repr(float(seconds)), name]))
        self.stats.count("ratelimit", registry, "paused", name)
        return until

    def paused_until(self, registry: str) -> float | None:
        """When the registry's host-wide pause ends, or None if there is none (or it expired)."""
        _log, _adapt, key = self._keys(registry)
        value = self.client.hget(key, "until")
        return float(value) if value is not None else None

    # --- adaptive rate ------------------------------------------------------------------------
    def on_throttled(self, registry: str, now: float | None = None) -> float:
        """The registry pushed back (429, a rate notice): cut its rate for the host; return the factor."""
        now = self.clock() if now is None else now
        window = self._shortest(registry)
        _log, adapt, _pause = self._keys(registry)
        factor, cut = self._throttled(keys=[adapt, self._ok_key(registry)], args=[
            repr(float(now)), repr(self.decrease), repr(self.min_factor), repr(float(window.period_s)),
            int(self.adapt_ttl_s * 1000), repr(float(window.period_s)), window.count, repr(self.admitted_share),
            repr(float(window.period_s * self.recover_windows))])
        self.stats.count("ratelimit", registry, "throttled")
        if int(cut):
            self.stats.count("ratelimit", registry, "rate_cut")
        return float(factor)

    def on_success(self, registry: str, now: float | None = None) -> float:
        """A request went through: note it, and give back ``increase`` requests per window once per window
        (additive increase, never above the limits); return the factor."""
        now = self.clock() if now is None else now
        window = self._shortest(registry)
        _log, adapt, _pause = self._keys(registry)
        return float(self._success(keys=[adapt, self._ok_key(registry)], args=[
            repr(self.increase / window.count), repr(float(now)), repr(float(window.period_s)), window.count,
            int(self.adapt_ttl_s * 1000), repr(self.admitted_share), repr(self._grace_s(window))]))

    @staticmethod
    def _grace_s(window: Window) -> float:
        """How long after a cut answers of requests sent before it may still raise the learned rate."""
        return min(window.period_s / 2, 5.0)

    def rate_factor(self, registry: str) -> float:
        """The share of the configured rate the host currently uses for ``registry`` (0..1]."""
        _log, adapt, _pause = self._keys(registry)
        value = self.client.hget(adapt, "factor")
        return float(value) if value is not None else 1.0

    def reset(self, registries: Iterable[str]) -> None:
        """Forget reservations, pauses and rate cuts of these registries on this host."""
        keys = [k for r in registries for k in (*self._keys(r), self._ok_key(r))]
        if keys:
            self.client.delete(*keys)
