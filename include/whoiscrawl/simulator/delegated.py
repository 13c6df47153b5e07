"""Delegated-extended statistics files of the simulated universe, one per registry.

A planned crawl starts from the registries' published allocation lists; these
files list exactly the allocation layer (level 0) the simulator's RDAP answers
for, in the RIR statistics exchange format, so that a crawl planned from them
meets no record the simulated registry does not hold.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from whoiscrawl.crawl.registries import REGISTRIES
from whoiscrawl.simulator import naming, sources
from whoiscrawl.simulator.universe import Universe

_EPOCH = date(1970, 1, 1)

#: Status a delegated row gives each kind of top-level network (legacy space
#: is listed as assigned: RIPE's files give legacy blocks no status of their own).
_STATUS = {naming.KIND_ALLOCATION: "allocated", naming.KIND_ASSIGNMENT: "assigned", naming.KIND_LEGACY: "assigned"}


def path(registry: str) -> str:
    """Where the real registries publish the file (same path on each simulated port)."""
    return f"/pub/stats/{registry}/delegated-{registry}-extended-latest"


def _yyyymmdd(day: int) -> str:
    """A row date; day 0 is the files' "00000000" (no date), which the universe reads as 1970-01-01."""
    return "00000000" if day == 0 else (_EPOCH + timedelta(days=day)).strftime("%Y%m%d")


def _utc_offset(registry: str) -> str:
    """The offset field of the registry's real file header (the format leaves its spelling to each RIR)."""
    with open(sources.DELEGATED_DIR / sources.DELEGATED_FILES[registry], encoding="ascii", errors="replace") as fh:
        for line in fh:
            if not line.startswith("#") and line.strip():
                return line.rstrip("\r\n").split("|")[6]
    return "+0000"


def _opaque_id(universe: Universe, index: int) -> str:
    """Stands for the holder: derived from the same hash as the network's RDAP registrant."""
    return f"{naming.mix(universe.identity_hash(index), 0x0A0E) & 0xFFFFFFFF:08X}"


def delegated_text(universe: Universe, registry: str) -> str:
    """The registry's delegated-extended file: version line, ipv4 summary, one row per allocation."""
    code = REGISTRIES.index(registry)
    rows = np.flatnonzero((universe.levels == 0) & (universe.registry_codes == code))
    starts = universe.starts[rows].astype(np.int64).tolist()
    counts = (universe.ends[rows].astype(np.int64) - universe.starts[rows] + 1).tolist()
    days = universe.days[rows].tolist()
    ccs = [universe.countries[c] for c in universe.country_codes[rows].tolist()]
    kinds = universe.kinds[rows].tolist()
    lines = [
        f"{registry}|{cc}|ipv4|{naming.dotted(start)}|{count}|{_yyyymmdd(day)}|{_STATUS[kind]}|"
        f"{_opaque_id(universe, index)}"
        for index, start, count, day, cc, kind in zip(rows.tolist(), starts, counts, days, ccs, kinds)
    ]
    end = sources.read_delegated_snapshot_days().get(registry, 0)
    first = min(days) if days else 0
    header = (f"2|{registry}|{_yyyymmdd(end)}|{len(lines)}|{_yyyymmdd(first)}|{_yyyymmdd(end)}|"
              f"{_utc_offset(registry)}")
    summary = f"{registry}|*|ipv4|*|{len(lines)}|summary"
    return "\n".join([header, summary, *lines]) + "\n"
