"""The local stack's guards and files: pidfile/cmdline check, connection env, missing binaries, ports.

No Kafka here (see tests/integration/test_stack.py); the simulator's start-up
handling is exercised with a tiny stand-in HTTP server that follows the
simulator's contract (``ready <url>`` on stdout, ``/_stats`` answers 200).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from whoiscrawl.devtools import stack as stack_mod
from whoiscrawl.devtools.services import MissingDependency, free_port
from whoiscrawl.devtools.services import kafka_broker as kb
from whoiscrawl.devtools.services.procs import PidFile, word_matches
from whoiscrawl.settings import Settings
from whoiscrawl.devtools.credentials import ClusterCredentials
from whoiscrawl.devtools.stack import Stack, StackError, connection_env, env_file_text


def _alive(pid: int) -> bool:
    return PidFile.argv(pid) is not None


def _settings(home: Path, **extra) -> Settings:
    """Settings for a stack in ``home`` on free ports (nothing from this shell's environment)."""
    values = {"HOME": str(home), "REDIS_PORT": free_port(), "KAFKA_PORT": free_port(),
              "KAFKA_CONTROLLER_PORT": free_port(), "SIM_BASE_PORT": free_port()}
    values.update(extra)
    return Settings(values, environ={})


@pytest.fixture
def sleeper():
    """An unrelated live process (``sleep``), killed at the end whatever happens."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=5)


# --- pidfile / cmdline guard ----------------------------------------------------------------

def test_pidfile_of_unrelated_process_is_stale_and_not_killed(tmp_path, sleeper):
    pidfile = PidFile(tmp_path / "run" / "kafka.pid", ("kafka.Kafka", str(tmp_path / "server.properties")))
    pidfile.write(sleeper.pid)
    assert pidfile.read() == sleeper.pid
    assert pidfile.live_pid() is None
    assert pidfile.state() == "stale"
    assert pidfile.terminate(timeout_s=1) is False
    assert not pidfile.path.exists()
    time.sleep(0.1)
    assert sleeper.poll() is None, "the unrelated process must not be signalled"


def test_pidfile_of_dead_process_is_stale(tmp_path):
    proc = subprocess.Popen(["true"])
    proc.wait(timeout=5)
    pidfile = PidFile(tmp_path / "x.pid", ("true",))
    pidfile.write(proc.pid)
    assert pidfile.state() == "stale"
    assert pidfile.clear_stale() is True
    assert pidfile.state() == "absent"


def test_pidfile_of_our_process_is_running_and_terminated(tmp_path):
    cmd = [sys.executable, "-c", "import time; time.sleep(60)", "whoiscrawl.simulator",
           "--base-port", "18080", "--cache-dir", str(tmp_path / "cache dir")]
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        pidfile = PidFile(tmp_path / "sim.pid",
                          ("whoiscrawl.simulator", "--base-port", "18080", "--cache-dir",
                           str(tmp_path / "cache dir")))
        other_port = PidFile(tmp_path / "sim.pid", ("whoiscrawl.simulator", "--base-port", "18081"))
        pidfile.write(proc.pid)
        assert pidfile.live_pid() == proc.pid
        assert pidfile.state() == "running"
        assert other_port.live_pid() is None  # same program, other instance: not ours
        assert pidfile.terminate(timeout_s=5, proc=proc) is True
        assert proc.returncode == -signal.SIGTERM
        assert not pidfile.path.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


def test_pidfile_checks_working_directory(tmp_path, sleeper):
    assert PidFile(tmp_path / "a.pid", ("sleep",), cwd=Path.cwd()).matches(sleeper.pid)
    elsewhere = PidFile(tmp_path / "a.pid", ("sleep",), cwd=tmp_path)
    elsewhere.write(sleeper.pid)
    assert elsewhere.state() == "stale"
    assert elsewhere.terminate(timeout_s=1) is False
    assert sleeper.poll() is None


def test_terminate_escalates_to_sigkill(tmp_path):
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ok', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code, "stubborn"], stdout=subprocess.PIPE,
                            start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == b"ok"
        pidfile = PidFile(tmp_path / "s.pid", ("stubborn",))
        pidfile.write(proc.pid)
        started = time.monotonic()
        assert pidfile.terminate(timeout_s=0.5, proc=proc) is True
        assert time.monotonic() - started < 5
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        proc.stdout.close()


@pytest.mark.parametrize("word, needle, expected", [
    ("kafka.Kafka", "kafka.Kafka", True),
    ("/usr/bin/redis-server", "redis-server", True),
    ("127.0.0.1:16379", ":16379", True),
    ("127.0.0.1:163790", ":16379", False),
    ("/tmp/other-redis-server-x", "redis-server", False),
    ("18080", "1808", False),
])
def test_word_matches(word, needle, expected):
    assert word_matches(word, needle) is expected


def test_status_removes_stale_pidfile_without_killing(tmp_path, sleeper):
    settings = _settings(tmp_path / "home")
    lines: list[str] = []
    stack = Stack(settings, out=lines.append)
    pidfile = stack.home / "run" / "simulator.pid"
    pidfile.parent.mkdir(parents=True)
    pidfile.write_text(f"{sleeper.pid}\n")
    states = {s.name: s for s in stack.status()}
    assert not states["simulator"].healthy and states["simulator"].pid is None
    assert not pidfile.exists()
    assert any("stale pidfile" in line and str(sleeper.pid) in line for line in lines)
    assert sleeper.poll() is None
    assert [s.name for s in states.values()] == ["redis", "kafka", "simulator"]
    assert all(not s.healthy for s in states.values())


def test_down_with_unrelated_pidfiles_kills_nothing(tmp_path, sleeper):
    stack = Stack(_settings(tmp_path / "home"), out=lambda line: None)
    run = stack.home / "run"
    run.mkdir(parents=True)
    for name in ("redis", "kafka", "simulator"):
        (run / f"{name}.pid").write_text(f"{sleeper.pid}\n")
    assert stack.down(timeout_s=1) == []
    assert sleeper.poll() is None
    assert not list(run.glob("*.pid"))


def test_main_status_exit_code_when_down(tmp_path, monkeypatch, capsys):
    for key, value in _settings(tmp_path / "home").as_dict().items():
        monkeypatch.setenv("WHOISCRAWL_" + key, str(value))
    assert stack_mod.main(["status"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["redis", "kafka", "simulator"]
    assert all(line.rstrip().endswith("down (not running)") for line in out)


# --- connection environment ------------------------------------------------------------------

def test_connection_env_content(tmp_path):
    settings = _settings(tmp_path, REDIS_PORT=16001, KAFKA_PORT=19001, BIND_HOST="127.0.0.1")
    env = connection_env(settings)
    creds = ClusterCredentials.load_or_create(tmp_path)  # generated by the first call, 0600
    assert (tmp_path / "credentials.json").stat().st_mode & 0o777 == 0o600
    assert env["AIRFLOW_CONN_REDIS_DEFAULT"] == f"redis://crawl:{creds.redis_crawl}@127.0.0.1:16001/0"
    kafka = json.loads(env["AIRFLOW_CONN_KAFKA_DEFAULT"])
    assert kafka == {"conn_type": "kafka", "extra": {
        "bootstrap.servers": "127.0.0.1:19001", "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "crawl", "sasl.password": creds.kafka_crawl}}
    assert "WHOISCRAWL_SIM_BOOTSTRAP_URL" not in env  # unknown until the simulator said ready
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "bootstrap_url").write_text("http://127.0.0.1:18080/bootstrap/ipv4.json\n")
    env = connection_env(settings)
    assert env["WHOISCRAWL_SIM_BOOTSTRAP_URL"] == "http://127.0.0.1:18080/bootstrap/ipv4.json"
    assert env["WHOISCRAWL_BOOTSTRAP_URL_ALLOWLIST"] == "http://127.0.0.1:18080"


def test_scheduled_runs_on_the_local_stack_target_the_simulator(tmp_path, monkeypatch):
    """A run with an empty bootstrap Param on this stack crawls the simulator, unless the user named one."""
    from whoiscrawl.crawl.config import RunConfig

    settings = _settings(tmp_path, REDIS_PORT=16001, KAFKA_PORT=19001, BIND_HOST="127.0.0.1")
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "bootstrap_url").write_text("http://127.0.0.1:18080/bootstrap/ipv4.json\n")
    monkeypatch.delenv("WHOISCRAWL_BOOTSTRAP", raising=False)
    env = connection_env(settings)
    assert RunConfig.from_env({"bootstrap": ""}, environ=env).bootstrap == "http://127.0.0.1:18080/bootstrap/ipv4.json"
    monkeypatch.setenv("WHOISCRAWL_BOOTSTRAP", "/etc/my-mirror.json")
    assert connection_env(settings)["WHOISCRAWL_BOOTSTRAP"] == "/etc/my-mirror.json"


def test_connection_env_wildcard_bind_uses_loopback(tmp_path):
    env = connection_env(_settings(tmp_path, BIND_HOST="0.0.0.0", REDIS_PORT=16002))
    assert env["AIRFLOW_CONN_REDIS_DEFAULT"].endswith("@127.0.0.1:16002/0")


def test_env_file_loads_in_shell_and_airflow_hooks_read_it(tmp_path):
    settings = _settings(tmp_path, REDIS_PORT=16003, KAFKA_PORT=19003)
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "bootstrap_url").write_text("http://127.0.0.1:18080/b.json\n")
    env = connection_env(settings)
    path = tmp_path / "airflow-connections.env"
    path.write_text(env_file_text(env))
    # what a Makefile or a developer does: source it, then Airflow resolves the connections
    script = textwrap.dedent("""
        import json, os
        from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook
        from airflow.providers.redis.hooks.redis import RedisHook
        conn = RedisHook.get_connection("redis_default")
        print(json.dumps({"kafka": KafkaBaseHook()._build_config(),
                          "redis": [conn.host, conn.port, conn.login, conn.password],
                          "sim": os.environ["WHOISCRAWL_SIM_BOOTSTRAP_URL"]}))
    """)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "WHOISCRAWL_"))}
    done = subprocess.run(["bash", "-c", 'set -a; . "$1"; set +a; exec "$2" -c "$3"', "bash",
                           str(path), sys.executable, script],
                          capture_output=True, text=True, timeout=120, env=clean)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    creds = ClusterCredentials.load_or_create(tmp_path)
    assert seen == {"kafka": {"bootstrap.servers": "127.0.0.1:19003", **creds.kafka_client("crawl")},
                    "redis": ["127.0.0.1", 16003, "crawl", creds.redis_crawl], "sim": "http://127.0.0.1:18080/b.json"}


def test_main_env_prints_exports(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WHOISCRAWL_HOME", str(tmp_path))
    monkeypatch.setenv("WHOISCRAWL_KAFKA_PORT", "19004")
    assert stack_mod.main(["env"]) == 0
    out = capsys.readouterr().out
    assert "export AIRFLOW_CONN_KAFKA_DEFAULT='{\"conn_type\":\"kafka\",\"extra\":{\"bootstrap.servers\":\"127.0.0.1:19004\"," in out


# --- missing binaries and taken ports ----------------------------------------------------------

def test_missing_java_and_mvn_name_their_packages(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(MissingDependency, match="apt-get install default-jre-headless"):
        kb.find_java()
    with pytest.raises(MissingDependency, match="apt-get install maven"):
        kb.find_mvn()


def test_ensure_jars_without_mvn_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "mvn" else f"/bin/{name}")
    broker = kb.KafkaBroker(tmp_path, free_port(), free_port())
    with pytest.raises(MissingDependency, match="apt-get install maven"):
        broker.ensure_jars()
    assert not broker.libs_dir.exists()


def test_stack_names_every_missing_binary(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("WHOISCRAWL_REDIS_SERVER_BIN", str(tmp_path / "no-such-redis-server"))
    stack = Stack(_settings(tmp_path / "home"), out=lambda line: None)
    with pytest.raises(MissingDependency) as info:
        stack.up()
    message = str(info.value)
    for package in ("apt-get install redis-server", "apt-get install default-jre-headless",
                    "apt-get install maven"):
        assert package in message
    assert not (stack.home / "run").exists() or not list((stack.home / "run").glob("*.pid"))


def test_main_reports_missing_binary(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "java" else f"/bin/{name}")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    for key, value in _settings(tmp_path / "home").as_dict().items():
        monkeypatch.setenv("WHOISCRAWL_" + key, str(value))
    assert stack_mod.main(["up"]) == 1
    assert "apt-get install default-jre-headless" in capsys.readouterr().err


def test_taken_port_names_the_setting_and_starts_nothing(tmp_path):
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stack = Stack(_settings(tmp_path / "home", KAFKA_PORT=port), out=lambda line: None)
        stack.check_dependencies = lambda: None  # type: ignore[method-assign]  # binaries: tested above
        with pytest.raises(StackError, match=rf"port {port} .*WHOISCRAWL_KAFKA_PORT"):
            stack.up()
    assert not list((stack.home / "run").glob("*.pid"))
    assert not (stack.home / "redis").exists(), "nothing may start before the port check"


# --- simulator start-up, with a stand-in that follows its contract ------------------------------

FAKE_SIMULATOR = textwrap.dedent("""
    import http.server, sys, time
    mode = sys.argv[1]
    port = int(sys.argv[sys.argv.index("--base-port") + 1])
    if mode == "crash":
        print("boom: cannot build universe", flush=True)
        sys.exit(3)
    if mode == "silent":
        time.sleep(60)
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/_stats" else 404)
            self.end_headers()
            self.wfile.write(b"{}")
        def log_message(self, *args):
            pass
    server = http.server.HTTPServer(("127.0.0.1", port), Handler)
    print(f"ready http://127.0.0.1:{port}/bootstrap/ipv4.json")
    server.serve_forever()
""")


@pytest.fixture
def fake_sim(tmp_path, monkeypatch):
    """A Stack whose simulator command runs FAKE_SIMULATOR in a given mode; stopped at the end."""
    script = tmp_path / "fake_sim.py"
    script.write_text(FAKE_SIMULATOR)
    stacks = []

    def make(mode: str, **kwargs) -> tuple[Stack, object]:
        stack = Stack(_settings(tmp_path / "home"), out=lambda line: None, **kwargs)
        sim = stack.service("simulator")
        real = sim.command()
        # keep the real arguments from the module name on (the pidfile guard matches them)
        monkeypatch.setattr(sim, "command", lambda: [sys.executable, str(script), mode, *real[2:]])
        stacks.append(sim)
        return stack, sim

    yield make
    for sim in stacks:
        sim.stop(timeout_s=5)


def test_simulator_ready_line_health_and_stop(fake_sim):
    stack, sim = fake_sim("ok")
    sim.start()
    pid = sim.pidfile.live_pid()
    assert pid is not None and sim.healthy()
    url = f"http://127.0.0.1:{sim.base_port}/bootstrap/ipv4.json"
    assert sim.endpoint() == url
    assert connection_env(stack.settings)["WHOISCRAWL_SIM_BOOTSTRAP_URL"] == url
    assert "ready" in sim.log_path.read_text()
    assert sim.stop(timeout_s=5) is True
    assert not _alive(pid)
    assert not sim.pidfile.path.exists() and not sim.url_path.exists()


def test_simulator_crash_reports_log_tail(fake_sim):
    stack, sim = fake_sim("crash")
    with pytest.raises(StackError, match=r"(?s)exited with code 3.*boom: cannot build universe"):
        sim.start()
    assert not sim.pidfile.path.exists()


def test_simulator_without_ready_line_times_out_and_is_stopped(fake_sim):
    stack, sim = fake_sim("silent", sim_timeout_s=1)
    started = time.monotonic()
    with pytest.raises(StackError, match="no 'ready' line within 1 s"):
        sim.start()
    assert time.monotonic() - started < 15
    assert not sim.pidfile.path.exists()
    # the silent stand-in is gone, not left behind
    leftovers = [p for p in os.listdir("/proc") if p.isdigit()
                 and (PidFile.cmdline(int(p)) or "").find(str(sim.cache_dir)) >= 0]
    assert leftovers == []
