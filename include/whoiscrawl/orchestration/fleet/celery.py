"""The CeleryExecutor's worker hosts, reached through Airflow's Celery app."""

from __future__ import annotations

import time
from typing import Any

from whoiscrawl.orchestration.fleet.base import FleetError, FleetProvider

#: How long ``workers_ready`` waits for a worker on the tasks' queue (workers may still be starting).
CELERY_WAIT_S = 60.0
CELERY_PING_TIMEOUT_S = 5.0
POLL_S = 2.0


def celery_workers(timeout_s: float = CELERY_PING_TIMEOUT_S) -> dict[str, list[str]]:
    """Celery workers that answer a ping through Airflow's Celery app, with the queues each consumes."""
    from airflow.providers.celery.executors.celery_executor_utils import app

    inspect = app.control.inspect(timeout=timeout_s)
    pongs = inspect.ping() or {}
    if not pongs:
        return {}
    queues = inspect.active_queues() or {}
    return {name: sorted(q.get("name", "") for q in queues.get(name) or []) for name in pongs}


class CeleryProvider(FleetProvider):
    """Long-lived worker hosts (``whoiscrawl fleet up`` on one machine, ``docs/fleet.md`` on many).

    They outlive a run, so nothing is launched or released; the fleet is ready
    once a worker consumes the queue the crawl tasks go to.
    """

    kind = "celery"

    def provision(self, params: dict[str, Any]) -> dict[str, Any]:
        from airflow.configuration import conf

        return {"kind": self.kind, "queue": conf.get("operators", "default_queue"),
                "wait_s": float(params.get("celery_wait_s") or CELERY_WAIT_S)}

    def workers_ready(self, state: dict[str, Any]) -> dict[str, Any]:
        queue, wait_s = state["queue"], float(state["wait_s"])
        deadline = time.monotonic() + wait_s
        while True:
            seen = celery_workers()
            hosts = sorted(name for name, queues in seen.items() if queue in queues)
            if hosts:
                return {"hosts": hosts}
            if time.monotonic() >= deadline:
                others = f"; workers answering but on other queues: {seen}" if seen else ""
                raise FleetError(f"no Celery worker consumes queue {queue!r} after {wait_s:g} s{others}; "
                                 f"start the fleet (`whoiscrawl fleet up`, docs/fleet.md)")
            time.sleep(POLL_S)

    def teardown(self, state: dict[str, Any]) -> dict[str, Any]:
        return {"released": []}
