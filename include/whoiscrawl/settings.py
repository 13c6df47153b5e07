"""The service settings of one machine: where things live, ports, endpoints, the fleet.

A setting ``FOO_S`` is read from the environment variable ``WHOISCRAWL_FOO_S``
(the prefix keeps them apart from everything else) and falls back to the
default below; ``Settings(overrides)`` lets a test replace any of them without
touching the environment. Crawl tunables are not here: they belong to a run
(``whoiscrawl.crawl.config.RunConfig``), are read from the same kind of
variables by the configure task only, and travel with the run to every host.
The README's settings tables are generated from both (``whoiscrawl settings --markdown``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

PREFIX = "WHOISCRAWL_"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    parse: Callable[[str], Any]
    doc: str


DEFINITIONS: tuple[Setting, ...] = (
    # --- where things live -------------------------------------------------
    Setting("HOME", str(PROJECT_ROOT / ".whoiscrawl"), str,
            "Folder for the local stack's data, logs and downloaded jars (ignored by git)."),
    # --- local stack ports ---------------------------------------------------
    Setting("BIND_HOST", "127.0.0.1", str,
            "Address the local stack's services listen on (the fleet binds its bridge address)."),
    Setting("REDIS_PORT", 16379, int, "Port of the local Redis master."),
    Setting("KAFKA_PORT", 19092, int, "Port of the local Kafka broker's client listener."),
    Setting("KAFKA_CONTROLLER_PORT", 19093, int, "Port of the local Kafka broker's KRaft controller listener."),
    Setting("SIM_BASE_PORT", 18080, int,
            "Registry simulator: bootstrap and stats on this port, the five RIRs on the next five "
            "(arin, ripencc, apnic, lacnic, afrinic)."),
    # --- fleet: CeleryExecutor hosts (`whoiscrawl fleet`, docs/fleet.md) ------
    Setting("FLEET_SUBNET", "10.213.0.0/24", str,
            "Private subnet of the local fleet's bridge: the coordinator (bridge) takes its first address, "
            "host N the (N+1)th. It must not overlap any network of the machine."),
    Setting("FLEET_ID", "wc", str,
            "Prefix of the bridge, veths and network namespaces the local fleet creates (1-8 of a-z, 0-9)."),
    Setting("POSTGRES_PORT", 15432, int, "Port of the fleet's PostgreSQL (Airflow metadata and Celery results)."),
    Setting("AIRFLOW_API_PORT", 18790, int, "Port of the fleet's Airflow api-server (UI, REST and execution API)."),
    Setting("UI_PORT", 18700, int,
            "Port of the local Airflow UI (`whoiscrawl ui`: api-server on the local stack, bound to 127.0.0.1)."),
    Setting("REPLICA_PORT", 16380, int, "Port of each fleet host's Redis replica, on that host's loopback."),
    Setting("WORKER_LOG_PORT", 18793, int, "Port of each Celery worker's log server (Airflow reads task logs from it)."),
    Setting("WORKER_CONCURRENCY", 2, int, "Task slots of each fleet host's Celery worker."),
    Setting("HEARTBEAT_TIMEOUT_S", 45, int,
            "Seconds without a task heartbeat before the scheduler fails the task and retries it "
            "elsewhere: how fast the chunk of a dead worker moves on."),
    Setting("HOST_ADDRESS", "", str,
            "Address other machines reach this host at; Airflow's task hostname on fleet hosts (it fetches "
            "task logs there). Empty: the machine's hostname."),
    Setting("POSTGRES_BIN_DIR", "", str,
            "Folder of PostgreSQL's server programs (initdb, pg_ctl). Empty: PATH, then Debian's layout."),
    # --- service endpoints used by the crawl ---------------------------------
    Setting("REDIS_URL", "", str,
            "Redis master for the known-network index and cluster config. Empty: the Airflow "
            "connection redis_default (a task fails without it; the CLI falls back to the local stack's Redis)."),
    Setting("REDIS_REPLICA_URL", "", str,
            "This host's Redis replica (index and config reads). Empty: same as the master."),
    Setting("KAFKA_BOOTSTRAP_SERVERS", "", str,
            "Kafka bootstrap servers, for a broker without SASL (a client from this setting has no login). "
            "Empty: the Airflow connection kafka_default (a task fails without it; the CLI falls back to "
            "the local broker with the local stack's login)."),
    Setting("HOST_ID", "", str, "Name of this host in telemetry. Empty: the machine's hostname."),
    Setting("DEFAULT_LIMIT", "", str,
            "Default of the DAG's `limit` Param on this machine (a number of seed addresses). Empty: the full "
            "crawl. A development stack sets a small one (`whoiscrawl ui` sets 2000), so a run triggered as the "
            "form opens ends in minutes."),
    # --- what the DAG's Params may reach on this machine (docs/security.md) --------
    Setting("SEED_BASE_DIR", "", str,
            "Folder the `seed` and `bootstrap` Params may name files in (a path outside it is refused "
            "before it is opened). Empty: `<home>/seeds`."),
    Setting("OUTPUT_BASE_DIR", "", str,
            "Folder the `output_dir` Param must lie in. Empty: `<home>/runs`."),
    Setting("BOOTSTRAP_URL_ALLOWLIST", "", str,
            "Origins (comma-separated `scheme://host:port`) a `bootstrap` Param URL may use beside any "
            "https URL; `whoiscrawl stack up` adds the simulator's loopback origin to its env file."),
)

_BY_NAME = {s.name: s for s in DEFINITIONS}


class Settings:
    """Resolved settings: overrides, then ``WHOISCRAWL_*`` environment variables, then defaults."""

    def __init__(self, overrides: Mapping[str, Any] | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for s in DEFINITIONS:
            raw = env.get(PREFIX + s.name)
            values[s.name] = s.default if raw is None else self._parse(s, raw)
        for name, value in (overrides or {}).items():
            key = name.upper()
            if key not in _BY_NAME:
                raise KeyError(f"unknown setting {name!r}")
            s = _BY_NAME[key]
            values[key] = self._parse(s, value) if isinstance(value, str) else value
        self._values = values

    @staticmethod
    def _parse(s: Setting, raw: str) -> Any:
        parse = _bool if s.parse is bool else s.parse
        try:
            return parse(raw)
        except ValueError as exc:
            raise ValueError(f"{PREFIX}{s.name}={raw!r}: {exc}") from None

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name.upper()]
        except KeyError:
            raise AttributeError(name) from None

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    @property
    def home(self) -> Path:
        return Path(self._values["HOME"])

    @property
    def seed_base_dir(self) -> Path:
        return Path(self._values["SEED_BASE_DIR"] or self.home / "seeds")

    @property
    def output_base_dir(self) -> Path:
        return Path(self._values["OUTPUT_BASE_DIR"] or self.home / "runs")


def markdown_table() -> str:
    """The README's settings tables: the crawl's (one value per run) and the machine's."""
    from whoiscrawl.crawl.config import tunables

    rows = ["Crawl settings: resolved once per run by the configure task (environment, then the DAG's",
            "Params), recorded in `coverage.json`, the same on every host.", "",
            "| variable | default | meaning |", "| --- | --- | --- |"]
    for name, default, doc in tunables():
        rows.append(f"| `{PREFIX}{name}` | `{default}` | {doc} |")
    rows += ["", "Service settings: per machine (where things live, ports, endpoints, the fleet).", "",
             "| variable | default | meaning |", "| --- | --- | --- |"]
    for s in DEFINITIONS:
        default = s.default
        if s.name == "HOME":
            default = "<project>/.whoiscrawl"
        rows.append(f"| `{PREFIX}{s.name}` | `{default}` | {s.doc} |")
    return "\n".join(rows)


def rewrite_readme_table(readme: Path = PROJECT_ROOT / "README.md") -> None:
    """Replace the table between the README's settings markers with the current one."""
    text = readme.read_text()
    start = text.index("<!-- settings:start")
    start = text.index("\n", start) + 1
    end = text.index("<!-- settings:end -->")
    readme.write_text(text[:start] + markdown_table() + "\n" + text[end:])
