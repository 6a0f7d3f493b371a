"""The ``--bpp`` search: the largest q whose real file fits a bit budget, in few encodes.

The search knows nothing of images or models: it is given ``encode_at(q) -> result``, which
makes a real file, and ``bpp(result)``, its bits per pixel, so it is tested with a fake
encoder and used by :meth:`crdr_codec.codec.Codec.encode_to_bpp` with the real one.

q is searched on a grid of ``steps + 1`` values, ``q = q_max * k / steps`` (the default,
512 steps of 1/128 from 0 to 4, is the grid the former bisection reached after its 9
halvings: every grid q is an exact q code of the file header). The answer is the largest
grid q whose file is at most the target; if even q = 0 is over it, the q = 0 file (the
smallest there is).

File size grows with q, and its logarithm almost linearly (on Kodak, ln bpp rises about
0.64 per unit of q). So instead of halving the bracket, each step interpolates ln bpp
between the closest q known to fit and the closest known not to (regula falsi), and
probes the grid q just below the estimated crossing; a first guess comes from a typical
rate curve. The search keeps a bracket (the largest grid index known to fit, the smallest
known not to) and stops when the two are neighbours, or at once when a file is exactly
the target (a larger q could at best give a file of the same size). Guards keep the
worst case near bisection's: a try that lands on the same side as the one before moves
further towards the other side each time, a bracket that did not halve within three tries
is halved, and when the tries left are only those a bisection needs, it bisects (at most
13 encodes in all).

With sizes that grow with q, the answer is the same as a bisection's or an exhaustive
search's on the same grid (on an exact hit: a file of the same size). With the shipped
model, on 256x256 crops of three Kodak images at 0.1-0.8 bpp, it chose the same q as the
former bisection in 2-7 encodes (4.8 on average) where the bisection took 11; on simulated
rate curves like Kodak's, 4 on average. If sizes do not grow with q (an untrained
model) the file returned still fits whenever one the search made did.

Only the standard library is imported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

#: A typical rate curve, ln(bpp) ~ PRIOR_LOG_BPP_Q0 + PRIOR_SLOPE * q (the shipped model on
#: Kodak: 0.090 bpp at q = 0, 1.17 at q = 4). It only picks the first q tried and the step
#: after a first try; the answer does not depend on it.
PRIOR_LOG_BPP_Q0 = -2.41
PRIOR_SLOPE = 0.64

#: Grid steps of the default search (q in steps of 4 / 512 = 1/128).
DEFAULT_STEPS = 512
#: Encodes the search may spend beyond those of a bisection (11 on the default grid), so
#: it never takes more than 13, however irregular the sizes.
EXTRA_TRIES = 2


@dataclass(frozen=True)
class BppSearchResult:
    """What :func:`search_bpp` found."""

    result: Any  # what encode_at returned for q
    q: float
    bpp: float
    encodes: int  # calls of encode_at
    reached: bool  # bpp <= the target


def search_bpp(
    encode_at: Callable[[float], Any],
    bpp: Callable[[Any], float],
    target: float,
    q_max: float = 4.0,
    steps: int = DEFAULT_STEPS,
    progress: Callable[[int, float, float], None] | None = None,
) -> BppSearchResult:
    """The largest q on the grid ``q_max * k / steps`` (k = 0..steps) whose file is at most
    ``target`` bits per pixel.

    Args:
        encode_at: makes the file at a q (a real encode).
        bpp: the bits per pixel of what ``encode_at`` returned (> 0).
        target: the budget in bits per pixel (> 0).
        q_max: the largest q.
        steps: grid steps between 0 and ``q_max``.
        progress: called after each encode as ``progress(n, q, bpp)`` (n = 1, 2, ...).

    Returns:
        The file at that q, with the number of encodes it took. If even q = 0 is over
        the target, the q = 0 file with ``reached`` False.
    """
    if not target > 0 or math.isinf(target):
        raise ValueError(f"target bpp must be positive and finite, got {target}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    log_target = math.log(target)
    per_index = q_max / steps  # q per grid step
    prior_slope = PRIOR_SLOPE * per_index  # ln bpp per grid step

    def q_of(k: int) -> float:
        return q_max * k / steps

    # k -> (ln bpp - ln target, result, bpp); lo fits, hi does not (-1, steps + 1: unknown)
    known: dict[int, tuple[float, Any, float]] = {}
    lo, hi = -1, steps + 1
    order: list[int] = []  # indices in the order they were tried

    def probe(k: int) -> bool:
        """Encode at grid index k; True on an exact hit."""
        nonlocal lo, hi
        res = encode_at(q_of(k))
        b = float(bpp(res))
        if not b > 0:
            raise ValueError(f"bpp of a file must be positive, got {b}")
        known[k] = (math.log(b) - log_target, res, b)
        order.append(k)
        if progress is not None:
            progress(len(order), q_of(k), b)
        if b <= target:
            lo = max(lo, k)
        else:
            hi = min(hi, k)
        return b == target

    def estimate() -> float:
        """The grid index (real) where ln bpp is estimated to cross ln target."""
        # the secant through the last two tries (the closest to the crossing once the
        # search has converged a little), if its slope is plausible
        slope = None
        if len(order) >= 2:
            a, b = order[-2], order[-1]
            s = (known[b][0] - known[a][0]) / (b - a)
            if prior_slope / 8 <= s <= prior_slope * 8:
                slope = s
        if slope is not None:
            b = order[-1]
            x = b - known[b][0] / slope
            if lo < x < hi:
                return x
        if 0 <= lo and hi <= steps:  # else interpolate between the bracket's ends
            f_lo, f_hi = known[lo][0], known[hi][0]
            if f_hi > f_lo:
                return lo + (hi - lo) * (-f_lo) / (f_hi - f_lo)
            return (lo + hi) / 2  # sizes that do not grow with q: halve
        # one side only: extrapolate from the nearest known point
        near = lo if lo >= 0 else hi
        return near - known[near][0] / (slope or prior_slope)

    # first try: where a typical image of this target would be
    first = (log_target - PRIOR_LOG_BPP_Q0) / PRIOR_SLOPE / per_index
    if probe(min(max(math.floor(first), 0), steps)):
        k = order[-1]
        return BppSearchResult(known[k][1], q_of(k), known[k][2], 1, True)
    # At most this many encodes: a bisection of the whole grid (between the virtual ends
    # -1 and steps + 1) after the first try, plus EXTRA_TRIES. Interpolation may spend
    # them; once the tries left are only enough to halve the bracket, it is halved.
    most = 1 + math.ceil(math.log2(steps + 2)) + EXTRA_TRIES
    push = 0  # consecutive tries that landed on the same side, each pushes further
    stalled = 0  # tries since the bracket last halved
    width = hi - lo
    while hi - lo > 1:
        if ((stalled >= 3 and 0 <= lo and hi <= steps)
                or len(order) + math.ceil(math.log2(hi - lo)) >= most):
            c = (lo + hi) // 2
        else:
            x = estimate()
            if not math.isfinite(x):
                x = (max(lo, 0) + min(hi, steps)) / 2
            c = math.floor(x)
            if push:  # the last tries stayed on one side: aim past the estimate
                c += push if order[-1] == lo else -push
        c = min(max(c, lo + 1), hi - 1)
        last_side = order[-1] == lo
        if probe(c):
            break
        now_side = order[-1] == lo
        push = (1 if push == 0 else push * 2) if now_side == last_side else 0
        if hi - lo <= width / 2:
            width, stalled = hi - lo, 0
        else:
            stalled += 1
    k = order[-1] if known[order[-1]][2] == target else (lo if lo >= 0 else hi)
    _, res, b = known[k]
    return BppSearchResult(res, q_of(k), b, len(order), b <= target)
