"""The default-scale universe (about 5M networks): size, build time, memory, fragmentation.

Slow (a fresh build in a subprocess), so it runs only when asked:
``WHOISCRAWL_SIM_FULL_SCALE=1 python -m pytest tests/unit/test_simulator_scale.py -s``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("WHOISCRAWL_SIM_FULL_SCALE") != "1",
                                reason="set WHOISCRAWL_SIM_FULL_SCALE=1 to build the default-scale universe")

_MEASURE = r"""
import json, resource, time
import numpy as np
from whoiscrawl.simulator.universe import build_universe
t0 = time.perf_counter()
u = build_universe(seed=1, scale=1.0)
build_s = time.perf_counter() - t0
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
sizes = u.ends.astype(np.int64) - u.starts + 1
addrs = u.random_allocated_addresses(200_000, seed=1)
found = u.lookup_many(addrs)
top = found.copy()
for _ in range(4):
    parent = u.parents[top]
    top = np.where(parent >= 0, parent, top)
ratio = sizes[found] / sizes[top]
print(json.dumps({
    "networks": len(u), "build_s": build_s, "peak_rss_mb": peak_mb, "arrays_mb": u.nbytes() / 1e6,
    "share_24_or_smaller": float((sizes <= 256).mean()),
    "levels": np.bincount(u.levels).tolist(),
    "median_specific_over_allocation": float(np.median(ratio)),
    "share_at_most_1_16_of_allocation": float((ratio <= 1 / 16).mean()),
    "allocations": u.allocation_count(),
}))
"""


def test_default_scale_universe():
    out = subprocess.run([sys.executable, "-c", _MEASURE], capture_output=True, text=True, timeout=600, check=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    print(figures)
    assert 4_500_000 <= figures["networks"] <= 5_500_000
    assert figures["build_s"] <= 60
    assert figures["peak_rss_mb"] <= 1536
    assert figures["share_24_or_smaller"] > 0.5
    assert figures["median_specific_over_allocation"] <= 1 / 16
    assert figures["allocations"] == 175_982
    assert min(figures["levels"]) > 0
