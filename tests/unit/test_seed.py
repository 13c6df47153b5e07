import time

import numpy as np
import pytest

from whoiscrawl.crawl import ipspace, seed


def test_classic_pattern_is_exactly_the_ancestors_4706768():
    t0 = time.monotonic()
    addrs = seed.classic_pattern()
    assert len(addrs) == seed.CLASSIC_COUNT == 4_706_768
    assert len(np.unique(addrs)) == len(addrs)
    assert time.monotonic() - t0 < 30
    first = addrs >> 24
    for skipped in seed.CLASSIC_SKIPPED_FIRST_OCTETS:
        assert not (first == skipped).any()
    assert not (first >= 224).any()
    assert set(np.unique(addrs & 0xFF).tolist()) == {1, 65, 129, 193}
    assert set(np.unique((addrs >> 8) & 0xFF).tolist()) == set(range(0, 256, 12))
    # ancestor's private blocks are gone, but the rest of 172 and 192 stays
    assert not ((addrs >= ipspace.to_int("172.16.0.0")) & (addrs <= ipspace.to_int("172.31.255.255"))).any()
    assert (addrs == ipspace.to_int("172.32.0.1")).any()
    assert not ((addrs >> 16) == ((192 << 8) | 168)).any()
    assert not ((addrs >> 16) == ((169 << 8) | 254)).any()


def test_non_reserved_total_matches_the_ancestors_figure():
    assert ipspace.non_reserved_total() == 3_702_257_664


def test_prepare_classic_with_limit_is_a_reproducible_shuffle(tmp_path):
    a = seed.prepare_seed(tmp_path / "a.sqlite", limit=1000, random_seed=7)
    b = seed.prepare_seed(tmp_path / "b.sqlite", limit=1000, random_seed=7)
    c = seed.prepare_seed(tmp_path / "c.sqlite", limit=1000, random_seed=8)
    ra = seed.read_range(a.path, 0, 1000)
    assert a.count == 1000 and a.candidates == seed.CLASSIC_COUNT
    assert (ra == seed.read_range(b.path, 0, 1000)).all()
    assert not (ra == seed.read_range(c.path, 0, 1000)).all()
    # shuffled: not in generation order, spread over many /8s
    assert len(np.unique(ra >> 24)) > 100
    assert seed.seed_count(a.path) == 1000


def test_full_classic_seed_is_written_in_well_under_a_minute(tmp_path):
    t0 = time.monotonic()
    s = seed.prepare_seed(tmp_path / "full.sqlite")
    elapsed = time.monotonic() - t0
    assert s.count == seed.CLASSIC_COUNT
    assert seed.seed_count(s.path) == seed.CLASSIC_COUNT
    assert elapsed < 60


def test_address_file_reports_invalid_lines_with_numbers(tmp_path):
    f = tmp_path / "addrs.txt"
    f.write_text("1.1.1.1\n\n# comment\n999.1.1.1\nfoo\n8.8.8.8 # dns\n1.1.1.1\n10.0.0.1\n2001:db8::1\n")
    s = seed.prepare_seed(tmp_path / "f.sqlite", source=str(f))
    assert s.invalid == 3
    assert [e["line_no"] for e in s.invalid_examples] == [4, 5, 9]
    assert [e["length"] for e in s.invalid_examples] == [9, 3, 11]
    assert "foo" not in repr(s.as_dict())  # a line's text never travels with the summary
    assert s.duplicates == 1
    assert s.reserved == 1  # 10.0.0.1
    got = sorted(seed.read_range(s.path, 0, 10).tolist())
    assert got == sorted([ipspace.to_int("1.1.1.1"), ipspace.to_int("8.8.8.8")])


@pytest.mark.parametrize("total,chunks", [(10, 3), (20000, 8), (5, 10), (0, 4), (4706768, 1024)])
def test_chunk_bounds_cover_everything_once(total, chunks):
    bounds = seed.chunk_bounds(total, chunks)
    assert sum(c for _, c in bounds) == total
    pos = 0
    for off, count in bounds:
        assert off == pos and count > 0
        pos += count
    assert len(bounds) <= chunks
    if bounds:
        sizes = [c for _, c in bounds]
        assert max(sizes) - min(sizes) <= 1
