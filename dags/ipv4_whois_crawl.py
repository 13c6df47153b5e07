"""
# ipv4_whois_crawl

Collects WHOIS data over RDAP for the IPv4 space from the five Regional
Internet Registries (ARIN, RIPE NCC, APNIC, LACNIC, AFRINIC).

1. **prepare_seed**: the seed list (the classic 4,706,768-address pattern, or a
   file of addresses) is written to sqlite, shuffled, cut to `limit`, split in
   `chunks`.
2. **prepare_fleet_image**, **provision_fleet** (setup group): the `fleet` param's
   provider bakes what its hosts boot from (`ec2`: a worker AMI), brings up the
   hosts that crawl and waits until they answer (`local`: this machine).
3. **configure_cluster**: cluster config, run settings and chunks go to Redis.
4. **plan_crawl**, **crawl_plan** (mapped; `strategy=planned`, the default):
   the registries' delegated files give the allocations; each plan chunk
   queries its allocations largest first, then walks them with RFC 9910
   relation searches where a registry offers them, gap probes elsewhere.
   With `strategy=classic` the plan is empty and these are skipped.
5. **crawl_chunk** (mapped, one task per chunk): `planned`: answer each seed
   address from the networks found, look up only the rest; `classic`: skip
   addresses inside networks already found, look the rest up. Each lookup at
   the registry the RFC 9224 bootstrap names, within each registry's rate
   limit, results streamed to Kafka.
6. **drain_results** (after failed chunks too): this run's results from Kafka,
   exactly once, to `networks.parquet`, `networks.jsonl.gz`, `addresses.parquet`
   and the `whoiscrawl lookup` index (docs/datasets.md); fails if Kafka no longer
   holds every result of the run. Emits the `whoiscrawl_networks` Asset.
7. **coverage_report** (after failed chunks too): `coverage.json`, also returned
   as the XCom; names the chunks that failed, and then fails the run.
8. **report_changes** (re-crawls only; skipped otherwise): `changes.jsonl.gz`
   against the run it started from, the summary as the XCom; emits the
   `whoiscrawl_changes` Asset.
9. **teardown_fleet** (teardown): releases what provisioning launched.

Connections: `redis_default`, `kafka_default`; `aws_default` for `fleet=ec2` and `s3_prefix`. Settings: `WHOISCRAWL_*`
environment variables (see the README).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, TaskGroup, dag, get_current_context, setup, task, teardown

from whoiscrawl.orchestration.fleet import FLEET_KINDS
from whoiscrawl.settings import Settings

#: The full crawl, unless this machine is a development stack that sets WHOISCRAWL_DEFAULT_LIMIT (env only).
DEFAULT_LIMIT = int(Settings().DEFAULT_LIMIT) if Settings().DEFAULT_LIMIT else None

#: The run's datasets (networks.parquet, networks.jsonl.gz, addresses.parquet); each event's extra names the folder.
NETWORKS_ASSET = Asset(name="whoiscrawl_networks", uri="whoiscrawl://ipv4_whois_crawl/networks")
#: A re-crawl's change report (changes.jsonl.gz); updated only by re-crawls.
CHANGES_ASSET = Asset(name="whoiscrawl_changes", uri="whoiscrawl://ipv4_whois_crawl/changes")

DEFAULT_ARGS = {
    "owner": "whoiscrawl",
    "retries": 2,
    "retry_delay": timedelta(seconds=15),
    "retry_exponential_backoff": True,
}


@dag(
    dag_id="ipv4_whois_crawl",
    doc_md=__doc__,
    schedule="@monthly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=True,
    default_args=DEFAULT_ARGS,
    tags=["whois", "rdap", "ipv4"],
    params={
        "seed": Param("classic", type="string",
                      description="'classic' for the 4,706,768-address pattern, or the path of a file "
                                  "with one IPv4 address per line (invalid lines are reported and skipped), "
                                  "inside WHOISCRAWL_SEED_BASE_DIR."),
        "limit": Param(DEFAULT_LIMIT, type=["null", "integer"], minimum=0,
                       description="Crawl only the first N seed addresses after shuffling; empty (the "
                                   "scheduled run) for all."),
        "random_seed": Param(2018, type="integer", description="Seed of the shuffle (recorded in the report)."),
        "chunks": Param(8, type="integer", minimum=1, maximum=1024,
                        description="Number of crawl tasks the seed is split into (at most max_map_length)."),
        "bootstrap": Param(None, type=["null", "string"],
                           description="RFC 9224 bootstrap file (path or URL) naming each registry's RDAP "
                                       "service: a file in WHOISCRAWL_SEED_BASE_DIR, an https URL or one of "
                                       "WHOISCRAWL_BOOTSTRAP_URL_ALLOWLIST. Empty: WHOISCRAWL_BOOTSTRAP, else IANA's file."),
        "rate_limits": Param(None, type=["null", "string"],
                             description="Per-registry budgets per host, e.g. 'lacnic=10/60+1000/3600'. "
                                         "Empty: WHOISCRAWL_RATE_LIMITS, else the documented defaults."),
        "output_dir": Param(None, type=["null", "string"],
                            description="Folder for the run's datasets and coverage.json (a subfolder per run), "
                                        "inside WHOISCRAWL_OUTPUT_BASE_DIR. Empty: that folder."),
        "strategy": Param("planned", type="string", enum=["planned", "classic"],
                          description="'planned': plan from the registries' delegated files, walk allocations "
                                      "with relation searches or gap probes, answer the seed from what was "
                                      "found; 'classic': the ancestor's shuffled seed lookups (the baseline)."),
        "delegated_urls": Param(None, type=["null", "string"],
                                description="Delegated-extended files, 'registry=url,...' over the real RIRs' "
                                            "files. Empty: WHOISCRAWL_DELEGATED_URLS, else the real files."),
        "previous_run": Param(None, type=["null", "string"],
                              description="Re-crawl from an earlier run's networks (its run key or folder): one "
                                          "query per known network, oldest fetched first, within `limit`, plus "
                                          "`gap_samples`; writes changes.jsonl.gz. Empty: a scheduled run starts "
                                          "from the newest completed run, a manual one crawls afresh; 'none': "
                                          "always afresh."),
        "gap_samples": Param(10000, type="integer", minimum=0,
                             description="A re-crawl's samples of the space the earlier run found nothing in."),
        "fleet": Param("local", type="string", enum=list(FLEET_KINDS),
                       description="Where crawl tasks run: 'local' launches nothing; 'celery' checks that "
                                   "the CeleryExecutor fleet's workers answer and crawls on them; 'ec2' bakes a "
                                   "worker image and launches spot workers (the ec2_* params, docs/ec2.md)."),
        "ec2_region": Param(None, type=["null", "string"], description="fleet=ec2: AWS region. Empty: us-east-1."),
        "ec2_workers": Param(2, type="integer", minimum=1, maximum=500, description="fleet=ec2: spot workers."),
        "ec2_instance_type": Param("c6i.large", type="string", description="fleet=ec2: the workers' instance type."),
        "ec2_max_price": Param(0.05, type="number", exclusiveMinimum=0,
                               description="fleet=ec2: the most paid per worker-hour (USD, the spot max price)."),
        "ec2_coordinator": Param(None, type=["null", "string"],
                                 description="fleet=ec2: the address the workers join (this coordinator's Redis, "
                                             "Kafka, PostgreSQL and API, as the workers reach them)."),
        "ec2_ami_id": Param(None, type=["null", "string"],
                            description="fleet=ec2: a worker image baked earlier; empty: bake one for this run."),
        "ec2_base_ami_id": Param(None, type=["null", "string"],
                                 description="fleet=ec2: the image the builder starts from (Debian 12), to bake."),
        "ec2_project_url": Param(None, type=["null", "string"],
                                 description="fleet=ec2: URL of the project's source tarball the builder installs."),
        "ec2_keep_ami": Param(False, type="boolean",
                              description="fleet=ec2: keep the baked image and its snapshots after teardown."),
        "ec2_subnet_id": Param(None, type=["null", "string"],
                               description="fleet=ec2: subnet of the workers; empty: the default VPC."),
        "ec2_security_group_id": Param(None, type=["null", "string"],
                                       description="fleet=ec2: an existing group; empty: a group of the run's own "
                                                   "that admits only itself and the coordinator."),
        "ec2_bake_wait_s": Param(1800, type="integer", minimum=1,
                                 description="fleet=ec2: seconds the builder may take to install and power off."),
        "ec2_ready_wait_s": Param(900, type="integer", minimum=1,
                                  description="fleet=ec2: seconds the workers may take to answer Celery."),
        "s3_prefix": Param(None, type=["null", "string"],
                           description="s3://bucket/prefix the seed sqlite and the results are copied to "
                                       "(the aws_default connection); empty: none."),
    },
)
def ipv4_whois_crawl():
    @task
    def prepare_seed() -> dict:
        from whoiscrawl.orchestration import tasks as pipeline

        ctx = get_current_context()
        return pipeline.prepare_seed(dict(ctx["params"]), ctx["run_id"], run_type=str(ctx["dag_run"].run_type))

    @setup
    def prepare_fleet_image() -> dict:
        from whoiscrawl.crawl.runstate import run_key
        from whoiscrawl.orchestration.fleet import provider_for

        ctx = get_current_context()
        params = {**ctx["params"], "run": run_key(ctx["run_id"])}  # the tag on what a cloud fleet launches
        return provider_for(params["fleet"]).prepare_image(params)

    @setup
    def provision_fleet(image: dict) -> dict:
        from whoiscrawl.crawl.runstate import run_key
        from whoiscrawl.orchestration.fleet import bring_up, provider_for

        ctx = get_current_context()
        params = {**ctx["params"], "run": run_key(ctx["run_id"]), **image}
        return bring_up(provider_for(params["fleet"]), params,
                        record=lambda state: ctx["ti"].xcom_push(key="fleet_state", value=state))

    @task
    def configure_cluster(prepared: dict, fleet_info: dict) -> list[dict]:
        from whoiscrawl.orchestration import tasks as pipeline

        return pipeline.configure_cluster(prepared, fleet_info, dict(get_current_context()["params"]))

    @task
    def plan_crawl(prepared: dict, configured: list[dict]) -> list[dict]:
        from whoiscrawl.orchestration import tasks as pipeline

        return pipeline.plan_crawl(prepared, configured, dict(get_current_context()["params"]))

    @task(max_active_tis_per_dagrun=16, execution_timeout=timedelta(hours=6))
    def crawl_plan(descriptor: dict) -> dict:
        from whoiscrawl.orchestration import tasks as pipeline

        return pipeline.crawl_plan(descriptor, attempt=get_current_context()["ti"].try_number)

    # none_failed: with the classic strategy the plan is empty and crawl_plan is skipped
    @task(max_active_tis_per_dagrun=16, execution_timeout=timedelta(hours=6), trigger_rule="none_failed")
    def crawl_chunk(descriptor: dict) -> dict:
        from whoiscrawl.orchestration import tasks as pipeline

        return pipeline.crawl_chunk(descriptor, attempt=get_current_context()["ti"].try_number)

    @task(trigger_rule="all_done", outlets=[NETWORKS_ASSET])
    def drain_results(prepared: dict) -> dict:
        from whoiscrawl.orchestration import tasks as pipeline

        ctx = get_current_context()
        drained = pipeline.drain_results(prepared, dict(ctx["params"]))
        ctx["outlet_events"][NETWORKS_ASSET].extra = {"run": prepared["run"], "output_dir": drained["output_dir"]}
        return drained

    @task  # after the drain, which runs after failed chunks too
    def coverage_report(drained: dict, prepared: dict) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from whoiscrawl.orchestration import tasks as pipeline

        try:
            return pipeline.report(drained, prepared, dict(get_current_context()["params"]))
        except pipeline.ChunksFailed as exc:  # written already; a retry cannot help
            raise AirflowFailException(str(exc)) from exc

    @task(outlets=[CHANGES_ASSET])
    def report_changes(prepared: dict) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from whoiscrawl.orchestration import tasks as pipeline

        summary = pipeline.report_changes(prepared)
        if summary is None:
            raise AirflowSkipException("a full crawl: nothing to compare with")
        get_current_context()["outlet_events"][CHANGES_ASSET].extra = {"run": prepared["run"],
                                                                       "output_dir": prepared["output_dir"]}
        return summary

    @teardown
    def teardown_fleet(fleet_info: dict) -> dict:
        from whoiscrawl.orchestration.fleet import provider_for

        return provider_for(fleet_info["kind"]).teardown(fleet_info)

    prepared = prepare_seed()
    with TaskGroup("fleet_setup", prefix_group_id=False, tooltip="setup: the fleet's image, then its hosts"):
        fleet_info = provision_fleet(prepare_fleet_image())
    configured = configure_cluster(prepared, fleet_info)
    walked = crawl_plan.expand(descriptor=plan_crawl(prepared, configured))
    outcomes = crawl_chunk.expand(descriptor=configured)
    walked >> outcomes
    drained = drain_results(prepared)
    outcomes >> drained  # drain once every chunk has finished or failed
    report = coverage_report(drained, prepared)
    changes = report_changes(prepared)
    drained >> changes
    [report, changes] >> teardown_fleet(fleet_info)


ipv4_whois_crawl()
