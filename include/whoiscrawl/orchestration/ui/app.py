"""The plugin's FastAPI app: a run's live figures as JSON, the IPv4 map image, and the page that shows them.

Mounted by the Airflow api-server under :data:`URL_PREFIX` (``plugins/whoiscrawl_ui.py``).
Airflow does not authenticate plugin apps, so every route here depends on the
api-server's own check (``requires_access_dag``: a valid session cookie or
bearer token of a user allowed to read the DAG's runs); anything else gets 401
or 403. The API is documented in ``docs/ui.md``; the page is one client of it.
"""

from __future__ import annotations

import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag

from whoiscrawl.orchestration.ui import figures as fig

URL_PREFIX = "/whoiscrawl"
DAG_ID = "ipv4_whois_crawl"
#: seconds a read of the metrics topic is reused (every open page polls every few seconds)
CACHE_S = 2.0


class _Sources:
    """Reads the metrics topic and Redis, at most once per :data:`CACHE_S` however many pages poll."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reader: fig.MetricsReader | None = None
        self._reports: list[dict[str, Any]] = []
        self._read_at = float("-inf")

    def reports(self) -> list[dict[str, Any]]:
        from whoiscrawl.crawl.config import RunConfig
        from whoiscrawl.orchestration.connections import kafka_config
        from whoiscrawl.settings import Settings

        with self._lock:
            if time.monotonic() - self._read_at >= CACHE_S:
                if self._reader is None:
                    self._reader = fig.MetricsReader(kafka_config(Settings()), RunConfig.from_env().metrics_topic)
                try:
                    self._reports = list(self._reader.reports())
                except Exception:
                    self._reader.close()  # a broken connection: the next poll starts a fresh reader
                    self._reader = None
                    raise
                self._read_at = time.monotonic()
            return self._reports

    @staticmethod
    def run_state(run: str):
        from whoiscrawl.orchestration.connections import redis_clients
        from whoiscrawl.settings import Settings

        master, _replica = redis_clients(Settings())
        try:
            return fig.read_run_state(master, run)
        finally:
            master.close()


def map_image(run: str) -> Path | None:
    """``coverage.png`` of the run, in whichever output folder under the project's data folder it was written."""
    from whoiscrawl.settings import Settings

    home = Settings().home.expanduser()
    found = [p for p in home.glob(f"*/{run}/coverage.png") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def create_app() -> FastAPI:
    sources = _Sources()
    app = FastAPI(title="whoiscrawl live figures", description=__doc__,
                  dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=DAG_ID))])

    def resolve(run: str) -> str:
        if run != "latest":
            return run
        known = fig.runs(sources.reports())
        if not known:
            raise HTTPException(404, "no run has reported to the metrics topic yet")
        return known[0]["run"]

    @app.get("/api/runs")
    def list_runs() -> dict[str, Any]:
        """Every run with reports on the metrics topic, the most recently reporting first."""
        return {"runs": fig.runs(sources.reports())}

    @app.get("/api/runs/{run}/figures")
    def run_figures(run: str) -> dict[str, Any]:
        """The run's live figures (``latest``: the run that reported last)."""
        key = resolve(run)
        reports = sources.reports()
        if not any(fig.run_of(r) == key for r in reports):
            raise HTTPException(404, f"run {key!r} has no reports on the metrics topic")
        state, seed_addresses, log = sources.run_state(key)
        out = fig.figures(reports, key, run_state=state, seed_addresses=seed_addresses, index_log=log)
        out["map"] = f"api/runs/{key}/map.png" if map_image(key) else None
        return out

    @app.get("/api/runs/{run}/map.png")
    def run_map(run: str) -> FileResponse:
        """The IPv4 map of the run's coverage, once the report task wrote it."""
        path = map_image(resolve(run))
        if path is None:
            raise HTTPException(404, "no map for this run (yet)")
        return FileResponse(path, media_type="image/png")

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return resources.files("whoiscrawl.orchestration.ui").joinpath("page.html").read_text(encoding="utf-8")

    return app
