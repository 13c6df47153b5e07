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
    changes = mutate(universe, 7, 30)
    assert len(changes) == 30 and {c["op"] for c in changes} == {"reassign", "transfer", "delete"}
    regions = {c["start"] >> 16 for c in changes}  # every other network is untouched by construction
    report = diff_networks(reachable_rows(pristine, regions), reachable_rows(universe, regions))
    assert summarise(report) | {"changed_fields": None} == {"new": 0, "removed": 10, "changed": 10, "moved": 10,
                                                             "changed_fields": None}
    expected = sorted((c["op"], tuple(c["after"] or c["before"])) for c in changes)
    kind = {"changed": "reassign", "moved": "transfer", "removed": "delete"}
    assert sorted((kind[r["change"]], (r["registry"], r["handle"])) for r in report) == expected
    assert all("country" in r["fields"] and set(r["fields"]) <= {"name", "country"}
               for r in report if r["change"] == "changed")
    for c in changes:
        answer = universe.lookup(c["start"])
        if c["op"] == "delete":
            assert answer == int(universe.parents[c["index"]])  # the enclosing network answers again
        else:
            assert answer == c["index"] and universe.registry_of(answer) == c["after"][0]
    again = Universe(pristine.arrays(), pristine.seed, pristine.scale)
    assert mutate(again, 7, 30) == changes  # the same SEED:N changes the same networks


def test_bad_spec_is_refused():
    assert parse_spec("7:30") == (7, 30)
    with pytest.raises(ValueError, match="SEED:N"):
        parse_spec("30")
