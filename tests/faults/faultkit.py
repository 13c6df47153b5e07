"""The checks every fault test makes: every address accounted for, nothing lost, no duplicates."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from whoiscrawl.crawl import ipspace


def check_nothing_lost(universe, addrs: Iterable[int], outcomes: list, records: list[dict[str, Any]],
                       deferred: Iterable[int] = (), earlier_records: int = 0,
                       max_duplicates: int | None = None) -> dict[str, int]:
    """Across one or more runs over ``addrs``: every address is accounted for by each run, each looked-up
    address has exactly one record, and every address that did not fail (and is not still deferred) is
    inside a delivered network or unallocated. Returns the figures.

    A network can reach Kafka twice when two of its addresses were in flight at once (neither knew of
    the other's answer yet); the drain keeps one (the output has no duplicates), so such messages are
    counted, and bounded by the lookups in flight, not forbidden. ``earlier_records``: records of an
    earlier try not among ``outcomes`` (a killed process acknowledged them, then died; those
    not yet in the index when it died are looked up again: ``max_duplicates``).
    """
    addrs = [int(a) for a in addrs]
    for outcome in outcomes:
        assert outcome.skipped + outcome.looked_up + outcome.failed + outcome.deferred == outcome.addresses
        assert all(reason for reason in outcome.failed_by_reason)
    idents = [(r["registry"], r["handle"]) for r in records]
    duplicates = len(idents) - len(set(idents))
    if max_duplicates is None:
        max_duplicates = 8 * 5 * len(outcomes)  # at most one per lookup in flight
    assert duplicates <= max_duplicates, duplicates
    assert len(records) == sum(o.looked_up for o in outcomes) + earlier_records
    found = np.array([[ipspace.to_int(r["start"]), ipspace.to_int(r["end"])] for r in records] or [[1, 0]])
    waiting = set(int(a) for a in deferred)
    failed_somewhere = sum(o.failed for o in outcomes)
    lost = 0
    for a in addrs:
        if a in waiting:
            continue
        inside = bool(((found[:, 0] <= a) & (a <= found[:, 1])).any())
        if not inside and universe.lookup(a) is not None:
            lost += 1
    # an allocated address outside every delivered network must have failed with a reason
    assert lost <= failed_somewhere, (lost, failed_somewhere)
    return {"addresses": len(addrs), "records": len(records), "duplicate_messages": duplicates,
            "networks": len(set(idents)),
            "not_delivered": lost, "failed": failed_somewhere, "deferred": len(waiting)}
