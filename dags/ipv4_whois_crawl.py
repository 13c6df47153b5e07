"""
# ipv4_whois_crawl

Collects WHOIS data over RDAP for the IPv4 space from the five Regional
Internet Registries (ARIN, RIPE NCC, APNIC, LACNIC, AFRINIC).

1. **prepare_seed**: the seed list (the classic 4,706,768-address pattern, or a
   file of addresses) is written to sqlite, shuffled, cut to `limit`, split in
   `chunks`.
2. **provision_fleet** (setup): the `fleet` param's provider brings up the hosts
   that crawl and waits until they answer (`local`: this machine).
3. **configure_cluster**: cluster config, run settings and chunks go to Redis.
4. **crawl_chunk** (mapped, one task per chunk): skip addresses inside networks
   already found, look the rest up at the registry the RFC 9224 bootstrap
   names, within each registry's rate limit, and stream results to Kafka.
5. **drain_results**: this run's results from Kafka to
   `results.jsonl.gz` (one line per distinct network).
6. **coverage_report**: `coverage.json`, also returned as the XCom.
7. **teardown_fleet** (teardown): releases what provisioning launched.

Connections: `redis_default`, `kafka_default`. Settings: `WHOISCRAWL_*`
environment variables (see the README).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, setup, task, teardown

from whoiscrawl.orchestration.fleet import FLEET_KINDS

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
        "limit": Param(20000, type=["null", "integer"], minimum=0,
                       description="Crawl only the first N seed addresses after shuffling; empty for all."),
        "random_seed": Param(2018, type="integer", description="Seed of the shuffle (recorded in the report)."),
        "chunks": Param(8, type="integer", minimum=1, maximum=1024,
                        description="Number of crawl tasks the seed is split into (at most max_map_length)."),
        "bootstrap": Param("", type="string",
                           description="RFC 9224 bootstrap file (path or URL) naming each registry's RDAP "
                                       "service: a file in WHOISCRAWL_SEED_BASE_DIR, an https URL or one of "
                                       "WHOISCRAWL_BOOTSTRAP_URL_ALLOWLIST. Empty: WHOISCRAWL_BOOTSTRAP, else IANA's file."),
        "rate_limits": Param("", type="string",
                             description="Per-registry budgets per host, e.g. 'lacnic=10/60+1000/3600'. "
                                         "Empty: WHOISCRAWL_RATE_LIMITS, else the documented defaults."),
        "output_dir": Param("", type="string",
                            description="Folder for results.jsonl.gz and coverage.json (a subfolder per run), "
                                        "inside WHOISCRAWL_OUTPUT_BASE_DIR. Empty: that folder."),
        "fleet": Param("local", type="string", enum=list(FLEET_KINDS),
                       description="Where crawl tasks run: 'local' launches nothing; 'celery' checks that "
                                   "the CeleryExecutor fleet's workers answer and crawls on them."),
    },
)
def ipv4_whois_crawl():
    @task
    def prepare_seed() -> dict:
        from whoiscrawl.orchestration import tasks as pipeline

        ctx = get_current_context()
        return pipeline.prepare_seed(dict(ctx["params"]), ctx["run_id"])

    @setup
    def provision_fleet() -> dict:
        from whoiscrawl.orchestration.fleet import bring_up, provider_for

        ctx = get_current_context()
        params = dict(ctx["params"])
        return bring_up(provider_for(params["fleet"]), params,
                        record=lambda state: ctx["ti"].xcom_push(key="fleet_state", value=state))

    @task
    def configure_cluster(prepared: dict, fleet_info: dict) -> list[dict]:
        from whoiscrawl.orchestration import tasks as pipeline

        return pipeline.configure_cluster(prepared, fleet_info, dict(get_current_context()["params"]))

    @task(max_active_tis_per_dagrun=16, execution_timeout=timedelta(hours=6))
    def crawl_chunk(descriptor: dict) -> dict:
        from whoiscrawl.orchestration import tasks as pipeline

        return pipeline.crawl_chunk(descriptor, attempt=get_current_context()["ti"].try_number)

    @task
    def drain_results(outcomes: list[dict], prepared: dict) -> dict:
        from whoiscrawl.orchestration import tasks as pipeline

        del outcomes  # only ordering: drain after every chunk's results are acknowledged
        return pipeline.drain_results(prepared, dict(get_current_context()["params"]))

    @task
    def coverage_report(drained: dict, outcomes: list[dict], prepared: dict) -> dict:
        from whoiscrawl.orchestration import tasks as pipeline

        return pipeline.report(drained, list(outcomes), prepared, dict(get_current_context()["params"]))

    @teardown
    def teardown_fleet(fleet_info: dict) -> dict:
        from whoiscrawl.orchestration.fleet import provider_for

        return provider_for(fleet_info["kind"]).teardown(fleet_info)

    prepared = prepare_seed()
    fleet_info = provision_fleet()
    configured = configure_cluster(prepared, fleet_info)
    outcomes = crawl_chunk.expand(descriptor=configured)
    drained = drain_results(outcomes, prepared)
    report = coverage_report(drained, outcomes, prepared)
    report >> teardown_fleet(fleet_info)


ipv4_whois_crawl()
