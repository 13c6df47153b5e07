"""The DAG end to end: `airflow dags test ipv4_whois_crawl` on the real local stack, checked against the universe.

The stack (Redis, Kafka, simulator) runs in a temporary home on free ports, so the test never touches
a developer's own stack; Airflow's metadata is a fresh SQLite database there too.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from whoiscrawl.crawl import ipspace, seed
from whoiscrawl.devtools.airflow_env import airflow_env, ensure_db, run_airflow
from whoiscrawl.devtools.demo import DEMO_RATE_LIMITS
from whoiscrawl.devtools.services import free_port, free_port_block
from whoiscrawl.settings import PREFIX, Settings
from whoiscrawl.simulator.universe import build_universe
from whoiscrawl.devtools.stack import Stack, connection_env

pytestmark = pytest.mark.integration

SIM_SCALE = 0.01
SIM_SEED = 1


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("dag-home")
    env = {
        "WHOISCRAWL_HOME": str(home),
        "WHOISCRAWL_REDIS_PORT": str(free_port()),
        "WHOISCRAWL_KAFKA_PORT": str(free_port()),
        "WHOISCRAWL_KAFKA_CONTROLLER_PORT": str(free_port()),
        "WHOISCRAWL_SIM_BASE_PORT": str(free_port_block(6)),
    }
    settings = Settings(environ=env)
    stack = Stack(settings, sim_scale=SIM_SCALE, sim_seed=SIM_SEED)
    try:
        stack.up()
        yield settings, env, home
    finally:
        stack.down()


def test_dag_crawls_the_simulator_and_reports_exactly_what_it_found(stack_env):
    settings, env, home = stack_env
    full_env = {**env, **airflow_env(settings), **connection_env(settings)}
    ensure_db(full_env)
    out = home / "runs"
    conf = {"limit": 400, "chunks": 3, "random_seed": 99, "bootstrap": full_env["WHOISCRAWL_SIM_BOOTSTRAP_URL"],
            "rate_limits": DEMO_RATE_LIMITS, "output_dir": str(out), "fleet": "local", "strategy": "classic"}
    started = time.time()
    proc = run_airflow(["dags", "test", "ipv4_whois_crawl", "-c", json.dumps(conf)],
                       {k: v for k, v in full_env.items()}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-5000:])
    (home / "dag-run.log").write_text(proc.stdout + proc.stderr)  # grepped for secrets below
    reports = [p for p in out.glob("*/coverage.json") if p.stat().st_mtime >= started]
    assert len(reports) == 1
    run_dir = reports[0].parent
    report = json.loads(reports[0].read_text())
    results = [json.loads(line) for line in gzip.open(run_dir / "networks.jsonl.gz", "rt")]

    # the seed the DAG crawled is the classic pattern's shuffle, cut to the limit
    expected_seed = seed.classic_pattern()
    expected_seed = expected_seed[np.random.default_rng(99).permutation(len(expected_seed))][:400]
    crawled = seed.read_range(run_dir / "seed.sqlite", 0, 1000)
    assert sorted(crawled.tolist()) == sorted(expected_seed.tolist())

    # every address accounted for exactly once
    assert report["seed_addresses"] == report["addresses_crawled"] == 400
    assert report["looked_up"] + report["skipped"] + report["failed"] == 400
    assert report["looked_up"] > 0 and report["skipped"] >= 0

    # every result is the universe's most specific network for its query, one line per distinct network
    universe = build_universe(seed=SIM_SEED, scale=SIM_SCALE, cache_dir=Path(settings.HOME) / "sim" / "cache")
    keys = [(r["registry"], r["handle"]) for r in results]
    assert len(keys) == len(set(keys)) == report["distinct_networks"]
    ranges = []
    for r in results:
        i = universe.lookup(ipspace.to_int(r["query"]))
        assert i is not None
        net = universe.network(i)
        assert (r["registry"], r["handle"], ipspace.to_int(r["start"]), ipspace.to_int(r["end"])) == \
            (net.registry, net.handle, net.start, net.end)
        assert r["raw"]["objectClassName"] == "ip network"
        ranges.append((net.start, net.end))

    # failures are only unallocated space; skipped addresses lie inside a network found
    assert set(report["failed_by_reason"]) <= {"not_found"}
    found = np.array(ranges, dtype=np.int64)
    queried = {ipspace.to_int(r["query"]) for r in results}
    not_found = 0
    for a in crawled.tolist():
        if a in queried:
            continue
        if universe.lookup(a) is None:
            not_found += 1
        else:
            assert ((found[:, 0] <= a) & (a <= found[:, 1])).any(), ipspace.to_str(a)
    assert report["failed"] == not_found

    # coverage is the union of the networks found, against the non-reserved total
    assert report["addresses_covered"] == ipspace.union_size(ranges)
    assert report["non_reserved_total"] == 3_702_257_664
    assert report["coverage_percent"] == round(100 * report["addresses_covered"] / 3_702_257_664, 4)
    per_reg = {}
    for r in results:
        per_reg[r["registry"]] = per_reg.get(r["registry"], 0) + 1
    assert {k: v["networks"] for k, v in report["per_registry"].items()} == per_reg
    assert report["counters"]["Got WHOIS"] == report["looked_up"]
    assert report["counters"]["Within Known CIDR Block"] == report["skipped"]
    assert report["counters"]["Failed to lookup WHOIS"] == report["failed"]
    check_datasets(run_dir, report, results, crawled, universe, full_env)


def check_datasets(run_dir, report, results, crawled, universe, env):
    """networks.parquet, addresses.parquet, the lookup index and coverage.png against the universe."""
    import subprocess
    import sys

    import pyarrow.parquet as pq
    from PIL import Image

    from whoiscrawl.results import coverage_map

    nets = pq.read_table(run_dir / "networks.parquet").to_pylist()
    assert [(n["registry"], n["handle"], n["start_int"], n["end_int"]) for n in nets] == \
        [(r["registry"], r["handle"], ipspace.to_int(r["start"]), ipspace.to_int(r["end"])) for r in results]
    assert all(n["fetched_at"] is not None and n["found_by"] == "lookup" for n in nets)
    by_handle = {(n["registry"], n["handle"]): n for n in nets}

    addrs = pq.read_table(run_dir / "addresses.parquet").to_pylist()
    assert sorted(a["address_int"] for a in addrs) == sorted(crawled.tolist())
    queried = {ipspace.to_int(r["query"]) for r in results}
    hows = {}
    for a in addrs:
        hows[a["how"]] = hows.get(a["how"], 0) + 1
        truth = universe.lookup(a["address_int"])
        if a["how"] == "failed":
            assert truth is None and a["reason"] == "not_found" and a["handle"] is None
            continue
        assert a["how"] in ("looked_up", "inside"), a
        net = by_handle[(a["registry"], a["handle"])]
        assert net["start_int"] <= a["address_int"] <= net["end_int"]
        # most specific: no network of the run inside this one also holds the address
        assert not any(n["size"] < net["size"] and n["start_int"] <= a["address_int"] <= n["end_int"] for n in nets)
        if a["how"] == "looked_up":  # its own record, kept or dropped as a second find of its network
            truth_net = universe.network(truth)
            assert (a["registry"], a["handle"]) == (truth_net.registry, truth_net.handle)
    assert hows == report["per_status"]
    assert hows.get("looked_up", 0) == report["looked_up"] >= len(queried)
    assert hows.get("failed", 0) == report["failed"]
    assert report["failed_chunks"] == [] and report["queries"] >= report["looked_up"]
    assert report["curve"]["addresses_covered"][-1] == report["addresses_covered"]
    assert report["curve"]["queries"][-1] == report["distinct_networks"]

    # whoiscrawl lookup answers from this run: the universe's network for a looked-up address
    probe = next(a for a in addrs if a["how"] == "looked_up")
    cmd = [str(Path(sys.executable).with_name("whoiscrawl")), "lookup", "--json", "--run", str(run_dir)]
    proc = subprocess.run(cmd, input=f"{probe['address']}\n250.0.0.1\n", env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    first, second = [json.loads(line) for line in proc.stdout.splitlines()]
    truth_net = universe.network(universe.lookup(probe["address_int"]))
    assert (first["registry"], first["network"]["handle"]) == (truth_net.registry, truth_net.handle)
    assert second["found"] is False

    # coverage.png: a looked-up network's pixel carries its registry's colour (where one registry holds its /24)
    img = Image.open(run_dir / "coverage.png").convert("RGB")
    checked = 0
    for n in nets:
        block = n["start_int"] >> 8
        touching = {m["registry"] for m in nets if m["start_int"] >> 8 <= block <= m["end_int"] >> 8}
        if touching == {n["registry"]}:
            assert img.getpixel(coverage_map.pixel_of(n["start_int"])) == coverage_map.COLOURS[n["registry"]]
            checked += 1
    assert checked > 0


def test_telemetry_command_prints_the_cluster_aggregate(stack_env):
    """After the run above, `whoiscrawl telemetry` sums each reporter's latest report from the metrics topic."""
    import subprocess
    import sys

    settings, env, home = stack_env
    reports = sorted((home / "runs").glob("*/coverage.json"))
    assert reports, "runs after test_dag_crawls_the_simulator..."
    report = json.loads(reports[-1].read_text())
    cmd = [str(Path(sys.executable).with_name("whoiscrawl")), "telemetry"]
    run_env = {**os.environ, **env, **connection_env(settings)}  # the broker requires the connection's login
    proc = subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    agg = json.loads(proc.stdout)
    assert agg["Got WHOIS"] == report["looked_up"]
    assert agg["Within Known CIDR Block"] == report["skipped"]
    assert agg["Failed to lookup WHOIS"] == report["failed"]
    assert agg["reporters"] == 3  # one per chunk
    assert len(agg["hosts"]) == 1


def test_a_recrawl_of_the_unchanged_simulator_reports_no_change(stack_env):
    """The second run starts from the first one's networks: one probe each, some gap samples, zero changes."""
    import pyarrow.parquet as pq

    settings, env, home = stack_env
    full_env = {**env, **airflow_env(settings), **connection_env(settings)}
    out = home / "runs"
    first = sorted(out.glob("*/coverage.json"), key=lambda p: p.stat().st_mtime)[0].parent
    conf = {"previous_run": first.name, "limit": None, "gap_samples": 40, "chunks": 2,
            "bootstrap": full_env["WHOISCRAWL_SIM_BOOTSTRAP_URL"], "rate_limits": DEMO_RATE_LIMITS,
            "output_dir": str(out), "fleet": "local"}
    started = time.time()
    proc = run_airflow(["dags", "test", "ipv4_whois_crawl", "-c", json.dumps(conf)], full_env,
                       capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-5000:])
    run_dir = next(p.parent for p in out.glob("*/coverage.json") if p.stat().st_mtime >= started)
    plan = json.loads((run_dir / "recrawl.json").read_text())
    before = pq.read_table(first / "networks.parquet").to_pylist()
    assert plan["previous"] == str(first) and plan["known"] == len(before)
    assert len(plan["checked"]) == len(before) - plan["unprobeable"] > 0
    lines = gzip.open(run_dir / "changes.jsonl.gz", "rt").read().splitlines()
    assert lines == []
    after = {(n["registry"], n["handle"]) for n in pq.read_table(run_dir / "networks.parquet").to_pylist()}
    assert {tuple(k) for k in plan["checked"]} <= after  # every probe found its network again
    report = json.loads((run_dir / "coverage.json").read_text())
    assert report["skipped"] == 0  # a re-crawl looks every probe up: parents hide no child
    first_report = json.loads((first / "coverage.json").read_text())
    assert plan["gap_count"] == min(40, first_report["failed"]) > 0  # gaps: addresses the first run found unheld
    assert report["seed_addresses"] == len(plan["checked"]) + plan["gap_count"]


def test_a_recrawl_of_a_changed_simulator_reports_exactly_the_changes(stack_env, tmp_path):
    """A simulator whose universe was changed (--mutate, among the first run's networks): exactly those."""
    import subprocess
    import sys

    import pyarrow.parquet as pq

    from whoiscrawl.devtools.stack import SIM_READY

    settings, env, home = stack_env
    full_env = {**env, **airflow_env(settings), **connection_env(settings)}
    out = home / "runs"
    first = sorted(out.glob("*/coverage.json"), key=lambda p: p.stat().st_mtime)[0].parent
    known = pq.read_table(first / "networks.parquet", columns=["registry", "handle", "query"]).to_pylist()
    (tmp_path / "known.txt").write_text("".join(n["query"] + "\n" for n in known))
    cmd = [sys.executable, "-m", "whoiscrawl.simulator", "--host", "127.0.0.1", "--base-port", "0",
           "--scale", repr(SIM_SCALE), "--seed", str(SIM_SEED), "--cache-dir", str(Path(settings.HOME) / "sim" / "cache"),
           "--bootstrap-out", str(tmp_path / "bootstrap.json"), "--mutate", "5:4",
           "--mutate-only", str(tmp_path / "known.txt"), "--mutations-out", str(tmp_path / "mutations.json")]
    sim = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        url, seen = None, []
        deadline = time.monotonic() + 300
        while url is None and time.monotonic() < deadline:
            line = sim.stdout.readline()
            assert line, "".join(seen[-20:])
            seen.append(line)
            match = SIM_READY.search(line)
            url = match.group(1) if match else None
        assert url, "".join(seen[-20:])
        mutations = json.loads((tmp_path / "mutations.json").read_text())
        assert [m["op"] for m in mutations] == ["reassign", "transfer", "delete", "split"]
        # a second simulator, on ports of its own: its origin is allowed for this run's bootstrap Param
        origin = url.split("/bootstrap/", 1)[0]
        full_env[PREFIX + "BOOTSTRAP_URL_ALLOWLIST"] = ",".join(
            filter(None, [full_env.get(PREFIX + "BOOTSTRAP_URL_ALLOWLIST", ""), origin]))
        conf = {"previous_run": first.name, "limit": None, "gap_samples": 0, "chunks": 2, "bootstrap": url,
                "rate_limits": DEMO_RATE_LIMITS, "output_dir": str(out), "fleet": "local"}
        started = time.time()
        proc = run_airflow(["dags", "test", "ipv4_whois_crawl", "-c", json.dumps(conf)], full_env,
                           capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-5000:])
    finally:
        sim.terminate()
        sim.wait(30)
    run_dir = next(p.parent for p in out.glob("*/coverage.json") if p.stat().st_mtime >= started)
    changes = [json.loads(x) for x in gzip.open(run_dir / "changes.jsonl.gz", "rt")]
    kind = {"reassign": "changed", "transfer": "moved", "delete": "removed", "split": "split"}
    expected = sorted((kind[m["op"]], *(m["after"] or m["before"])) for m in mutations)
    # a deleted network's address now answers with its enclosing network: new, unless the first run knew it
    universe = build_universe(seed=SIM_SEED, scale=SIM_SCALE, cache_dir=Path(settings.HOME) / "sim" / "cache")
    known_keys = {(n["registry"], n["handle"]) for n in known}
    for m in mutations:
        if m["op"] == "delete":
            parent = universe.network(int(universe.parents[m["index"]]))
            if (parent.registry, parent.handle) not in known_keys:
                expected.append(("new", parent.registry, parent.handle))
    got = sorted((c["change"], c["registry"], c["handle"]) for c in changes)
    assert got == sorted(set(expected))
    assert all("country" in c["fields"] for c in changes if c["change"] == "changed")
    # the split: the probe found one half, its follow-up the other, and the report names both parts
    split = next(m for m in mutations if m["op"] == "split")
    parts = next(c["parts"] for c in changes if c["change"] == "split")
    assert [[p["registry"], p["handle"]] for p in parts] == split["parts"]


#: Files of the stack's home that hold credentials on purpose (all 0600); nothing else may.
CREDENTIAL_FILES = ("credentials.json", "airflow-connections.env", "redis/redis.conf", "kafka/server.properties")


def test_no_secret_in_logs_xcoms_outputs_or_service_environments(stack_env):
    """After the run above: no generated password in any log, output, XCom (the metadata DB) or service process."""
    from whoiscrawl.devtools.credentials import ClusterCredentials

    settings, env, home = stack_env
    assert sorted(home.glob("runs/*/coverage.json")), "runs after test_dag_crawls_the_simulator..."
    secrets = [s.encode() for s in ClusterCredentials.load_or_create(home).secrets()]
    for name in CREDENTIAL_FILES:
        assert (home / name).stat().st_mode & 0o777 == 0o600, name
    leaks = []
    for path in home.rglob("*"):
        if path.is_file() and str(path.relative_to(home)) not in CREDENTIAL_FILES:
            data = path.read_bytes()
            leaks += [f"{path.relative_to(home)}" for secret in secrets if secret in data]
    for service in ("redis", "kafka", "simulator"):
        pid = int((home / "run" / f"{service}.pid").read_text().split()[0])
        for part in ("cmdline", "environ"):
            data = Path(f"/proc/{pid}/{part}").read_bytes()
            leaks += [f"{service} {part}" for secret in secrets if secret in data]
    assert not leaks
    # what the DAG run itself printed (task logs of `airflow dags test` go to its output)
    logs = (home / "dag-run.log").read_bytes()
    assert b"coverage_report" in logs and not [s for s in secrets if s in logs]
