"""``make demo``: the DAG against the local simulator, end to end, ending with the coverage report.

Starts the local stack (Redis, Kafka, simulator) if it is not running,
prepares Airflow's SQLite metadata, runs ``airflow dags test
ipv4_whois_crawl`` with the simulator's bootstrap file, and prints the
coverage report as one JSON object on the last line.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

from whoiscrawl.devtools import stack
from whoiscrawl.devtools.airflow_env import airflow_env, ensure_db, run_airflow
from whoiscrawl.crawl.registries import REGISTRIES
from whoiscrawl.settings import Settings

#: Budgets for the simulator's fast profile: polite to it, quick for a demo.
DEMO_RATE_LIMITS = ",".join(f"{r}=200/1" for r in REGISTRIES)
#: The planned crawl's demo scale: each registry's few largest allocations walked, a small probe budget.
DEMO_PLAN = {"WHOISCRAWL_PLAN_ALLOCATIONS_PER_REGISTRY": "3", "WHOISCRAWL_PLAN_PROBE_BUDGET": "300"}


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


def run_demo(limit: int = 20000, chunks: int = 8, random_seed: int = 2018,
             settings: Settings | None = None) -> int:
    settings = settings or Settings()
    rc = stack.main(["up"])
    if rc != 0:
        print("demo: the local stack did not come up (see above)", file=sys.stderr)
        return rc
    conn_env = stack.connection_env(settings)
    env = {**airflow_env(settings), **conn_env, **DEMO_PLAN}
    ensure_db(env)
    output_dir = settings.home / "demo"
    conf = {"limit": limit, "chunks": chunks, "random_seed": random_seed,
            "bootstrap": conn_env["WHOISCRAWL_SIM_BOOTSTRAP_URL"], "rate_limits": DEMO_RATE_LIMITS,
            "output_dir": str(output_dir), "fleet": "local", "strategy": "planned",
            "delegated_urls": conn_env["WHOISCRAWL_DELEGATED_URLS"]}
    started = time.time()
    log_path = settings.home / "demo-airflow.log"
    print(f"demo: airflow dags test ipv4_whois_crawl ({limit} addresses, {chunks} chunks); log: {log_path}",
          flush=True)
    with open(log_path, "w") as log:
        proc = run_airflow(["dags", "test", "ipv4_whois_crawl", "-c", json.dumps(conf)], env,
                           stdout=log, stderr=log)
    report_path = newest_report(output_dir, started)
    if proc.returncode != 0 or report_path is None:
        tail = log_path.read_text(errors="replace").splitlines()[-40:]
        print("\n".join(tail), file=sys.stderr)
        print(f"demo: the DAG run failed (exit {proc.returncode}); full log in {log_path}", file=sys.stderr)
        return proc.returncode or 1
    report = json.loads(report_path.read_text())
    run_dir = report_path.parent
    print(f"demo: finished in {time.time() - started:.0f}s; results in {run_dir}")
    print(f"demo: outputs: {', '.join(report.get('files', []))} (schema: docs/datasets.md)")
    example = lookup_example(run_dir)
    if example:
        print(f"demo: try: .venv/bin/whoiscrawl lookup --run {run_dir} {example}")
    print(json.dumps(report, sort_keys=False))
    return 0
