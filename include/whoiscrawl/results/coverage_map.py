"""``coverage.png``: the whole IPv4 space on a Hilbert curve, one pixel per /24, coloured by registry.

The /24 numbered d (the address >> 8) is drawn at ``hilbert_d2xy(4096, d)``,
so neighbouring blocks stay neighbours and every aligned prefix is a square or
a 2:1 rectangle. A /24 takes the colour of the registry of the most specific
network found touching it; dark where nothing was found; reserved space
(``ipspace.reserved_intervals``) in grey. A legend and the run's figures go in a
panel to the right.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from whoiscrawl.crawl import ipspace
from whoiscrawl.crawl.registries import REGISTRIES

SIDE = 4096  # 4096 x 4096 pixels = 2**24 /24 blocks
NOTHING = (18, 18, 26)
RESERVED = (110, 110, 110)
OTHER = (235, 235, 235)  # a registry the palette does not name (a mirror named by host:port)
COLOURS: dict[str, tuple[int, int, int]] = {
    "arin": (52, 120, 246), "ripencc": (46, 184, 92), "apnic": (247, 148, 29),
    "lacnic": (171, 71, 188), "afrinic": (229, 57, 53),
}
_CODES = {name: 3 + i for i, name in enumerate(REGISTRIES)}  # 0 nothing, 1 reserved, 2 other
PALETTE = np.array([NOTHING, RESERVED, OTHER] + [COLOURS[r] for r in REGISTRIES], dtype=np.uint8)


def hilbert_d2xy(side: int, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of position ``d`` on the Hilbert curve filling a ``side`` x ``side`` square (a power of 2)."""
    t = np.array(d, dtype=np.int64, copy=True)
    x = np.zeros_like(t)
    y = np.zeros_like(t)
    s = 1
    while s < side:
        rx = 1 & (t // 2)
        ry = 1 & (t ^ rx)
        flip = (ry == 0) & (rx == 1)
        x = np.where(flip, s - 1 - x, x)
        y = np.where(flip, s - 1 - y, y)
        swap = ry == 0
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        x += s * rx
        y += s * ry
        t //= 4
        s *= 2
    return x, y


def hilbert_curve(side: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of every position 0..side**2-1, the same as ``hilbert_d2xy`` but built by doubling.

    The curve of side 2s is four copies of the curve of side s: transposed, shifted up, shifted up
    and right, and turned; a few vector operations per doubling instead of a loop over every bit.
    """
    x = np.zeros(1, dtype=np.int32)
    y = np.zeros(1, dtype=np.int32)
    s = 1
    while s < side:
        x, y = (np.concatenate([y, x, x + s, 2 * s - 1 - y]),
                np.concatenate([x, y + s, y + s, s - 1 - x]))
        s *= 2
    return x, y


def block_codes(networks: Iterable[dict[str, Any]]) -> np.ndarray:
    """Palette index per /24 block: reserved first, then networks largest first (the most specific wins)."""
    codes = np.zeros(SIDE * SIDE, dtype=np.uint8)
    rs, re_ = ipspace.reserved_intervals()
    for s, e in zip(rs.tolist(), re_.tolist()):
        codes[s >> 8:(e >> 8) + 1] = 1
    nets = [(ipspace.to_int(n["start"]), ipspace.to_int(n["end"]), _CODES.get(n["registry"], 2)) for n in networks]
    nets.sort(key=lambda n: n[0] - n[1])  # largest first
    for s, e, code in nets:
        codes[s >> 8:(e >> 8) + 1] = code
    return codes


def pixel_of(address: int) -> tuple[int, int]:
    """(x, y) of the pixel that shows ``address``."""
    x, y = hilbert_d2xy(SIDE, np.array([int(address) >> 8]))
    return int(x[0]), int(y[0])


def render(networks: list[dict[str, Any]], report: dict[str, Any], path: Path) -> Path:
    """Write the map with its legend and the run's figures to ``path`` (PNG)."""
    codes = block_codes(networks)
    x, y = hilbert_curve(SIDE)
    rgb = np.zeros((SIDE, SIDE, 3), dtype=np.uint8)
    rgb[y, x] = PALETTE[codes]
    panel_w = 1400
    canvas = Image.new("RGB", (SIDE + panel_w, SIDE), NOTHING)
    canvas.paste(Image.fromarray(rgb, "RGB"), (0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=56)
    small = ImageFont.load_default(size=44)
    left, top = SIDE + 80, 120
    draw.text((left, top), "IPv4 coverage", fill=(255, 255, 255), font=font)
    top += 120
    per_registry = report.get("per_registry", {})
    entries = [(COLOURS[r], f"{r}: {per_registry.get(r, {}).get('networks', 0):,} networks, "
                            f"{per_registry.get(r, {}).get('percent_of_non_reserved', 0.0):.2f} %") for r in REGISTRIES]
    entries += [(RESERVED, "reserved (IANA special purpose)"), (NOTHING, "nothing found"), (OTHER, "other registry")]
    for colour, label in entries:
        draw.rectangle((left, top, left + 60, top + 60), fill=colour, outline=(200, 200, 200))
        draw.text((left + 90, top + 4), label, fill=(230, 230, 230), font=small)
        top += 90
    top += 80
    figures = [f"run {report.get('run', '')}"[:48],
               f"covered {report.get('addresses_covered', 0):,} addresses",
               f"= {report.get('coverage_percent', 0.0):.2f} % of non-reserved",
               f"{report.get('distinct_networks', 0):,} networks",
               f"{report.get('seed_addresses', 0):,} seed addresses",
               f"{report.get('queries', 0):,} queries",
               "one pixel per /24, Hilbert curve", "0.0.0.0 top left"]
    for line in figures:
        draw.text((left, top), line, fill=(230, 230, 230), font=small)
        top += 70
    tmp = Path(str(path) + ".tmp")
    canvas.save(tmp, format="PNG", optimize=False, compress_level=6)
    tmp.replace(path)
    return path
