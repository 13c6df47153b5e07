"""Every setting of whoiscrawl, in one place, with its unit in its name.

A setting ``FOO_S`` is read from the environment variable ``WHOISCRAWL_FOO_S``
(the prefix keeps them apart from everything else) and falls back to the
default below. ``Settings(overrides)`` lets a DAG Param or a test replace any
of them without touching the environment. The README's settings table is
generated from this list (``whoiscrawl settings --markdown``).
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
    Setting("BOOTSTRAP", "", str,
            "RFC 9224 IPv4 bootstrap file (path or http(s) URL). Empty: IANA's file as last fetched by "
            "`whoiscrawl bootstrap refresh`, else the copy shipped in the package."),
    Setting("BOOTSTRAP_MAX_AGE_S", 86400, int,
            "How long a bootstrap file fetched over HTTP is cached before it is fetched again."),
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
            "This host's Redis replica (reads and rate budgets). Empty: same as the master."),
    Setting("KAFKA_BOOTSTRAP_SERVERS", "", str,
            "Kafka bootstrap servers. Empty: the Airflow connection kafka_default (a task "
            "fails without it; the CLI falls back to the local broker)."),
    Setting("KAFKA_RESULTS_TOPIC", "results", str, "Topic for result records, keyed by network handle."),
    Setting("KAFKA_METRICS_TOPIC", "metrics", str, "Topic for per-host telemetry reports."),
    # --- crawl ----------------------------------------------------------------
    Setting("HTTP_TIMEOUT_S", 10.0, float, "Timeout of one RDAP request, connect to last byte."),
    Setting("HTTP_CONCURRENCY_PER_REGISTRY", 8, int,
            "Lookups in flight at once per registry per crawl process (registries never wait on each other)."),
    Setting("USER_AGENT", "whoiscrawl/0.1 (RDAP IPv4 survey)", str, "User-Agent sent with every RDAP request."),
    Setting("RATE_LIMITS", "", str,
            "Per-registry request budgets per source host, e.g. 'lacnic=10/60+1000/3600,arin=10/1' "
            "(count/seconds, '+' joins windows). Registries not named keep the defaults: LACNIC 10 per "
            "minute and 1,000 per hour (documented), the others 10 per second (the ancestor's)."),
    Setting("THROTTLE_PAUSE_S", 60.0, float,
            "Pause of a registry on this host after a 429 without Retry-After, or a rate-limit notice that names no window."),
    Setting("MAX_THROTTLES", 20, int, "Throttle answers (429, rate-limit notice) one address may meet before it is failed."),
    Setting("MAX_REDIRECTS", 3, int, "Redirects followed for one lookup (RFC 7480 section 5.2)."),
    Setting("REDIRECT_ALLOWLIST", "", str,
            "Extra hosts (comma-separated host or host:port) a redirect may go to, beside those in the bootstrap file."),
    Setting("MAX_ATTEMPTS", 4, int, "Attempts per address before it is reported failed (timeouts, 5xx, bad bodies)."),
    Setting("RETRY_BACKOFF_S", 1.0, float, "First retry delay; doubles on each attempt, with jitter."),
    Setting("REGISTRY_DOWN_AFTER", 10, int,
            "Transport failures in a row (timeouts, refused connections) after which a registry counts as down."),
    Setting("REGISTRY_DOWN_COOLDOWN_S", 30.0, float,
            "While a registry is down its addresses wait this long per attempt instead of each timing out; "
            "then requests probe it again."),
    Setting("RETRY_AFTER_MAX_S", 600.0, float, "Longest Retry-After pause honoured; longer ones fail the address for a later run."),
    Setting("TELEMETRY_INTERVAL_S", 60.0, float, "How often each host reports its counters to the metrics topic."),
    Setting("HOST_ID", "", str, "Name of this host in telemetry. Empty: the machine's hostname."),
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


def markdown_table() -> str:
    """The README's settings table."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
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
