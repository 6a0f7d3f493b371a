"""The --bpp search (crdr_codec/bpp_search.py) with fake encoders: the answer of an
exhaustive search on the same q grid, in a few encodes (the former bisection took 11)."""

from __future__ import annotations

import math
import random
import subprocess
import sys

import pytest

from crdr_codec.bpp_search import DEFAULT_STEPS, search_bpp

GRID = DEFAULT_STEPS  # q = 4 k / 512


class FakeEncoder:
    """File sizes (bytes) that grow with q like a real model's: ln bpp linear in q with a
    bend and a wiggle, rounded up to whole 32-bit words plus a header; counts its calls."""

    def __init__(self, seed: int, pixels: int = 256 * 256) -> None:
        rng = random.Random(seed)
        a, b = rng.uniform(-3.3, -1.5), rng.uniform(0.45, 0.85)
        c, wig, phase = rng.uniform(-0.04, 0.04), rng.uniform(0, 0.01), rng.uniform(0, 6.3)
        self.pixels = pixels
        sizes = []
        for k in range(GRID + 1):
            q = 4 * k / GRID
            log_bpp = a + b * q + c * q * q + wig * math.sin(7 * q + phase)
            sizes.append(24 + 4 * math.ceil(math.exp(log_bpp) * pixels / 32))
        self.sizes = [max(sizes[: k + 1]) for k in range(GRID + 1)]  # never shrinking
        self.calls: list[float] = []

    def bpp_at(self, k: int) -> float:
        return self.sizes[k] * 8 / self.pixels

    def encode_at(self, q: float) -> int:
        k = round(q * GRID / 4)
        assert k * 4 / GRID == q, q  # only grid q are asked for
        self.calls.append(q)
        return k

    def exhaustive(self, target: float) -> int:
        fits = [k for k in range(GRID + 1) if self.bpp_at(k) <= target]
        return max(fits) if fits else 0


def _search(enc: FakeEncoder, target: float, **kw):
    return search_bpp(enc.encode_at, enc.bpp_at, target, **kw)


def test_same_answer_as_exhaustive_search_in_few_encodes():
    rng = random.Random(1)
    counts = []
    for seed in range(300):
        enc = FakeEncoder(seed, pixels=rng.choice([256 * 256, 768 * 512, 2048 * 1536]))
        target = math.exp(rng.uniform(math.log(enc.bpp_at(0)) - 0.2,
                                      math.log(enc.bpp_at(GRID)) + 0.2))
        found = _search(enc, target)
        want = enc.exhaustive(target)
        assert found.result == want, (seed, target)
        assert found.q == 4 * want / GRID and found.bpp == enc.bpp_at(want)
        assert found.reached == (enc.bpp_at(want) <= target)
        assert found.encodes == len(enc.calls) == len(set(enc.calls))  # no q twice
        counts.append(found.encodes)
    # the former bisection: always 11 encodes
    assert sum(counts) / len(counts) < 5 and max(counts) <= 8, counts


def test_target_above_the_largest_file_or_below_the_smallest():
    enc = FakeEncoder(3)
    found = _search(enc, enc.bpp_at(GRID) * 1.5)
    assert found.result == GRID and found.reached and found.encodes <= 2
    enc = FakeEncoder(3)
    found = _search(enc, enc.bpp_at(0) * 0.5)  # even q = 0 is over: its file, not reached
    assert found.result == 0 and not found.reached and found.encodes <= 2


def test_an_exact_hit_stops_the_search():
    for seed in range(40):
        enc = FakeEncoder(seed)
        k = random.Random(seed).randrange(GRID + 1)
        target = enc.bpp_at(k)
        found = _search(enc, target)
        assert found.bpp == target and found.reached
        # the file fills the budget: a larger q could not give a different size
        assert enc.bpp_at(enc.exhaustive(target)) == target
        assert found.encodes < 11


def test_sizes_that_do_not_grow_with_q_still_give_a_file_that_fits():
    rng = random.Random(5)
    for _ in range(50):
        sizes = [rng.randrange(100, 1000) for _ in range(GRID + 1)]
        calls = []

        def encode_at(q):
            calls.append(q)
            return round(q * GRID / 4)

        found = search_bpp(encode_at, lambda k: sizes[k] / 100, 5.0)
        tried = [round(q * GRID / 4) for q in calls]
        assert len(calls) <= 13
        if any(sizes[k] <= 500 for k in tried):
            assert found.reached and sizes[found.result] <= 500
        else:
            assert found.result == 0 and 0 in tried


def test_progress_counts_every_encode():
    enc = FakeEncoder(7)
    seen = []
    found = _search(enc, enc.bpp_at(200) + 1e-9, progress=lambda n, q, b: seen.append((n, q, b)))
    assert [n for n, _, _ in seen] == list(range(1, found.encodes + 1))
    assert [q for _, q, _ in seen] == enc.calls


def test_a_coarser_grid():
    enc = FakeEncoder(11)
    target = enc.bpp_at(300)
    found = search_bpp(enc.encode_at, enc.bpp_at, target * 1.0001, steps=GRID // 4)
    # on a grid of 128 steps the answer is the largest multiple of 4 that fits
    assert found.result == max(k for k in range(0, GRID + 1, 4) if enc.bpp_at(k) <= target * 1.0001)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_target(bad):
    with pytest.raises(ValueError):
        search_bpp(lambda q: q, lambda r: 1.0, bad)


def test_the_module_does_not_import_torch():
    code = "import sys, crdr_codec.bpp_search; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
