"""RegistryRateLimiter on a real redis-server: shared budgets, windows, pauses and AIMD."""

from __future__ import annotations

import asyncio
import bisect
import heapq
import time

import pytest

from whoiscrawl.crawl.ratelimit import RateLimits, RegistryRateLimiter, Window

T0 = 1_000_000.0  # fake clock origin


@pytest.fixture
def master(redis_flush):
    conn = redis_flush.client()
    yield conn
    conn.close()


def limiter(conn, text: str, **kwargs) -> RegistryRateLimiter:
    kwargs.setdefault("margin_s", 0.0)  # fake-clock tests check the exact algorithm
    kwargs.setdefault("margin_ratio", 0.0)
    kwargs.setdefault("pace", False)  # the sliding log's own bursts; pacing has its own test
    return RegistryRateLimiter(conn, "host-a", RateLimits.parse(text), **kwargs)


def saturate(limiters: list[RegistryRateLimiter], registry: str, duration: float) -> list[tuple[float, int]]:
    """Each limiter is a process that asks again the moment its last grant comes; fake time."""
    queue = [(T0 + i * 1e-3, i) for i in range(len(limiters))]
    grants = []
    while queue:
        now, i = heapq.heappop(queue)
        slot = now + limiters[i].reserve(registry, now=now)
        if slot < T0 + duration:
            grants.append((slot, i))
            assert len(grants) < 10_000, "granted without bound: the limiter does not limit"
            heapq.heappush(queue, (slot, i))
    return sorted(grants)


def max_in_window(times: list[float], period: float) -> int:
    """Most grants in any half-open interval [t, t + period) (a hair less, for float rounding)."""
    times = sorted(times)
    return max(bisect.bisect_left(times, t + period - 1e-5) - k for k, t in enumerate(times))


def test_parse_defaults_and_round_trip():
    defaults = RateLimits.defaults()
    assert defaults.for_registry("lacnic") == (Window(10, 60.0), Window(1000, 3600.0))
    assert defaults.for_registry("arin") == defaults.for_registry("afrinic") == (Window(10, 1.0),)
    limits = RateLimits.parse(" arin=20/1 , afrinic=3/2+100/600 ")
    assert limits.for_registry("arin") == (Window(20, 1.0),)
    assert limits.for_registry("afrinic") == (Window(3, 2.0), Window(100, 600.0))
    assert limits.for_registry("lacnic") == defaults.for_registry("lacnic")  # not named: kept
    assert limits.for_registry("apnic") == (Window(10, 1.0),)
    assert RateLimits.parse(str(limits)) == limits
    assert RateLimits.parse("default=5/1").for_registry("ripencc") == (Window(5, 1.0),)
    assert RateLimits.parse("") == defaults
    for bad in ("arin", "arin=10", "arin=0/1", "arin=10/0", "arin=ten/1", "=10/1", "arin=10/1+"):
        with pytest.raises(ValueError):
            RateLimits.parse(bad)


def test_two_processes_never_exceed_the_limit_together(master):
    a, b = limiter(master, "arin=20/1"), limiter(master, "arin=20/1")
    grants = saturate([a, b, a, b], "arin", duration=10.0)
    times = [g for g, _ in grants]
    assert max_in_window(times, 1.0) <= 20
    assert len(times) >= 0.95 * 20 * 10  # and the budget is used, not wasted
    assert {i for _, i in grants} == {0, 1, 2, 3}  # every process got its share
    assert a.stats["ratelimit/arin/waited/window"] > 0 and b.stats.total("ratelimit/arin/waited/") > 0


def test_every_window_of_a_registry_is_respected(master):
    procs = [limiter(master, "ripencc=5/0.5+8/2") for _ in range(3)]
    times = [g for g, _ in saturate(procs, "ripencc", duration=12.0)]
    assert max_in_window(times, 0.5) <= 5
    assert max_in_window(times, 2.0) <= 8
    assert len(times) >= 0.9 * 8 * 12 / 2  # the long window's rate is reached
    # the short window binds first: a burst of 5, then the next ones half a second later
    assert times[4] - times[0] < 0.01 and times[5] - times[0] >= 0.5 - 1e-5


def test_real_time_acquire_shares_one_budget(redis_flush):
    conns = [redis_flush.client(), redis_flush.client()]
    # margin: a coroutine on a busy machine may run a little after its slot; it must still not
    # share a window with the next burst (that is what the margin is for in production too)
    procs = [RegistryRateLimiter(c, "host-a", RateLimits.parse("arin=20/1"), margin_s=0.2,
                                 pace=False) for c in conns]
    stamps: list[float] = []
    waited: list[float] = []

    async def worker(lim: RegistryRateLimiter, until: float) -> None:
        while time.time() < until:
            waited.append(await lim.acquire("arin"))
            stamps.append(time.time())

    async def main() -> None:
        until = time.time() + 1.6
        await asyncio.wait_for(asyncio.gather(*(worker(p, until) for p in procs * 3)), timeout=10)

    asyncio.run(main())
    assert max_in_window(stamps, 1.0) <= 20
    assert 21 <= len(stamps) <= 60  # a second window was reached, and not exceeded
    assert max(waited) >= 0.9  # someone slept until the next window instead of polling
    for c in conns:
        c.close()


def test_pause_is_honoured_host_wide_and_only_extended(master):
    a, b = limiter(master, "lacnic=10/60"), limiter(master, "lacnic=10/60")
    until = a.pause("lacnic", 120, "Rate Limit Notice", now=T0)
    assert until == pytest.approx(T0 + 120)
    assert a.pause("lacnic", 10, "retry-after", now=T0 + 1) == pytest.approx(T0 + 120)
    assert b.reserve("lacnic", now=T0 + 5) == pytest.approx(115)
    assert b.stats["ratelimit/lacnic/waited/pause"] == 1
    assert a.stats["ratelimit/lacnic/paused/rate-limit-notice"] == 1
    assert a.stats["ratelimit/lacnic/paused/retry-after"] == 1
    assert b.reserve("arin", now=T0 + 5) == 0  # another registry is not paused


def test_acquire_waits_for_a_pause_that_starts_while_waiting(redis_flush):
    conns = [redis_flush.client(), redis_flush.client()]
    a = RegistryRateLimiter(conns[0], "host-a", RateLimits.parse("afrinic=1/1"), margin_s=0)
    b = RegistryRateLimiter(conns[1], "host-a", RateLimits.parse("afrinic=1/1"), margin_s=0)

    async def main() -> float:
        await a.acquire("afrinic")  # takes the window's only slot
        assert a.stats.total("ratelimit/afrinic/waited/") == 0
        second = asyncio.create_task(a.acquire("afrinic"))  # reserves the slot 1 s later
        await asyncio.sleep(0.1)
        b.pause("afrinic", 1.5, "retry-after")  # meanwhile another process is told to back off
        return await asyncio.wait_for(second, timeout=5)

    second = asyncio.run(main())
    assert second >= 1.5
    assert a.stats["ratelimit/afrinic/repaused"] == 1
    for c in conns:
        c.close()


def test_a_paused_registry_does_not_delay_another(master):
    lim = RegistryRateLimiter(master, "host-a", RateLimits.defaults())

    async def main() -> tuple[float, bool]:
        lim.pause("lacnic", 5, "retry-after")
        blocked = asyncio.create_task(lim.acquire("lacnic"))
        await asyncio.sleep(0.05)
        waited = await asyncio.wait_for(lim.acquire("arin"), timeout=2)
        pending = not blocked.done()
        blocked.cancel()
        return waited, pending

    waited, lacnic_still_waiting = asyncio.run(main())
    assert waited < 0.5
    assert lacnic_still_waiting


def test_adaptive_decrease_shared_and_slow_recovery(master):
    a, b = limiter(master, "apnic=10/1", recover_windows=1), limiter(master, "apnic=10/1", recover_windows=1)
    full = len(saturate([b], "apnic", duration=10.0))
    a.reset(["apnic"])
    assert a.on_throttled("apnic", now=T0) == pytest.approx(0.5)
    assert a.on_throttled("apnic", now=T0 + 0.2) == pytest.approx(0.5)  # one cut per window
    assert b.rate_factor("apnic") == pytest.approx(0.5)  # the host's other process shares it
    halved = len(saturate([b], "apnic", duration=10.0))
    assert 0.4 * full <= halved <= 0.6 * full
    assert a.on_throttled("apnic", now=T0 + 2) == pytest.approx(0.25)
    assert a.stats["ratelimit/apnic/throttled"] == 3 and a.stats["ratelimit/apnic/rate_cut"] == 2
    # additive increase: one request per window (10 per 1 s here), once per window, never above the limits
    assert [b.on_success("apnic", now=T0 + 2.5) for _ in range(5)] == [pytest.approx(0.25)] * 5
    factors = [b.on_success("apnic", now=T0 + 3 + k) for k in range(5)]
    assert factors == [pytest.approx(0.25 + 0.1 * (k + 1)) for k in range(5)]
    for k in range(20):
        b.on_success("apnic", now=T0 + 20 + k)
    assert b.rate_factor("apnic") == 1.0
    for k in range(20):  # many throttles: floored, never zero
        a.on_throttled("apnic", now=T0 + 300 + 2 * k)
    assert a.rate_factor("apnic") == pytest.approx(a.min_factor)


def test_a_cut_goes_to_what_the_registry_admitted_in_its_last_window(master):
    """A budget 10x too high: the first 429 cuts the rate to 95% of the successes of the last window."""
    lim = limiter(master, "apnic=200/2")
    for k in range(20):  # the registry admitted 20 in the last 2 s
        lim.on_success("apnic", now=T0 + k * 0.05)
    assert lim.on_throttled("apnic", now=T0 + 1.2) == pytest.approx(lim.admitted_share * 20 / 200)
    assert lim.stats["ratelimit/apnic/rate_cut"] == 1


def test_budget_lives_in_the_hosts_replica(redis_master, redis_replica, redis_flush):
    local, master = redis_replica.client(), redis_master.client()
    lim = limiter(local, "arin=2/1")
    assert [lim.reserve("arin", now=T0) for _ in range(3)] == [0, 0, pytest.approx(1.0)]
    log_key = lim._keys("arin")[0]
    assert local.llen(log_key) == 2
    assert master.exists(log_key) == 0  # per-host state stays on the host
    other_host = RegistryRateLimiter(master, "host-b", RateLimits.parse("arin=2/1"), margin_s=0, margin_ratio=0)
    assert other_host.reserve("arin", now=T0) == 0
    local.close()
    master.close()


def test_long_windows_get_a_proportional_margin(redis_flush):
    """10 per minute: the 11th slot comes 1% after the window, so the registry's own window has closed."""
    lim = RegistryRateLimiter(redis_flush.client(), "host-m", RateLimits.parse("lacnic=10/60"),
                              margin_s=0.05, margin_ratio=0.01, pace=False)
    delays = [lim.reserve("lacnic", now=T0) for _ in range(11)]
    assert delays[:10] == [0.0] * 10
    assert delays[10] == pytest.approx(60 * 1.01 + 0.05)


def test_paced_grants_are_spread_over_the_window(master):
    """Paced, a budget of 20 per 2 s grants one slot every 100 ms, never a burst of 20 at once."""
    lim = limiter(master, "apnic=20/2", pace=True)
    delays = [lim.reserve("apnic", now=T0) for _ in range(21)]
    assert delays == [pytest.approx(0.1 * k) for k in range(21)]
    assert lim.stats["ratelimit/apnic/waited/pace"] == 19  # the 21st waits for the window itself
    assert lim.stats["ratelimit/apnic/waited/window"] == 1
    # after a quiet spell the next slot is free at once
    assert lim.reserve("apnic", now=T0 + 10) == 0


def test_a_slot_given_back_frees_its_window(master):
    lim = limiter(master, "arin=2/1")
    assert lim._reserve_slot("arin", now=T0)[0] == 0
    _delay, stamp = lim._reserve_slot("arin", now=T0 + 0.1)
    assert lim.release("arin", stamp) and not lim.release("arin", stamp)
    assert lim.stats["ratelimit/arin/released"] == 1
    # the given-back slot no longer counts: the window still has room for one
    assert lim.reserve("arin", now=T0 + 0.2) == 0
    assert lim.reserve("arin", now=T0 + 0.3) == pytest.approx(0.7)  # now it is full


def test_recovery_waits_after_a_cut_and_late_answers_refine_it(master):
    """The first 429 cuts to what had answered so far; answers of the same burst arriving within the
    grace raise the cut to what the registry really admitted; the first increase comes 20 windows later."""
    lim = limiter(master, "apnic=200/2")
    for k in range(12):
        lim.on_success("apnic", now=T0 + k * 0.01)
    assert lim.on_throttled("apnic", now=T0 + 0.2) == pytest.approx(0.95 * 12 / 200)
    for k in range(8):  # the rest of the admitted burst answers just after the 429
        lim.on_success("apnic", now=T0 + 0.25 + k * 0.01)
    assert lim.rate_factor("apnic") == pytest.approx(0.95 * 20 / 200)
    lim.on_success("apnic", now=T0 + 30)  # ten windows later: still no probe above the learned rate
    assert lim.rate_factor("apnic") == pytest.approx(0.95 * 20 / 200)
    lim.on_success("apnic", now=T0 + 0.2 + 40)  # twenty windows after the cut: one request per window more
    assert lim.rate_factor("apnic") == pytest.approx(0.95 * 20 / 200 + 1 / 200)
