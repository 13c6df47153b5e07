"""`whoiscrawl ui` end to end: log in, trigger ipv4_whois_crawl from its Params form in headless Chromium,
once exactly as the form opens and once with Params changed, and both runs succeed against the simulator.

The form as it opens leaves `bootstrap` and `rate_limits` empty: the runs reach the simulator only because
the local UI's processes carry the simulator's bootstrap as what "empty" means there.
"""

from __future__ import annotations

import json

import pytest

from uikit import PAGE_TIMEOUT_MS, api_token, dag_runs, login, running_ui, ui_environ, wait_succeeded, wait_until_runs
from whoiscrawl.crawl.runstate import run_key
from whoiscrawl.devtools.demo import DEV_LIMIT
from whoiscrawl.devtools.stack import connection_env
from whoiscrawl.devtools.ui import DAG_ID

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    with running_ui(ui_environ(tmp_path_factory.mktemp("ui-home"))) as running:
        yield running


def open_trigger_form(page, ui):
    page.goto(f"{ui.url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Run Parameters").wait_for()
    return dialog


def set_number(dialog, param: str, value: int) -> None:
    """Airflow's number inputs have generated ids; their step buttons name the input they control."""
    input_id = dialog.locator(f"[id='number-input:element_{param}:inc']").get_attribute("aria-controls")
    dialog.locator(f"[id='{input_id}']").fill(str(value))


def submit(dialog) -> None:
    button = dialog.get_by_test_id("trigger-dag-submit")
    assert button.is_enabled(), "the Trigger button is disabled with the form as it is"
    button.click()
    dialog.wait_for(state="hidden", timeout=30_000)


def test_the_form_triggers_runs_that_succeed_against_the_simulator(ui, browser, tmp_path):
    local_ui, password = ui
    token = api_token(local_ui, password)
    assert dag_runs(local_ui, token) == []
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    login(page, local_ui, password)

    # 1. exactly as the form opens: nothing typed
    dialog = open_trigger_form(page, local_ui)
    for name in ("bootstrap", "rate_limits", "output_dir"):
        assert dialog.locator(f"#element_{name}").input_value() == ""
        assert dialog.locator(f"#element_{name}").get_attribute("required") is None, name
    page.screenshot(path=str(tmp_path / "trigger-form.png"))
    submit(dialog)
    first = wait_until_runs(local_ui, token, 1)[0]

    # 2. a few Params changed
    out = local_ui.settings.output_base_dir / "changed-output"  # Params may name folders inside the base only
    dialog = open_trigger_form(page, local_ui)
    set_number(dialog, "limit", 300)
    set_number(dialog, "chunks", 2)
    set_number(dialog, "random_seed", 7)
    dialog.locator("#element_output_dir").fill(str(out))
    submit(dialog)
    second = next(r for r in wait_until_runs(local_ui, token, 2) if r["dag_run_id"] != first["dag_run_id"])

    done_first = wait_succeeded(local_ui, token, first["dag_run_id"])
    done_second = wait_succeeded(local_ui, token, second["dag_run_id"])
    assert done_first["conf"].get("bootstrap") in (None, "") and done_first["conf"].get("limit") == int(DEV_LIMIT)
    assert {k: done_second["conf"][k] for k in ("limit", "chunks", "random_seed", "output_dir")} == \
        {"limit": 300, "chunks": 2, "random_seed": 7, "output_dir": str(out)}

    # the reports say what each run crawled, and where: the simulator's registries
    default_report = json.loads((local_ui.settings.output_base_dir / run_key(first["dag_run_id"])
                                 / "coverage.json").read_text())
    changed_report = json.loads((out / run_key(second["dag_run_id"]) / "coverage.json").read_text())
    assert default_report["seed_addresses"] == int(DEV_LIMIT)  # the development stack's default
    assert changed_report["seed_addresses"] == 300
    simulator = connection_env(local_ui.settings)["WHOISCRAWL_SIM_BOOTSTRAP_URL"]
    for report in (default_report, changed_report):
        assert report["run_config"]["bootstrap"] == simulator  # what an empty `bootstrap` means on this UI
        assert report["looked_up"] > 0
        assert report["looked_up"] + report["skipped"] + report["failed"] == report["seed_addresses"]
    page.close()
