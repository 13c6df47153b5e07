"""The Airflow configuration of a fleet: CeleryExecutor, PostgreSQL metadata, shared secrets.

Every process of a fleet, coordinator or worker host, must agree on the
metadata database, the Celery broker and result backend, the execution API's
address and the secrets that sign its tokens; this module derives all of it
from :class:`~whoiscrawl.settings.Settings`, the coordinator's address and
one :class:`FleetSecrets`; the Celery broker logs in to Redis as the
``celery`` user of the home's :class:`~whoiscrawl.devtools.credentials.ClusterCredentials`.
``docs/fleet.md`` lists the same variables for real machines.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from whoiscrawl.devtools.airflow_env import airflow_env
from whoiscrawl.devtools.credentials import ClusterCredentials
from whoiscrawl.settings import Settings

#: Celery queue every worker host consumes (all tasks go there).
CELERY_QUEUE = "whoiscrawl"
#: Database number of the coordinator's Redis that carries Celery's broker queues (0 holds the crawl's state).
CELERY_BROKER_DB = 1
#: Metadata database and its role.
DB_NAME = "airflow"
DB_USER = "whoiscrawl"
#: Longer than the crawl task's execution_timeout (6 h): an unacknowledged Celery message is redelivered
#: only after this, so a slow task is never started twice by Celery itself.
VISIBILITY_TIMEOUT_S = 7 * 3600
#: Airflow calls this for a task's hostname: the address the api-server fetches its log from (no DNS).
HOSTNAME_CALLABLE = "whoiscrawl.orchestration.hostname.host_address"


@dataclass(frozen=True)
class FleetSecrets:
    """Shared by every process of one fleet; created once, kept in a 0600 file."""

    db_password: str
    jwt_secret: str
    api_secret_key: str
    fernet_key: str

    @classmethod
    def generate(cls) -> "FleetSecrets":
        return cls(db_password=secrets.token_urlsafe(24), jwt_secret=secrets.token_urlsafe(48),
                   api_secret_key=secrets.token_urlsafe(32),
                   fernet_key=base64.urlsafe_b64encode(os.urandom(32)).decode("ascii"))

    @classmethod
    def load_or_create(cls, path: Path) -> "FleetSecrets":
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            pass
        created = cls.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(asdict(created), fh)
        return created


def db_url(settings: Settings, coordinator: str, secrets_: FleetSecrets, driver: str = "postgresql+psycopg2") -> str:
    return f"{driver}://{DB_USER}:{secrets_.db_password}@{coordinator}:{settings.POSTGRES_PORT}/{DB_NAME}"


def api_url(settings: Settings, coordinator: str) -> str:
    return f"http://{coordinator}:{settings.AIRFLOW_API_PORT}"


def celery_env(settings: Settings, coordinator: str, secrets_: FleetSecrets, airflow_home: Path) -> dict[str, str]:
    """Airflow's environment for any process of the fleet whose coordinator listens on ``coordinator``."""
    env = airflow_env(settings)
    celery_password = ClusterCredentials.load_or_create(settings.home.expanduser().resolve()).redis_celery
    env.update({
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url(settings, coordinator, secrets_),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": db_url(settings, coordinator, secrets_, "postgresql+asyncpg"),
        "AIRFLOW__CELERY__BROKER_URL": f"redis://celery:{celery_password}@{coordinator}:{settings.REDIS_PORT}/"
                                       f"{CELERY_BROKER_DB}",
        "AIRFLOW__CELERY__RESULT_BACKEND": db_url(settings, coordinator, secrets_, "db+postgresql+psycopg2"),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(settings.WORKER_CONCURRENCY),
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT_S),
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": CELERY_QUEUE,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url(settings, coordinator)}/execution/",
        "AIRFLOW__API__BASE_URL": api_url(settings, coordinator),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets_.jwt_secret,
        "AIRFLOW__API__SECRET_KEY": secrets_.api_secret_key,
        "AIRFLOW__CORE__FERNET_KEY": secrets_.fernet_key,
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": HOSTNAME_CALLABLE,
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs"),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(settings.WORKER_LOG_PORT),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(settings.HEARTBEAT_TIMEOUT_S),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(airflow_home / "passwords.json"),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
    })
    return env
