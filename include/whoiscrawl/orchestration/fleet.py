"""Provisioning of the hosts that run crawl chunks.

``local`` (the default) launches nothing: the crawl tasks run on the
machine's own Airflow workers. ``celery`` launches nothing either: the
CeleryExecutor's workers are long-lived hosts (``whoiscrawl fleet up`` on
one machine, ``docs/fleet.md`` on many) that outlive a run; provisioning
only proves some are there and consume the queue the tasks go to. Other
kinds plug in here behind the same two calls, so the DAG never changes when
the fleet does.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from whoiscrawl.errors import WhoiscrawlError

FLEET_KINDS = ("local", "celery")
#: How long ``provision("celery")`` waits for a worker to answer (workers may still be starting).
CELERY_WAIT_S = 60.0
CELERY_PING_TIMEOUT_S = 5.0


class FleetError(WhoiscrawlError):
    """The fleet could not be brought up or released; the message says what to do."""


def host_address() -> str:
    """Airflow's ``hostname_callable`` on fleet hosts: the address others reach this host at.

    Airflow records it as the task's hostname and fetches the task's log from
    it; an address needs no DNS (``WHOISCRAWL_HOST_ADDRESS``), else the hostname.
    """
    from whoiscrawl.settings import Settings

    return Settings().HOST_ADDRESS or socket.gethostname()


def celery_workers(timeout_s: float = CELERY_PING_TIMEOUT_S) -> dict[str, list[str]]:
    """Celery workers that answer a ping through Airflow's Celery app, with the queues each consumes."""
    from airflow.providers.celery.executors.celery_executor_utils import app

    inspect = app.control.inspect(timeout=timeout_s)
    pongs = inspect.ping() or {}
    if not pongs:
        return {}
    queues = inspect.active_queues() or {}
    return {name: sorted(q.get("name", "") for q in queues.get(name) or []) for name in pongs}


def _provision_celery(params: dict[str, Any]) -> dict[str, Any]:
    from airflow.configuration import conf

    queue = conf.get("operators", "default_queue")
    wait_s = float(params.get("celery_wait_s") or CELERY_WAIT_S)
    deadline = time.monotonic() + wait_s
    seen: dict[str, list[str]] = {}
    while True:
        seen = celery_workers()
        hosts = sorted(name for name, queues in seen.items() if queue in queues)
        if hosts:
            return {"kind": "celery", "hosts": hosts, "queue": queue, "launched": []}
        if time.monotonic() >= deadline:
            others = f"; workers answering but on other queues: {seen}" if seen else ""
            raise FleetError(f"no Celery worker consumes queue {queue!r} after {wait_s:g} s{others}; "
                             f"start the fleet (`whoiscrawl fleet up`, docs/fleet.md)")
        time.sleep(2)


def provision(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Bring the fleet up; returns what teardown needs (saved before any wait)."""
    if kind == "local":
        return {"kind": "local", "hosts": [socket.gethostname()], "launched": []}
    if kind == "celery":
        return _provision_celery(params)
    raise FleetError(f"unknown fleet kind {kind!r}; choose one of {', '.join(FLEET_KINDS)}")


def teardown(fleet: dict[str, Any] | None) -> dict[str, Any]:
    """Release what ``provision`` launched; nothing for ``local`` and ``celery`` (their hosts outlive a run)."""
    if not fleet or fleet.get("kind") in ("local", "celery"):
        return {"released": []}
    raise FleetError(f"unknown fleet kind {fleet.get('kind')!r}")
