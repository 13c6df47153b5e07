"""A crawl of one chunk in its own process, for the SIGKILL test: ``python crawl_child.py CONFIG.json``.

The config names the Redis port, the Kafka servers, the bootstrap file, the run key, the addresses
and run-config overrides; the process crawls them with the same harness as the tests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

import numpy as np  # noqa: E402
import redis  # noqa: E402
from crawlkit import CrawlHarness  # noqa: E402


def main(path: str) -> None:
    conf = json.loads(Path(path).read_text())
    server = SimpleNamespace(client=lambda: redis.Redis(host="127.0.0.1", port=conf["redis_port"]))
    broker = SimpleNamespace(bootstrap_servers=conf["kafka"])
    outcome, _ = CrawlHarness(server, broker, conf["bootstrap"]).run(
        np.asarray(conf["addrs"], dtype=np.uint32), run_key=conf["run_key"], **conf["overrides"])
    print(json.dumps(outcome.as_dict()["looked_up"]))


if __name__ == "__main__":
    main(sys.argv[1])
