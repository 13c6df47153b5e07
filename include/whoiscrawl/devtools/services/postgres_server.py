"""A PostgreSQL cluster owned by the project: created, started and stopped in a folder of ours.

The fleet's Airflow keeps its metadata and Celery results in PostgreSQL (SQLite
cannot serve several machines). We never touch a system-wide cluster: the
project runs its own one, ``initdb``-ed in ``root/data``, listening on one
address and port of our choosing, with its unix socket in ``root/socket``.

PostgreSQL refuses to run as root, so when we are root the server runs as the
``postgres`` system user (Debian's package creates it) and ``root`` is handed
to that user; otherwise it runs as whoever we are.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from whoiscrawl.devtools.services import MissingDependency
from whoiscrawl.devtools.services.procs import log_tail
from whoiscrawl.errors import WhoiscrawlError

__all__ = ["PostgresServer", "PostgresError", "find_pg_bin_dir", "SERVER_USER"]

SERVER_USER = "postgres"  # the system user the server runs as when we are root
_PROGRAMS = ("initdb", "pg_ctl")
_INSTALL_HINT = "PostgreSQL server programs (initdb, pg_ctl) not found: apt-get install postgresql"
_CONF_NAME = "whoiscrawl.conf"


class PostgresError(WhoiscrawlError):
    """The cluster could not be created, started, stopped or set up; the message says why."""


def find_pg_bin_dir(configured: str = "") -> Path:
    """Folder holding ``initdb`` and ``pg_ctl``: the setting, then PATH, then Debian's newest version."""
    candidates: list[Path] = []
    if configured:
        candidates.append(Path(configured))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    # Debian keeps the server programs off PATH, one folder per major version.
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0, reverse=True)
    candidates += [Path(p) for p in versions]
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in _PROGRAMS):
            return folder
    if configured:
        raise MissingDependency(f"{_INSTALL_HINT} (WHOISCRAWL_POSTGRES_BIN_DIR={configured!r} lacks them)")
    raise MissingDependency(_INSTALL_HINT)


class PostgresServer:
    """One cluster: ``root/data`` (PGDATA), ``root/postgres.log``, ``root/socket``."""

    def __init__(self, root: Path, port: int, listen: str, allow_subnet: str, bin_dir: str = "",
                 superuser: str | None = None) -> None:
        self.root = Path(root).resolve()
        self.port = int(port)
        self.listen = listen
        self.allow_subnet = allow_subnet
        self._bin_dir_setting = bin_dir
        self.run_as = SERVER_USER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self.superuser = superuser or self.run_as

    # --- paths ------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def _bin(self, name: str) -> str:
        return str(find_pg_bin_dir(self._bin_dir_setting) / name)

    # --- running commands as the server's user -----------------------------------------
    def _user_kwargs(self) -> dict:
        if os.geteuid() != 0:
            return {}
        try:
            entry = pwd.getpwnam(self.run_as)
        except KeyError:
            raise MissingDependency(f"system user {self.run_as!r} not found (PostgreSQL refuses to run as "
                                    f"root; apt-get install postgresql creates it)") from None
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _run(self, args: list[str], timeout_s: float) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=timeout_s, cwd=self.root, **self._user_kwargs())
        except subprocess.TimeoutExpired:
            raise PostgresError(f"{Path(args[0]).name} did not finish within {timeout_s:g} s") from None

    def _prepare_root(self) -> None:
        """Create ``root`` owned by the server's user, and prove that user can reach it."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        kwargs = self._user_kwargs()
        if kwargs:
            for path in (self.root, self.socket_dir):
                os.chown(path, kwargs["user"], kwargs["group"])
            if self.data_dir.exists():
                os.chown(self.data_dir, kwargs["user"], kwargs["group"])
        os.chmod(self.socket_dir, 0o700)
        probe = self._run(["test", "-w", str(self.root)], timeout_s=10)
        if probe.returncode != 0:
            raise PostgresError(f"user {self.run_as!r} cannot write {self.root}: every folder above it must "
                                f"be searchable by that user (e.g. chmod o+x), or choose another WHOISCRAWL_HOME")

    # --- lifecycle ----------------------------------------------------------------------
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def init(self) -> bool:
        """``initdb`` once; returns True when it created the cluster."""
        self._prepare_root()
        if self.initialized():
            return False
        done = self._run([self._bin("initdb"), "-D", str(self.data_dir), "-U", self.superuser,
                          "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                          "--locale=C.UTF-8"], timeout_s=180)
        if done.returncode != 0:
            raise PostgresError(f"initdb failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
        conf = self.data_dir / "postgresql.conf"
        with open(conf, "a", encoding="utf-8") as fh:
            fh.write(f"\ninclude_if_exists '{_CONF_NAME}'\n")
        return True

    def write_config(self) -> None:
        """Listen address, port, socket and access rules: rewritten on every start (they may change)."""
        settings = {
            "listen_addresses": f"'{self.listen}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": "300",  # each Airflow process and Celery pool slot holds a few
            "shared_buffers": "64MB",
            "password_encryption": "scram-sha-256",
            "log_min_messages": "warning",
        }
        (self.data_dir / _CONF_NAME).write_text(
            "# Written by whoiscrawl.devtools.services.postgres_server on every start.\n"
            + "".join(f"{k} = {v}\n" for k, v in settings.items()), encoding="utf-8")
        # Only our socket (0700 folder) and the fleet's subnet get in; nothing else.
        (self.data_dir / "pg_hba.conf").write_text(
            "# Written by whoiscrawl.devtools.services.postgres_server on every start.\n"
            "local all all trust\n"
            f"host all all {self.allow_subnet} scram-sha-256\n", encoding="utf-8")
        kwargs = self._user_kwargs()
        if kwargs:
            for name in (_CONF_NAME, "pg_hba.conf"):
                os.chown(self.data_dir / name, kwargs["user"], kwargs["group"])

    def is_running(self) -> bool:
        if not self.initialized():
            return False
        return self._run([self._bin("pg_ctl"), "status", "-D", str(self.data_dir)], timeout_s=15).returncode == 0

    def pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self, timeout_s: float = 60) -> bool:
        """Start the cluster (creating it first if needed); True when it was started now."""
        self.init()
        if self.is_running():
            return False
        self.write_config()
        done = self._run([self._bin("pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_path),
                          "-w", "-t", str(int(timeout_s)), "-s"], timeout_s=timeout_s + 15)
        if done.returncode != 0:
            raise PostgresError(f"pg_ctl start failed ({done.returncode}) for {self.listen}:{self.port}:\n"
                                f"{(done.stdout + done.stderr)[-2000:]}\n{self.log_tail()}")
        return True

    def stop(self, timeout_s: float = 30) -> bool:
        """Fast shutdown (disconnects clients); True when a running server was stopped."""
        if not self.is_running():
            return False
        done = self._run([self._bin("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w",
                          "-t", str(int(timeout_s)), "-s"], timeout_s=timeout_s + 15)
        if done.returncode != 0:
            done = self._run([self._bin("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "immediate",
                              "-w", "-t", "15", "-s"], timeout_s=30)
            if done.returncode != 0:
                raise PostgresError(f"pg_ctl stop failed ({done.returncode}):\n{(done.stdout + done.stderr)[-2000:]}")
        return True

    # --- databases ----------------------------------------------------------------------
    def admin_connect(self):
        """A superuser connection over our unix socket (trust: only the socket's owner and root reach it)."""
        import psycopg2

        return psycopg2.connect(host=str(self.socket_dir), port=self.port, user=self.superuser,
                                dbname="postgres", connect_timeout=10)

    def ensure_database(self, name: str, user: str, password: str) -> None:
        """Role ``user`` with ``password`` owning database ``name``; idempotent."""
        from psycopg2 import sql

        conn = self.admin_connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(user)),
                            (password,))
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if not cur.fetchone():
                    cur.execute(sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8'").format(
                        sql.Identifier(name), sql.Identifier(user)))
        finally:
            conn.close()

    def healthy(self, user: str, password: str, dbname: str, timeout_s: int = 3) -> bool:
        """True when ``user`` can log in over TCP on the listen address (what every client does)."""
        import psycopg2

        try:
            conn = psycopg2.connect(host=self.listen, port=self.port, user=user, password=password,
                                    dbname=dbname, connect_timeout=timeout_s)
        except psycopg2.Error:
            return False
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                return cur.fetchone() == (1,)
        finally:
            conn.close()

    def log_tail(self, lines: int = 20) -> str:
        return "--- postgres.log ---\n" + log_tail(self.log_path, lines=lines)
