"""DAG integrity and policy: every DAG imports with no connections, variables or network, and follows the rules.

Connections, variables and environment lookups are stubbed to fail loudly, so a DAG file that does
I/O at import time (the scheduler parses it every few seconds) fails here.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'parse.db'}",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    mp = pytest.MonkeyPatch()
    try:
        from airflow.dag_processing.dagbag import DagBag
        from airflow.sdk import BaseHook, Variable

        def no_connection(*a, **k):
            raise AssertionError("a DAG looked up a connection at import time")

        def no_variable(*a, **k):
            raise AssertionError("a DAG read a Variable at import time")

        def no_network(*a, **k):
            raise AssertionError("a DAG opened a network connection at import time")

        mp.setattr(BaseHook, "get_connection", classmethod(no_connection))
        mp.setattr(Variable, "get", staticmethod(no_variable))
        mp.setattr(socket.socket, "connect", no_network)
        mp.setattr(os, "getenv", lambda *a, **k: (_ for _ in ()).throw(
            AssertionError("a DAG read the environment at import time")))
        bag = DagBag(dag_folder=str(DAGS))
    finally:
        mp.undo()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return bag


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}, dagbag.import_errors
    assert "ipv4_whois_crawl" in dagbag.dags


def test_every_dag_has_docs_tags_and_retries(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.doc_md and dag.doc_md.strip().startswith("#"), f"{dag_id}: doc_md"
        assert dag.tags, f"{dag_id}: tags"
        assert not dag.catchup, f"{dag_id}: catchup would crawl every missed interval"
        for t in dag.tasks:
            assert t.retries >= 1, f"{dag_id}.{t.task_id} has no retries"


def test_crawl_dag_shape(dagbag):
    dag = dagbag.dags["ipv4_whois_crawl"]
    ids = {t.task_id for t in dag.tasks}
    assert ids == {"prepare_seed", "prepare_fleet_image", "provision_fleet", "configure_cluster", "plan_crawl",
                   "crawl_plan", "crawl_chunk", "drain_results", "coverage_report", "report_changes", "teardown_fleet"}
    assert dag.get_task("provision_fleet").is_setup
    assert dag.get_task("prepare_fleet_image").is_setup
    assert "prepare_fleet_image" in dag.get_task("provision_fleet").upstream_task_ids
    assert set(dag.task_group_dict["fleet_setup"].children) == {"prepare_fleet_image", "provision_fleet"}
    assert dag.get_task("teardown_fleet").is_teardown
    # the crawl is mapped over chunks and the drain waits for all of them
    crawl = dag.get_task("crawl_chunk")
    assert getattr(crawl, "_is_mapped", False) or type(crawl).__name__ == "MappedOperator"
    assert "crawl_chunk" in dag.get_task("drain_results").upstream_task_ids
    assert "drain_results" in dag.get_task("coverage_report").upstream_task_ids
    assert "configure_cluster" in crawl.upstream_task_ids
    # the planned strategy walks its plan, mapped, before the seed chunks; classic skips the empty plan
    walk = dag.get_task("crawl_plan")
    assert getattr(walk, "_is_mapped", False) or type(walk).__name__ == "MappedOperator"
    assert "plan_crawl" in walk.upstream_task_ids and "configure_cluster" in dag.get_task("plan_crawl").upstream_task_ids
    assert "crawl_plan" in crawl.upstream_task_ids
    assert crawl.trigger_rule == "none_failed"
    # the drain runs after failed chunks too (it names them); the report after the drain
    assert dag.get_task("drain_results").trigger_rule == "all_done"
    assert dag.get_task("coverage_report").upstream_task_ids >= {"drain_results"}


def test_the_datasets_are_an_asset_a_downstream_dag_can_be_scheduled_on(dagbag):
    from airflow.sdk import Asset

    outlets = dagbag.dags["ipv4_whois_crawl"].get_task("drain_results").outlets
    assert [o.uri for o in outlets if isinstance(o, Asset)] == ["whoiscrawl://ipv4_whois_crawl/networks"]
    outlets = dagbag.dags["ipv4_whois_crawl"].get_task("report_changes").outlets
    assert [o.uri for o in outlets if isinstance(o, Asset)] == ["whoiscrawl://ipv4_whois_crawl/changes"]


def test_params_have_descriptions_for_the_ui_form(dagbag):
    dag = dagbag.dags["ipv4_whois_crawl"]
    expected = {"seed", "limit", "random_seed", "chunks", "bootstrap", "rate_limits", "output_dir", "fleet",
                "strategy", "delegated_urls", "previous_run", "gap_samples"}
    assert expected <= set(dag.params.keys())
    for name in expected:
        assert dag.params.get_param(name).description, name
    assert dag.params["limit"] is None and dag.params["fleet"] == "local"  # the scheduled run is the full crawl
    assert dag.params.get_param("chunks").schema["maximum"] <= 1024  # within max_map_length


def test_fleet_param_offers_every_fleet_kind(dagbag):
    from whoiscrawl.orchestration.fleet import FLEET_KINDS

    dag = dagbag.dags["ipv4_whois_crawl"]
    assert list(dag.params.get_param("fleet").schema["enum"]) == list(FLEET_KINDS)


def test_strategy_param_chooses_between_planned_and_classic(dagbag):
    from whoiscrawl.crawl.config import STRATEGIES
    from whoiscrawl.orchestration.tasks import RUN_CONFIG_PARAMS, build_run_config

    dag = dagbag.dags["ipv4_whois_crawl"]
    assert dag.params["strategy"] == "planned"
    assert set(dag.params.get_param("strategy").schema["enum"]) == set(STRATEGIES)
    assert {"strategy", "delegated_urls"} <= set(RUN_CONFIG_PARAMS)
    assert build_run_config({"strategy": "classic"}).strategy == "classic"
    assert build_run_config({"strategy": ""}).strategy == "planned"


def test_optional_params_are_optional_in_the_trigger_form(dagbag):
    """A Param whose description says what "Empty" means accepts null and defaults to it: the form
    does not mark it required, and the tasks treat None like empty."""
    dag = dagbag.dags["ipv4_whois_crawl"]
    optional = [name for name in dag.params.keys() if "Empty" in (dag.params.get_param(name).description or "")]
    assert {"bootstrap", "rate_limits", "output_dir"} <= set(optional)
    for name in optional:
        param = dag.params.get_param(name)
        assert "null" in param.schema["type"], name
        assert param.resolve(None) is None, name  # validation accepts what the tasks accept
    dag.params.validate()  # the defaults validate as the form sends them


def test_ec2_params_are_described_and_the_optional_ones_nullable(dagbag):
    dag = dagbag.dags["ipv4_whois_crawl"]
    ec2 = [name for name in dag.params.keys() if name.startswith("ec2_")] + ["s3_prefix"]
    assert {"ec2_region", "ec2_workers", "ec2_instance_type", "ec2_max_price", "ec2_coordinator", "ec2_ami_id",
            "ec2_keep_ami", "ec2_subnet_id", "ec2_security_group_id"} <= set(ec2)
    for name in ec2:
        param = dag.params.get_param(name)
        assert param.description, name
        if param.value is None:
            assert "null" in param.schema["type"], name
    assert dag.params["ec2_keep_ami"] is False
