"""Run a real Apache Kafka 4 broker (KRaft, one combined broker+controller node) for the local stack.

The crawl writes its results to Kafka with idempotent producers; testing that
against an imitation would prove little, so the local stack and the integration
tests run the real broker. Its jars come from Maven Central through
``stack/kafka/pom.xml`` (fetched once into ``<home>/kafka/libs``), so nothing
but ``java`` and ``mvn`` has to be installed system-wide.

Layout under ``home``: ``kafka/libs`` (jars), ``kafka/data`` (log.dirs),
``kafka/server.properties``, ``kafka/log4j2.properties``, ``kafka/cluster.id``,
``kafka/broker.log`` and the pidfile ``run/kafka.pid``.

Its pidfile (:class:`whoiscrawl.devtools.services.procs.PidFile`) is signalled only while
``/proc/<pid>/cmdline`` still shows what we launched.

With ``scram_users`` (user -> password; ``admin`` is the broker's own login)
the client listener is ``SASL_PLAINTEXT`` with SCRAM-SHA-256: the users are
bootstrapped into the metadata log when the storage is formatted (the storage
tool's ``--add-scram``, its arguments passed in a 0600 java @argfile so no
password is on a command line), and ``server.properties`` (0600) holds the
broker's own JAAS login. The KRaft controller listener of this single node is
bound to loopback in every case: only the node itself talks to it, so no other
address can reach it. A cluster of several controllers would put SASL on it too.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from whoiscrawl.devtools.services import MissingDependency, service_env
from whoiscrawl.devtools.services.procs import PidFile, log_tail, port_in_use
from whoiscrawl.errors import WhoiscrawlError
from whoiscrawl.settings import PROJECT_ROOT

__all__ = ["KafkaBroker", "KafkaBrokerError", "find_java", "find_mvn", "KAFKA_MAIN", "STORAGE_TOOL_MAIN", "POM_PATH"]

log = logging.getLogger(__name__)

KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"
POM_PATH = PROJECT_ROOT / "stack" / "kafka" / "pom.xml"
JAVA_HINT = "java not found: apt-get install default-jre-headless (Kafka 4 needs Java 17 or newer)"
MVN_HINT = "mvn not found: apt-get install maven (it fetches the Kafka jars from Maven Central once)"
DEFAULT_JVM_OPTS = ("-Xms64m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                    "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
                    # keep logging through the broker's own shutdown hook (controlled shutdown)
                    "-Dlog4j2.shutdownHookEnabled=false")
_COMPLETE_MARKER = ".complete"
SCRAM_MECHANISM = "SCRAM-SHA-256"
_LOG_ROTATE_BYTES = 50 * 1024 * 1024

LOG4J2_PROPERTIES = """\
# Written by whoiscrawl.devtools.services.kafka_broker: everything to stdout, which goes to broker.log.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


class KafkaBrokerError(WhoiscrawlError):
    """The broker could not be prepared, started or stopped; the message carries the log tail."""


def find_java() -> str:
    """Path of ``java`` (``$JAVA_HOME/bin/java`` first), or :class:`MissingDependency`."""
    java_home = os.environ.get("JAVA_HOME", "")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if not found:
        raise MissingDependency(JAVA_HINT)
    return found


def find_mvn() -> str:
    """Path of ``mvn``, or :class:`MissingDependency` naming the package."""
    found = shutil.which("mvn")
    if not found:
        raise MissingDependency(MVN_HINT)
    return found


class KafkaBroker:
    """One KRaft node acting as broker and controller, data and logs under ``home/kafka``."""

    def __init__(self, home: Path, port: int, controller_port: int, bind: str = "127.0.0.1",
                 pom: Path | None = None, jvm_opts: Sequence[str] | None = None,
                 scram_users: Mapping[str, str] | None = None) -> None:
        self.home = Path(home).resolve()
        self.scram_users = dict(scram_users or {})
        if self.scram_users and "admin" not in self.scram_users:
            raise KafkaBrokerError("scram_users needs an 'admin' user: the broker's own login")
        self.port = int(port)
        self.controller_port = int(controller_port)
        self.bind = bind
        self.pom = Path(pom) if pom is not None else POM_PATH
        self.jvm_opts = tuple(jvm_opts) if jvm_opts is not None else DEFAULT_JVM_OPTS
        self._proc: subprocess.Popen | None = None
        self.pidfile = PidFile(self.home / "run" / "kafka.pid", (KAFKA_MAIN, str(self.config_path)),
                               cwd=self.kafka_dir)

    # --- paths and addresses -----------------------------------------------------------
    @property
    def kafka_dir(self) -> Path:
        return self.home / "kafka"

    @property
    def libs_dir(self) -> Path:
        return self.kafka_dir / "libs"

    @property
    def data_dir(self) -> Path:
        return self.kafka_dir / "data"

    @property
    def config_path(self) -> Path:
        return self.kafka_dir / "server.properties"

    @property
    def log4j_path(self) -> Path:
        return self.kafka_dir / "log4j2.properties"

    @property
    def cluster_id_path(self) -> Path:
        return self.kafka_dir / "cluster.id"

    @property
    def log_path(self) -> Path:
        return self.kafka_dir / "broker.log"

    @property
    def scram_marker_path(self) -> Path:
        """Names (no passwords) of the SCRAM users the storage was formatted with."""
        return self.kafka_dir / "scram.users"

    @property
    def host(self) -> str:
        """Address clients on this machine use (a wildcard bind is reached on loopback)."""
        return "127.0.0.1" if self.bind in ("0.0.0.0", "*", "") else self.bind

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.pidfile.live_pid()

    # --- jars ---------------------------------------------------------------------------
    def _pom_digest(self) -> str:
        return hashlib.sha256(self.pom.read_bytes()).hexdigest()

    def jars_complete(self) -> bool:
        """True when ``libs`` was filled from the current pom and every jar is still there."""
        marker = self.libs_dir / _COMPLETE_MARKER
        try:
            lines = marker.read_text(encoding="utf-8").splitlines()
            digest = self._pom_digest()
        except OSError:
            return False
        if not lines or lines[0] != digest or len(lines) < 2:
            return False
        return all((self.libs_dir / name).is_file() for name in lines[1:])

    def ensure_jars(self, timeout_s: float = 900) -> Path:
        """Copy the broker's runtime jars into ``libs`` with Maven, unless already done for this pom."""
        if self.jars_complete():
            return self.libs_dir
        if not self.pom.is_file():
            raise KafkaBrokerError(f"Kafka pom not found: {self.pom}")
        mvn = find_mvn()
        find_java()  # mvn needs it too; say so before mvn fails with a less clear message
        self.kafka_dir.mkdir(parents=True, exist_ok=True)
        staging = self.kafka_dir / f"libs.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [mvn, "-q", "-B", "-f", str(self.pom), "dependency:copy-dependencies",
               "-DincludeScope=runtime", f"-DoutputDirectory={staging}"]
        started = time.monotonic()
        try:
            done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired:
            shutil.rmtree(staging, ignore_errors=True)
            raise KafkaBrokerError(f"mvn did not fetch the Kafka jars within {timeout_s:g} s") from None
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            output = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
            raise KafkaBrokerError(f"mvn failed ({done.returncode}) fetching the Kafka jars:\n{output}")
        jars = sorted(p.name for p in staging.glob("*.jar"))
        if not any(name.startswith("kafka_") for name in jars):
            shutil.rmtree(staging, ignore_errors=True)
            raise KafkaBrokerError(f"mvn ran but {staging} holds no kafka_*.jar")
        (staging / _COMPLETE_MARKER).write_text("\n".join([self._pom_digest(), *jars]) + "\n",
                                                encoding="utf-8")
        old = self.kafka_dir / f"libs.old-{os.getpid()}"
        if self.libs_dir.exists():
            self.libs_dir.replace(old)
        staging.replace(self.libs_dir)
        shutil.rmtree(old, ignore_errors=True)
        log.info("fetched %d Kafka jars in %.1f s", len(jars), time.monotonic() - started)
        return self.libs_dir

    def _classpath(self) -> str:
        return str(self.libs_dir / "*")  # java expands the wildcard itself

    # --- config and storage -------------------------------------------------------------
    def properties(self) -> dict[str, str]:
        """server.properties of a one-node cluster: static quorum of itself, replication factor 1."""
        client = "SASL_PLAINTEXT" if self.scram_users else "PLAINTEXT"
        auth: dict[str, str] = {}
        if self.scram_users:
            auth = {
                "sasl.enabled.mechanisms": SCRAM_MECHANISM,
                "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
                f"listener.name.sasl_plaintext.{SCRAM_MECHANISM.lower()}.sasl.jaas.config":
                    'org.apache.kafka.common.security.scram.ScramLoginModule required '
                    f'username="admin" password="{self.scram_users["admin"]}";',
            }
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"{client}://{self.bind}:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"{client}://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": client,
            "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{client}:{client}",
            **auth,
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "auto.create.topics.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "168",
        }

    def write_config(self) -> Path:
        self.kafka_dir.mkdir(parents=True, exist_ok=True)
        lines = ["# Written by whoiscrawl.devtools.services.kafka_broker; rewritten on every start."]
        lines += [f"{key}={value}" for key, value in self.properties().items()]
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # it may hold the broker's password
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        self.log4j_path.write_text(LOG4J2_PROPERTIES, encoding="utf-8")
        return self.config_path

    def cluster_id(self) -> str:
        """The cluster id saved in home (created on first use), so restarts keep the same storage."""
        try:
            saved = self.cluster_id_path.read_text(encoding="ascii").strip()
        except OSError:
            saved = ""
        if saved:
            return saved
        formatted = self._formatted_cluster_id()
        new = formatted or self._random_cluster_id()
        self.kafka_dir.mkdir(parents=True, exist_ok=True)
        self.cluster_id_path.write_text(new + "\n", encoding="ascii")
        return new

    @staticmethod
    def _random_cluster_id() -> str:
        """A Kafka Uuid in its text form (base64url, no padding), never starting with '-'."""
        while True:
            text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
            if not text.startswith("-"):
                return text

    def _formatted_cluster_id(self) -> str | None:
        try:
            text = (self.data_dir / "meta.properties").read_text(encoding="utf-8")
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("cluster.id="):
                return line.split("=", 1)[1].strip()
        return None

    def format_storage(self, timeout_s: float = 120) -> bool:
        """Write the config and format ``data`` with Kafka's StorageTool if not yet formatted.

        Returns True when it formatted, False when the storage was already ours.
        """
        self.write_config()
        cluster_id = self.cluster_id()
        formatted = self._formatted_cluster_id()
        if formatted is not None:
            if formatted != cluster_id:
                raise KafkaBrokerError(
                    f"{self.data_dir} belongs to cluster {formatted}, not {cluster_id} "
                    f"(saved in {self.cluster_id_path}); remove one of them to start afresh")
            self._check_scram_users()
            return False
        self.ensure_jars()
        args = ["-Xmx256m", f"-Dlog4j2.configurationFile={self.log4j_path}",
                "-cp", self._classpath(), STORAGE_TOOL_MAIN, "format",
                "--config", str(self.config_path), "--cluster-id", cluster_id]
        for user, password in self.scram_users.items():
            args += ["--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={password}]"]
        argfile = self.kafka_dir / "format.args"  # java reads it: no password on a command line
        fd = os.open(argfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join('"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"' for a in args) + "\n")
        try:
            done = subprocess.run([find_java(), f"@{argfile}"], stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=timeout_s, env=service_env())
        except subprocess.TimeoutExpired:
            raise KafkaBrokerError(f"Kafka StorageTool did not finish within {timeout_s:g} s") from None
        finally:
            argfile.unlink(missing_ok=True)
        if done.returncode != 0 or self._formatted_cluster_id() != cluster_id:
            output = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
            raise KafkaBrokerError(f"Kafka StorageTool format failed ({done.returncode}):\n{output}")
        self.scram_marker_path.write_text("".join(f"{u}\n" for u in sorted(self.scram_users)), encoding="utf-8")
        return True

    def _check_scram_users(self) -> None:
        """Storage formatted before its users existed cannot authenticate them: say how to start afresh."""
        try:
            known = set(self.scram_marker_path.read_text(encoding="utf-8").split())
        except OSError:
            known = set()
        missing = sorted(set(self.scram_users) - known)
        if missing:
            raise KafkaBrokerError(
                f"{self.data_dir} was formatted without the SCRAM users {', '.join(missing)} (an older, "
                f"unauthenticated broker): stop it and remove {self.data_dir} and {self.cluster_id_path} "
                f"to format it afresh with credentials (its topics are lost)")

    # --- lifecycle ----------------------------------------------------------------------
    def command(self) -> list[str]:
        return [find_java(), *self.jvm_opts, f"-Dlog4j2.configurationFile={self.log4j_path}",
                "-cp", self._classpath(), KAFKA_MAIN, str(self.config_path)]

    def start(self, timeout_s: float = 90) -> "KafkaBroker":
        """Start the broker and return once it answers metadata requests; raise with the log tail if not."""
        if self.is_running():
            return self
        self.pidfile.clear_stale()
        for port in (self.port, self.controller_port):
            if port_in_use(self.bind, port):
                raise KafkaBrokerError(f"port {port} on {self.bind} is already in use by another process")
        self.ensure_jars()
        self.format_storage()
        command = self.command()
        if self.log_path.exists() and self.log_path.stat().st_size > _LOG_ROTATE_BYTES:
            self.log_path.replace(self.log_path.with_name(self.log_path.name + ".1"))
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as out:
            self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                          cwd=self.kafka_dir, start_new_session=True, close_fds=True,
                                          env=service_env())
        self.pidfile.write(self._proc.pid)
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                self.pidfile.remove()
                raise KafkaBrokerError(
                    f"Kafka broker on {self.bootstrap_servers} exited with code {code} while starting"
                    f"{self._hint(offset)}\n{log_tail(self.log_path, offset)}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop(timeout_s=15)
                raise KafkaBrokerError(
                    f"Kafka broker on {self.bootstrap_servers} did not answer within {timeout_s:g} s"
                    f"\n{log_tail(self.log_path, offset)}")
            if self.healthy(timeout_s=min(2.0, remaining)):
                return self
            time.sleep(0.25)

    def _hint(self, offset: int) -> str:
        text = log_tail(self.log_path, offset, lines=200)
        if "UnsupportedClassVersionError" in text:
            return " (this java is too old: Kafka 4 needs Java 17 or newer)"
        return ""

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM (controlled shutdown), bounded wait, then SIGKILL; idempotent, ours only."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None and not self.pidfile.matches(proc.pid):
            self.pidfile.write(proc.pid)  # pidfile lost while it ran: still stop our own child
        self.pidfile.terminate(timeout_s, proc=proc)
        if proc is not None:
            try:
                proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass

    def is_running(self) -> bool:
        """True when the pidfile names a live broker of this home (started by any process)."""
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None
        return self.pidfile.live_pid() is not None

    # --- clients ------------------------------------------------------------------------
    def client_config(self, **extra: object) -> dict[str, object]:
        """librdkafka settings for a client of this broker (logged in as ``admin`` when it requires a login)."""
        auth: dict[str, object] = {}
        if self.scram_users:
            auth = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": SCRAM_MECHANISM,
                    "sasl.username": "admin", "sasl.password": self.scram_users["admin"]}
        return {"bootstrap.servers": self.bootstrap_servers, **auth, **extra}

    def admin(self, quiet: bool = False):
        """An AdminClient; ``quiet`` silences librdkafka's connection-refused chatter for probes."""
        from confluent_kafka.admin import AdminClient

        extra: dict[str, object] = {}
        if quiet:
            extra = {"log_level": 0, "error_cb": lambda err: None}
        return AdminClient(self.client_config(**extra))

    def healthy(self, timeout_s: float = 2.0) -> bool:
        """True when the broker lists topics and knows at least one broker (itself)."""
        from confluent_kafka import KafkaException

        try:
            metadata = self.admin(quiet=True).list_topics(timeout=timeout_s)
        except KafkaException:
            return False
        return bool(metadata.brokers)

    def create_topics(self, names: Mapping[str, int] | Iterable[str], partitions: int = 1,
                      timeout_s: float = 30, config: Mapping[str, Mapping[str, str]] | None = None) -> list[str]:
        """Create topics that do not exist yet (``names`` may map name -> partitions); return those created.

        ``config`` maps a topic to its topic-level settings (e.g. ``retention.ms``), applied on creation.

        Existing topics are left as they are, whatever their partition count:
        adding partitions would move keys to other partitions.
        """
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import NewTopic

        wanted = dict(names) if isinstance(names, Mapping) else {name: partitions for name in names}
        admin = self.admin()
        existing = set(admin.list_topics(timeout=timeout_s).topics)
        config = config or {}
        missing = [NewTopic(name, num_partitions=count, replication_factor=1, config=dict(config.get(name, {})))
                   for name, count in wanted.items() if name not in existing]
        created: list[str] = []
        if missing:
            futures = admin.create_topics(missing, operation_timeout=timeout_s, request_timeout=timeout_s)
            for name, future in futures.items():
                try:
                    future.result(timeout=timeout_s)
                    created.append(name)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise KafkaBrokerError(f"could not create topic {name!r}: {exc}") from None
        self._wait_leaders(admin, list(wanted), timeout_s)
        return created

    @staticmethod
    def _wait_leaders(admin, names: list[str], timeout_s: float) -> None:
        """Wait until every partition of ``names`` has a leader, so producing right away works."""
        deadline = time.monotonic() + timeout_s
        while True:
            topics = admin.list_topics(timeout=max(deadline - time.monotonic(), 1)).topics
            ready = all(name in topics and topics[name].error is None and topics[name].partitions
                        and all(p.leader >= 0 for p in topics[name].partitions.values())
                        for name in names)
            if ready:
                return
            if time.monotonic() >= deadline:
                raise KafkaBrokerError(f"topics {names} have no leader after {timeout_s:g} s")
            time.sleep(0.1)

    # --- context manager ----------------------------------------------------------------
    def __enter__(self) -> "KafkaBroker":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<KafkaBroker {self.bootstrap_servers} {state}>"
