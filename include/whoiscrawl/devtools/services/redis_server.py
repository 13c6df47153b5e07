"""Start and stop a real ``redis-server`` process owned by the project.

The local stack, the fleet's per-host replicas, the tests and the benches all
need a Redis they control: on a port of their choosing, with data in a folder
they own, without persistence unless asked, and reliably gone afterwards. This
module does only that; what is stored in Redis is other modules' business.

Replicas are started with ``replica-read-only no`` when asked: each host keeps
its per-host rate budget in its local replica, and writes made on a replica stay
local (they are not propagated to the master or to other replicas), which is
exactly what per-host state needs.

With ``users`` (ACL lines, see ``whoiscrawl.devtools.credentials``) the
``default`` user is switched off, so every client must log in; the server's
own probes log in as ``auth``, a replica logs in to its master as
``masterauth``. The config file holds the passwords and is written mode 0600.
``protected-mode no`` is refused without users: a server reachable from other
addresses must require a password.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from whoiscrawl.devtools.services import MissingDependency, service_env
from whoiscrawl.errors import WhoiscrawlError

__all__ = ["RedisServer", "RedisServerError", "find_redis_server"]

_BINARY = "redis-server"
_INSTALL_HINT = "redis-server not found: apt-get install redis-server"
# Debian puts it in /usr/bin; some images keep /usr/sbin and /usr/local/bin off PATH.
_EXTRA_DIRS = ("/usr/local/bin", "/usr/bin", "/usr/sbin")


class RedisServerError(WhoiscrawlError):
    """The server did not come up (or not in time); the message carries its log tail."""


def find_redis_server() -> str:
    """Path of the ``redis-server`` binary, or :class:`MissingDependency` naming the package."""
    override = os.environ.get("WHOISCRAWL_REDIS_SERVER_BIN", "")
    if override:
        if os.access(override, os.X_OK):
            return override
        raise MissingDependency(f"{_INSTALL_HINT} (WHOISCRAWL_REDIS_SERVER_BIN={override!r} is not executable)")
    search = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_DIRS])
    found = shutil.which(_BINARY, path=search)
    if not found:
        raise MissingDependency(_INSTALL_HINT)
    return found


def _quote(value: str) -> str:
    """Quote a config value so paths with spaces or quotes survive Redis's config parser."""
    if value == "":
        return '""'
    if any(c in value for c in ' \t"\'\\'):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def _kill_group(proc: subprocess.Popen) -> None:
    """Last-resort cleanup (garbage collection or interpreter exit): kill our server's group."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


class RedisServer:
    """One ``redis-server`` process: config in ``data_dir``, foreground, its own process group."""

    CONFIG_NAME = "redis.conf"
    LOG_NAME = "redis.log"
    STDERR_NAME = "redis.stderr"
    PID_NAME = "redis.pid"

    def __init__(self, data_dir: Path, port: int, bind: str = "127.0.0.1",
                 replicaof: tuple[str, int] | None = None, replica_read_only: bool = False,
                 extra: dict[str, str] | None = None, die_with_parent: bool = False,
                 users: Sequence[str] = (), auth: tuple[str, str] | None = None,
                 masterauth: tuple[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.users = tuple(users)
        self.auth = auth
        self.masterauth = masterauth
        self.port = int(port)
        self.bind = bind
        self.replicaof = replicaof
        self.replica_read_only = replica_read_only
        self.extra = dict(extra or {})
        #: Tests and benches: have the kernel stop the server if the starting process is killed
        #: (SIGTERM from a timeout skips every cleanup). Needs util-linux ``setpriv``; the signal
        #: follows the *thread* that called start(), so start from a thread that lives as long.
        self.die_with_parent = die_with_parent
        self._proc: subprocess.Popen | None = None
        self._finalizer: weakref.finalize | None = None

    # --- addresses --------------------------------------------------------------------
    @property
    def host(self) -> str:
        """Address a client on this machine connects to (a wildcard bind is reached on loopback)."""
        return "127.0.0.1" if self.bind in ("0.0.0.0", "*", "") else self.bind

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def config_path(self) -> Path:
        return self.data_dir / self.CONFIG_NAME

    @property
    def log_path(self) -> Path:
        return self.data_dir / self.LOG_NAME

    def client(self, **kwargs) -> redis.Redis:
        """A new ``redis.Redis`` connected to this server (db 0 unless given); kwargs go to the client."""
        kwargs.setdefault("db", 0)
        kwargs.setdefault("socket_timeout", 10)
        kwargs.setdefault("socket_connect_timeout", 5)
        if self.auth is not None:
            kwargs.setdefault("username", self.auth[0])
            kwargs.setdefault("password", self.auth[1])
        return redis.Redis(host=self.host, port=self.port, **kwargs)

    def _probe_client(self, timeout_s: float) -> redis.Redis:
        """A client that fails fast (no retries), so our own waits stay bounded."""
        return self.client(socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                           retry=Retry(NoBackoff(), 0))

    # --- config -------------------------------------------------------------------------
    def config_lines(self) -> list[str]:
        """The config file's lines; ``extra`` overrides any default (e.g. ``save``, ``appendonly``)."""
        settings: dict[str, str] = {
            "bind": self.bind,
            "port": str(self.port),
            "daemonize": "no",
            "dir": str(self.data_dir.resolve()),
            "pidfile": str((self.data_dir / self.PID_NAME).resolve()),
            "logfile": str(self.log_path.resolve()),
            "save": "",
            "appendonly": "no",
        }
        if self.replicaof is not None:
            settings["replicaof"] = f"{self.replicaof[0]} {int(self.replicaof[1])}"
            settings["replica-read-only"] = "yes" if self.replica_read_only else "no"
        if self.masterauth is not None:
            settings["masteruser"], settings["masterauth"] = self.masterauth
        settings.update(self.extra)
        if settings.get("protected-mode") == "no" and not self.users:
            raise RedisServerError("protected-mode no without ACL users would let anyone in: give users")
        lines = []
        for name, value in settings.items():
            # bind and replicaof take several words; everything else is one value.
            text = value if name in ("bind", "replicaof") else _quote(str(value))
            lines.append(f"{name} {text}")
        if self.users:
            lines.append("user default off resetpass resetkeys resetchannels -@all")
            lines += [f"user {line}" for line in self.users]
        return lines

    def write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # it may hold passwords
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(self.config_lines()) + "\n")
        return self.config_path

    # --- lifecycle ----------------------------------------------------------------------
    def start(self, timeout_s: float = 10) -> "RedisServer":
        """Start the server and return once it answers; raise :class:`RedisServerError` if not."""
        if self.is_running():
            return self
        binary = find_redis_server()
        config = self.write_config()
        command = [binary, str(config)]
        setpriv = shutil.which("setpriv", path=os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_DIRS]))
        if self.die_with_parent and setpriv:
            command = [setpriv, "--pdeathsig", "TERM", "--", *command]  # execs: same pid
        stderr = open(self.data_dir / self.STDERR_NAME, "ab")
        try:
            self._proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, env=service_env(),
                start_new_session=True, close_fds=True)
        finally:
            stderr.close()
        self._finalizer = weakref.finalize(self, _kill_group, self._proc)
        deadline = time.monotonic() + timeout_s
        probe = self._probe_client(0.5)
        try:
            while True:
                if self._proc.poll() is not None:
                    code = self._proc.returncode
                    self._cleanup()
                    raise RedisServerError(
                        f"redis-server on {self.host}:{self.port} exited with code {code} while starting\n"
                        f"{self.log_tail()}")
                try:
                    # ours, not another server that took the port between free_port() and our bind
                    if int(probe.info("server")["process_id"]) == self._proc.pid:
                        return self
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if time.monotonic() >= deadline:
                    self.stop(timeout_s=5)
                    raise RedisServerError(
                        f"redis-server on {self.host}:{self.port} did not answer within {timeout_s:g} s\n"
                        f"{self.log_tail()}")
                time.sleep(0.02)
        finally:
            probe.close()

    def stop(self, timeout_s: float = 10) -> None:
        """SHUTDOWN NOSAVE, then SIGTERM, then SIGKILL to the group, each bounded; idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            step = max(timeout_s / 3, 0.1)
            try:
                conn = self._probe_client(step)
                try:
                    conn.shutdown(nosave=True)
                finally:
                    conn.close()
            except (redis.RedisError, OSError):
                pass  # the server closes the connection as it exits, or it was not answering
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None:
                    try:
                        os.killpg(proc.pid, sig)
                    except (ProcessLookupError, PermissionError):
                        pass
                try:
                    proc.wait(timeout=step)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._cleanup()

    def _cleanup(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._proc is not None and self._proc.poll() is None:
            _kill_group(self._proc)
        self._proc = None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait_master_link(self, timeout_s: float = 10) -> None:
        """For a replica: wait until ``master_link_status:up`` (initial sync done)."""
        if self.replicaof is None:
            raise RedisServerError("not a replica: no replicaof given")
        deadline = time.monotonic() + timeout_s
        conn = self._probe_client(1.0)
        try:
            while True:
                try:
                    if conn.info("replication").get("master_link_status") == "up":
                        return
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
                if time.monotonic() >= deadline:
                    raise RedisServerError(
                        f"replica {self.host}:{self.port} did not link to its master "
                        f"{self.replicaof[0]}:{self.replicaof[1]} within {timeout_s:g} s\n{self.log_tail()}")
                time.sleep(0.02)
        finally:
            conn.close()

    def log_tail(self, lines: int = 20) -> str:
        """Last lines of the server's log and stderr, for error messages."""
        parts = []
        for path in (self.log_path, self.data_dir / self.STDERR_NAME):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            tail = text.splitlines()[-lines:]
            if tail:
                parts.append(f"--- {path.name} ---\n" + "\n".join(tail))
        return "\n".join(parts) or "(no log output)"

    # --- context manager ----------------------------------------------------------------
    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        role = f" replicaof={self.replicaof[0]}:{self.replicaof[1]}" if self.replicaof else ""
        return f"<RedisServer {self.url}{role} {state}>"
