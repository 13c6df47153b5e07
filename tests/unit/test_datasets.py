"""The run's datasets, the most-specific map, the lookup index, the coverage curve and the Hilbert map."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from whoiscrawl.crawl import ipspace
from whoiscrawl.results import coverage_map
from whoiscrawl.results.coverage import coverage_curve, status_counts
from whoiscrawl.results.datasets import NETWORK_SCHEMA, NetworkWriter, address_table, write_table
from whoiscrawl.results.lookup import LookupIndex, build_index, newest_run
from whoiscrawl.results.netmap import NetworkMap

I = ipspace.to_int


def rec(registry, handle, start, end, query=None, **extra):
    return {"query": query or start, "registry": registry, "handle": handle, "start": start, "end": end,
            "cidrs": ipspace.range_to_cidrs(I(start), I(end)), "name": handle.lower(), "type": "ALLOCATION",
            "country": "NL", "parent_handle": None, "url": "http://127.0.0.1/ip/x",
            "entities": [{"handle": "ORG-1", "roles": ["registrant", "administrative"], "name": "Org", "email": "a@b"}],
            "fetched_at": "2026-03-04T05:06:07Z", "run": "r1",
            "raw": {"events": [{"eventAction": "registration", "eventDate": "1999-01-02T03:04:05Z"},
                               {"eventAction": "last changed", "eventDate": "2020-06-07T08:09:10+02:00"}]}, **extra}


NESTED = [rec("ripencc", "ALLOC-193", "193.0.0.0", "193.0.255.255"),
          rec("ripencc", "RIPE-NCC", "193.0.0.0", "193.0.7.255", query="193.0.6.139"),
          rec("ripencc", "RIPE-NCC-6", "193.0.6.0", "193.0.6.255", query="193.0.6.1"),
          rec("arin", "NET-8", "8.0.0.0", "8.255.255.255", query="8.8.8.8")]


@pytest.fixture
def run_dir(tmp_path):
    writer = NetworkWriter(tmp_path)
    for r in NESTED:
        writer.write(r)
    writer.close()
    build_index(tmp_path)
    return tmp_path


def test_networks_files_are_typed_and_readable_by_pyarrow_pandas_and_duckdb(run_dir):
    import duckdb
    import pandas as pd

    table = pq.read_table(run_dir / "networks.parquet")
    assert table.schema == NETWORK_SCHEMA
    row = table.to_pylist()[1]
    assert (row["start_int"], row["end_int"], row["size"]) == (I("193.0.0.0"), I("193.0.7.255"), 2048)
    assert row["entities"][0]["roles"] == ["registrant", "administrative"]
    assert row["registered_at"].isoformat() == "1999-01-02T03:04:05+00:00"
    assert row["last_changed_at"].isoformat() == "2020-06-07T06:09:10+00:00"  # normalised to UTC
    assert row["query_int"] == I("193.0.6.139") and row["found_by"] == "lookup"
    frame = pd.read_parquet(run_dir / "networks.parquet")
    assert len(frame) == 4 and str(frame["start_int"].dtype) == "int64"
    con = duckdb.connect()
    got = con.execute(f"SELECT handle FROM '{run_dir / 'networks.parquet'}' "
                      f"WHERE {I('193.0.6.139')} BETWEEN start_int AND end_int ORDER BY size LIMIT 1").fetchone()
    assert got == ("RIPE-NCC-6",)
    lines = [json.loads(x) for x in gzip.open(run_dir / "networks.jsonl.gz", "rt")]
    assert [x["handle"] for x in lines] == [r["handle"] for r in NESTED]
    assert lines[0]["raw"]["events"][0]["eventAction"] == "registration"
    assert lines[0]["fetched_at"] == "2026-03-04T05:06:07Z"


def test_a_failed_writer_leaves_no_file(tmp_path):
    writer = NetworkWriter(tmp_path)
    writer.write(NESTED[0])
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_most_specific_network_and_parents():
    starts = np.array([I(r["start"]) for r in NESTED])
    ends = np.array([I(r["end"]) for r in NESTED])
    m = NetworkMap.build(starts, ends)
    got = m.most_specific(np.array([I("193.0.6.139"), I("193.0.7.1"), I("193.0.200.1"), I("8.8.8.8"), I("9.0.0.0"), 0]))
    assert got.tolist() == [2, 1, 0, 3, -1, -1]
    assert m.chain(2) == [2, 1, 0] and m.parent[3] == -1


def test_addresses_table_says_how_each_address_got_its_network():
    starts = np.array([I(r["start"]) for r in NESTED])
    ends = np.array([I(r["end"]) for r in NESTED])
    nets = {"registry": np.array([r["registry"] for r in NESTED], dtype=object),
            "handle": np.array([r["handle"] for r in NESTED], dtype=object), "start_int": starts, "end_int": ends}
    seed = np.array([I("193.0.6.139"), I("193.0.6.200"), I("9.0.0.1"), I("9.0.0.2")])
    chunk = np.array([0, 0, 0, 1])
    owner = NetworkMap.build(starts, ends).most_specific(seed)
    t = address_table(seed, chunk, nets, owner, np.array([I("193.0.6.139")]), {I("9.0.0.1"): "not_found"}, [0])
    rows = t.to_pylist()
    assert [(r["how"], r["reason"], r["handle"]) for r in rows] == [
        ("looked_up", None, "RIPE-NCC-6"), ("inside", None, "RIPE-NCC-6"),
        ("failed", "not_found", None), ("not_crawled", "chunk_failed", None)]
    assert rows[1]["network_start"] == "193.0.6.0" and rows[1]["network_start_int"] == I("193.0.6.0")
    assert rows[0]["address_int"] == I("193.0.6.139")


def test_lookup_answers_the_most_specific_network_with_its_parents(run_dir, tmp_path):
    index = LookupIndex(run_dir)
    answer = index.lookup("193.0.6.139")
    assert answer["registry"] == "ripencc" and answer["network"]["handle"] == "RIPE-NCC-6"
    assert [p["handle"] for p in answer["parents"]] == ["RIPE-NCC", "ALLOC-193"]
    assert answer["network"]["entities"][0]["handle"] == "ORG-1"
    assert index.lookup("9.9.9.9") == {"address": "9.9.9.9", "found": False, "registry": None,
                                       "network": None, "parents": []}
    assert index.lookup("8.255.255.255")["network"]["handle"] == "NET-8"
    assert "error" in index.lookup("not-an-ip")
    assert newest_run([tmp_path.parent]) == run_dir


def test_coverage_curve_and_status_counts():
    curve = coverage_curve(np.array([0, 0, 512]), np.array([255, 1023, 767]), ["b", "a", "c"], points=3)
    # fetched order: the /22 (a) first, then the /24 inside it (b), then 512..767 inside it too
    assert curve == {"every": 1, "queries": [1, 2, 3], "addresses_covered": [1024, 1024, 1024]}
    counts = status_counts([{"stats": {"address/arin/looked_up": 3, "address/arin/failed/not_found": 2,
                                       "lookup/arin/attempt": 6, "lookup/apnic/attempt": 1}}])
    assert counts["queries"] == 7
    assert counts["per_registry"]["arin"] == {"failed": 2, "failed/not_found": 2, "looked_up": 3, "queries": 6}


def _reference_d2xy(n: int, d: int) -> tuple[int, int]:
    """Transcribed from the Hilbert curve article's C code, one point at a time."""
    x = y = 0
    s, t = 1, d
    while s < n:
        rx = 1 & (t // 2)
        ry = 1 & (t ^ rx)
        if ry == 0:
            if rx == 1:
                x, y = s - 1 - x, s - 1 - y
            x, y = y, x
        x += s * rx
        y += s * ry
        t //= 4
        s *= 2
    return x, y


def test_hilbert_curve_is_a_continuous_bijection_with_known_points():
    x, y = coverage_map.hilbert_d2xy(4, np.arange(16))
    assert list(zip(x.tolist(), y.tolist())) == [
        (0, 0), (1, 0), (1, 1), (0, 1), (0, 2), (0, 3), (1, 3), (1, 2),
        (2, 2), (2, 3), (3, 3), (3, 2), (3, 1), (2, 1), (2, 0), (3, 0)]
    x, y = coverage_map.hilbert_d2xy(256, np.arange(256 * 256))
    assert len(set(zip(x.tolist(), y.tolist()))) == 256 * 256
    assert (np.abs(np.diff(x)) + np.abs(np.diff(y)) == 1).all()  # each step moves to a neighbour
    probe = np.random.default_rng(1).integers(0, 2 ** 24, 200)
    bx, by = coverage_map.hilbert_d2xy(4096, probe)
    assert list(zip(bx.tolist(), by.tolist())) == [_reference_d2xy(4096, int(d)) for d in probe]
    cx, cy = coverage_map.hilbert_curve(256)  # the doubling build the map uses: the same curve
    assert (cx == x).all() and (cy == y).all()
    fx, fy = coverage_map.hilbert_curve(4096)
    assert (fx[probe] == bx).all() and (fy[probe] == by).all()
    assert coverage_map.pixel_of(0) == (0, 0)
    assert coverage_map.pixel_of(I("255.255.255.255")) == (4095, 0)


def test_coverage_png_shows_each_network_in_its_registry_colour(tmp_path):
    nets = [{"registry": r["registry"], "start": r["start"], "end": r["end"]} for r in NESTED]
    nets.append({"registry": "lacnic", "start": "200.1.2.0", "end": "200.1.2.255"})
    path = coverage_map.render(nets, {"run": "r1", "per_registry": {}}, tmp_path / "coverage.png")
    img = Image.open(path).convert("RGB")
    assert img.size == (4096 + 1400, 4096)
    at = lambda a: img.getpixel(coverage_map.pixel_of(I(a)))  # noqa: E731
    assert at("0.0.0.1") == coverage_map.RESERVED  # 0.0.0.0/8, "this network"
    assert at("127.0.0.1") == coverage_map.RESERVED
    assert at("224.0.0.1") == coverage_map.RESERVED
    assert at("8.8.8.8") == at("8.0.0.0") == at("8.255.255.0") == coverage_map.COLOURS["arin"]
    assert at("193.0.6.139") == at("193.0.200.0") == coverage_map.COLOURS["ripencc"]
    assert at("200.1.2.77") == coverage_map.COLOURS["lacnic"]
    assert at("200.1.3.0") == at("9.0.0.0") == coverage_map.NOTHING
    # every pixel of 8.0.0.0/8 (65,536 /24s) is ARIN's, and it is a 256 x 256 square
    fx, fy = coverage_map.hilbert_curve(4096)
    xs, ys = fx[I("8.0.0.0") >> 8:(I("8.255.255.255") >> 8) + 1], fy[I("8.0.0.0") >> 8:(I("8.255.255.255") >> 8) + 1]
    assert xs.max() - xs.min() == 255 and ys.max() - ys.min() == 255
    pixels = np.asarray(img)[ys, xs]
    assert (pixels == np.array(coverage_map.COLOURS["arin"], dtype=np.uint8)).all()


def test_write_table_is_atomic(tmp_path):
    import pyarrow as pa

    write_table(pa.table({"a": [1]}), tmp_path / "x.parquet")
    assert [p.name for p in tmp_path.iterdir()] == ["x.parquet"]


def test_changes_between_two_runs_name_exactly_what_changed(tmp_path):
    from whoiscrawl.results.changes import write_changes

    before, after = tmp_path / "a", tmp_path / "b"
    old = [rec("ripencc", "KEEP", "193.0.0.0", "193.0.7.255"),
           rec("ripencc", "RENAMED", "193.1.0.0", "193.1.0.255"),
           rec("ripencc", "GOES", "193.2.0.0", "193.2.0.255"),
           rec("arin", "NET-T", "8.0.0.0", "8.0.0.255"),
           rec("apnic", "SPLIT", "1.0.0.0", "1.0.1.255")]
    new = [rec("ripencc", "KEEP", "193.0.0.0", "193.0.7.255", fetched_at="2027-01-01T00:00:00Z"),  # re-fetched only
           {**rec("ripencc", "RENAMED", "193.1.0.0", "193.1.0.255"), "name": "new-name", "country": "DE"},
           rec("lacnic", "NET-T-LAC", "8.0.0.0", "8.0.0.255"),  # transferred
           rec("apnic", "SPLIT-A", "1.0.0.0", "1.0.0.255"), rec("apnic", "SPLIT-B", "1.0.1.0", "1.0.1.255")]
    for folder, rows in ((before, old), (after, new)):
        writer = NetworkWriter(folder)
        for r in rows:
            writer.write(r)
        writer.close()
    summary = write_changes(before, after)
    assert {k: summary[k] for k in ("new", "removed", "changed", "moved", "split")} == \
        {"new": 0, "removed": 1, "changed": 1, "moved": 1, "split": 1}
    assert summary["changed_fields"] == {"country": 1, "name": 1}
    lines = [json.loads(x) for x in gzip.open(after / "changes.jsonl.gz", "rt")]
    got = sorted((c["change"], c["handle"], tuple(c["fields"])) for c in lines)
    assert got == [("changed", "RENAMED", ("name", "country")), ("moved", "NET-T-LAC", ("registry", "handle", "name")),
                   ("removed", "GOES", ()), ("split", "SPLIT", ())]
    split = next(c for c in lines if c["change"] == "split")
    assert [p["handle"] for p in split["parts"]] == ["SPLIT-A", "SPLIT-B"]
    same = write_changes(before, before)
    assert {k: same[k] for k in ("new", "removed", "changed", "moved")} == {"new": 0, "removed": 0, "changed": 0, "moved": 0}


def test_recrawl_plan_probes_each_network_with_the_query_that_found_it(tmp_path):
    from whoiscrawl.results.recrawl import plan

    writer = NetworkWriter(tmp_path)
    for i, r in enumerate(NESTED):
        writer.write({**r, "fetched_at": f"2026-03-0{4 - i}T00:00:00Z"})  # the last one is the oldest
    writer.close()
    starts = np.array([I(r["start"]) for r in NESTED])
    ends = np.array([I(r["end"]) for r in NESTED])
    nets = {"registry": np.array([r["registry"] for r in NESTED], dtype=object),
            "handle": np.array([r["handle"] for r in NESTED], dtype=object), "start_int": starts, "end_int": ends}
    seed = np.array([I("193.0.6.139"), I("9.0.0.1"), I("9.0.0.2"), I("9.0.0.3")])
    owner = NetworkMap.build(starts, ends).most_specific(seed)
    write_table(address_table(seed, np.zeros(4, np.int64), nets, owner, seed[:1], {}, [0]),
                tmp_path / "addresses.parquet")
    full = plan(tmp_path, budget=None, gap_samples=2, random_seed=1)
    assert full["probes"] == [I("8.8.8.8"), I("193.0.6.1"), I("193.0.6.139"), I("193.0.0.0")]  # oldest first
    assert [tuple(c) for c in full["checked"]] == [("arin", "NET-8"), ("ripencc", "RIPE-NCC-6"),
                                                   ("ripencc", "RIPE-NCC"), ("ripencc", "ALLOC-193")]
    assert len(full["gaps"]) == 2 and set(full["gaps"]) <= {I("9.0.0.1"), I("9.0.0.2"), I("9.0.0.3")}
    cut = plan(tmp_path, budget=2, gap_samples=0, random_seed=1)
    assert cut["probes"] == [I("8.8.8.8"), I("193.0.6.1")] and cut["gaps"] == []


def test_a_narrower_answer_makes_the_recrawl_look_up_the_rest_of_the_old_range():
    from whoiscrawl.results.recrawl import SplitFollowUps

    old = (1000, 1255)  # a /24 that became 1000-1127 and 1128-1255
    follow = SplitFollowUps({1200: old, 5000: (5000, 5255)})
    assert follow(5000, 5000, 5255) == []  # unchanged
    assert follow(5000, 4096, 8191) == []  # now answered by its parent (deleted): nothing to split
    assert follow(1200, 1128, 1255) == [1000]  # the upper half came back: the lower half is next
    assert follow(1000, 1000, 1127) == []  # covered now
    assert follow(77, 0, 10) == []  # not a probe
    three = SplitFollowUps({10: (0, 299)})
    assert three(10, 0, 99) == [100] and three(100, 100, 199) == [200] and three(200, 200, 299) == []
    bounded = SplitFollowUps({0: (0, 1023)}, max_per_network=2)
    assert bounded(0, 0, 0) == [1] and bounded(1, 1, 1) == [2] and bounded(2, 2, 2) == []
