"""Provisioning of the hosts that run crawl chunks.

``local`` (the default) launches nothing: the crawl tasks run on the
machine's own Airflow workers. Other kinds plug in here behind the same two
calls, so the DAG never changes when the fleet does.
"""

from __future__ import annotations

import socket
from typing import Any

FLEET_KINDS = ("local",)


class FleetError(RuntimeError):
    pass


def provision(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Bring the fleet up; returns what teardown needs (saved before any wait)."""
    if kind == "local":
        return {"kind": "local", "hosts": [socket.gethostname()], "launched": []}
    raise FleetError(f"unknown fleet kind {kind!r}; choose one of {', '.join(FLEET_KINDS)}")


def teardown(fleet: dict[str, Any] | None) -> dict[str, Any]:
    """Release what ``provision`` launched; a no-op for ``local`` or when provisioning never happened."""
    if not fleet or fleet.get("kind") == "local":
        return {"released": []}
    raise FleetError(f"unknown fleet kind {fleet.get('kind')!r}")
