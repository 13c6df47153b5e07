"""The fleet across network namespaces: CeleryExecutor workers on 3 hosts survive the death of one.

Brings up ``whoiscrawl fleet`` (stack on the bridge, PostgreSQL, Airflow
coordinator, 3 namespace hosts each with a Redis replica and a Celery worker)
in a temporary home on free ports, triggers the DAG with ``fleet=celery``
over 20,000 seed addresses, SIGKILLs the worker of a host while it runs a
chunk, and checks what the run produced: every chunk succeeded (the killed
one on another host after the heartbeat timeout), every seed address is
counted exactly once, every result is the simulator's truth, every host did
work, every replica caught up with the master. A single-host run of the same
seed (``airflow dags test`` in the root namespace) is then compared with it.
Everything is torn down at the end, whatever happened.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from whoiscrawl.crawl import ipspace, runstate
from whoiscrawl.crawl.registries import REGISTRIES
from whoiscrawl.settings import PREFIX, Settings

pytestmark = [pytest.mark.integration, pytest.mark.fleet, pytest.mark.timeout(3600)]

DAG_ID = "ipv4_whois_crawl"
HOSTS = 3
SEED_LIMIT = 20_000
CHUNKS = 12
RANDOM_SEED = 2018
#: The simulator runs its fast profile: budgets generous enough not to be the bottleneck.
RATE_LIMITS = ",".join(f"{r}=200/1" for r in REGISTRIES)
RUN_TIMEOUT_S = 20 * 60
KILL_WINDOW_S = 300


def _skip_reason() -> str | None:
    from whoiscrawl.devtools.netns import netns_supported
    from whoiscrawl.devtools.services import MissingDependency
    from whoiscrawl.devtools.services.postgres_server import find_pg_bin_dir

    reason = netns_supported()
    if reason:
        return f"the fleet test needs network namespaces: {reason}"
    try:
        find_pg_bin_dir(os.environ.get(PREFIX + "POSTGRES_BIN_DIR", ""))
    except MissingDependency as exc:
        return str(exc)
    for binary in ("redis-server", "java"):
        if not shutil.which(binary, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin"])):
            return f"{binary} not installed"
    return None


def _free_ports(count: int, consecutive: bool = False) -> list[int]:
    """Ports free on every address (the bridge does not exist yet), from a range no default uses."""
    from whoiscrawl.devtools.services.procs import port_in_use

    rng = random.Random()
    for _ in range(500):
        if consecutive:
            base = rng.randrange(20000, 32000 - count)  # below the ephemeral range: no client takes them
            ports = list(range(base, base + count))
        else:
            ports = rng.sample(range(20000, 32000), count)
        if not any(port_in_use("0.0.0.0", p) for p in ports):
            return ports
    raise RuntimeError("no free ports found")


def fleet_network() -> tuple[str, str]:
    """The fleet id and subnet given (``WHOISCRAWL_FLEET_ID``/``_SUBNET``), else ones of the test's own."""
    given = (os.environ.get(PREFIX + "FLEET_ID"), os.environ.get(PREFIX + "FLEET_SUBNET"))
    if all(given):
        return given[0], given[1]
    # own generator: a library seeds the global one
    return "t" + uuid.uuid4().hex[:5], f"10.213.{random.Random().randrange(100, 250)}.0/24"


def _run_cli(args: list[str], env: dict[str, str], log: Path, timeout_s: float) -> subprocess.CompletedProcess:
    with open(log, "ab") as fh:
        fh.write(f"\n$ whoiscrawl fleet {' '.join(args)}\n".encode())
        fh.flush()
        return subprocess.run([sys.executable, "-m", "whoiscrawl.devtools.namespace_fleet", *args], env=env, stdout=fh,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout_s)


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Api:
    """The fleet's Airflow REST API, as the admin user of the simple auth manager."""

    def __init__(self, base: str, passwords_file: Path) -> None:
        self.base = base
        password = json.loads(passwords_file.read_text())["admin"]
        request = urllib.request.Request(f"{base}/auth/token", method="POST",
                                         data=json.dumps({"username": "admin", "password": password}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            self.token = json.loads(response.read())["access_token"]

    def get(self, path: str, **query: Any) -> Any:
        url = f"{self.base}/api/v2/dags/{DAG_ID}/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def raw(self, path: str, token: bool = True) -> tuple[int, Any]:
        """(status, JSON) of any path of the api-server (a plugin's API), with or without the token."""
        headers = {"Authorization": f"Bearer {self.token}"} if token else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(self.base + path, headers=headers), timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, None

    def task_instances(self, run_id: str) -> list[dict]:
        return self.get(f"dagRuns/{run_id}/taskInstances", limit=200)["task_instances"]

    def tries(self, run_id: str, task_id: str, map_index: int) -> list[dict]:
        return self.get(f"dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/tries")["task_instances"]

    def xcom(self, run_id: str, task_id: str, map_index: int = -1) -> Any:
        return self.get(f"dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
                        map_index=map_index, deserialize="true")["value"]


@dataclass
class Fleet:
    home: Path
    env: dict[str, str]
    settings: Settings
    local: Any  # whoiscrawl.devtools.namespace_fleet.LocalFleet
    log: Path
    api: Api | None = None

    @property
    def kafka(self) -> str:
        return f"{self.local.coordinator}:{self.settings.KAFKA_PORT}"

    def airflow(self, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess:
        return _run_cli(["airflow", *args], self.env, self.log, timeout_s)

    def host_of(self, address: str) -> int:
        return next(i for i, h in self.local.hosts().items() if h.address == address)


@dataclass
class FleetRun:
    run_id: str
    key: str
    victim: int
    victim_address: str
    killed_chunks: list[int]
    killed_pids: list[int]
    state: str
    duration_s: float
    task_instances: list[dict]
    tries: dict[int, list[dict]] = field(default_factory=dict)
    outcomes: dict[int, dict] = field(default_factory=dict)
    descriptors: list[dict] = field(default_factory=list)
    prepared: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from whoiscrawl.devtools.namespace_fleet import LocalFleet
    from whoiscrawl.devtools.netns import FleetNetwork

    # PostgreSQL runs as the postgres user: its folder's parents must be searchable by it (pytest's are not)
    home = Path(tempfile.mkdtemp(prefix="whoiscrawl-fleet-"))
    os.chmod(home, 0o755)
    fleet_id, subnet = fleet_network()
    redis_port, kafka_port, controller_port, pg_port, api_port, replica_port, log_port = _free_ports(7)
    overrides = {
        "HOME": str(home), "FLEET_ID": fleet_id, "FLEET_SUBNET": subnet,
        "REDIS_PORT": redis_port, "KAFKA_PORT": kafka_port, "KAFKA_CONTROLLER_PORT": controller_port,
        "SIM_BASE_PORT": _free_ports(6, consecutive=True)[0], "POSTGRES_PORT": pg_port,
        "AIRFLOW_API_PORT": api_port, "REPLICA_PORT": replica_port, "WORKER_LOG_PORT": log_port,
        # hosts report often, so a host killed early in its first chunk has reported already
        "TELEMETRY_INTERVAL_S": 5,
        "OUTPUT_BASE_DIR": str(home),  # the runs' output_dir Params name folders of the test's home
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith((PREFIX, "AIRFLOW"))}
    env.update({PREFIX + k: str(v) for k, v in overrides.items()})
    settings = Settings(environ=env)
    local = LocalFleet(settings, out=lambda _text: None)
    log = home / "fleet-cli.log"
    handle = Fleet(home, env, settings, local, log)
    try:
        started = time.monotonic()
        up = _run_cli(["up", "--hosts", str(HOSTS), "--timeout", "600"], env, log, timeout_s=1800)
        assert up.returncode == 0, f"fleet up failed:\n{_tail(log)}"
        print(f"fleet up in {time.monotonic() - started:.0f} s")
        from whoiscrawl.devtools.celery_env import api_url

        handle.api = Api(api_url(local.settings, local.coordinator), home / "fleet" / "airflow" / "passwords.json")
        yield handle
    finally:
        down = _run_cli(["down"], env, log, timeout_s=600)
        names = [local.network.bridge, *(local.network.host(i).netns for i in range(1, HOSTS + 1))]
        leftovers = [n for n in names if FleetNetwork.link_exists(n) or FleetNetwork.netns_exists(n)]
        shutil.rmtree(home, ignore_errors=True)
        assert down.returncode == 0 and not leftovers, f"fleet down left {leftovers}:\n{_tail(log)}"


def _telemetry(fleet: Fleet, key: str) -> list[dict]:
    from whoiscrawl.crawl.config import RunConfig
    from whoiscrawl.crawl.kafka_io import make_consumer, read_all

    consumer = make_consumer({"bootstrap.servers": fleet.kafka, **fleet.local.credentials().kafka_client("crawl")},
                             group_id=f"test-{uuid.uuid4().hex[:8]}")
    try:
        reports = [json.loads(v) for _k, v in read_all(consumer, RunConfig().metrics_topic)]
    finally:
        consumer.close()
    return [r for r in reports if f":{key}:" in str(r.get("reporter", ""))]


def _conf(bootstrap: str, output_dir: Path, kind: str) -> dict:
    # classic: the seed chunks start at once, so a worker dies mid-chunk (a full plan of the simulator takes hours)
    return {"limit": SEED_LIMIT, "chunks": CHUNKS, "random_seed": RANDOM_SEED, "bootstrap": bootstrap,
            "rate_limits": RATE_LIMITS, "output_dir": str(output_dir), "fleet": kind, "strategy": "classic"}


def _wait_dag(fleet: Fleet, timeout_s: float = 300) -> None:
    """Wait until the dag-processor has parsed the DAG (the API knows it), then unpause it."""
    import urllib.error

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fleet.api.get("details")
            break
        except urllib.error.HTTPError as exc:
            assert exc.code == 404 and time.monotonic() < deadline, f"DAG {DAG_ID} not parsed: {exc}"
            time.sleep(5)
    assert fleet.airflow("dags", "unpause", DAG_ID).returncode == 0, _tail(fleet.log)
    assert fleet.api.get("details")["is_paused"] is False


@pytest.fixture(scope="module")
def fleet_run(fleet: Fleet) -> FleetRun:
    """The run with a dead worker, and everything the tests check, read once."""
    from whoiscrawl.devtools.stack import connection_env

    api = fleet.api
    bootstrap = connection_env(fleet.local.settings)[PREFIX + "SIM_BOOTSTRAP_URL"]
    run_id = f"fleet_kill_{uuid.uuid4().hex[:8]}"
    key = runstate.run_key(run_id)
    _wait_dag(fleet)
    trigger = fleet.airflow("dags", "trigger", DAG_ID, "--run-id", run_id, "-c",
                            json.dumps(_conf(bootstrap, fleet.home / "out-fleet", "celery")))
    assert trigger.returncode == 0, f"trigger failed:\n{_tail(fleet.log)}"
    started = time.monotonic()

    # Kill the worker of a host while it runs a chunk that has been going for a few seconds.
    victim = victim_address = None
    killed_chunks: list[int] = []
    killed_pids: list[int] = []
    deadline = time.monotonic() + KILL_WINDOW_S
    while victim is None:
        assert time.monotonic() < deadline, "no crawl chunk ran long enough to be killed"
        run_state = api.get(f"dagRuns/{run_id}")["state"]
        assert run_state not in ("success", "failed"), f"the run ended ({run_state}) before a worker was killed"
        running = [ti for ti in api.task_instances(run_id)
                   if ti["task_id"] == "crawl_chunk" and ti["state"] == "running" and ti["hostname"]
                   and ti["start_date"] and time.time() - _ts(ti["start_date"]) > 3]
        if running:
            reported = {r["host"] for r in _telemetry(fleet, key)}
            for ti in running:
                index = fleet.host_of(ti["hostname"])
                if fleet.local.host_id(index) in reported:
                    victim, victim_address = index, ti["hostname"]
                    killed_chunks = sorted(t["map_index"] for t in running if t["hostname"] == victim_address)
                    killed_pids = fleet.local.kill_worker(index)
                    break
        time.sleep(1)
    print(f"killed host h{victim} ({victim_address}) running chunks {killed_chunks}: pids {killed_pids}")

    deadline = time.monotonic() + RUN_TIMEOUT_S
    while (state := api.get(f"dagRuns/{run_id}")["state"]) not in ("success", "failed"):
        assert time.monotonic() < deadline, f"run {run_id} not finished within {RUN_TIMEOUT_S} s"
        time.sleep(5)
    run = FleetRun(run_id, key, victim, victim_address, killed_chunks, killed_pids, state,
                   time.monotonic() - started, api.task_instances(run_id))
    print(f"run {run_id}: {state} in {run.duration_s:.0f} s")
    for ti in run.task_instances:
        if ti["task_id"] == "crawl_chunk":
            run.tries[ti["map_index"]] = api.tries(run_id, "crawl_chunk", ti["map_index"])
            if ti["state"] == "success":
                run.outcomes[ti["map_index"]] = api.xcom(run_id, "crawl_chunk", ti["map_index"])
    run.prepared = api.xcom(run_id, "prepare_seed")
    run.descriptors = api.xcom(run_id, "configure_cluster")
    if state == "success":
        run.report = api.xcom(run_id, "coverage_report")
    return run


def _ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _results(output_dir: Path) -> list[dict]:
    with gzip.open(output_dir / "networks.jsonl.gz", "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def _check_against_universe(universe, records: list[dict]) -> None:
    assert records, "no results"
    for rec in records:
        i = universe.lookup(ipspace.to_int(rec["query"]))
        assert i is not None, rec["query"]
        net = universe.network(i)
        assert (rec["registry"], rec["handle"]) == (net.registry, net.handle), rec["query"]
        assert (ipspace.to_int(rec["start"]), ipspace.to_int(rec["end"])) == (net.start, net.end), rec["query"]


@pytest.fixture(scope="module")
def stack_universe(fleet: Fleet):
    """The universe the fleet's simulator serves: the seed and scale `fleet up` gave it, from its cache."""
    from whoiscrawl.simulator.universe import build_universe

    stack = fleet.local.stack()
    return build_universe(seed=stack.sim_seed, scale=stack.sim_scale, cache_dir=fleet.home / "sim" / "cache")


def test_every_chunk_succeeds_and_the_killed_ones_were_retried_on_another_host(fleet_run: FleetRun):
    chunks = [ti for ti in fleet_run.task_instances if ti["task_id"] == "crawl_chunk"]
    assert fleet_run.state == "success", {ti["map_index"]: ti["state"] for ti in chunks}
    assert sorted(ti["map_index"] for ti in chunks) == list(range(CHUNKS))
    assert all(ti["state"] == "success" for ti in chunks)
    assert fleet_run.killed_chunks and fleet_run.killed_pids
    for index in fleet_run.killed_chunks:
        tries = sorted(fleet_run.tries[index], key=lambda t: t["try_number"])
        assert len(tries) >= 2, f"chunk {index} was not retried: {tries}"
        first, last = tries[0], tries[-1]
        assert first["hostname"] == fleet_run.victim_address and first["state"] == "failed", first
        assert last["state"] == "success" and last["hostname"] != fleet_run.victim_address, last
    # the chunks spread: successful tries ran on more than one host
    assert len({ti["hostname"] for ti in chunks}) >= 2


def test_every_seed_address_is_counted_exactly_once(fleet_run: FleetRun):
    seed_count = fleet_run.prepared["seed"]["count"]
    assert seed_count >= SEED_LIMIT
    planned = {d["chunk"]: d["count"] for d in fleet_run.descriptors}
    assert sorted(planned) == sorted(fleet_run.outcomes) == list(range(CHUNKS))
    assert sum(planned.values()) == seed_count
    for chunk, outcome in fleet_run.outcomes.items():
        assert outcome["chunk"] == chunk
        assert outcome["addresses"] == planned[chunk]
        assert outcome["skipped"] + outcome["looked_up"] + outcome["failed"] == planned[chunk], outcome
    total = sum(o["skipped"] + o["looked_up"] + o["failed"] for o in fleet_run.outcomes.values())
    assert total == seed_count
    assert fleet_run.report["addresses_crawled"] == seed_count == fleet_run.report["seed_addresses"]


def test_results_are_the_simulators_most_specific_networks(fleet: Fleet, fleet_run: FleetRun, stack_universe):
    records = _results(Path(fleet_run.prepared["output_dir"]))
    networks = {(r["registry"], r["handle"]) for r in records}
    assert len(networks) == len(records), "the drain wrote a network twice"
    assert len(records) == fleet_run.report["distinct_networks"]
    _check_against_universe(stack_universe, records)


def test_every_host_did_work(fleet: Fleet, fleet_run: FleetRun):
    from whoiscrawl.crawl.telemetry import aggregate

    reports = _telemetry(fleet, fleet_run.key)
    hosts = aggregate(reports)["hosts"]
    expected = {fleet.local.host_id(i) for i in range(1, HOSTS + 1)}
    assert set(hosts) == expected, hosts
    for host, counters in hosts.items():
        assert sum(counters.values()) > 0, (host, counters)


def test_the_crawl_page_api_shows_every_host_of_the_fleet(fleet: Fleet, fleet_run: FleetRun):
    """The "WHOIS crawl" page's JSON, from the fleet's api-server: every host, the metrics topic's totals."""
    from whoiscrawl.crawl.telemetry import aggregate
    from whoiscrawl.orchestration.ui.app import URL_PREFIX

    status, figures = fleet.api.raw(f"{URL_PREFIX}/api/runs/{fleet_run.key}/figures")
    assert status == 200
    assert set(figures["hosts"]) == {fleet.local.host_id(i) for i in range(1, HOSTS + 1)}
    expected = aggregate(_telemetry(fleet, fleet_run.key))
    for name in ("Within Known CIDR Block", "Got WHOIS", "Failed to lookup WHOIS"):
        assert figures["totals"][name] == expected[name], name
    # a killed chunk's last report counts too, so at least every seed address (each once by its retry)
    assert figures["addresses_done"] >= fleet_run.prepared["seed"]["count"]
    assert fleet.api.raw(f"{URL_PREFIX}/api/runs/{fleet_run.key}/figures", token=False)[0] in (401, 403)


def test_every_replica_caught_up_with_the_master(fleet: Fleet, fleet_run: FleetRun):
    """Replication offsets match the master's, and each replica serves the master's index byte for byte."""
    local = fleet.local
    addresses = {h.address: i for i, h in local.hosts().items()}
    caught_up: dict[str, tuple[int, int]] = {}
    deadline = time.monotonic() + 60
    while len(caught_up) < HOSTS and time.monotonic() < deadline:
        links = local.replica_links()
        master_offset = int(links["master"]["offset"])
        for address in addresses:
            link = links.get(address, {})
            if link.get("state") == "online" and int(link.get("offset", -1)) == master_offset:
                caught_up[address] = (int(link["offset"]), master_offset)
        time.sleep(0.5)
    assert set(caught_up) == set(addresses), f"replicas behind the master: {local.replica_links()}"

    master = local.master_client()
    try:
        _cluster, run_state = runstate.read_config(master, fleet_run.key, wait_s=5)
        log_key = runstate.index_key(fleet_run.key, int(run_state.get("attempt", 0))) + ":log"
        master_log = master.get(log_key) or b""
    finally:
        master.close()
    assert len(master_log) > 0
    probe = ("import hashlib, os, redis, sys; r = redis.Redis(port=int(sys.argv[1]), socket_timeout=10, "
             "username='crawl', password=os.environ['PROBE_PASSWORD']); "
             "v = r.get(sys.argv[2]) or b''; print(len(v), hashlib.sha256(v).hexdigest())")
    expected = f"{len(master_log)} {hashlib.sha256(master_log).hexdigest()}"
    for address, index in addresses.items():
        host = local.network.host(index)
        done = subprocess.run([*host.exec_prefix(), sys.executable, "-c", probe, str(local.settings.REPLICA_PORT),
                               log_key], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PROBE_PASSWORD": local.credentials().redis_crawl})
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected, f"replica of h{index} serves another index"


def test_a_single_host_run_agrees(fleet: Fleet, fleet_run: FleetRun, stack_universe):
    """The same seed crawled by one process (``airflow dags test``, root namespace, SQLite, LocalExecutor).

    Which networks a run finds depends on the order addresses are looked up
    (an address inside a network found first is skipped, so a more specific
    network holding it may never be asked for), and the order differs between
    one process and 12 chunks on 3 hosts with a retry. So we compare what
    must not depend on it: both runs' networks are the simulator's truth for
    their query address; both count every seed address once; the seed
    addresses left uncovered (failed lookups) are the same few in number; the
    address space covered agrees within 1 %.
    """
    from whoiscrawl.devtools.airflow_env import airflow_env, ensure_db, run_airflow
    from whoiscrawl.devtools.stack import connection_env

    single_settings = Settings({"HOME": str(fleet.home / "single")}, environ=fleet.env)
    conn = connection_env(fleet.local.settings)
    env = {k: v for k, v in fleet.env.items() if not k.startswith("AIRFLOW")}
    env.update(airflow_env(single_settings))
    env.update({k: v for k, v in conn.items() if k.startswith(("AIRFLOW_CONN_", PREFIX + "BOOTSTRAP_URL_ALLOWLIST"))})
    ensure_db(env)
    out = fleet.home / "out-single"
    log = fleet.home / "single-dags-test.log"
    started = time.monotonic()
    with open(log, "wb") as fh:
        done = run_airflow(["dags", "test", DAG_ID, "-c",
                            json.dumps(_conf(conn[PREFIX + "SIM_BOOTSTRAP_URL"], out, "local"))],
                           env, stdout=fh, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S)
    print(f"single-host run in {time.monotonic() - started:.0f} s")
    reports = list(out.glob("*/coverage.json"))
    assert done.returncode == 0 and len(reports) == 1, _tail(log)
    single = json.loads(reports[0].read_text())
    fleet_report = fleet_run.report

    _check_against_universe(stack_universe, _results(reports[0].parent))
    assert single["seed_addresses"] == fleet_report["seed_addresses"] == fleet_run.prepared["seed"]["count"]
    for report in (single, fleet_report):
        assert report["skipped"] + report["looked_up"] + report["failed"] == report["seed_addresses"]
    tolerance = max(5, fleet_report["seed_addresses"] // 500)  # 0.2 %: transient faults that outlast retries
    assert abs(single["failed"] - fleet_report["failed"]) <= tolerance, (single["failed"], fleet_report["failed"])
    assert single["addresses_covered"] == pytest.approx(fleet_report["addresses_covered"], rel=0.01)
    print(f"fleet: {fleet_report['distinct_networks']} networks, {fleet_report['coverage_percent']} %; "
          f"single host: {single['distinct_networks']} networks, {single['coverage_percent']} %")


def test_hosts_have_no_route_beyond_the_fleet_subnet(fleet: Fleet):
    """Traffic stays on the machine: no default route, only the bridge's subnet and loopback."""
    import ipaddress

    subnet = ipaddress.ip_network(fleet.settings.FLEET_SUBNET)
    loopback = ipaddress.ip_network("127.0.0.0/8")
    hosts = fleet.local.hosts()
    assert len(hosts) == HOSTS
    for host in hosts.values():
        routes = fleet.local.network.routes_of(host)
        assert routes, host.netns
        for route in routes:
            assert route["dst"] != "default", (host.netns, route)
            dst = ipaddress.ip_network(route["dst"], strict=False)
            assert dst.subnet_of(subnet) or dst.subnet_of(loopback), (host.netns, route)


def test_the_fleet_lets_no_one_in_without_credentials(fleet: Fleet):
    """From a worker host's namespace: Redis (master and replica) and Kafka refuse a client without a login;
    the Celery worker's environment holds the broker's password only, never the crawl's or the admin's
    (crawl tasks get their logins from the api-server's connections)."""
    local = fleet.local
    creds = local.credentials()
    probe = textwrap.dedent("""
        import sys, redis
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient
        for host, port in ((sys.argv[1], int(sys.argv[2])), ("127.0.0.1", int(sys.argv[3]))):
            try:
                redis.Redis(host=host, port=port, socket_timeout=5).get("whoiscrawl:config")
                print("redis-open", host)
            except redis.AuthenticationError:
                print("redis-refused", host)
        try:
            AdminClient({"bootstrap.servers": sys.argv[4], "log_level": 0}).list_topics(timeout=8)
            print("kafka-open")
        except KafkaException:
            print("kafka-refused")
    """)
    host = local.network.host(1)
    done = subprocess.run([*host.exec_prefix(), sys.executable, "-c", probe, local.coordinator,
                           str(local.settings.REDIS_PORT), str(local.settings.REPLICA_PORT), fleet.kafka],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["redis-refused", local.coordinator, "redis-refused", "127.0.0.1",
                                   "kafka-refused"]
    # what the worker was started with (its /proc environ is overwritten by setproctitle)
    environ = "\n".join(local.worker_env(1).values())
    assert f"celery:{creds.redis_celery}@" in environ  # the Celery broker's login: it needs that one
    assert not [s for s in (creds.redis_admin, creds.redis_crawl, creds.redis_replica, creds.kafka_admin,
                            creds.kafka_crawl) if s in environ]
