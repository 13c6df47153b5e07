"""``whoiscrawl ui up|status|down`` (``make ui``): the Airflow UI on the local stack.

Starts the local stack if needed, then Airflow's api-server, scheduler,
dag-processor and triggerer on LocalExecutor with the same SQLite metadata
``make demo`` and ``whoiscrawl crawl`` use (their runs show in the UI). The
api-server listens on 127.0.0.1 only. Logging in takes the user ``admin`` and
a password generated on the first ``up`` (printed once, kept in a 0600 file).

Runs triggered from this UI crawl the simulator by default: the processes get
``WHOISCRAWL_BOOTSTRAP`` (the simulator's bootstrap URL) and
``WHOISCRAWL_RATE_LIMITS`` (the demo's budgets) unless already set, which the
tasks read when the ``bootstrap`` and ``rate_limits`` Params are left empty.
The schedule is off here (only triggered runs), as on the namespace fleet.

Every process is recorded as ``pid start_time`` and signalled only while that
still matches (:class:`~whoiscrawl.devtools.namespace_fleet.ManagedProcess`).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

from whoiscrawl.devtools.airflow_env import airflow_bin, airflow_env, ensure_db
from whoiscrawl.devtools.celery_env import FleetSecrets
from whoiscrawl.devtools.namespace_fleet import (COORDINATOR_PROCESSES, HEALTH_COMPONENTS, ManagedProcess,
                                                api_health, unhealthy)
from whoiscrawl.devtools.services.procs import exclusive_lock, port_in_use
from whoiscrawl.errors import WhoiscrawlError
from whoiscrawl.progress import Progress
from whoiscrawl.settings import PREFIX, Settings

__all__ = ["LocalUI", "UIError", "main"]

DAG_ID = "ipv4_whois_crawl"
UI_HOST = "127.0.0.1"
ADMIN_USER = "admin"


class UIError(WhoiscrawlError):
    """The local UI did not come up or answer in time; the message says which process and where to look."""


class LocalUI:
    """The local UI's processes and files, under ``Settings().home / "ui"``."""

    def __init__(self, environ: Mapping[str, str] | None = None, out: Callable[[str], None] | None = None) -> None:
        #: the environment the Airflow processes inherit (tasks read their WHOISCRAWL_* settings from it)
        self.environ = dict(os.environ if environ is None else environ)
        self.settings = Settings(environ=self.environ)
        self.root = self.settings.home.expanduser().resolve() / "ui"
        self._out = out or (lambda text: print(text, flush=True))

    def say(self, text: str) -> None:
        self._out(f"ui: {text}")

    @property
    def url(self) -> str:
        return f"http://{UI_HOST}:{self.settings.UI_PORT}"

    @property
    def passwords_path(self) -> Path:
        return self.root / "passwords.json"

    def process(self, name: str) -> ManagedProcess:
        return ManagedProcess(name, self.root / "run" / f"{name}.pid", self.root / "logs" / f"{name}.log")

    def password(self) -> str | None:
        try:
            return json.loads(self.passwords_path.read_text(encoding="utf-8")).get(ADMIN_USER)
        except (OSError, ValueError):
            return None

    def _create_password(self) -> str | None:
        """A new admin password in SimpleAuthManager's passwords file; None when one exists already."""
        if self.password():
            return None
        password = secrets.token_urlsafe(12)
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.passwords_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({ADMIN_USER: password}, fh)
        return password

    def env(self) -> dict[str, str]:
        """Airflow's environment for every process of the local UI (and any ``airflow`` command against it)."""
        from whoiscrawl.devtools.demo import DEMO_RATE_LIMITS, DEV_LIMIT, DEV_PLAN
        from whoiscrawl.devtools.stack import connection_env

        env = {k: v for k, v in self.environ.items()
               if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_HOME"))}
        conn = connection_env(self.settings)
        keys = FleetSecrets.load_or_create(self.root / "secrets.json")
        env.update(airflow_env(self.settings))
        env.update(conn)
        env.update({
            "AIRFLOW__API__HOST": UI_HOST,
            "AIRFLOW__API__PORT": str(self.settings.UI_PORT),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": keys.jwt_secret,
            "AIRFLOW__API__SECRET_KEY": keys.api_secret_key,
            "AIRFLOW__CORE__FERNET_KEY": keys.fernet_key,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_path),
            "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            # Only triggered runs: the schedule would start a run nobody asked for.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "PYTHONUNBUFFERED": "1",
        })
        sim = conn.get(PREFIX + "SIM_BOOTSTRAP_URL", "")
        if sim and not self.environ.get(PREFIX + "BOOTSTRAP"):
            env[PREFIX + "BOOTSTRAP"] = sim  # what an empty `bootstrap` Param means on this UI
        if not self.environ.get(PREFIX + "RATE_LIMITS"):
            env[PREFIX + "RATE_LIMITS"] = DEMO_RATE_LIMITS
        # a development stack's scale: the form's default run (and its plan) ends in minutes, not days
        for name, value in {**DEV_PLAN, PREFIX + "DEFAULT_LIMIT": DEV_LIMIT}.items():
            env[name] = self.environ.get(name) or value
        return env

    def airflow(self, args: list[str], timeout_s: float = 600, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([airflow_bin(), *args], env=self.env(), stdin=subprocess.DEVNULL,
                              timeout=timeout_s, **kwargs)

    def health(self, timeout_s: float = 3) -> dict:
        return api_health(self.url, timeout_s)

    def unhealthy(self) -> list[str]:
        return unhealthy(self.health())

    @contextmanager
    def _locked(self, wait_s: float = 10) -> Iterator[None]:
        with exclusive_lock(self.root / "ui.lock", wait_s, "whoiscrawl ui up/down", UIError):
            yield

    # --- up / status / down ----------------------------------------------------------------
    def up(self, timeout_s: float = 300) -> str | None:
        """Start what is not running; returns the admin password when this call created it."""
        from whoiscrawl.devtools.stack import Stack

        states = Stack(self.settings, out=lambda text: self.say(f"stack: {text}")).up()
        if not all(state.healthy for state in states):
            raise UIError("the local stack is not healthy: "
                          + ", ".join(state.name for state in states if not state.healthy))
        with self._locked():
            procs = {name: self.process(name) for name in COORDINATOR_PROCESSES}
            missing = [name for name, p in procs.items() if p.live_pid() is None]
            if "api-server" in missing and port_in_use(UI_HOST, self.settings.UI_PORT):
                raise UIError(f"port {self.settings.UI_PORT} is taken by a process this UI did not start "
                              f"(set {PREFIX}UI_PORT to another port)")
            created = self._create_password()
            env = self.env()
            if missing:
                ensure_db(env)
            commands = {"api-server": ["api-server", "--host", UI_HOST, "--port", str(self.settings.UI_PORT),
                                       "--workers", "1"],
                        "scheduler": ["scheduler"], "dag-processor": ["dag-processor"], "triggerer": ["triggerer"]}
            for name in missing:
                pid = procs[name].start([airflow_bin(), *commands[name]], env, self.root / "airflow")
                self.say(f"airflow {name}: started (pid {pid}), log {procs[name].log_path}")
            self._wait_healthy(procs, timeout_s)
            self._unpause(timeout_s)
        return created

    def _wait_healthy(self, procs: dict[str, ManagedProcess], timeout_s: float) -> None:
        def detail() -> str:
            dead = [n for n, p in procs.items() if p.live_pid() is None]
            parts = [f"exited: {', '.join(dead)}"] if dead else []
            for name in dead or list(procs):
                parts.append(f"--- {procs[name].log_path} ---\n{procs[name].log_tail(15)}")
            return "\n".join(parts)

        deadline = time.monotonic() + timeout_s
        parts = ["api-server", *HEALTH_COMPONENTS]
        with Progress("ui: airflow healthy", total=len(parts), unit="components") as progress:
            while unhealthy := self.unhealthy():
                progress.update(len(parts) - len(unhealthy) if "api-server" not in unhealthy else 0,
                                f"waiting for {', '.join(unhealthy)}")
                if any(p.live_pid() is None for p in procs.values()):
                    raise UIError(f"an Airflow process exited while starting\n{detail()}")
                if time.monotonic() >= deadline:
                    raise UIError(f"airflow ({', '.join(unhealthy)}) not healthy within {timeout_s:g} s\n{detail()}")
                time.sleep(2.0)
            progress.update(len(parts), "")

    def _unpause(self, timeout_s: float) -> None:
        """Unpause the DAG once the dag-processor has parsed it (it is created paused): a triggered run starts."""
        deadline = time.monotonic() + timeout_s
        while True:
            done = self.airflow(["dags", "unpause", DAG_ID], timeout_s=120, capture_output=True, text=True)
            if done.returncode == 0:
                return
            if time.monotonic() >= deadline:
                raise UIError(f"airflow dags unpause {DAG_ID} failed:\n{done.stdout[-1000:]}{done.stderr[-2000:]}")
            time.sleep(3.0)

    def status(self) -> list[tuple[str, int | None]]:
        return [(name, self.process(name).live_pid()) for name in COORDINATOR_PROCESSES]

    def down(self, timeout_s: float = 30) -> list[str]:
        stopped = []
        with self._locked():
            for name in reversed(COORDINATOR_PROCESSES):
                if self.process(name).stop(timeout_s):
                    stopped.append(name)
                    self.say(f"airflow {name}: stopped")
        return stopped


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="whoiscrawl ui", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    up = sub.add_parser("up", help="start the stack and the Airflow UI (the default)")
    up.add_argument("--timeout", type=float, default=300)
    sub.add_parser("status", help="which of the UI's Airflow processes run")
    down = sub.add_parser("down", help="stop the UI's Airflow processes (the stack keeps running)")
    down.add_argument("--timeout", type=float, default=30)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "up"
    ui = LocalUI()
    try:
        if command == "up":
            password = ui.up(timeout_s=getattr(args, "timeout", 300))
            print(f"Airflow UI: {ui.url} (user {ADMIN_USER})")
            if password:
                print(f"password (shown once; kept in {ui.passwords_path}): {password}")
            else:
                print(f"password: in {ui.passwords_path}")
            print("runs from the form crawl the simulator unless `bootstrap` is set; `whoiscrawl ui down` stops it")
            return 0
        if command == "status":
            states = ui.status()
            for name, pid in states:
                print(f"{name:14} {'running (pid %d)' % pid if pid else 'stopped'}")
            healthy = not ui.unhealthy()
            print(f"{'api':14} {ui.url} {'healthy' if healthy else 'not healthy'}")
            return 0 if healthy and all(pid for _n, pid in states) else 1
        if command == "down":
            ui.down(timeout_s=args.timeout)
            return 0
    except (WhoiscrawlError, subprocess.TimeoutExpired) as exc:
        print(f"whoiscrawl ui {command}: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(command)


if __name__ == "__main__":
    sys.exit(main())
