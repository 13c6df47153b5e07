"""Read the real reference data the simulated universe is built on.

The IANA /8 table, the RFC 9224 bootstrap, the special-purpose registry and
the five RIR delegated-stats files ship inside the package (``data/``).  This
module only parses them into plain arrays and tables; deciding what the
universe looks like is left to ``layout`` and ``universe``.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

import numpy as np

from whoiscrawl.crawl.bootstrap import default_document
from whoiscrawl.crawl.ipspace import special_purpose_records
from whoiscrawl.crawl.registries import REGISTRIES

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
IANA_DIR = DATA_DIR / "iana"
DELEGATED_DIR = DATA_DIR / "delegated"

#: The delegated file read for each registry.  AFRINIC's extended file is the
#: newest AFRINIC snapshot here; the others are the only ones available.
DELEGATED_FILES: dict[str, str] = {
    "arin": "delegated-arin-latest",
    "ripencc": "delegated-ripencc-latest",
    "apnic": "delegated-apnic-latest",
    "lacnic": "delegated-lacnic-latest",
    "afrinic": "delegated-afrinic-extended-latest",
}

IANA_FILES = ("ipv4-address-space.csv", "rdap-bootstrap-ipv4.json", "iana-ipv4-special-registry.xml")

#: Statuses of delegated rows that make the allocation layer.
DELEGATED_STATUSES = ("allocated", "assigned")

REGISTRY_CODE = {name: i for i, name in enumerate(REGISTRIES)}
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class DelegatedRecords:
    """All allocated/assigned IPv4 rows of the five files, as parallel arrays."""

    start: np.ndarray      # int64, first address
    end: np.ndarray        # int64, last address (start + value - 1)
    registry: np.ndarray   # uint8, index in REGISTRIES
    allocated: np.ndarray  # bool, status "allocated" (else "assigned")
    country: np.ndarray    # uint16, index in ``countries``
    day: np.ndarray        # uint16, registration date as days since 1970-01-01
    countries: tuple[str, ...]
    snapshot_day: dict[str, int]  # each file's end date, days since 1970-01-01

    def __len__(self) -> int:
        return int(self.start.shape[0])


@dataclass(frozen=True)
class IanaSlash8:
    """Per /8: the registry named by the RFC 9224 bootstrap, and IANA's status."""

    bootstrap: tuple[str | None, ...]  # 256 entries
    status: tuple[str, ...]            # ALLOCATED, LEGACY or RESERVED
    designation: tuple[str, ...]


def _day(yyyymmdd: str) -> int:
    if len(yyyymmdd) != 8 or not yyyymmdd.isdigit() or yyyymmdd == "00000000":
        return 0
    d = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    return (d - _EPOCH).days


def _dotted_to_int(text: str) -> int:
    a, b, c, d = (int(x) for x in text.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def data_checksum() -> str:
    """sha256 over every data file the universe depends on (the cache key)."""
    digest = hashlib.sha256()
    for name in sorted(DELEGATED_FILES.values()):
        digest.update(name.encode())
        digest.update((DELEGATED_DIR / name).read_bytes())
    for name in IANA_FILES:
        digest.update(name.encode())
        digest.update((IANA_DIR / name).read_bytes())
    return digest.hexdigest()


def read_delegated() -> DelegatedRecords:
    """Parse the allocated and assigned IPv4 rows of each registry's file."""
    starts: list[int] = []
    counts: list[int] = []
    regs: list[int] = []
    allocated: list[bool] = []
    ccs: list[str] = []
    days: list[int] = []
    snapshot: dict[str, int] = {}
    for registry, filename in DELEGATED_FILES.items():
        code = REGISTRY_CODE[registry]
        with open(DELEGATED_DIR / filename, encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("#") or not line.strip():
                    continue
                parts = line.rstrip("\r\n").split("|")
                if parts[0] in ("2", "2.3") and len(parts) >= 6 and registry not in snapshot:
                    snapshot[registry] = _day(parts[5])  # header: version|registry|serial|records|start|end
                    continue
                if len(parts) < 7 or parts[2] != "ipv4" or parts[1] == "*":
                    continue
                if parts[6] not in DELEGATED_STATUSES:
                    continue
                starts.append(_dotted_to_int(parts[3]))
                counts.append(int(parts[4]))
                regs.append(code)
                allocated.append(parts[6] == "allocated")
                ccs.append(parts[1] or "ZZ")
                days.append(_day(parts[5]))
    countries = tuple(sorted(set(ccs)))
    cc_index = {cc: i for i, cc in enumerate(countries)}
    start = np.asarray(starts, dtype=np.int64)
    return DelegatedRecords(
        start=start,
        end=start + np.asarray(counts, dtype=np.int64) - 1,
        registry=np.asarray(regs, dtype=np.uint8),
        allocated=np.asarray(allocated, dtype=bool),
        country=np.asarray([cc_index[c] for c in ccs], dtype=np.uint16),
        day=np.asarray(days, dtype=np.uint16),
        countries=countries,
        snapshot_day=snapshot,
    )


def registry_of_rdap_url(url: str) -> str | None:
    for marker, registry in (("arin", "arin"), ("ripe", "ripencc"), ("apnic", "apnic"),
                             ("lacnic", "lacnic"), ("afrinic", "afrinic")):
        if marker in url:
            return registry
    return None


@lru_cache(maxsize=1)
def read_bootstrap() -> dict:
    """IANA's RFC 9224 IPv4 bootstrap document, as published (the crawl's default routing too)."""
    return default_document()


@lru_cache(maxsize=1)
def read_slash8() -> IanaSlash8:
    """Join the bootstrap (who answers for a /8) with IANA's status table."""
    bootstrap: list[str | None] = [None] * 256
    for prefixes, urls in read_bootstrap()["services"]:
        registry = registry_of_rdap_url(urls[0])
        for prefix in prefixes:
            bootstrap[int(prefix.split(".")[0])] = registry
    status = ["RESERVED"] * 256
    designation = [""] * 256
    with open(IANA_DIR / "ipv4-address-space.csv", newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle)
        next(rows)
        for row in rows:
            octet = int(row[0].split("/")[0])
            designation[octet] = row[1]
            status[octet] = row[5]
    return IanaSlash8(tuple(bootstrap), tuple(status), tuple(designation))


def read_special_purpose() -> tuple[tuple[int, int, str, bool], ...]:
    """IANA special-purpose blocks: (first, last, name, globally reachable)."""
    return special_purpose_records()


@lru_cache(maxsize=1)
def read_delegated_snapshot_days() -> dict[str, int]:
    """End date of each registry's delegated snapshot, days since 1970-01-01."""
    days: dict[str, int] = {}
    for registry, filename in DELEGATED_FILES.items():
        with open(DELEGATED_DIR / filename, encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("#") or not line.strip():
                    continue
                days[registry] = _day(line.split("|")[5])
                break
    return days
