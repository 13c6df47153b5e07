"""The "WHOIS crawl" page end to end: the api-server with the plugin, a small crawl, the page in headless
Chromium after signing in as Airflow's UI does, its numbers against the metrics topic's, and a request
without credentials refused.

The crawl reports every second (WHOISCRAWL_TELEMETRY_INTERVAL_S=1) so the page has figures while it runs.
A screenshot of the page is left in the test's tmp folder.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from uikit import PAGE_TIMEOUT_MS, api_get, api_token, login, running_ui, ui_environ, wait_succeeded
from whoiscrawl.crawl.kafka_io import make_consumer, read_all
from whoiscrawl.crawl.runstate import run_key
from whoiscrawl.crawl.telemetry import aggregate
from whoiscrawl.devtools.ui import DAG_ID
from whoiscrawl.orchestration.ui.figures import run_of

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SIX = ("Within Known CIDR Block", "Awaiting Registry", "Found Registry", "Looking up WHOIS", "Got WHOIS",
       "Failed to lookup WHOIS")


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    env = ui_environ(tmp_path_factory.mktemp("page-home"), WHOISCRAWL_TELEMETRY_INTERVAL_S="1")
    with running_ui(env) as running:
        yield running


def trigger(local_ui, token: str, conf: dict) -> str:
    body = json.dumps({"logical_date": None, "conf": conf}).encode()
    request = urllib.request.Request(f"{local_ui.url}/api/v2/dags/{DAG_ID}/dagRuns", data=body, method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["dag_run_id"]


def topic_reports(local_ui) -> list[dict]:
    from whoiscrawl.devtools.stack import connection_env

    kafka = json.loads(connection_env(local_ui.settings)["AIRFLOW_CONN_KAFKA_DEFAULT"])["extra"]  # with its login
    consumer = make_consumer(kafka, group_id="test-ui-page")
    try:
        return [json.loads(v) for _k, v in read_all(consumer, "metrics")]
    finally:
        consumer.close()


def number(text: str) -> int:
    return int(text.replace(",", ""))


def status_of(url: str, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_requests_without_valid_credentials_are_refused(ui):
    local_ui, _password = ui
    for path in ("/whoiscrawl/", "/whoiscrawl/api/runs", "/whoiscrawl/api/runs/latest/figures"):
        assert status_of(local_ui.url + path) == 401, path
        assert status_of(local_ui.url + path, {"Authorization": "Bearer not-a-token"}) in (401, 403), path
        assert status_of(local_ui.url + path, {"Cookie": "_token=forged"}) in (401, 403), path


def test_the_page_shows_the_metrics_topics_figures_of_a_running_crawl(ui, browser, tmp_path):
    local_ui, password = ui
    token = api_token(local_ui, password)
    run_id = trigger(local_ui, token, {"limit": 3000, "chunks": 2, "random_seed": 5})
    key = run_key(run_id)

    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    login(page, local_ui, password)
    # the page is in Airflow's navigation, served inside the UI by the plugin's external view
    page.goto(f"{local_ui.url}/plugin/whoiscrawl")
    frame_element = page.locator("iframe").first
    frame_element.wait_for(timeout=60_000)
    frame = frame_element.content_frame
    # figures appear while the run is running (reports every second)
    frame.locator("body[data-run]").wait_for(timeout=300_000)
    assert frame.locator("body").get_attribute("data-run") == key

    run = wait_succeeded(local_ui, token, run_id)
    assert run["state"] == "success"
    reports = [r for r in topic_reports(local_ui) if run_of(r) == key]
    assert reports and all(r["reporter"].split(":")[2] == key for r in reports)
    last = max(r["timestamp"] for r in reports)
    # the page refreshes by itself until it shows the last report
    frame.locator(f"body[data-last-report='{last}']").wait_for(timeout=60_000)
    page.screenshot(path=str(tmp_path / "whoiscrawl-page.png"), full_page=True)

    expected = aggregate(reports)
    for name in SIX:
        assert number(frame.locator(f"[data-total='{name}']").inner_text()) == expected[name], name
    assert expected["Got WHOIS"] > 0
    assert expected["Got WHOIS"] + expected["Within Known CIDR Block"] + expected["Failed to lookup WHOIS"] == 3000
    assert number(frame.locator("#left").inner_text()) == 0
    for host, counts in expected["hosts"].items():
        row = frame.locator(f"tr[data-host='{host}']")
        assert number(row.locator("[data-key='Got WHOIS']").inner_text()) == counts["Got WHOIS"]

    latest = {}
    for r in reports:
        if r["reporter"] not in latest or r["timestamp"] >= latest[r["reporter"]]["timestamp"]:
            latest[r["reporter"]] = r
    for registry in ("arin", "ripencc", "apnic", "lacnic", "afrinic"):
        requests = sum(r["per_registry"].get(registry, {}).get("lookup/attempt", 0) for r in latest.values())
        looked_up = sum(r["per_registry"].get(registry, {}).get("address/looked_up", 0) for r in latest.values())
        row = frame.locator(f"tr[data-registry='{registry}']")
        assert number(row.locator("[data-key='requests']").inner_text()) == requests, registry
        assert number(row.locator("[data-key='looked_up']").inner_text()) == looked_up, registry
        assert number(row.locator("[data-key='budget_per_s']").inner_text()) > 0  # the run's budget

    # the JSON behind the page is an API of its own: the same figures with a bearer token
    figures = api_get(local_ui, f"/whoiscrawl/api/runs/{key}/figures", token)
    assert {name: figures["totals"][name] for name in SIX} == {name: expected[name] for name in SIX}
    assert figures["coverage"]["networks"] > 0 and figures["coverage"]["percent"] > 0
    assert frame.locator("#coverage").inner_text().startswith(f"{figures['coverage']['percent']:.4f}")
    assert (tmp_path / "whoiscrawl-page.png").stat().st_size > 10_000
    page.close()
