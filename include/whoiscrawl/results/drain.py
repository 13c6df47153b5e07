"""The drain: this run's results from Kafka into the run's datasets, exactly once.

Exactly once into the output, whatever reached Kafka: only records of this
run count (the topic is shared by runs), a network already drained (a retried
chunk produced it again) is dropped, and the files are replaced, not appended
to, so re-running the drain gives the same rows. Before reading, every offset
the run needs must still be on the broker (low watermark <= the run's start
offset); a retention gap is an error that names the partitions and how many
records are gone, never a silent reset to the oldest offset.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from whoiscrawl.crawl import ipspace
from whoiscrawl.crawl.kafka_io import read_range, watermarks
from whoiscrawl.errors import WhoiscrawlError
from whoiscrawl.progress import Progress
from whoiscrawl.results.chunks import finished_chunks
from whoiscrawl.results.coverage import coverage_curve
from whoiscrawl.results.datasets import ADDRESSES_PARQUET, NetworkWriter, address_table, write_table
from whoiscrawl.results.lookup import build_index
from whoiscrawl.results.netmap import NetworkMap

log = logging.getLogger(__name__)


class ResultsGone(WhoiscrawlError):
    """Records the run needs are no longer on the broker (retention ran out before the drain)."""


def parse_record(value: bytes | str | None) -> dict[str, Any] | None:
    """A results message as a record, or None when it is not one (anyone who reaches Kafka may write).

    The fields the drain relies on must be there with their types: the run and registry as text, a handle,
    start and end addresses, and the query address when present.
    """
    try:
        record = json.loads(value)
    except (TypeError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("run"), str):
        return None
    if not isinstance(record.get("registry"), str) or not isinstance(record.get("handle"), (str, int)):
        return None
    query = record.get("query")
    if query is not None and not isinstance(query, str):
        return None
    try:
        start, end = ipspace.to_int(str(record["start"])), ipspace.to_int(str(record["end"]))
        if query is not None:
            ipspace.to_int(query)
    except (KeyError, TypeError, ValueError):
        return None
    return record if start <= end else None


@dataclass
class Drained:
    """What the drain read and kept; the arrays describe the distinct networks in output order."""
    messages: int = 0
    other_runs: int = 0
    duplicates: int = 0
    #: messages that are not valid records (not JSON, wrong types): skipped and counted, never fatal
    invalid: int = 0
    registry: list[str] = field(default_factory=list)
    handle: list[str] = field(default_factory=list)
    start_int: list[int] = field(default_factory=list)
    end_int: list[int] = field(default_factory=list)
    query_int: list[int] = field(default_factory=list)
    fetched_at: list[str] = field(default_factory=list)
    #: every address whose own lookup answered, duplicates included (two chunks may find one network)
    queries: list[int] = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"registry": np.array(self.registry, dtype=object), "handle": np.array(self.handle, dtype=object),
                "start_int": np.array(self.start_int, dtype=np.int64), "end_int": np.array(self.end_int, dtype=np.int64),
                "query_int": np.array(self.query_int, dtype=np.int64)}

    def summary(self) -> dict[str, int]:
        return {"messages": self.messages, "distinct_networks": len(self.handle),
                "duplicates": self.duplicates, "other_runs": self.other_runs, "invalid_messages": self.invalid}


def check_offsets(marks: dict[int, tuple[int, int]], start: dict[int, int], topic: str) -> dict[int, int]:
    """The end offsets to drain to; ResultsGone if any needed offset was deleted."""
    gaps = []
    for p, (low, _high) in sorted(marks.items()):
        s = start.get(p, 0)
        if low > s:
            gaps.append(f"partition {p}: offsets {s}..{low - 1} ({low - s} records) deleted")
    if gaps:
        raise ResultsGone(f"{topic}: this run's results are no longer all on the broker (retention?): "
                          + "; ".join(gaps) + ". Raise the topic's retention.ms above the run's length "
                          "and crawl the lost part again; nothing was written.")
    return {p: high for p, (_low, high) in marks.items()}


def drain_run(consumer, topic: str, run: str, start: dict[int, int], out_dir: Path) -> Drained:
    """Read ``run``'s records from ``start`` to the current end into networks.parquet / .jsonl.gz.

    ``consumer`` should be made with ``offset_reset="error"`` so an offset deleted during the read
    raises too.
    """
    end = check_offsets(watermarks(consumer, topic), start, topic)
    drained = Drained()
    seen: set[tuple[str, str]] = set()
    writer = NetworkWriter(out_dir)
    # every message of the range is read (other runs' too): that is the work to show
    progress = Progress("drain", total=sum(max(0, high - start.get(p, 0)) for p, high in end.items()),
                        unit="messages")
    try:
        for _key, value in read_range(consumer, topic, start, end):
            progress.advance()
            record = parse_record(value)
            if record is None:
                drained.invalid += 1
                continue
            if record.get("run") != run:
                drained.other_runs += 1
                continue
            drained.messages += 1
            ident = (record["registry"], str(record["handle"]))
            if ident in seen:
                drained.duplicates += 1
                if record.get("query"):
                    drained.queries.append(ipspace.to_int(record["query"]))
                continue
            try:
                row = writer.write(record)
            except (TypeError, ValueError, KeyError, AttributeError):  # a forged record's odd member
                drained.messages -= 1
                drained.invalid += 1
                continue
            seen.add(ident)
            if record.get("query"):
                drained.queries.append(ipspace.to_int(record["query"]))
            drained.registry.append(row["registry"])
            drained.handle.append(row["handle"])
            drained.start_int.append(row["start_int"])
            drained.end_int.append(row["end_int"])
            drained.query_int.append(row["query_int"] if row["query_int"] is not None else -1)
            drained.fetched_at.append(str(record.get("fetched_at") or ""))
        writer.close()
    except BaseException as exc:
        writer.abort()
        progress.close(f"stopped ({type(exc).__name__})")
        raise
    progress.close(f"{drained.messages:,} records of the run, {drained.duplicates:,} duplicates")
    log.info("drained %s", drained.summary())
    return drained


def write_addresses(out_dir: Path, drained: Drained, seed: np.ndarray, seed_chunk: np.ndarray,
                    chunk_results: dict[int, dict[str, Any]]) -> dict[str, int]:
    """addresses.parquet for the whole seed; returns the count of addresses per ``how``."""
    nets = drained.arrays()
    netmap = NetworkMap.build(nets["start_int"], nets["end_int"])
    owner = netmap.most_specific(seed)
    failures = {a: r for res in chunk_results.values() for a, r in res["failures"]}
    table = address_table(seed, seed_chunk, nets, owner, np.unique(np.asarray(drained.queries, dtype=np.int64)),
                          failures, finished_chunks(chunk_results))
    write_table(table, Path(out_dir) / ADDRESSES_PARQUET)
    hows, counts = np.unique(np.asarray(table.column("how").to_pylist(), dtype=object), return_counts=True)
    return {str(h): int(c) for h, c in zip(hows, counts)}


def drain_to_outputs(consumer, topic: str, run: str, start: dict[int, int], out_dir: Path,
                     seed_parts: list[np.ndarray], chunk_results: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The drain task's whole work: networks files, addresses.parquet, the lookup index.

    ``seed_parts``: each chunk's addresses, in chunk order; ``chunk_results``: the chunks that finished
    (results/chunks.py: each try's outcome and failures). Returns the drain's XCom, plus ``network_list`` (registry, start, end) for the
    report and ``curve`` (addresses covered as networks were found).
    """
    out_dir = Path(out_dir)
    drained = drain_run(consumer, topic, run, start, out_dir)
    seed = np.concatenate(seed_parts).astype(np.int64) if seed_parts else np.zeros(0, np.int64)
    seed_chunk = np.concatenate([np.full(len(p), i, np.int64) for i, p in enumerate(seed_parts)]) \
        if seed_parts else np.zeros(0, np.int64)
    addresses = write_addresses(out_dir, drained, seed, seed_chunk, chunk_results)
    build_index(out_dir)
    failed_chunks = sorted(set(range(len(seed_parts))) - set(finished_chunks(chunk_results)))
    return {**drained.summary(), "addresses": addresses, "failed_chunks": failed_chunks,
            "output_dir": str(out_dir),
            "files": sorted(p.name for p in out_dir.iterdir() if p.suffix in (".parquet", ".gz", ".sqlite")),
            "curve": coverage_curve(np.asarray(drained.start_int, np.int64), np.asarray(drained.end_int, np.int64),
                                    drained.fetched_at),
            "network_list": [{"registry": r, "start": ipspace.to_str(s), "end": ipspace.to_str(e)} for r, s, e in
                             zip(drained.registry, drained.start_int, drained.end_int)]}
