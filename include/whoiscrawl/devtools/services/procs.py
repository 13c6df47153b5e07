"""Processes the project starts itself: pidfiles that prove ownership, port probes, log tails, locks.

Every service manager (the stack's Redis, Kafka and simulator; the fleet's PostgreSQL, Airflow
processes and workers) uses these, so that "never touch a service we did not start" means the same
thing everywhere.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from whoiscrawl.errors import WhoiscrawlError


class LockBusy(WhoiscrawlError):
    """Another command holds the lock of this home (an ``up`` or ``down`` is under way)."""


@contextmanager
def exclusive_lock(path: Path, wait_s: float, what: str,
                   error: type[Exception] = LockBusy) -> Iterator[None]:
    """Hold an flock on ``path`` for the block; at most ``wait_s`` of waiting, then ``error`` naming ``what``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise error(f"another `{what}` holds {path}") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on ``host:port`` (we try to bind it like a server would)."""
    probe_host = "" if host in ("0.0.0.0", "*") else host
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR, so a TIME_WAIT leftover of our last run is not "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((probe_host, port))
        except OSError as exc:
            # other errors (an address not on this machine, a privileged port) are the
            # service's to report when it binds
            return exc.errno == errno.EADDRINUSE
    return False


def log_tail(path: Path, offset: int = 0, lines: int = 30) -> str:
    """Last lines of a log file from ``offset`` on, for error messages."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log output)"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "(no log output)"


def word_matches(word: str, needle: str) -> bool:
    """A needle matches a command-line word equal to it, a path ending in ``/<needle>``, or,
    for a needle starting with ':', a word ending with it (redis-server retitles itself
    ``redis-server HOST:PORT``)."""
    if word == needle or word.endswith("/" + needle):
        return True
    return needle.startswith(":") and word.endswith(needle)


class PidFile:
    """``<run>/<service>.pid`` plus the words its process's command line must contain.

    A pid alone is not proof: after a reboot or a crash the number may belong to
    an unrelated process. Only a live, non-zombie process whose
    ``/proc/<pid>/cmdline`` has a word matching each of ``needles`` (and, when
    ``cwd`` is given, whose working directory is ``cwd``: every service runs in
    its own data folder) counts as ours; anything else makes the pidfile stale,
    and a stale pidfile is removed, never acted upon.
    """

    def __init__(self, path: Path, needles: Sequence[str], cwd: Path | None = None) -> None:
        self.path = Path(path)
        self.needles = tuple(needles)
        self.cwd = Path(cwd).resolve() if cwd is not None else None

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(f"{pid}\n", encoding="ascii")
        tmp.replace(self.path)

    def read(self) -> int | None:
        """The pid written in the file, whatever it points to; None without a readable pidfile."""
        try:
            return int(self.path.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return None

    @staticmethod
    def argv(pid: int) -> list[str] | None:
        """The process's arguments as the kernel shows them; None when gone or a zombie."""
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
            # the state follows the parenthesised command name, which may contain spaces
            if stat[stat.rindex(b")") + 2:][:1] == b"Z":
                return None
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                raw = fh.read()
        except (OSError, ValueError):
            return None
        args = [a.decode("utf-8", errors="replace") for a in raw.split(b"\0") if a]
        return args or None

    @classmethod
    def cmdline(cls, pid: int) -> str | None:
        args = cls.argv(pid)
        return " ".join(args) if args else None

    def matches(self, pid: int) -> bool:
        """True when each needle matches an argument, or a word of one (see :func:`word_matches`)."""
        args = self.argv(pid)
        if args is None:
            return False
        words = set(args)
        for arg in args:  # a process that retitles itself puts several words in one argument
            words.update(arg.split())
        if not all(any(word_matches(word, needle) for word in words) for needle in self.needles):
            return False
        if self.cwd is not None:
            try:
                return Path(os.readlink(f"/proc/{pid}/cwd")) == self.cwd
            except OSError:
                return False
        return True

    def live_pid(self) -> int | None:
        """The pid if the file names a live process of ours, else None (the file is left as is)."""
        pid = self.read()
        if pid is None or pid <= 1:
            return None
        return pid if self.matches(pid) else None

    def state(self) -> str:
        """``running`` (ours and alive), ``stale`` (file names no process of ours) or ``absent``."""
        if not self.path.exists():
            return "absent"
        return "running" if self.live_pid() is not None else "stale"

    def clear_stale(self) -> bool:
        """Remove the file if it is stale; True when it was removed."""
        if self.state() == "stale":
            self.remove()
            return True
        return False

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def terminate(self, timeout_s: float, proc: subprocess.Popen | None = None) -> bool:
        """SIGTERM our process (its group when it leads one), wait, then SIGKILL; remove the file.

        Returns True when a live process of ours was signalled. ``proc`` lets the
        process that started the service reap its child instead of leaving a zombie.
        """
        pid = self.live_pid()
        if pid is None:
            self.remove()
            return False
        deadline = time.monotonic() + max(timeout_s, 0.1)
        self._signal(pid, signal.SIGTERM)
        if not self._wait_gone(pid, deadline, proc):
            self._signal(pid, signal.SIGKILL)
            self._wait_gone(pid, time.monotonic() + 10, proc)
        self.remove()
        return True

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _wait_gone(self, pid: int, deadline: float, proc: subprocess.Popen | None) -> bool:
        while True:
            if proc is not None and proc.pid == pid:
                if proc.poll() is not None:
                    return True
            else:
                try:  # reap it if it happens to be our child (tests start services in-process)
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
                if self.argv(pid) is None:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
