"""Helpers of the e2e tests: the local UI (stack + Airflow api-server, scheduler, dag-processor,
triggerer) in a temporary home on free ports, signing in, and the Airflow REST calls the tests wait with.

One UI per test module: starting Airflow costs about a minute on a loaded machine.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from whoiscrawl.devtools.services import free_port, free_port_block
from whoiscrawl.devtools.stack import Stack
from whoiscrawl.devtools.ui import ADMIN_USER, DAG_ID, LocalUI
from whoiscrawl.settings import Settings

CHROMIUM = "/usr/bin/chromium"
SIM_SCALE = 0.01
#: how long a page element may take to appear: the UI renders slowly on a loaded 2-core machine
PAGE_TIMEOUT_MS = 120_000


def ui_environ(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHOISCRAWL_")}
    env.update({
        "WHOISCRAWL_HOME": str(home),
        "WHOISCRAWL_REDIS_PORT": str(free_port()),
        "WHOISCRAWL_KAFKA_PORT": str(free_port()),
        "WHOISCRAWL_KAFKA_CONTROLLER_PORT": str(free_port()),
        "WHOISCRAWL_SIM_BASE_PORT": str(free_port_block(6)),
        "WHOISCRAWL_UI_PORT": str(free_port()),
        **extra,
    })
    return env


@contextmanager
def running_ui(environ: dict[str, str]) -> Iterator[tuple[LocalUI, str]]:
    """The stack (a small simulated universe) and the UI; both stopped afterwards whatever happened."""
    stack = Stack(Settings(environ=environ), sim_scale=SIM_SCALE, sim_seed=1)
    ui = LocalUI(environ)
    try:
        stack.up()
        password = ui.up(timeout_s=400)
        assert password, "the first `ui up` generates the admin password"
        yield ui, password
    finally:
        ui.down()
        stack.down()


def login(page, ui: LocalUI, password: str) -> None:
    """Sign in through Airflow's own login page, as a user does."""
    page.goto(f"{ui.url}/")
    page.get_by_label("Username").fill(ADMIN_USER)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url, timeout=30_000)


def api_token(ui: LocalUI, password: str) -> str:
    body = json.dumps({"username": ADMIN_USER, "password": password}).encode()
    request = urllib.request.Request(f"{ui.url}/auth/token", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["access_token"]


def api_get(ui: LocalUI, path: str, token: str | None, attempts: int = 5) -> Any:
    """GET a JSON answer; a slow answer is asked again (SQLite metadata under load can stall the api-server)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{ui.url}{path}", headers=headers),
                                        timeout=60) as response:
                return json.loads(response.read())
        except (TimeoutError, urllib.error.URLError) as exc:
            if isinstance(exc, urllib.error.HTTPError) or attempt == attempts - 1:
                raise
            time.sleep(2)


def dag_runs(ui: LocalUI, token: str) -> list[dict[str, Any]]:
    return api_get(ui, f"/api/v2/dags/{DAG_ID}/dagRuns?limit=100", token)["dag_runs"]


def wait_until_runs(ui: LocalUI, token: str, count: int, timeout_s: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while len(runs := dag_runs(ui, token)) < count:
        assert time.monotonic() < deadline, f"{len(runs)} runs after {timeout_s} s, expected {count}"
        time.sleep(1)
    return runs


def wait_succeeded(ui: LocalUI, token: str, run_id: str, timeout_s: float = 1200) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        run = api_get(ui, f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}", token)
        assert run["state"] != "failed", f"run {run_id} failed; task logs under {ui.settings.home}/airflow/logs"
        if run["state"] == "success":
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['state']} after {timeout_s} s"
        time.sleep(2)
