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
from pathlib import Path

from whoiscrawl.devtools import stack
from whoiscrawl.devtools.airflow_env import airflow_env, ensure_db, run_airflow
from whoiscrawl.crawl.registries import REGISTRIES
from whoiscrawl.settings import Settings

#: Budgets for the simulator's fast profile: polite to it, quick for a demo.
DEMO_RATE_LIMITS = ",".join(f"{r}=200/1" for r in REGISTRIES)


def newest_report(output_dir: Path, since: float) -> Path | None:
    found = [p for p in output_dir.glob("*/coverage.json") if p.stat().st_mtime >= since]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def run_demo(limit: int = 20000, chunks: int = 8, random_seed: int = 2018,
             settings: Settings | None = None) -> int:
    settings = settings or Settings()
    rc = stack.main(["up"])
    if rc != 0:
        print("demo: the local stack did not come up (see above)", file=sys.stderr)
        return rc
    conn_env = stack.connection_env(settings)
    env = {**airflow_env(settings), **conn_env}
    ensure_db(env)
    output_dir = settings.output_base_dir / "demo"  # Params may name folders inside it only
    conf = {"limit": limit, "chunks": chunks, "random_seed": random_seed,
            "bootstrap": conn_env["WHOISCRAWL_SIM_BOOTSTRAP_URL"], "rate_limits": DEMO_RATE_LIMITS,
            "output_dir": str(output_dir), "fleet": "local"}
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
    print(f"demo: finished in {time.time() - started:.0f}s; results in {report_path.parent}")
    print(json.dumps(report, sort_keys=False))
    return 0
