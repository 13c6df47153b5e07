"""RedisServer really starts, answers, replicates and goes away, within bounded time."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from redis_testing import wait_for_all_replicas

from whoiscrawl.devtools.services import MissingDependency, free_port
from whoiscrawl.devtools.services import redis_server as rs
from whoiscrawl.devtools.services.redis_server import RedisServer, RedisServerError, find_redis_server


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still "exists"; treat it as gone
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return True


def test_free_port_is_bindable():
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_start_answer_and_stop(tmp_path):
    server = RedisServer(tmp_path, free_port())
    with server:
        assert server.is_running()
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        conn = server.client()
        conn.set("k", "v")
        assert conn.get("k") == b"v"
        config = conn.config_get("save")
        assert config["save"] == ""
        assert conn.config_get("appendonly")["appendonly"] == "no"
        assert (tmp_path / RedisServer.PID_NAME).exists()
        assert server.log_path.exists()
        pid = server.pid
        # own process group, so stopping it never signals the test runner
        assert os.getpgid(pid) == pid != os.getpgid(0)
        conn.close()
    assert not server.is_running()
    assert not _alive(pid)
    server.stop()  # idempotent


def test_extra_overrides_defaults(tmp_path):
    with RedisServer(tmp_path, free_port(), extra={"appendonly": "yes", "maxmemory": "64mb"}) as server:
        conn = server.client()
        assert conn.config_get("appendonly")["appendonly"] == "yes"
        assert int(conn.config_get("maxmemory")["maxmemory"]) == 64 * 1024 * 1024
        conn.close()


def test_port_in_use_raises_with_log_tail(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = RedisServer(tmp_path, port)
        started = time.monotonic()
        with pytest.raises(RedisServerError) as info:
            server.start(timeout_s=5)
        assert time.monotonic() - started < 5
    assert "exited" in str(info.value)
    assert "redis.log" in str(info.value) or "redis.stderr" in str(info.value)
    assert not server.is_running()


def test_stop_escalates_when_server_does_not_answer(tmp_path):
    server = RedisServer(tmp_path, free_port()).start()
    pid = server.pid
    os.kill(pid, signal.SIGSTOP)  # frozen: SHUTDOWN and SIGTERM go unanswered
    started = time.monotonic()
    server.stop(timeout_s=1.5)
    assert time.monotonic() - started < 4
    assert not server.is_running()
    assert not _alive(pid)


def test_missing_binary_names_the_package(monkeypatch):
    monkeypatch.delenv("WHOISCRAWL_REDIS_SERVER_BIN", raising=False)
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(rs, "_EXTRA_DIRS", ())
    with pytest.raises(MissingDependency, match="apt-get install redis-server"):
        find_redis_server()


def test_binary_override_must_be_executable(monkeypatch, tmp_path):
    monkeypatch.setenv("WHOISCRAWL_REDIS_SERVER_BIN", str(tmp_path / "nope"))
    with pytest.raises(MissingDependency, match="redis-server"):
        find_redis_server()


def test_replica_reads_master_and_keeps_local_writes(redis_master, redis_replica, redis_flush):
    master, replica = redis_master.client(), redis_replica.client()
    try:
        assert replica.info("replication")["role"] == "slave"
        master.set("shared", "1")
        wait_for_all_replicas(master)
        assert replica.get("shared") == b"1"
        # writable replica: per-host state stays on this host
        replica.set("local-only", "x", px=60_000)
        assert replica.get("local-only") == b"x"
        assert master.get("local-only") is None
    finally:
        master.close()
        replica.close()


def test_replica_requires_replicaof(tmp_path):
    with pytest.raises(RedisServerError, match="not a replica"):
        RedisServer(tmp_path, free_port()).wait_master_link(timeout_s=0.1)


def test_server_dies_with_a_killed_parent(tmp_path):
    """A test run killed by a timeout must not leave its servers running."""
    if rs.shutil.which("setpriv", path=os.pathsep.join([os.environ.get("PATH", ""), *rs._EXTRA_DIRS])) is None:
        pytest.skip("util-linux setpriv not installed")
    port = free_port()
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from whoiscrawl.devtools.services.redis_server import RedisServer\n"
        f"s = RedisServer(Path({str(tmp_path)!r}), {port}, die_with_parent=True).start()\n"
        "print(s.pid, flush=True)\n"
        "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        assert _alive(pid)
        parent.send_signal(signal.SIGTERM)  # like `timeout`: no atexit, no finalizers
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=5)


def test_start_does_not_mistake_another_server_on_the_port_for_its_own(tmp_path):
    with RedisServer(tmp_path / "first", free_port()) as first:
        second = RedisServer(tmp_path / "second", first.port)
        with pytest.raises(RedisServerError, match="exited"):
            second.start(timeout_s=5)
        assert first.is_running() and first.client().ping()
