"""Benchmark ``whoiscrawl lookup``: the run's on-disk index against a full scan of networks.parquet.

Writes a synthetic run of nested networks (allocations, assignments inside them,
sub-assignments inside those, like a real crawl's output) into a temporary
folder, builds its ``lookup.sqlite`` as the drain does, then times, in one run:

* the index: open it (the first address), then ``LookupIndex.lookup`` for
  random addresses (most specific network, its parents, the entities);
* the baseline without an index: read networks.parquet and filter it for the
  smallest network containing the address (what a user without the index would
  do); only a few addresses, it is slow.

The last line printed is the summary, for scripts:
``ms_per_address=<m> first_ms=<f> scan_ms_per_address=<s> speedup_vs_scan=<x> networks=<n>``
(the target: ``ms_per_address`` under 10).

Run: ``python bench/lookup_bench.py [--networks N] [--addresses N]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from whoiscrawl.crawl import ipspace
from whoiscrawl.results.datasets import NetworkWriter
from whoiscrawl.results.lookup import LookupIndex, build_index

REGISTRIES = ("arin", "ripencc", "apnic", "lacnic", "afrinic")


def synthetic_records(n: int, rng: np.random.Generator):
    """Yield ~n records: /16 allocations, /24 assignments inside, /28 sub-assignments inside those."""
    made = 0
    for alloc in rng.permutation(np.arange(1 << 8, 220 << 8, dtype=np.int64))[: max(1, n // 12)].tolist():
        base = alloc << 16
        reg = REGISTRIES[alloc % 5]
        nets = [(base, base + 0xFFFF)]
        for sub in rng.choice(256, 8, replace=False).tolist():
            s = base + (sub << 8)
            nets.append((s, s + 255))
            t = s + 16 * int(rng.integers(0, 16))
            nets.append((t, t + 15))
        for s, e in nets:
            made += 1
            yield {"query": ipspace.to_str(s), "registry": reg, "handle": f"NET-{made}",
                   "start": ipspace.to_str(s), "end": ipspace.to_str(e), "cidrs": ipspace.range_to_cidrs(s, e),
                   "name": f"NAME-{made}", "type": "ASSIGNMENT", "country": "ZZ", "parent_handle": None,
                   "entities": [{"handle": f"ORG-{made % 997}", "roles": ["registrant"], "name": "Org", "email": None}],
                   "url": "http://127.0.0.1/", "fetched_at": "2026-01-01T00:00:00Z", "run": "bench", "raw": {}}
        if made >= n:
            return


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--networks", type=int, default=300_000)
    ap.add_argument("--addresses", type=int, default=5_000)
    ap.add_argument("--scan-addresses", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory(prefix="lookup-bench-") as tmp:
        run = Path(tmp)
        t0 = time.perf_counter()
        writer = NetworkWriter(run)
        for r in synthetic_records(args.networks, rng):
            writer.write(r)
        writer.close()
        t1 = time.perf_counter()
        build_index(run)
        t2 = time.perf_counter()
        table = pq.read_table(run / "networks.parquet", columns=["start_int", "end_int"])
        starts = table.column("start_int").to_numpy()
        picks = rng.integers(0, len(starts), args.addresses)
        addrs = (starts[picks] + rng.integers(0, 16, args.addresses)).tolist()
        t3 = time.perf_counter()
        index = LookupIndex(run)
        first = index.lookup(addrs[0])
        t4 = time.perf_counter()
        found = sum(index.lookup(a)["found"] for a in addrs[1:])
        t5 = time.perf_counter()
        index.close()
        per_ms = (t5 - t4) * 1000 / max(1, len(addrs) - 1)
        first_ms = (t4 - t3) * 1000

        s0 = time.perf_counter()
        for a in addrs[: args.scan_addresses]:
            full = pq.read_table(run / "networks.parquet")
            hit = full.filter(pc.and_(pc.less_equal(full.column("start_int"), a),
                                      pc.greater_equal(full.column("end_int"), a)))
            hit.sort_by("size").slice(0, 1).to_pylist()
        scan_ms = (time.perf_counter() - s0) * 1000 / args.scan_addresses
        print(f"networks: {writer.rows:,} written in {t1 - t0:.1f} s, index built in {t2 - t1:.1f} s")
        print(f"index: first address {first_ms:.1f} ms (open + lookup, found={first['found']}), then "
              f"{per_ms:.3f} ms per address over {len(addrs) - 1:,} addresses ({found:,} found)")
        print(f"full scan of networks.parquet: {scan_ms:.0f} ms per address ({args.scan_addresses} timed)")
        print(f"ms_per_address={per_ms:.3f} first_ms={first_ms:.1f} scan_ms_per_address={scan_ms:.0f} "
              f"speedup_vs_scan={scan_ms / per_ms:.0f} networks={writer.rows}")


if __name__ == "__main__":
    main()
