"""The run's datasets: ``networks.parquet``, ``networks.jsonl.gz`` and ``addresses.parquet``.

Rows are flattened from the crawl's result records (``crawl/records.py``);
the schemas below are the contract documented in docs/datasets.md. Addresses
are int64 (not uint32: Spark, Java and older tools have no unsigned types) and
text; timestamps are UTC. Files are written under a temporary name and renamed,
so a reader never sees half a file and a re-run replaces, never appends.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from whoiscrawl.crawl import ipspace

NETWORKS_PARQUET = "networks.parquet"
NETWORKS_JSONL = "networks.jsonl.gz"
ADDRESSES_PARQUET = "addresses.parquet"

ENTITY = pa.struct([("handle", pa.string()), ("roles", pa.list_(pa.string())),
                    ("name", pa.string()), ("email", pa.string())])
TS = pa.timestamp("ms", tz="UTC")  # Parquet has no second unit; ms round-trips unchanged

NETWORK_SCHEMA = pa.schema([
    ("registry", pa.string()),
    ("handle", pa.string()),
    ("start", pa.string()),
    ("end", pa.string()),
    ("start_int", pa.int64()),
    ("end_int", pa.int64()),
    ("size", pa.int64()),
    ("cidrs", pa.list_(pa.string())),
    ("name", pa.string()),
    ("type", pa.string()),
    ("country", pa.string()),
    ("parent_handle", pa.string()),
    ("entities", pa.list_(ENTITY)),
    ("registered_at", TS),
    ("last_changed_at", TS),
    ("found_by", pa.string()),
    ("query", pa.string()),
    ("query_int", pa.int64()),
    ("url", pa.string()),
    ("fetched_at", TS),
    ("run", pa.string()),
])

#: How an address got its network (``how`` in addresses.parquet).
LOOKED_UP, INSIDE, FAILED, NOT_CRAWLED = "looked_up", "inside", "failed", "not_crawled"

ADDRESS_SCHEMA = pa.schema([
    ("address", pa.string()),
    ("address_int", pa.int64()),
    ("how", pa.string()),
    ("reason", pa.string()),
    ("registry", pa.string()),
    ("handle", pa.string()),
    ("network_start", pa.string()),
    ("network_end", pa.string()),
    ("network_start_int", pa.int64()),
    ("network_end_int", pa.int64()),
    ("chunk", pa.int32()),
])


def _time(value: Any) -> _dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = _dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when.astimezone(_dt.timezone.utc).replace(microsecond=0)


def _event(raw: Any, action: str) -> _dt.datetime | None:
    events = raw.get("events") if isinstance(raw, dict) else None
    for ev in events if isinstance(events, list) else []:
        if isinstance(ev, dict) and str(ev.get("eventAction", "")).lower() == action:
            return _time(ev.get("eventDate"))
    return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def network_row(record: dict[str, Any], found_by: str = "lookup") -> dict[str, Any]:
    """One networks row from a result record (values typed for NETWORK_SCHEMA; ``raw`` left out)."""
    start, end = ipspace.to_int(record["start"]), ipspace.to_int(record["end"])
    raw = record.get("raw")
    entities = [{"handle": _text(e.get("handle")), "roles": [str(r) for r in (e.get("roles") or [])],
                 "name": _text(e.get("name")), "email": _text(e.get("email"))}
                for e in (record.get("entities") or []) if isinstance(e, dict)]
    return {
        "registry": record["registry"], "handle": str(record["handle"]),
        "start": ipspace.to_str(start), "end": ipspace.to_str(end),
        "start_int": start, "end_int": end, "size": end - start + 1,
        "cidrs": [str(c) for c in (record.get("cidrs") or [])],
        "name": _text(record.get("name")), "type": _text(record.get("type")),
        "country": _text(record.get("country")), "parent_handle": _text(record.get("parent_handle")),
        "entities": entities,
        "registered_at": _event(raw, "registration"), "last_changed_at": _event(raw, "last changed"),
        "found_by": found_by, "query": record.get("query"),
        "query_int": ipspace.to_int(record["query"]) if record.get("query") else None,
        "url": _text(record.get("url")), "fetched_at": _time(record.get("fetched_at")),
        "run": _text(record.get("run")),
    }


def _json_value(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


class NetworkWriter:
    """Streams network rows into networks.parquet and networks.jsonl.gz (the JSON lines keep ``raw``)."""

    def __init__(self, out_dir: Path, batch_rows: int = 20_000) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._parquet_tmp = self.out_dir / (NETWORKS_PARQUET + ".tmp")
        self._jsonl_tmp = self.out_dir / (NETWORKS_JSONL + ".tmp")
        self._pq = pq.ParquetWriter(self._parquet_tmp, NETWORK_SCHEMA, compression="zstd")
        self._jsonl = gzip.open(self._jsonl_tmp, "wt", encoding="utf-8")
        self._batch: list[dict[str, Any]] = []
        self.batch_rows = batch_rows
        self.rows = 0

    def write(self, record: dict[str, Any], found_by: str = "lookup") -> dict[str, Any]:
        row = network_row(record, found_by)
        self._batch.append(row)
        line = {k: _json_value(v) for k, v in row.items()}
        line["raw"] = record.get("raw")
        self._jsonl.write(json.dumps(line, separators=(",", ":"), default=str) + "\n")
        self.rows += 1
        if len(self._batch) >= self.batch_rows:
            self._flush()
        return row

    def _flush(self) -> None:
        if self._batch:
            self._pq.write_table(pa.Table.from_pylist(self._batch, schema=NETWORK_SCHEMA))
            self._batch = []

    def close(self) -> None:
        """Finish both files and put them in place."""
        self._flush()
        self._pq.close()
        self._jsonl.close()
        os.replace(self._parquet_tmp, self.out_dir / NETWORKS_PARQUET)
        os.replace(self._jsonl_tmp, self.out_dir / NETWORKS_JSONL)

    def abort(self) -> None:
        for closer in (self._pq.close, self._jsonl.close):
            try:
                closer()
            except Exception:  # cleanup never hides the original error
                pass
        for tmp in (self._parquet_tmp, self._jsonl_tmp):
            tmp.unlink(missing_ok=True)


def address_table(seed: np.ndarray, seed_chunk: np.ndarray, nets: dict[str, np.ndarray],
                  owner: np.ndarray, queried: np.ndarray,
                  failures: dict[int, str], finished_chunks: Iterable[int]) -> pa.Table:
    """addresses.parquet's rows: every seed address, its most specific network and how it got it.

    ``nets``: registry, handle, start_int, end_int arrays; ``owner``: network index per seed address
    (-1: none); ``queried``: sorted addresses whose own lookup produced a network;
    ``failures``: address -> reason from the finished chunks. An address of a chunk that never
    finished and inside no network found is ``not_crawled`` (reason ``chunk_failed``).
    """
    seed = np.asarray(seed, dtype=np.int64)
    has = owner >= 0
    own = np.clip(owner, 0, None)
    looked = np.isin(seed, queried)
    how = np.where(has, np.where(looked, LOOKED_UP, INSIDE), NOT_CRAWLED).astype(object)
    reason = np.full(len(seed), None, dtype=object)
    finished = np.isin(seed_chunk, np.fromiter(finished_chunks, dtype=np.int64))
    if failures:
        f_addr = np.fromiter(failures.keys(), dtype=np.int64, count=len(failures))
        f_reason = np.array(list(failures.values()), dtype=object)
        order = np.argsort(f_addr)
        f_addr, f_reason = f_addr[order], f_reason[order]
        pos = np.clip(np.searchsorted(f_addr, seed), 0, len(f_addr) - 1)
        hit = (f_addr[pos] == seed) & ~has
        how[hit] = FAILED
        reason[hit] = f_reason[pos[hit]]
        how[hit & (reason == "deferred")] = NOT_CRAWLED  # handed on by a chunk out of time, never crawled
    unexplained = ~has & (how == NOT_CRAWLED) & np.array([r is None for r in reason], dtype=bool)
    reason[unexplained & ~finished] = "chunk_failed"
    reason[unexplained & finished] = "unaccounted"

    def pick(column: np.ndarray) -> pa.Array:
        if len(column) == 0:
            return pa.nulls(len(seed), pa.string())
        values = np.asarray(column, dtype=object)[own]
        values[~has] = None
        return pa.array(values.tolist(), type=pa.string())

    def pick_int(column: np.ndarray) -> pa.Array:
        return pa.array(np.asarray(column, dtype=np.int64)[own] if len(column) else np.zeros(len(seed), np.int64),
                        mask=~has, type=pa.int64())

    starts = pick_int(nets["start_int"])
    ends = pick_int(nets["end_int"])
    return pa.Table.from_arrays([
        pa.array([ipspace.to_str(a) for a in seed.tolist()], type=pa.string()),
        pa.array(seed, type=pa.int64()),
        pa.array(how.tolist(), type=pa.string()),
        pa.array(reason.tolist(), type=pa.string()),
        pick(nets["registry"]), pick(nets["handle"]),
        pa.array([None if v is None else ipspace.to_str(v) for v in starts.to_pylist()], type=pa.string()),
        pa.array([None if v is None else ipspace.to_str(v) for v in ends.to_pylist()], type=pa.string()),
        starts, ends,
        pa.array(np.asarray(seed_chunk, dtype=np.int32), type=pa.int32()),
    ], schema=ADDRESS_SCHEMA)


def write_table(table: pa.Table, path: Path) -> Path:
    """Write ``table`` to ``path`` atomically (a temporary name, then a rename)."""
    tmp = Path(str(path) + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
    return path
