"""Each chunk's outcome and its failed addresses, kept in Redis for the drain and the report.

A crawl task writes them once its chunk is done, under the run's attempt (a
re-run of a cleared run starts a new one, like its index and result offsets):
a retried chunk overwrites its dead try's part, a continuation (the addresses
an earlier try handed on) adds a part. So the drain and the report, on whatever
host and even after other chunks failed, know which chunks finished and why
each failed address failed, without reading Airflow's XComs of failed mapped
tasks.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import numpy as np
import redis

from whoiscrawl.crawl.runstate import RUN_TTL_S


def _key(run: str, attempt: int) -> str:
    return f"whoiscrawl:run:{run}:outcomes:{int(attempt)}"


def write_chunk_result(client: redis.Redis, run: str, attempt: int, outcome: dict[str, Any],
                       failures: list[tuple[int, str]], continuation: bool = False) -> None:
    """The chunk's outcome (its XCom) and its failures as (address, reason), in one write.

    ``continuation``: this try crawled what an earlier one handed on, so it adds a part.
    """
    reasons = sorted({r for _a, r in failures})
    code = {r: i for i, r in enumerate(reasons)}
    doc = {"outcome": outcome, "reasons": reasons,
           "addrs": np.asarray([a for a, _r in failures], dtype=">u4").tobytes().hex(),
           "codes": [code[r] for _a, r in failures]}
    key, chunk = _key(run, attempt), int(outcome["chunk"])
    pipe = client.pipeline(transaction=True)
    if not continuation:
        for field in client.hkeys(key):
            if int(field.split(b":")[0]) == chunk:
                pipe.hdel(key, field)
    part = len([f for f in client.hkeys(key) if int(f.split(b":")[0]) == chunk]) if continuation else 0
    pipe.hset(key, f"{chunk}:{part}", zlib.compress(json.dumps(doc).encode(), 6))
    pipe.expire(key, RUN_TTL_S)  # and keep_alive refreshes it with the run
    pipe.execute()


def read_chunk_results(client: redis.Redis, run: str, attempt: int) -> dict[int, dict[str, Any]]:
    """{chunk: {"outcomes": [...], "failures": [(address, reason), ...], "deferred": n}} per chunk that ran."""
    out: dict[int, dict[str, Any]] = {}
    for field, blob in sorted(client.hgetall(_key(run, attempt)).items()):
        chunk = int(field.split(b":")[0])
        doc = json.loads(zlib.decompress(blob))
        addrs = np.frombuffer(bytes.fromhex(doc["addrs"]), dtype=">u4").astype(np.int64).tolist()
        entry = out.setdefault(chunk, {"outcomes": [], "failures": []})
        entry["outcomes"].append(doc["outcome"])
        entry["failures"] += [(a, doc["reasons"][c]) for a, c in zip(addrs, doc["codes"])]
    return out


#: The reason kept for an address a chunk handed on and no later try crawled (it is not_crawled).
DEFERRED = "deferred"


def finished_chunks(results: dict[int, dict[str, Any]]) -> list[int]:
    """Chunks whose last try handed nothing on: every address of theirs has its outcome."""
    return sorted(c for c, r in results.items() if not int(r["outcomes"][-1].get("deferred", 0)))


def chunk_outcomes(results: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every try's outcome, each address once: an earlier try's deferred addresses belong to the next try."""
    out = []
    for chunk in sorted(results):
        parts = results[chunk]["outcomes"]
        for i, o in enumerate(parts):
            handed_on = int(o.get("deferred", 0)) if i < len(parts) - 1 else 0
            out.append({**o, "addresses": int(o.get("addresses", 0)) - handed_on})
    return out
