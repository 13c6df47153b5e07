"""The default fleet: this machine's own Airflow workers."""

from __future__ import annotations

import socket
from typing import Any

from whoiscrawl.orchestration.fleet.base import FleetProvider


class LocalProvider(FleetProvider):
    """Crawl tasks run where the scheduler runs them, on this machine: nothing to launch or release."""

    kind = "local"

    def provision(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"kind": self.kind}

    def workers_ready(self, state: dict[str, Any]) -> dict[str, Any]:
        return {"hosts": [socket.gethostname()]}

    def teardown(self, state: dict[str, Any]) -> dict[str, Any]:
        return {"released": []}
