"""``whoiscrawl fleet up|status|down``: a CeleryExecutor fleet on one machine, hosts in network namespaces.

The coordinator (the root network namespace) runs the stack bound to the
fleet bridge's address (Redis master, Kafka, simulator), PostgreSQL (Airflow
metadata and Celery results), and Airflow's api-server, scheduler,
dag-processor and triggerer. Each host is a network namespace on the bridge
running a Redis replica of the master on its own loopback and an ``airflow
celery worker``: the same topology as real machines (``docs/fleet.md``),
with the network made of a bridge and veths instead of switches.

Everything lives under ``Settings().home / "fleet"``; every process is
recorded in a pidfile with its start time and acted upon only while that
still matches; ``down`` removes only the namespaces, veths and bridge this
fleet recorded creating.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from redis import RedisError

from whoiscrawl.devtools.airflow_env import airflow_bin
from whoiscrawl.devtools.credentials import ClusterCredentials
from whoiscrawl.devtools.celery_env import CELERY_QUEUE, DB_NAME, DB_USER, FleetSecrets, api_url, celery_env
from whoiscrawl.devtools.netns import FleetNetwork, HostNet, NetworkError, netns_supported
from whoiscrawl.devtools.services import MissingDependency
from whoiscrawl.devtools.services.procs import exclusive_lock, log_tail
from whoiscrawl.devtools.services.postgres_server import PostgresError, PostgresServer
from whoiscrawl.devtools.services.redis_server import RedisServer
from whoiscrawl.errors import WhoiscrawlError
from whoiscrawl.settings import PREFIX, Settings
from whoiscrawl.devtools.stack import ServiceState as ComponentState

__all__ = ["LocalFleet", "FleetUpError", "ManagedProcess", "main"]

COORDINATOR_PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")
#: components of the api-server's health report that must all be healthy
HEALTH_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


def api_health(base_url: str, timeout_s: float = 3) -> dict:
    """An Airflow api-server's health document, or {} when it does not answer."""
    try:
        with urllib.request.urlopen(f"{base_url}/api/v2/monitor/health", timeout=timeout_s) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return {}


def unhealthy(health: dict) -> list[str]:
    """What is not healthy in a health document (the api-server itself when there is none)."""
    if not health:
        return ["api-server"]
    return [c for c in HEALTH_COMPONENTS if (health.get(c) or {}).get("status") != "healthy"]


class FleetUpError(WhoiscrawlError):
    """A part of the fleet did not come up or answer in time; the message says which and where to look."""


class ManagedProcess:
    """A process we started, recorded as ``pid start_time`` so a reused pid is never mistaken for it."""

    def __init__(self, name: str, pidfile: Path, log_path: Path) -> None:
        self.name, self.pidfile, self.log_path = name, Path(pidfile), Path(log_path)

    @staticmethod
    def start_time(pid: int) -> int | None:
        """Kernel start time of a live, non-zombie process; None otherwise."""
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            return None
        if fields[0] in (b"Z", b"X"):
            return None
        return int(fields[19])

    def live_pid(self) -> int | None:
        try:
            pid, started = (int(x) for x in self.pidfile.read_text(encoding="ascii").split())
        except (OSError, ValueError):
            return None
        return pid if pid > 1 and self.start_time(pid) == started else None

    def start(self, argv: list[str], env: dict[str, str], cwd: Path) -> int:
        """Start ``argv`` in a new session (its own process group), output appended to the log."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        cwd.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(argv)}\n".encode())
            out.flush()
            proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True, close_fds=True)
        started = None
        for _ in range(50):  # /proc shows the child at once; the loop only guards a slow kernel
            started = self.start_time(proc.pid)
            if started is not None or proc.poll() is not None:
                break
            time.sleep(0.02)
        if started is None:
            raise FleetUpError(f"{self.name} exited at once ({proc.poll()}); {self.log_path}:\n{self.log_tail()}")
        self.pidfile.write_text(f"{proc.pid} {started}\n", encoding="ascii")
        return proc.pid

    def signal_group(self, sig: int) -> int | None:
        pid = self.live_pid()
        if pid is not None:
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        return pid

    def stop(self, timeout_s: float = 30) -> bool:
        """SIGTERM the process group, wait, then SIGKILL it; True when it was running."""
        pid = self.live_pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
            self.signal_group(sig)
            deadline = time.monotonic() + wait_s
            while self.start_time(pid) is not None and time.monotonic() < deadline:
                time.sleep(0.2)
            if self.start_time(pid) is None:
                break
        self.pidfile.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 25) -> str:
        return log_tail(self.log_path, lines=lines)


def _wait(what: str, check: Callable[[], bool], timeout_s: float, detail: Callable[[], str] = lambda: "",
          poll_s: float = 1.0) -> None:
    from whoiscrawl.progress import Progress

    deadline = time.monotonic() + timeout_s
    with Progress(f"waiting for {what}", unit="checks") as progress:
        while not check():
            if time.monotonic() >= deadline:
                raise FleetUpError(f"{what} not ready within {timeout_s:g} s\n{detail()}".rstrip())
            time.sleep(poll_s)
            progress.advance(note=f"at most {timeout_s:g} s")


class LocalFleet:
    """One fleet per ``Settings().home``: its folder is ``home/fleet``."""

    def __init__(self, settings: Settings | None = None, out: Callable[[str], None] | None = None) -> None:
        base = settings if settings is not None else Settings()
        self.root = base.home.expanduser().resolve() / "fleet"
        self.network = FleetNetwork(base.FLEET_ID, base.FLEET_SUBNET, self.root / "network.json")
        self.coordinator = self.network.bridge_address
        # the coordinator's services listen on the bridge, so every host reaches them
        self.settings = Settings({**{k: v for k, v in base.as_dict().items()}, "BIND_HOST": self.coordinator})
        self._out = out if out is not None else print
        self.postgres = PostgresServer(self.root / "postgres", self.settings.POSTGRES_PORT, self.coordinator,
                                       str(self.network.subnet), self.settings.POSTGRES_BIN_DIR)

    def say(self, text: str) -> None:
        self._out(text)

    # --- layout -----------------------------------------------------------------------------
    @property
    def secrets_path(self) -> Path:
        return self.root / "secrets.json"

    def secrets(self) -> FleetSecrets:
        return FleetSecrets.load_or_create(self.secrets_path)

    def credentials(self) -> ClusterCredentials:
        """Redis and Kafka logins of the fleet's stack (the same home)."""
        return ClusterCredentials.load_or_create(self.settings.home.expanduser().resolve())

    def process(self, name: str) -> ManagedProcess:
        return ManagedProcess(name, self.root / "run" / f"{name}.pid", self.root / "logs" / f"{name}.log")

    def host_dir(self, index: int) -> Path:
        return self.root / "hosts" / f"h{index}"

    def host_id(self, index: int) -> str:
        return f"{self.network.fleet_id}-h{index}"

    def worker(self, index: int) -> ManagedProcess:
        d = self.host_dir(index)
        return ManagedProcess(f"worker h{index}", d / "worker.pid", d / "worker.log")

    def replica_process(self, index: int) -> ManagedProcess:
        d = self.host_dir(index)
        return ManagedProcess(f"replica h{index}", d / "replica.pid", d / "redis" / "redis.stdout")

    def hosts(self) -> dict[int, HostNet]:
        """Hosts this fleet created (index -> names and address)."""
        return {i: self.network.host(i) for i in self.network.recorded_hosts()}

    # --- environments ---------------------------------------------------------------------
    def _base_env(self) -> dict[str, str]:
        """This machine's environment without Airflow settings or connections someone else exported."""
        return {k: v for k, v in os.environ.items()
                if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_HOME"))}

    def coordinator_env(self) -> dict[str, str]:
        from whoiscrawl.devtools.stack import connection_env

        env = self._base_env()
        env.update(celery_env(self.settings, self.coordinator, self.secrets(), self.root / "airflow"))
        env.update(connection_env(self.settings))  # served to every worker by the execution API
        env.update({PREFIX + "BIND_HOST": self.coordinator, PREFIX + "HOST_ADDRESS": self.coordinator,
                    "PYTHONUNBUFFERED": "1",
                    # Only triggered runs: a scheduled run would crawl with the default (IANA) bootstrap,
                    # which nothing on this machine can reach, and hold the DAG's one active-run slot.
                    "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"})
        return env

    def worker_env(self, index: int) -> dict[str, str]:
        from whoiscrawl.devtools.stack import connection_env

        host = self.network.host(index)
        env = self._base_env()
        env.update(celery_env(self.settings, self.coordinator, self.secrets(), self.host_dir(index) / "airflow"))
        allow = connection_env(self.settings).get(PREFIX + "BOOTSTRAP_URL_ALLOWLIST")  # the simulator's origin
        if allow:
            env[PREFIX + "BOOTSTRAP_URL_ALLOWLIST"] = allow
        env.update({
            PREFIX + "REDIS_REPLICA_URL": f"redis://127.0.0.1:{self.settings.REPLICA_PORT}/0",
            PREFIX + "HOST_ID": self.host_id(index),
            PREFIX + "HOST_ADDRESS": host.address,
            "PYTHONUNBUFFERED": "1",
        })
        return env

    # --- pieces ---------------------------------------------------------------------------
    def stack(self):
        from whoiscrawl.devtools.stack import Stack

        return Stack(self.settings, out=lambda text: self.say(f"stack: {text}"))

    def master_client(self):
        import redis

        return redis.Redis(host=self.coordinator, port=self.settings.REDIS_PORT, socket_timeout=5,
                           socket_connect_timeout=3, username="admin", password=self.credentials().redis_admin)

    def replica_links(self) -> dict[str, dict]:
        """The master's view of its replicas, by replica address: state and acknowledged offset."""
        import redis

        client = self.master_client()
        try:
            info = client.info("replication")
        except (redis.RedisError, OSError):
            return {}
        finally:
            client.close()
        links = {}
        for key, value in info.items():
            if key.startswith("slave") and isinstance(value, dict) and "ip" in value:
                links[str(value["ip"])] = value
        links["master"] = {"offset": info.get("master_repl_offset", 0)}
        return links

    def api_health(self, timeout_s: float = 3) -> dict:
        return api_health(api_url(self.settings, self.coordinator), timeout_s)

    def unhealthy_components(self) -> list[str]:
        return unhealthy(self.api_health())

    def celery_workers(self, timeout_s: float = 5) -> dict[str, list[str]]:
        """Workers answering a Celery ping (asked in a child process that has the fleet's Airflow config)."""
        code = ("import json; from whoiscrawl.orchestration.fleet.celery import celery_workers; "
                f"print('WORKERS=' + json.dumps(celery_workers({float(timeout_s)!r})))")
        try:
            done = subprocess.run([sys.executable, "-c", code], env=self.coordinator_env(), capture_output=True,
                                  text=True, timeout=timeout_s + 120, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return {}
        for line in done.stdout.splitlines():
            if line.startswith("WORKERS="):
                return json.loads(line[len("WORKERS="):])
        return {}

    def airflow(self, args: list[str], timeout_s: float = 600, **kwargs) -> subprocess.CompletedProcess:
        """Run the ``airflow`` command with the coordinator's configuration."""
        return subprocess.run([airflow_bin(), *args], env=self.coordinator_env(), stdin=subprocess.DEVNULL,
                              timeout=timeout_s, cwd=self.root, **kwargs)

    # --- up -----------------------------------------------------------------------------
    @contextmanager
    def _locked(self, wait_s: float = 10) -> Iterator[None]:
        with exclusive_lock(self.root / "run" / "fleet.lock", wait_s, "whoiscrawl fleet up/down", FleetUpError):
            yield

    def up(self, hosts: int, timeout_s: float = 300) -> list[ComponentState]:
        """Start what is missing, in order; what already runs and answers is left alone."""
        reason = netns_supported()
        if reason:
            raise FleetUpError(f"the local fleet needs network namespaces: {reason}")
        if not 1 <= hosts <= self.network.max_hosts:
            raise FleetUpError(f"--hosts {hosts}: choose 1-{self.network.max_hosts}")
        with self._locked():
            self.root.mkdir(parents=True, exist_ok=True)
            if self.network.ensure_bridge():
                self.say(f"network: bridge {self.network.bridge} {self.coordinator}/{self.network.subnet.prefixlen}")
            self._up_stack()
            self._up_postgres()
            self._up_coordinator(timeout_s)
            for index in range(1, hosts + 1):
                self._up_host(index, timeout_s)
            self._wait_workers(hosts, timeout_s)
            extra = [i for i in self.network.recorded_hosts() if i > hosts]
            if extra:
                self.say(f"hosts {extra} from an earlier `up` keep running (`fleet down` stops every host)")
            self._size_pool(len(self.network.recorded_hosts()))
        return self.status()

    def _size_pool(self, hosts: int) -> None:
        """``default_pool`` gets as many slots as the workers have: tasks beyond wait as 'scheduled'.

        A task 'queued' to Celery while every slot is busy would wait in the broker,
        where Airflow's ``task_queued_timeout`` (also its token's lifetime) fails it.
        """
        slots = hosts * int(self.settings.WORKER_CONCURRENCY)
        done = self.airflow(["pools", "set", "default_pool", str(slots),
                             f"whoiscrawl fleet: {hosts} hosts x {self.settings.WORKER_CONCURRENCY} slots"],
                            timeout_s=300, capture_output=True, text=True)
        if done.returncode != 0:
            raise FleetUpError(f"airflow pools set default_pool failed:\n{done.stdout[-1000:]}{done.stderr[-2000:]}")
        self.say(f"airflow: default_pool has {slots} slots")

    def _up_stack(self) -> None:
        states = self.stack().up()
        down = [s.name for s in states if not s.healthy]
        if down:
            raise FleetUpError(f"stack services not healthy: {', '.join(down)} (`whoiscrawl fleet status`)")

    def _up_postgres(self) -> None:
        secrets = self.secrets()
        if self.postgres.start():
            self.say(f"postgres: started on {self.coordinator}:{self.settings.POSTGRES_PORT} "
                     f"(data in {self.postgres.data_dir})")
        else:
            self.say(f"postgres: already running (pid {self.postgres.pid()})")
        self.postgres.ensure_database(DB_NAME, DB_USER, secrets.db_password)
        if not self.postgres.healthy(DB_USER, secrets.db_password, DB_NAME):
            raise FleetUpError(f"postgres: {DB_USER} cannot log in over {self.coordinator}:"
                               f"{self.settings.POSTGRES_PORT}\n{self.postgres.log_tail()}")

    def _up_coordinator(self, timeout_s: float) -> None:
        procs = {name: self.process(name) for name in COORDINATOR_PROCESSES}
        missing = [name for name, p in procs.items() if p.live_pid() is None]
        if missing:
            log = self.root / "logs" / "db-migrate.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            started = time.monotonic()
            with open(log, "ab") as fh:
                done = self.airflow(["db", "migrate"], timeout_s=max(timeout_s, 600), stdout=fh, stderr=fh)
            if done.returncode != 0:
                raise FleetUpError(f"airflow db migrate failed ({done.returncode}); see {log}")
            self.say(f"airflow: metadata migrated in {time.monotonic() - started:.0f} s")
        env = self.coordinator_env()
        commands = {
            "api-server": ["api-server", "--host", self.coordinator, "--port", str(self.settings.AIRFLOW_API_PORT),
                           "--workers", "1"],
            "scheduler": ["scheduler"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer"],
        }
        for name in missing:
            pid = procs[name].start([airflow_bin(), *commands[name]], env, self.root / "airflow")
            self.say(f"airflow {name}: started (pid {pid}), log {procs[name].log_path}")

        def detail() -> str:
            dead = [n for n, p in procs.items() if p.live_pid() is None]
            parts = [f"exited: {', '.join(dead)}"] if dead else []
            for name in dead or list(procs):
                parts.append(f"--- {procs[name].log_path} ---\n{procs[name].log_tail(15)}")
            return "\n".join(parts)

        def ready() -> bool:
            if any(p.live_pid() is None for p in procs.values()):
                raise FleetUpError(f"an Airflow process exited while starting\n{detail()}")
            return not self.unhealthy_components()

        _wait(f"airflow ({', '.join(self.unhealthy_components()) or 'health'})", ready, timeout_s, detail, 2.0)
        self.say(f"airflow: api-server, scheduler, dag-processor, triggerer healthy on "
                 f"{api_url(self.settings, self.coordinator)}")

    def _up_host(self, index: int, timeout_s: float) -> None:
        host, created = self.network.ensure_host(index)
        if created:
            self.say(f"host h{index}: namespace {host.netns}, address {host.address}")
        replica = self.replica_process(index)
        if replica.live_pid() is None:
            creds = self.credentials()
            # the host's crawl tasks log in as crawl (rate budgets, index reads); it logs in to the master as replica
            server = RedisServer(self.host_dir(index) / "redis", self.settings.REPLICA_PORT, bind="127.0.0.1",
                                 replicaof=(self.coordinator, int(self.settings.REDIS_PORT)),
                                 replica_read_only=False, users=creds.redis_acl("admin", "crawl"),
                                 auth=("admin", creds.redis_admin), masterauth=("replica", creds.redis_replica))
            from whoiscrawl.devtools.services.redis_server import find_redis_server

            config = server.write_config()
            replica.start([*host.exec_prefix(), find_redis_server(), str(config)], self._base_env(),
                          self.host_dir(index) / "redis")
        _wait(f"replica of h{index} ({host.address}) linked to the master",
              lambda: self.replica_links().get(host.address, {}).get("state") == "online",
              min(timeout_s, 60), lambda: replica.log_tail(), 0.5)
        worker = self.worker(index)
        if worker.live_pid() is None:
            argv = [*host.exec_prefix(), airflow_bin(), "celery", "worker",
                    "--celery-hostname", f"{self.host_id(index)}@{host.address}",
                    "--queues", CELERY_QUEUE, "--concurrency", str(self.settings.WORKER_CONCURRENCY)]
            pid = worker.start(argv, self.worker_env(index), self.host_dir(index))
            self.say(f"host h{index}: replica online, celery worker started (pid {pid}), log {worker.log_path}")

    def _wait_workers(self, hosts: int, timeout_s: float) -> None:
        wanted = {f"{self.host_id(i)}@{self.network.host(i).address}" for i in range(1, hosts + 1)}
        seen: dict[str, list[str]] = {}

        def ready() -> bool:
            nonlocal seen
            for i in range(1, hosts + 1):
                if self.worker(i).live_pid() is None:
                    raise FleetUpError(f"celery worker of h{i} exited while starting; {self.worker(i).log_path}:\n"
                                       f"{self.worker(i).log_tail()}")
            seen = self.celery_workers()
            return all(CELERY_QUEUE in seen.get(name, []) for name in wanted)

        _wait("celery workers", ready, timeout_s, lambda: f"answering: {sorted(seen)}; wanted {sorted(wanted)}", 3.0)
        self.say(f"celery: {len(wanted)} workers answer on queue {CELERY_QUEUE}")

    # --- status ---------------------------------------------------------------------------
    def status(self) -> list[ComponentState]:
        states: list[ComponentState] = []
        bridge_up = FleetNetwork.link_exists(self.network.bridge)
        states.append(ComponentState("bridge", None, f"{self.network.bridge} {self.coordinator}", bridge_up,
                                     "" if bridge_up else "not created"))
        for s in self.stack().status():
            states.append(ComponentState(s.name, s.pid, s.endpoint, s.healthy, s.note))
        pg_pid = self.postgres.pid() if self.postgres.is_running() else None
        pg_ok = pg_pid is not None and self.secrets_path.exists() and self.postgres.healthy(
            DB_USER, self.secrets().db_password, DB_NAME)
        states.append(ComponentState("postgres", pg_pid, f"{self.coordinator}:{self.settings.POSTGRES_PORT}",
                                     pg_ok, "" if pg_ok else "not running" if pg_pid is None else "not answering"))
        unhealthy = self.unhealthy_components() if self.secrets_path.exists() else list(HEALTH_COMPONENTS)
        api = api_url(self.settings, self.coordinator)
        for name in COORDINATOR_PROCESSES:
            pid = self.process(name).live_pid()
            component = "api-server" if name == "api-server" else name.replace("-", "_")
            ok = pid is not None and component not in unhealthy and "api-server" not in unhealthy
            states.append(ComponentState(name, pid, api if name == "api-server" else "", ok,
                                         "" if ok else "not running" if pid is None else "not healthy"))
        links = self.replica_links()
        hosts = self.hosts()
        workers = self.celery_workers() if hosts and self.secrets_path.exists() else {}
        for index, host in hosts.items():
            link = links.get(host.address, {})
            rpid = self.replica_process(index).live_pid()
            ok = rpid is not None and link.get("state") == "online"
            offsets = f"offset {link.get('offset')}, master {links.get('master', {}).get('offset')}"
            states.append(ComponentState(f"h{index} replica", rpid,
                                         f"{host.netns} 127.0.0.1:{self.settings.REPLICA_PORT}",
                                         ok, offsets if ok else "not linked"))
            wpid = self.worker(index).live_pid()
            name = f"{self.host_id(index)}@{host.address}"
            ok = wpid is not None and CELERY_QUEUE in workers.get(name, [])
            states.append(ComponentState(f"h{index} worker", wpid, name, ok,
                                         "" if ok else "not running" if wpid is None else "no ping answer"))
        return states

    # --- failure injection (tests) -----------------------------------------------------------
    def kill_worker(self, index: int) -> list[int]:
        """SIGKILL host ``index``'s Celery worker group and every task process it left in the namespace.

        That is what the death of a worker machine does to its tasks; the
        replica is spared so the test can still read its replication state.
        """
        host = self.network.host(index)
        replica_pid = self.replica_process(index).live_pid()
        killed = []
        pid = self.worker(index).signal_group(signal.SIGKILL)
        if pid is not None:
            killed.append(pid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            left = [p for p in FleetNetwork.pids(host) if p != replica_pid]
            if not left:
                break
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                    killed.append(p)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        self.worker(index).pidfile.unlink(missing_ok=True)
        return sorted(set(killed))

    # --- a host that boots by itself --------------------------------------------------------
    def boot_host(self, index: int, script: Path, timeout_s: float = 60) -> HostNet:
        """A fresh host ``index`` that runs ``script`` as root, as a cloud instance runs its user-data.

        The host gets no settings from the fleet, only the network: whatever it
        starts must find the coordinator by itself. ``down`` removes it like any host.
        """
        with self._locked():
            if index in self.network.recorded_hosts():
                raise FleetUpError(f"host h{index} exists already: a booting host starts fresh")
            host, _ = self.network.ensure_host(index)
        log = self.host_dir(index) / "user-data.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            done = subprocess.run([*host.exec_prefix(), "/bin/bash", str(script)], stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=out, timeout=timeout_s, cwd="/")
        if done.returncode != 0:
            raise FleetUpError(f"user-data of h{index} exited {done.returncode}; {log}:\n{log_tail(log)}")
        self.say(f"host h{index}: namespace {host.netns}, address {host.address}, ran {script.name}")
        return host

    # --- down -----------------------------------------------------------------------------
    def down(self, timeout_s: float = 30) -> list[str]:
        """Stop everything, hosts first; delete what the fleet created. Safe to run again."""
        stopped: list[str] = []
        errors: list[str] = []
        with self._locked(wait_s=30):
            for index, host in self.hosts().items():
                worker = self.worker(index)
                if worker.stop(timeout_s):
                    stopped.append(f"h{index} worker")
                self.replica_process(index).stop(10)
                try:
                    if self.network.remove_host(index):
                        stopped.append(host.netns)
                except NetworkError as exc:
                    errors.append(str(exc))
            for name in reversed(COORDINATOR_PROCESSES):
                if self.process(name).stop(timeout_s):
                    stopped.append(name)
            try:
                if self.postgres.initialized() and self.postgres.stop(timeout_s):
                    stopped.append("postgres")
            except (PostgresError, MissingDependency) as exc:
                errors.append(str(exc))
            stopped += self.stack().down(timeout_s=timeout_s)
            try:
                if self.network.remove_all():
                    stopped.append(self.network.bridge)
            except NetworkError as exc:
                errors.append(str(exc))
        for name in stopped:
            self.say(f"stopped {name}")
        if errors:
            raise FleetUpError("; ".join(errors))
        return stopped


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whoiscrawl fleet",
        description="A CeleryExecutor fleet on this machine: coordinator in the root network namespace, "
                    "worker hosts in network namespaces (needs root). Settings: WHOISCRAWL_* (FLEET_SUBNET, "
                    "FLEET_ID, POSTGRES_PORT, AIRFLOW_API_PORT, ...); files under WHOISCRAWL_HOME/fleet.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start what is not running: stack, postgres, airflow, N worker hosts")
    up.add_argument("--hosts", type=int, default=3, help="worker hosts (default 3)")
    up.add_argument("--timeout", type=float, default=300, help="seconds each step may take (default 300)")
    sub.add_parser("status", help="one line per component; exit 1 if any is down")
    down = sub.add_parser("down", help="stop everything and delete the namespaces, veths and bridge")
    down.add_argument("--timeout", type=float, default=30, help="seconds per process before SIGKILL")
    sub.add_parser("env", help="print `export` lines of the coordinator's Airflow configuration")
    af = sub.add_parser("airflow", help="run an airflow command against the fleet, e.g. `fleet airflow dags list`")
    af.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``whoiscrawl fleet ...``; returns the exit code."""
    import shlex

    args = _parser().parse_args(argv)
    try:
        fleet = LocalFleet()
        if args.command == "up":
            started = time.monotonic()
            states = fleet.up(args.hosts, timeout_s=args.timeout)
            for state in states:
                print(state.line(name_width=16))
            print(f"fleet up in {time.monotonic() - started:.0f} s; UI and API on "
                  f"{api_url(fleet.settings, fleet.coordinator)} (user admin, password in "
                  f"{fleet.root / 'airflow' / 'passwords.json'})")
            return 0 if all(s.healthy for s in states) else 1
        if args.command == "status":
            states = fleet.status()
            for state in states:
                print(state.line(name_width=16))
            return 0 if all(s.healthy for s in states) else 1
        if args.command == "down":
            fleet.down(timeout_s=args.timeout)
            return 0
        if args.command == "env":
            for key, value in fleet.coordinator_env().items():
                if key.startswith(("AIRFLOW", PREFIX)):
                    print(f"export {key}={shlex.quote(value)}")
            return 0
        if args.command == "airflow":
            return fleet.airflow(list(args.args), timeout_s=3600).returncode
    except (WhoiscrawlError, RedisError, subprocess.TimeoutExpired) as exc:  # ours, and the services' own
        print(f"whoiscrawl fleet {args.command}: {exc}", file=sys.stderr)
        if args.command == "up":
            print("what started keeps running; `whoiscrawl fleet down` stops it", file=sys.stderr)
        return 1
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
