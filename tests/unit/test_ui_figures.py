"""The page's figures from metrics-topic reports: one run's reporters only, latest report of each summed,
rates from the last two reports, the run's budgets, addresses left and coverage from the index log."""

from __future__ import annotations

import numpy as np

from whoiscrawl.crawl.config import RunConfig
from whoiscrawl.crawl.ipspace import non_reserved_total, to_int
from whoiscrawl.orchestration.ui.figures import figures, run_of, runs, text_table

SIX = ("Within Known CIDR Block", "Awaiting Registry", "Found Registry", "Looking up WHOIS", "Got WHOIS",
       "Failed to lookup WHOIS")


def report(host, run, chunk, ts, got, skipped, failed, attempts, final=False, http_429=0, pauses=0):
    six = dict.fromkeys(SIX, 0)
    six.update({"Got WHOIS": got, "Within Known CIDR Block": skipped, "Failed to lookup WHOIS": failed})
    return {"host": host, "reporter": f"{host}:123:{run}:{chunk}:1", "timestamp": ts, "final": final, **six,
            "per_registry": {"lacnic": {"lookup/attempt": attempts, "address/looked_up": got,
                                        "address/failed/timeout": failed, "throttle/received/http_429": http_429,
                                        "ratelimit/paused/retry-after": pauses}}}


def test_figures_of_one_run_from_its_reporters_latest_reports():
    reports = [
        report("h1", "run_a", 0, 100.0, 10, 5, 1, 12),
        report("h1", "run_a", 0, 110.0, 30, 9, 2, 40, http_429=3, pauses=1),
        report("h2", "run_a", 1, 105.0, 7, 0, 0, 7, final=True),
        report("h9", "run_b", 0, 200.0, 999, 0, 0, 999),  # another run: never counted
        {"host": "old", "reporter": "no-run-in-here", "timestamp": 1.0},
    ]
    assert run_of(reports[0]) == "run_a" and run_of(reports[-1]) is None
    assert [r["run"] for r in runs(reports)] == ["run_b", "run_a"]
    log = np.array([[to_int("200.0.0.0"), to_int("200.0.255.255")],
                    [to_int("200.0.1.0"), to_int("200.0.1.255")]], dtype=">u4").tobytes()
    state = {"run_config": RunConfig.from_values({"rate_limits": "lacnic=10/60+1000/3600"}).as_dict()}
    f = figures(reports, "run_a", run_state=state, seed_addresses=100, index_log=log)
    assert f["totals"]["Got WHOIS"] == 37 and f["totals"]["Within Known CIDR Block"] == 9
    assert f["addresses_done"] == 37 + 9 + 2 and f["addresses_left"] == 100 - 48
    assert f["reporters"] == 2 and f["active_reporters"] == 1
    lacnic = f["registries"]["lacnic"]
    assert lacnic["requests"] == 47 and lacnic["http_429"] == 3 and lacnic["pauses"] == 1
    assert lacnic["failures"] == {"timeout": 2} and lacnic["failed"] == 2
    assert lacnic["requests_per_s"] == 2.8  # (40 - 12) / 10 s on h1; h2 is done
    assert lacnic["budget_per_s"] == round(10 / 60 * 2, 3)  # the tightest window, per host, two hosts
    assert f["registries"]["arin"]["requests"] == 0
    assert f["hosts"]["h1"]["Got WHOIS"] == 30 and f["hosts"]["h2"]["active"] == 0
    cov = f["coverage"]
    assert cov["networks"] == 2
    assert cov["percent"] == round(100.0 * 65536 / non_reserved_total(), 4)  # the nested one counted once
    assert cov["curve"][-1]["networks"] == 2
    table = text_table(f)
    assert "run run_a" in table and "lacnic" in table and "h1" in table
