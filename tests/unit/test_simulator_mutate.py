"""``simulate --mutate SEED:N``: exactly the listed networks change, and the change report names exactly those."""

from __future__ import annotations

import numpy as np
import pytest
from simulator_helpers import small_universe

from whoiscrawl.crawl import ipspace
from whoiscrawl.results.changes import diff_networks, summarise
from whoiscrawl.simulator.mutate import mutate, parse_spec
from whoiscrawl.simulator.universe import Universe


def reachable_rows(universe, regions: set[int]) -> list[dict]:
    """The networks a crawl can find (the most specific network of some segment) starting in the given
    /16s, as networks rows."""
    rows = []
    found = np.unique(universe._seg_net[universe._seg_net >= 0])
    found = found[np.isin(universe.starts[found].astype(np.int64) >> 16, list(regions))]
    for i in found.tolist():
        n = universe.network(i)
        rows.append({"registry": n.registry, "handle": n.handle, "start": ipspace.to_str(n.start),
                     "end": ipspace.to_str(n.end), "name": n.name, "type": n.type, "country": n.country,
                     "parent_handle": n.parent_handle})
    return rows


def test_mutations_are_exactly_what_the_change_report_finds():
    pristine = small_universe()  # shared by other tests: never mutated
    universe = Universe(pristine.arrays(), pristine.seed, pristine.scale)  # mutate copies what it changes
    changes = mutate(universe, 7, 32)
    assert len(changes) == 32 and {c["op"] for c in changes} == {"reassign", "transfer", "delete", "split"}
    regions = {c["start"] >> 16 for c in changes}  # every other network is untouched by construction
    before_rows = reachable_rows(pristine, regions)
    report = diff_networks(before_rows, reachable_rows(universe, regions))
    # a deleted network's addresses answer with its parent: new where nothing showed that parent before
    reachable = {(r["registry"], r["handle"]) for r in before_rows}
    surfaced = {(p.registry, p.handle) for p in (pristine.network(int(pristine.parents[c["index"]]))
                                                 for c in changes if c["op"] == "delete")
                if p.start >> 16 in regions} - reachable
    assert summarise(report) | {"changed_fields": None} == {"new": len(surfaced), "removed": 8, "changed": 8,
                                                             "moved": 8, "split": 8, "changed_fields": None}
    expected = sorted([(c["op"], tuple(c["after"] or c["before"])) for c in changes] +
                      [("surfaced", key) for key in surfaced])
    kind = {"changed": "reassign", "moved": "transfer", "removed": "delete", "split": "split", "new": "surfaced"}
    assert sorted((kind[r["change"]], (r["registry"], r["handle"])) for r in report) == expected
    for change in (c for c in changes if c["op"] == "split"):
        parts = next(r["parts"] for r in report if r["change"] == "split" and r["handle"] == change["before"][1])
        assert [p["handle"] for p in parts] == [h for _r, h in change["parts"]]
        # the halves answer for the addresses they hold, and tile the old range
        low, high = (universe.lookup(change["start"]), universe.lookup(change["end"]))
        assert low != high and universe.starts[low] == change["start"] and universe.ends[high] == change["end"]
        assert universe.ends[low] + 1 == universe.starts[high]
    # the universe stays consistent: sorted by start, every segment's network holds it
    assert (np.diff(universe.starts.astype(np.int64)) >= 0).all()
    held = universe._seg_net >= 0
    seg = universe._seg_start[held].astype(np.int64)
    nets = universe._seg_net[held]
    assert ((universe.starts[nets] <= seg) & (seg <= universe.ends[nets])).all()
    assert all(universe.parents[i] < 0 or universe.starts[universe.parents[i]] <= universe.starts[i]
               for i in range(len(universe)))


def test_bad_spec_is_refused():
    assert parse_spec("7:30") == (7, 30)
    with pytest.raises(ValueError, match="SEED:N"):
        parse_spec("30")
