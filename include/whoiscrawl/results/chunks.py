"""Each chunk's outcome and its failed addresses, kept in Redis for the drain and the report.

A crawl task writes them once its chunk is done (a retried chunk overwrites
its dead attempt's), so the drain and the report, on whatever host and even
after other chunks failed, know which chunks finished and why each failed
address failed, without reading Airflow's XComs of failed mapped tasks.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import numpy as np
import redis

from whoiscrawl.crawl.runstate import RUN_TTL_S


def _key(run: str) -> str:
    return f"whoiscrawl:run:{run}:outcomes"


def write_chunk_result(client: redis.Redis, run: str, outcome: dict[str, Any],
                       failures: list[tuple[int, str]]) -> None:
    """The chunk's outcome (its XCom) and its failures as (address, reason), in one write."""
    reasons = sorted({r for _a, r in failures})
    code = {r: i for i, r in enumerate(reasons)}
    doc = {"outcome": outcome, "reasons": reasons,
           "addrs": np.asarray([a for a, _r in failures], dtype=">u4").tobytes().hex(),
           "codes": [code[r] for _a, r in failures]}
    pipe = client.pipeline(transaction=True)
    pipe.hset(_key(run), str(int(outcome["chunk"])), zlib.compress(json.dumps(doc).encode(), 6))
    pipe.expire(_key(run), RUN_TTL_S)
    pipe.execute()


def read_chunk_results(client: redis.Redis, run: str) -> dict[int, dict[str, Any]]:
    """{chunk: {"outcome": ..., "failures": [(address, reason), ...]}} for every chunk that finished."""
    out = {}
    for chunk, blob in client.hgetall(_key(run)).items():
        doc = json.loads(zlib.decompress(blob))
        addrs = np.frombuffer(bytes.fromhex(doc["addrs"]), dtype=">u4").astype(np.int64).tolist()
        out[int(chunk)] = {"outcome": doc["outcome"],
                           "failures": [(a, doc["reasons"][c]) for a, c in zip(addrs, doc["codes"])]}
    return out
