"""The retry/throttle policy is a pure function: each answer maps to one action, and Retry-After is honoured."""

import random

from whoiscrawl.crawl.bootstrap import Service
from whoiscrawl.crawl.breaker import RegistryBreaker
from whoiscrawl.crawl.config import RunConfig
from whoiscrawl.crawl.policy import Job, RegistryDown, backoff_s, decide
from whoiscrawl.crawl.rdap_client import Fail, Ok, Retry, Throttle

CFG = RunConfig(max_attempts=3, max_throttles=2, retry_backoff_s=1.0, retry_after_max_s=600.0)
LACNIC = Service("lacnic", "http://127.0.0.1:1/lacnic/")


def job(**kw) -> Job:
    return Job(addr=1, service=LACNIC, **kw)


def test_ok_delivers_and_fail_fails_with_its_reason():
    assert decide(job(), Ok({}, "lacnic"), CFG).kind == "deliver"
    action = decide(job(), Fail("not_found", "lacnic"), CFG)
    assert (action.kind, action.reason, action.count_attempt) == ("fail", "not_found", False)


def test_transient_failures_retry_with_backoff_until_attempts_are_spent():
    action = decide(job(attempts=0), Retry("timeout", "lacnic"), CFG, random.Random(1))
    assert action.kind == "retry" and action.count_attempt and 0.5 <= action.delay_s <= 1.5
    action = decide(job(attempts=1), Retry("http_503", "lacnic"), CFG, random.Random(1))
    assert action.kind == "retry" and 1.0 <= action.delay_s <= 3.0
    assert decide(job(attempts=2), Retry("timeout", "lacnic"), CFG).kind == "fail"


def test_a_registry_hint_is_honoured_and_capped():
    assert decide(job(), Retry("http_503", "lacnic", after_s=42.0), CFG).delay_s == 42.0
    assert backoff_s(1, CFG, hint_s=10_000.0) == 600.0


def test_a_throttle_pauses_the_registry_and_slows_the_host_down_without_spending_an_attempt():
    action = decide(job(), Throttle("http_429", "lacnic", 30.0), CFG)
    assert (action.kind, action.pause_s, action.slow_down, action.count_attempt) == ("retry", 30.0, True, False)
    final = decide(job(throttles=2), Throttle("rate_limit_notice", "lacnic", 60.0), CFG)
    assert final.kind == "fail" and final.reason == "throttled" and final.pause_s == 60.0


def test_an_open_breaker_spends_an_attempt_and_waits_until_it_closes():
    action = decide(job(), RegistryDown("lacnic", until=123.0), CFG)
    assert action.kind == "retry" and action.not_before == 123.0 and action.count_attempt
    last = decide(job(attempts=2, last_reason="refused"), RegistryDown("lacnic", until=123.0), CFG)
    assert last.kind == "fail" and last.reason == "refused"


def test_the_breaker_opens_after_failures_in_a_row_and_an_answer_resets_it():
    now = [0.0]
    b = RegistryBreaker(down_after=3, cooldown_s=10.0, clock=lambda: now[0])
    assert not b.record(True) and not b.record(True)
    assert not b.record(False)  # an answer: the count starts again
    assert not b.record(True) and not b.record(True)
    assert b.record(True) and b.is_open()
    assert not b.record(True)  # already open: not opened again
    now[0] = 100.0
    assert not b.is_open()


def test_breakers_keep_one_breaker_per_registry_and_count_only_transport_failures():
    from whoiscrawl.crawl.breaker import RegistryBreakers

    now = [0.0]
    breakers = RegistryBreakers(down_after=2, cooldown_s=10.0, clock=lambda: now[0])
    assert breakers["arin"] is breakers["arin"] and breakers["arin"] is not breakers["lacnic"]
    assert not breakers.record("arin", "http_503") and not breakers.record("arin", "http_503")  # answers, not down
    assert not breakers.record("arin", "timeout") and breakers.record("arin", "refused")
    assert breakers["arin"].is_open() and not breakers["lacnic"].is_open()
    assert not breakers.record("arin", None) and breakers["arin"].failures == 0
