"""Start, check and stop the local stack: Redis master, Kafka broker and registry simulator.

``whoiscrawl stack up|status|down|env`` (also ``python -m whoiscrawl.devtools.stack``)
gives a developer the services the crawl DAG talks to, on the ports of
:class:`~whoiscrawl.settings.Settings` and with every file under
``Settings().home``. ``up`` also writes ``home/airflow-connections.env``: the
DAG reaches Redis and Kafka only through the Airflow connections
``redis_default`` and ``kafka_default``, so pointing it at a real cluster is a
connection change, not a code change. Redis and Kafka require a login: the
credentials are generated once per home (``home/credentials.json``, 0600; see
:mod:`whoiscrawl.devtools.credentials`) and the env file, which carries the
crawl's, is 0600 too. The Kafka controller listener stays on loopback.

The stack only ever signals processes it started: each has a pidfile
``home/run/<service>.pid``, and a pid is acted upon only while
``/proc/<pid>/cmdline`` still shows what we launched (see
:class:`~whoiscrawl.devtools.services.procs.PidFile`). A stale pidfile is
removed, never acted upon.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from whoiscrawl.devtools.credentials import ClusterCredentials, write_private
from whoiscrawl.devtools.services import MissingDependency, service_env
from whoiscrawl.devtools.services.kafka_broker import KafkaBroker, find_java, find_mvn
from whoiscrawl.devtools.services.procs import PidFile, exclusive_lock, log_tail, port_in_use
from whoiscrawl.devtools.services.redis_server import RedisServer, find_redis_server
from whoiscrawl.errors import WhoiscrawlError
from whoiscrawl.crawl.config import RunConfig
from whoiscrawl.settings import PREFIX, Settings

__all__ = [
    "Stack", "StackError", "ServiceState", "connection_env", "env_file_text", "main",
    "ENV_FILE_NAME", "TOPIC_PARTITIONS",
]

ENV_FILE_NAME = "airflow-connections.env"
SIM_READY = re.compile(r"^ready\s+(\S+)\s*$", re.MULTILINE)
SIM_PORTS = 6  # bootstrap and stats, then one port per RIR
#: partitions of the topics ``up`` creates, by run config field naming the topic
TOPIC_PARTITIONS = {"results_topic": 8, "metrics_topic": 1}
#: Results stay until drained, however long the crawl (the broker's default would delete them after 7 days).
#: On a real cluster set the same on the results topic: ``retention.ms=-1`` (or a ``retention.bytes`` above the
#: run's volume) and drain before deleting.
TOPIC_CONFIG = {"results_topic": {"retention.ms": "-1", "retention.bytes": "-1"}}


class StackError(WhoiscrawlError):
    """The stack could not be brought up or checked; the message says what to do."""


def client_host(bind: str) -> str:
    """Address a client on this machine uses for a service bound to ``bind``."""
    return "127.0.0.1" if bind in ("0.0.0.0", "*", "") else bind


def _home(settings: Settings) -> Path:
    return settings.home.expanduser().resolve()


def _sim_url_path(settings: Settings) -> Path:
    return _home(settings) / "sim" / "bootstrap_url"


def _sim_delegated_path(settings: Settings) -> Path:
    return _home(settings) / "sim" / "delegated_urls"


def simulator_delegated_urls(bootstrap_url: str) -> str:
    """The simulator's delegated files in the ``delegated_urls`` form (its ``/_delegated`` lists them)."""
    base = bootstrap_url.split("/bootstrap/", 1)[0]
    with urllib.request.urlopen(f"{base}/_delegated", timeout=10) as resp:
        return ",".join(f"{r}={u}" for r, u in sorted(json.loads(resp.read()).items()))


def connection_env(settings: Settings) -> dict[str, str]:
    """Environment variables that give Airflow and the demo the local stack's endpoints.

    ``WHOISCRAWL_SIM_BOOTSTRAP_URL`` is included once the simulator has reported
    its bootstrap URL (it is known only after ``up``), and so is ``WHOISCRAWL_BOOTSTRAP``
    with the same URL unless the environment already names a bootstrap: a scheduled run on
    this stack (its ``bootstrap`` Param empty) crawls the simulator, never the real registries
    by accident; a production scheduler, started without this file, defaults to IANA's.
    ``WHOISCRAWL_DELEGATED_URLS`` names the simulator's delegated files the same way, so a
    planned run on this stack never fetches the real registries' statistics either.
    """
    host = client_host(settings.BIND_HOST)
    creds = ClusterCredentials.load_or_create(_home(settings))
    kafka = {"conn_type": "kafka", "extra": {"bootstrap.servers": f"{host}:{settings.KAFKA_PORT}",
                                             **creds.kafka_client("crawl")}}
    env = {
        "AIRFLOW_CONN_REDIS_DEFAULT": f"redis://crawl:{creds.redis_crawl}@{host}:{settings.REDIS_PORT}/0",
        # the login a worker host's replica links with; only the EC2 provider reads it (for the workers' config)
        "AIRFLOW_CONN_REDIS_REPLICATION": f"redis://replica:{creds.redis_replica}@{host}:{settings.REDIS_PORT}/0",
        "AIRFLOW_CONN_KAFKA_DEFAULT": json.dumps(kafka, separators=(",", ":")),
    }
    try:
        url = _sim_url_path(settings).read_text(encoding="utf-8").strip()
    except OSError:
        url = ""
    if url:
        env[PREFIX + "SIM_BOOTSTRAP_URL"] = url
        env[PREFIX + "BOOTSTRAP"] = os.environ.get(PREFIX + "BOOTSTRAP") or url
        try:
            delegated = _sim_delegated_path(settings).read_text(encoding="utf-8").strip()
        except OSError:
            delegated = ""
        if delegated:
            env[PREFIX + "DELEGATED_URLS"] = os.environ.get(PREFIX + "DELEGATED_URLS") or delegated
        # the simulator's loopback origin may be a bootstrap Param (plain http, so not allowed by default)
        parts = urllib.parse.urlsplit(url)
        allow = [a for a in (settings.BOOTSTRAP_URL_ALLOWLIST, f"{parts.scheme}://{parts.netloc}") if a]
        env[PREFIX + "BOOTSTRAP_URL_ALLOWLIST"] = ",".join(allow)
    return env


def env_file_text(env: dict[str, str]) -> str:
    """``KEY=value`` lines, shell-quoted: ``set -a; . FILE`` and dotenv readers both load them."""
    lines = ["# Written by `whoiscrawl stack up`: Airflow connections for the local stack."]
    lines += [f"{key}={shlex.quote(value)}" for key, value in env.items()]
    return "\n".join(lines) + "\n"


@dataclass
class ServiceState:
    """One line of ``stack status`` (and ``fleet status``)."""

    name: str
    pid: int | None
    endpoint: str
    healthy: bool
    note: str = ""

    def line(self, name_width: int = 10) -> str:
        state = "healthy" if self.healthy else "down"
        note = f" ({self.note})" if self.note else ""
        pid = str(self.pid) if self.pid is not None else "-"
        return f"{self.name:<{name_width}} {pid:>8}  {self.endpoint:<44} {state}{note}"


class _Service:
    """What the stack needs of one service: where it runs, whether it answers, start and stop."""

    name = ""

    def __init__(self, stack: "Stack") -> None:
        self.stack = stack
        self.settings = stack.settings
        self.home = stack.home
        self.bind = self.settings.BIND_HOST
        self.host = client_host(self.bind)

    pidfile: PidFile

    def ports(self) -> list[tuple[int, str]]:
        """(port, environment variable that changes it)."""
        raise NotImplementedError

    def endpoint(self) -> str:
        raise NotImplementedError

    def healthy(self, timeout_s: float = 2.0) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def after_start(self) -> None:
        """Idempotent set-up done whether we just started it or found it running."""

    def stop(self, timeout_s: float) -> bool:
        return self.pidfile.terminate(timeout_s)


class _Redis(_Service):
    name = "redis"

    def __init__(self, stack: "Stack") -> None:
        super().__init__(stack)
        self.port = int(self.settings.REDIS_PORT)
        self.data_dir = self.home / "redis"
        # redis-server retitles itself "redis-server HOST:PORT" and works in its data folder; the
        # port is left out so a changed WHOISCRAWL_REDIS_PORT does not orphan a running server
        self.pidfile = PidFile(self.home / "run" / "redis.pid", ("redis-server",), cwd=self.data_dir)

    def ports(self) -> list[tuple[int, str]]:
        return [(self.port, PREFIX + "REDIS_PORT")]

    def endpoint(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def healthy(self, timeout_s: float = 2.0) -> bool:
        import redis

        conn = redis.Redis(host=self.host, port=self.port, socket_timeout=timeout_s,
                           socket_connect_timeout=timeout_s, username="admin",
                           password=self.stack.credentials.redis_admin)
        try:
            return bool(conn.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            conn.close()

    def start(self) -> None:
        # "save" makes SIGTERM write a snapshot, so `down` then `up` keeps the data; the append-only file
        # (fsync every second) keeps the index and run state of a master that crashed or was killed.
        extra = {"save": "300 1", "appendonly": "yes", "appendfsync": "everysec"}
        if not self.host.startswith("127."):
            # Bound to a fleet bridge: its hosts (replicas, Celery workers) connect from other addresses;
            # every user has a password (the default user is off), so protected mode adds nothing.
            extra["protected-mode"] = "no"
        creds = self.stack.credentials
        server = RedisServer(self.data_dir, self.port, bind=self.bind, extra=extra, users=creds.redis_acl(),
                             auth=("admin", creds.redis_admin))
        server.start(timeout_s=15)
        # RedisServer kills its server when the object is collected or Python exits, which
        # suits tests; the stack's Redis must outlive this command, so release it.
        finalizer = getattr(server, "_finalizer", None)
        if finalizer is not None:
            finalizer.detach()
        self.pidfile.write(server.pid)


class _Kafka(_Service):
    name = "kafka"

    def __init__(self, stack: "Stack") -> None:
        super().__init__(stack)
        self.broker = KafkaBroker(self.home, self.settings.KAFKA_PORT,
                                  self.settings.KAFKA_CONTROLLER_PORT, bind=self.bind,
                                  scram_users=stack.credentials.kafka_users())
        self.pidfile = self.broker.pidfile

    def ports(self) -> list[tuple[int, str]]:
        return [(self.broker.port, PREFIX + "KAFKA_PORT"),
                (self.broker.controller_port, PREFIX + "KAFKA_CONTROLLER_PORT")]

    def endpoint(self) -> str:
        return self.broker.bootstrap_servers

    def healthy(self, timeout_s: float = 2.0) -> bool:
        return self.broker.healthy(timeout_s=timeout_s)

    def start(self) -> None:
        self.broker.start(timeout_s=self.stack.kafka_timeout_s)

    def after_start(self) -> None:
        run_config = RunConfig.from_env()  # the topics this machine's runs will use
        topics = {getattr(run_config, name): count for name, count in TOPIC_PARTITIONS.items()}
        config = {getattr(run_config, name): conf for name, conf in TOPIC_CONFIG.items()}
        created = self.broker.create_topics(topics, config=config)
        if created:
            self.stack.say(f"kafka: created topics {', '.join(created)}")

    def stop(self, timeout_s: float) -> bool:
        was_running = self.broker.is_running()
        self.broker.stop(timeout_s=timeout_s)
        return was_running


class _Simulator(_Service):
    name = "simulator"

    def __init__(self, stack: "Stack") -> None:
        super().__init__(stack)
        self.base_port = int(self.settings.SIM_BASE_PORT)
        self.sim_dir = self.home / "sim"
        self.cache_dir = self.sim_dir / "cache"
        self.log_path = self.sim_dir / "simulator.log"
        self.url_path = _sim_url_path(self.settings)
        self.pidfile = PidFile(self.home / "run" / "simulator.pid",
                               ("whoiscrawl.simulator", "--cache-dir", str(self.cache_dir)),
                               cwd=self.sim_dir)

    def ports(self) -> list[tuple[int, str]]:
        return [(self.base_port + i, PREFIX + "SIM_BASE_PORT") for i in range(SIM_PORTS)]

    def endpoint(self) -> str:
        try:
            url = self.url_path.read_text(encoding="utf-8").strip()
        except OSError:
            url = ""
        return url or f"http://{self.host}:{self.base_port}"

    def healthy(self, timeout_s: float = 2.0) -> bool:
        url = f"http://{self.host}:{self.base_port}/_stats"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def command(self) -> list[str]:
        s = self.stack
        return [sys.executable, "-m", "whoiscrawl.simulator", "--host", self.bind,
                "--base-port", str(self.base_port), "--profile", s.sim_profile,
                "--scale", repr(float(s.sim_scale)), "--seed", str(int(s.sim_seed)),
                "--cache-dir", str(self.cache_dir),
                "--bootstrap-out", str(self.sim_dir / "bootstrap.json")]

    def start(self) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.url_path.unlink(missing_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = service_env(PYTHONUNBUFFERED="1")  # the ready line must reach the log at once
        with open(self.log_path, "ab") as out:
            proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    cwd=self.sim_dir, env=env, start_new_session=True, close_fds=True)
        self.pidfile.write(proc.pid)
        timeout_s = self.stack.sim_timeout_s
        deadline = time.monotonic() + timeout_s
        url = None
        while url is None:
            match = SIM_READY.search(self._log_since(offset))
            if match:
                url = match.group(1)
            elif proc.poll() is not None:
                self.pidfile.remove()
                raise StackError(f"simulator exited with code {proc.returncode} while starting; "
                                 f"{self.log_path}:\n{self._tail(offset)}")
            elif time.monotonic() >= deadline:
                self.pidfile.terminate(10, proc=proc)
                raise StackError(f"simulator printed no 'ready' line within {timeout_s:g} s "
                                 f"(--sim-timeout raises it); {self.log_path}:\n{self._tail(offset)}")
            else:
                time.sleep(0.2)
        health_deadline = time.monotonic() + 15
        while not self.healthy():
            if proc.poll() is not None or time.monotonic() >= health_deadline:
                self.pidfile.terminate(10, proc=proc)
                raise StackError(f"simulator said ready but /_stats on {self.host}:{self.base_port} "
                                 f"does not answer 200; {self.log_path}:\n{self._tail(offset)}")
            time.sleep(0.2)
        self.url_path.write_text(url + "\n", encoding="utf-8")
        try:
            delegated = simulator_delegated_urls(url)
        except (urllib.error.URLError, OSError, ValueError) as exc:  # a simulator without delegated files
            self.stack.say(f"simulator: no delegated files listed ({exc}); planned runs use bootstrap ranges")
        else:
            _sim_delegated_path(self.settings).write_text(delegated + "\n", encoding="utf-8")

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def _tail(self, offset: int, lines: int = 30) -> str:
        return log_tail(self.log_path, offset, lines)

    def stop(self, timeout_s: float) -> bool:
        stopped = self.pidfile.terminate(timeout_s)
        self.url_path.unlink(missing_ok=True)
        _sim_delegated_path(self.settings).unlink(missing_ok=True)
        return stopped


class Stack:
    """The local stack of one ``Settings().home``: Redis, then Kafka, then the simulator."""

    def __init__(self, settings: Settings | None = None, *, sim_profile: str = "fast",
                 sim_scale: float = 1.0, sim_seed: int = 1, sim_timeout_s: float = 300,
                 kafka_timeout_s: float = 90, out: Callable[[str], None] | None = None) -> None:
        self.settings = settings if settings is not None else Settings()
        self.home = _home(self.settings)
        self.credentials = ClusterCredentials.load_or_create(self.home)
        self.sim_profile = sim_profile
        self.sim_scale = sim_scale
        self.sim_seed = sim_seed
        self.sim_timeout_s = sim_timeout_s
        self.kafka_timeout_s = kafka_timeout_s
        self._out = out if out is not None else (lambda text: print(text, flush=True))
        self.services: list[_Service] = [_Redis(self), _Kafka(self), _Simulator(self)]

    def say(self, text: str) -> None:
        self._out(text)

    @property
    def env_file(self) -> Path:
        return self.home / ENV_FILE_NAME

    def service(self, name: str) -> _Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    # --- checks ---------------------------------------------------------------------------
    def check_dependencies(self) -> None:
        """Raise one :class:`MissingDependency` naming every missing binary and its package."""
        missing = []
        checks: list[Callable[[], str]] = [find_redis_server, find_java]
        kafka = self.service("kafka")
        if isinstance(kafka, _Kafka) and not kafka.broker.jars_complete():
            checks.append(find_mvn)
        for check in checks:
            try:
                check()
            except MissingDependency as exc:
                missing.append(str(exc))
        if missing:
            raise MissingDependency("; ".join(missing))

    def _check_ports(self, service: _Service) -> None:
        for port, variable in service.ports():
            if port_in_use(service.bind, port):
                raise StackError(
                    f"{service.name}: port {port} on {service.bind} is already in use by a process "
                    f"whoiscrawl did not start; free it or set {variable} to another port")

    def _forget_stale(self, service: _Service) -> None:
        pid = service.pidfile.read()
        if service.pidfile.clear_stale():
            self.say(f"{service.name}: removed stale pidfile {service.pidfile.path} "
                     f"(pid {pid} is not a {service.name} we started)")

    @contextmanager
    def _locked(self, wait_s: float = 5) -> Iterator[None]:
        """Only one ``up`` or ``down`` at a time per home."""
        with exclusive_lock(self.home / "run" / "stack.lock", wait_s, "whoiscrawl stack up/down", StackError):
            yield

    # --- commands -------------------------------------------------------------------------
    def up(self) -> list[ServiceState]:
        """Start what is not running yet, in order; skip what we started earlier and is healthy."""
        self.check_dependencies()
        with self._locked():
            for service in self.services:  # fail on a taken port before starting anything
                self._forget_stale(service)
                if service.pidfile.live_pid() is None:
                    self._check_ports(service)
            for service in self.services:
                self._up_one(service)
            write_private(self.env_file, env_file_text(connection_env(self.settings)))
            self.say(f"wrote {self.env_file}")
        return self.status()

    def _up_one(self, service: _Service) -> None:
        pid = service.pidfile.live_pid()
        if pid is not None:
            deadline = time.monotonic() + 15
            while not service.healthy():
                if time.monotonic() >= deadline:
                    raise StackError(f"{service.name} (pid {pid}) is running but does not answer on "
                                     f"{service.endpoint()}; `whoiscrawl stack down` stops it")
                time.sleep(0.5)
            self.say(f"{service.name}: already running (pid {pid})")
        else:
            self._check_ports(service)
            self.say(f"{service.name}: starting on {service.endpoint()}")
            started = time.monotonic()
            try:
                service.start()
            except BaseException:
                service.stop(timeout_s=10)  # never leave a half-started service behind
                raise
            self.say(f"{service.name}: up in {time.monotonic() - started:.1f} s "
                     f"(pid {service.pidfile.live_pid()})")
        service.after_start()

    def status(self) -> list[ServiceState]:
        states = []
        for service in self.services:
            self._forget_stale(service)
            pid = service.pidfile.live_pid()
            if pid is None:
                states.append(ServiceState(service.name, None, service.endpoint(), False, "not running"))
            elif service.healthy():
                states.append(ServiceState(service.name, pid, service.endpoint(), True))
            else:
                states.append(ServiceState(service.name, pid, service.endpoint(), False, "not answering"))
        return states

    def down(self, timeout_s: float = 30) -> list[str]:
        """Stop what we started, simulator first; return the names of the services stopped."""
        stopped = []
        with self._locked():
            for service in reversed(self.services):
                self._forget_stale(service)
                pid = service.pidfile.live_pid()
                if pid is None:
                    self.say(f"{service.name}: not running")
                    continue
                service.stop(timeout_s=timeout_s)
                self.say(f"{service.name}: stopped (pid {pid})")
                stopped.append(service.name)
        return stopped


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whoiscrawl stack",
        description="Start, check and stop the local stack (Redis, Kafka, registry simulator). "
                    "Ports and the data folder come from the WHOISCRAWL_* settings.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start what is not running yet and write the Airflow connections file")
    up.add_argument("--sim-profile", default="fast", help="simulator latency/fault profile (default fast)")
    up.add_argument("--sim-scale", type=float, default=1.0,
                    help="fraction of the real registries' networks the simulator serves (default 0.05)")
    up.add_argument("--sim-seed", type=int, default=1, help="simulator random seed (default 1)")
    up.add_argument("--sim-timeout", type=float, default=300,
                    help="seconds to wait for the simulator's ready line (first start builds its cache)")
    up.add_argument("--kafka-timeout", type=float, default=90, help="seconds to wait for the broker")
    sub.add_parser("status", help="one line per service; exit 1 if any is down")
    down = sub.add_parser("down", help="stop what `up` started, in reverse order")
    down.add_argument("--timeout", type=float, default=30, help="seconds per service before SIGKILL")
    sub.add_parser("env", help="print `export` lines of the connection variables (for eval)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``whoiscrawl stack ...``; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "up":
            stack = Stack(sim_profile=args.sim_profile, sim_scale=args.sim_scale, sim_seed=args.sim_seed,
                          sim_timeout_s=args.sim_timeout, kafka_timeout_s=args.kafka_timeout)
            states = stack.up()
            for state in states:
                print(state.line())
            return 0 if all(s.healthy for s in states) else 1
        if args.command == "status":
            states = Stack().status()
            for state in states:
                print(state.line())
            return 0 if all(s.healthy for s in states) else 1
        if args.command == "down":
            Stack().down(timeout_s=args.timeout)
            return 0
        if args.command == "env":
            for key, value in connection_env(Settings()).items():
                print(f"export {key}={shlex.quote(value)}")
            return 0
    except WhoiscrawlError as exc:
        print(f"whoiscrawl stack {args.command}: {exc}", file=sys.stderr)
        if args.command == "up":
            print("services already started keep running; `whoiscrawl stack down` stops them",
                  file=sys.stderr)
        return 1
    raise AssertionError(args.command)  # argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
