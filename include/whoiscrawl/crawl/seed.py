"""The seed list: which addresses a crawl asks about, stored in sqlite.

The classic pattern is the ancestor's: first octet 1-255 except a few /8s
known to be single large networks (3, 9, 10, 12, 15-20, 34, 48, 56, 127),
every second octet, third octet 0, 12, ..., 252, fourth octet 1, 65, 129,
193, minus the ancestor's private/reserved blocks: 4,706,768 addresses. They
are shuffled with a recorded random seed so that every chunk of the list
touches every registry (no chunk hammers one RIR) and a limit gives a fair
sample.

A file of addresses (one per line, ``#`` comments allowed) is the other
source; invalid lines are recorded with their line numbers and lengths,
counted and skipped, never fatal. Their text is never kept: a summary travels
as an XCom, and a file that is not an address list must not leak through it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from whoiscrawl.crawl import ipspace

CLASSIC_SKIPPED_FIRST_OCTETS = (3, 9, 10, 12, 15, 16, 17, 18, 19, 20, 34, 48, 56, 127)
CLASSIC_COUNT = 4_706_768


def classic_pattern() -> np.ndarray:
    """The ancestor's seed addresses in generation order (uint32)."""
    first = np.array([a for a in range(1, 256) if a not in CLASSIC_SKIPPED_FIRST_OCTETS], dtype=np.uint32)
    second = np.arange(0, 256, dtype=np.uint32)
    third = np.arange(0, 256, 12, dtype=np.uint32)
    fourth = np.arange(1, 256, 64, dtype=np.uint32)
    grid = (first[:, None, None, None] << 24) | (second[None, :, None, None] << 16) \
        | (third[None, None, :, None] << 8) | fourth[None, None, None, :]
    addrs = grid.reshape(-1)
    return addrs[~ipspace.ancestor_excluded_many(addrs)]


@dataclass
class InvalidLine:
    line_no: int
    length: int
    reason: str


@dataclass
class SeedSummary:
    """What prepare wrote: returned as XCom and printed by the CLI."""
    path: str
    source: str
    random_seed: int
    count: int
    candidates: int
    invalid: int = 0
    duplicates: int = 0
    reserved: int = 0
    invalid_examples: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def parse_address_file(path: str | Path) -> tuple[np.ndarray, list[InvalidLine]]:
    """Addresses of a file, one per line, in file order; invalid lines with their numbers."""
    addrs: list[int] = []
    invalid: list[InvalidLine] = []
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        for line_no, raw in enumerate(fh, start=1):
            text = raw.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                addrs.append(ipspace.to_int(text))
            except ValueError:
                invalid.append(InvalidLine(line_no, len(raw.rstrip("\n")), "not an IPv4 address"))
    return np.array(addrs, dtype=np.uint32), invalid


def prepare_seed(db_path: str | Path, source: str = "classic", limit: int | None = None,
                 random_seed: int = 2018) -> SeedSummary:
    """Build the seed database at ``db_path`` from the classic pattern or an address file.

    Reserved addresses (IANA special-purpose, multicast) and duplicates in a
    file are dropped and counted. ``limit`` keeps the first N after shuffling.
    """
    invalid: list[InvalidLine] = []
    duplicates = 0
    if source == "classic":
        addrs = classic_pattern()
    else:
        addrs, invalid = parse_address_file(source)
        unique, first_index = np.unique(addrs, return_index=True)
        duplicates = len(addrs) - len(unique)
        addrs = addrs[np.sort(first_index)]
    candidates = len(addrs)
    reserved_mask = ipspace.is_reserved_many(addrs) if source != "classic" else np.zeros(len(addrs), bool)
    reserved = int(reserved_mask.sum())
    addrs = addrs[~reserved_mask]
    rng = np.random.default_rng(random_seed)
    addrs = addrs[rng.permutation(len(addrs))]
    if limit is not None and limit >= 0:
        addrs = addrs[:limit]
    _write(Path(db_path), addrs, source, random_seed, invalid)
    return SeedSummary(
        path=str(db_path), source=source, random_seed=random_seed, count=int(len(addrs)),
        candidates=int(candidates), invalid=len(invalid), duplicates=int(duplicates), reserved=reserved,
        invalid_examples=[i.__dict__ for i in invalid[:20]],
    )


def _write(db_path: Path, addrs: np.ndarray, source: str, random_seed: int,
           invalid: list[InvalidLine]) -> None:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = db_path.with_suffix(db_path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    try:
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("CREATE TABLE seed (pos INTEGER PRIMARY KEY, addr INTEGER NOT NULL)")
        con.execute("CREATE TABLE invalid (line_no INTEGER, length INTEGER, reason TEXT)")
        con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        con.executemany("INSERT INTO seed (pos, addr) VALUES (?, ?)",
                        zip(range(len(addrs)), addrs.tolist()))
        con.executemany("INSERT INTO invalid VALUES (?, ?, ?)",
                        [(i.line_no, i.length, i.reason) for i in invalid])
        con.executemany("INSERT INTO meta VALUES (?, ?)", [
            ("source", source), ("random_seed", str(random_seed)), ("count", str(len(addrs)))])
        con.commit()
    finally:
        con.close()
    tmp.replace(db_path)


def seed_count(db_path: str | Path) -> int:
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return con.execute("SELECT COUNT(*) FROM seed").fetchone()[0]
    finally:
        con.close()


def read_range(db_path: str | Path, offset: int, count: int) -> np.ndarray:
    """Seed addresses at positions ``offset .. offset+count-1``."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT addr FROM seed WHERE pos >= ? AND pos < ? ORDER BY pos",
                           (offset, offset + count)).fetchall()
    finally:
        con.close()
    return np.fromiter((r[0] for r in rows), dtype=np.uint32, count=len(rows))


def chunk_bounds(total: int, chunks: int) -> list[tuple[int, int]]:
    """Split ``total`` positions into at most ``chunks`` contiguous (offset, count) pieces of near-equal size."""
    chunks = max(1, min(chunks, total)) if total else 0
    bounds = []
    for i in range(chunks):
        start = total * i // chunks
        end = total * (i + 1) // chunks
        bounds.append((start, end - start))
    return bounds
