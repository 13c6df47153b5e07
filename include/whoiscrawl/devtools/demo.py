"""``make demo`` and ``whoiscrawl crawl``: the DAG in the local environment, ending with the coverage report.

Both start the local stack (Redis, Kafka, simulator) if it is not running,
prepare Airflow's SQLite metadata, run ``airflow dags test ipv4_whois_crawl``
with their Params (:func:`run_dag`, the one function serving both), show the
crawl's progress from the metrics topic while it runs, and print the coverage
report as one JSON object on the last line. The demo crawls the simulator;
``crawl`` takes any Params and crawls the simulator unless given a bootstrap.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from whoiscrawl.crawl.registries import REGISTRIES
from whoiscrawl.devtools import stack
from whoiscrawl.devtools.airflow_env import airflow_bin, airflow_env, ensure_db
from whoiscrawl.progress import Progress
from whoiscrawl.settings import PREFIX, Settings

#: Budgets for the simulator's fast profile: polite to it, quick for a demo.
DEMO_RATE_LIMITS = ",".join(f"{r}=200/1" for r in REGISTRIES)
#: How often the crawl processes report while a command shows their progress (the default is a minute).
PROGRESS_TELEMETRY_S = "5"
#: The planned crawl at a development stack's scale: each registry's few largest allocations walked, a
#: small probe budget (a full plan of the simulator takes hours). Runs of the local UI use it too.
DEV_PLAN = {PREFIX + "PLAN_ALLOCATIONS_PER_REGISTRY": "3", PREFIX + "PLAN_PROBE_BUDGET": "300"}
#: The ``limit`` Param's default on the local UI (``WHOISCRAWL_DEFAULT_LIMIT``): the DAG's own is the full crawl.
DEV_LIMIT = "2000"


def newest_report(output_dir: Path, since: float) -> Path | None:
    found = [p for p in output_dir.glob("*/coverage.json") if p.stat().st_mtime >= since]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def lookup_example(run_dir: Path) -> str | None:
    """An address of the run that was looked up (so ``whoiscrawl lookup`` has an answer), if any."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = run_dir / "addresses.parquet"
    if not path.exists():
        return None
    table = pq.read_table(path, columns=["address", "how"])
    found = table.filter(pc.equal(table.column("how"), "looked_up"))
    return found.column("address")[0].as_py() if found.num_rows else None


def crawl_progress(reader, since: float) -> tuple[int, int]:
    """(addresses done, reporters) of the run that started reporting after ``since``, from the metrics topic
    (``reader``: a :class:`~whoiscrawl.orchestration.ui.figures.MetricsReader`)."""
    from whoiscrawl.crawl.telemetry import aggregate
    from whoiscrawl.orchestration.ui import figures

    reports = reader.reports()
    runs = [r for r in figures.runs(reports) if r["first_report"] >= since]
    if not runs:
        return 0, 0
    mine = [r for r in reports if figures.run_of(r) == runs[0]["run"]]
    agg = aggregate(mine)
    return agg["Within Known CIDR Block"] + agg["Got WHOIS"] + agg["Failed to lookup WHOIS"], agg["reporters"]


def run_dag(conf: dict[str, Any], output_dir: Path, what: str, settings: Settings | None = None,
            poll_s: float = 2.0) -> int:
    """``airflow dags test ipv4_whois_crawl -c CONF`` on the local stack; prints the report; returns the exit code.

    Without a ``bootstrap`` in ``conf`` the run crawls the simulator (with :data:`DEMO_RATE_LIMITS` unless
    ``rate_limits`` is given), as runs triggered from the local UI do.
    """
    import os

    settings = settings or Settings()
    rc = stack.main(["up"])
    if rc != 0:
        print(f"{what}: the local stack did not come up (see above)", file=sys.stderr)
        return rc
    conn_env = stack.connection_env(settings)
    env = {**os.environ, **airflow_env(settings), **conn_env}
    env.setdefault(PREFIX + "TELEMETRY_INTERVAL_S", PROGRESS_TELEMETRY_S)
    for name, value in DEV_PLAN.items():
        env.setdefault(name, value)
    ensure_db(env)
    conf = {**conf, "output_dir": str(output_dir)}
    if not conf.get("bootstrap"):  # no registry named: the simulator, with budgets it is built for
        conf["bootstrap"] = conn_env.get(PREFIX + "SIM_BOOTSTRAP_URL", "")
        conf.setdefault("rate_limits", DEMO_RATE_LIMITS)
        if not conf["bootstrap"]:
            print(f"{what}: the simulator did not report its bootstrap URL", file=sys.stderr)
            return 1
    started = time.time()
    log_path = settings.home / f"{what}-airflow.log"
    print(f"{what}: airflow dags test ipv4_whois_crawl -c '{json.dumps(conf)}'; log: {log_path}", flush=True)
    from whoiscrawl.crawl.config import RunConfig
    from whoiscrawl.orchestration.ui import figures

    kafka = json.loads(conn_env["AIRFLOW_CONN_KAFKA_DEFAULT"])["extra"]
    reader = None
    with open(log_path, "w") as log, Progress(f"{what}", total=conf.get("limit"), unit="addresses") as progress:
        proc = subprocess.Popen([airflow_bin(), "dags", "test", "ipv4_whois_crawl", "-c", json.dumps(conf)],
                                env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        try:
            while proc.poll() is None:
                try:
                    reader = reader or figures.MetricsReader(kafka, RunConfig.from_env().metrics_topic)
                    done, reporters = crawl_progress(reader, started)
                    progress.update(done, f"{reporters} crawl processes" if reporters else "preparing")
                except Exception as exc:  # noqa: BLE001 - progress is best effort; the run's outcome is what counts
                    progress.update(progress.done, f"progress unavailable: {exc}")
                try:
                    proc.wait(timeout=poll_s)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if reader is not None:
                reader.close()
    report_path = newest_report(output_dir, started)
    if proc.returncode != 0 or report_path is None:
        tail = log_path.read_text(errors="replace").splitlines()[-40:]
        print("\n".join(tail), file=sys.stderr)
        print(f"{what}: the DAG run failed (exit {proc.returncode}); full log in {log_path}", file=sys.stderr)
        return proc.returncode or 1
    report = json.loads(report_path.read_text())
    run_dir = report_path.parent
    print(f"{what}: finished in {time.time() - started:.0f}s; results in {run_dir}")
    print(f"{what}: outputs: {', '.join(report.get('files', []))} (schema: docs/datasets.md)")
    example = lookup_example(run_dir)
    if example:
        print(f"{what}: try: .venv/bin/whoiscrawl lookup --run {run_dir} {example}")
    print(json.dumps(report, sort_keys=False))
    return 0


def run_demo(limit: int = 20000, chunks: int = 8, random_seed: int = 2018,
             settings: Settings | None = None) -> int:
    settings = settings or Settings()
    conf = {"limit": limit, "chunks": chunks, "random_seed": random_seed, "fleet": "local"}
    return run_dag(conf, settings.output_base_dir / "demo", "demo", settings)  # Params may name folders inside it only


def run_crawl(params: dict[str, Any], settings: Settings | None = None) -> int:
    """``whoiscrawl crawl``: any Params (those not given keep the DAG's defaults)."""
    settings = settings or Settings()
    conf = dict(params)
    output_dir = Path(conf.pop("output_dir", None) or settings.output_base_dir).expanduser().resolve()
    return run_dag(conf, output_dir, "crawl", settings)
