"""Bjøntegaard delta rate (BD-rate) between two rate-quality curves.

BD-rate is the average rate difference, in percent, between a *test* codec and an
*anchor* codec at equal quality, over the quality interval both curves cover
(G. Bjøntegaard, VCEG-M33, 2001). Negative values mean the test codec needs fewer bits.

Computation (the piecewise-cubic variant that replaced Bjøntegaard's original cubic
polynomial fit in common practice):

1. Points with a non-finite rate or quality (PSNR of a lossless point is infinite) or a
   non-positive rate are dropped.
2. For "lower is better" metrics (LPIPS, FID) the quality is negated, so that quality
   always increases with rate. The sign of the resulting BD-rate keeps its meaning
   (negative = fewer bits for the same LPIPS).
3. Each curve is sorted by rate and reduced to its Pareto front: a point is kept only if
   its quality is strictly better than that of every cheaper point (a dominated
   setting is one nobody would pick, and the interpolation needs quality to be
   strictly monotonic). How many points were dropped is reported.
4. log(rate) is interpolated as a function of quality with a monotone piecewise-cubic
   Hermite interpolant (``scipy.interpolate.PchipInterpolator``), and both interpolants
   are integrated exactly over the overlap ``[max(min_a, min_t), min(max_a, max_t)]``.
5. ``BD-rate = exp(mean(log r_test - log r_anchor)) - 1``, in percent.

When fewer than two points remain on a curve or the quality ranges do not overlap, the
result is NaN and :attr:`BDResult.reason` says why. A curve compared with itself gives
exactly 0, and a curve whose rates are all multiplied by ``f`` gives ``(f - 1) * 100``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

__all__ = ["BDResult", "bd_rate", "pareto_front"]


@dataclass(frozen=True)
class BDResult:
    """Outcome of :func:`bd_rate`.

    Attributes:
        percent: BD-rate in percent (negative: the test codec saves bits), or NaN.
        reason: why the value is NaN (None when it is a number).
        overlap: the quality interval integrated over, in the metric's own units
            (e.g. ``(28.1, 34.9)`` dB, or ``(0.21, 0.45)`` LPIPS), or None.
        points: ``(anchor, test)`` numbers of points used after filtering.
        dropped: ``(anchor, test)`` numbers of dominated or non-finite points dropped.
    """

    percent: float
    reason: Optional[str] = None
    overlap: Optional[Tuple[float, float]] = None
    points: Tuple[int, int] = (0, 0)
    dropped: Tuple[int, int] = (0, 0)

    @property
    def ok(self) -> bool:
        return math.isfinite(self.percent)

    def to_json(self) -> Dict[str, Any]:
        """A JSON-safe dict (NaN becomes None)."""
        d = asdict(self)
        d["percent"] = self.percent if self.ok else None
        d["overlap"] = list(self.overlap) if self.overlap is not None else None
        d["points"] = list(self.points)
        d["dropped"] = list(self.dropped)
        return d


def pareto_front(rate: Sequence[float], quality: Sequence[float]) -> Tuple[np.ndarray, np.ndarray, int]:
    """Finite points of a curve, sorted by rate, each strictly better than all cheaper ones.

    Args:
        rate: rates (bpp), positive.
        quality: qualities, higher is better.

    Returns:
        ``(rate, quality, dropped)``, with ``dropped`` the number of removed points.
    """
    r = np.asarray(rate, dtype=np.float64).ravel()
    q = np.asarray(quality, dtype=np.float64).ravel()
    if r.shape != q.shape:
        raise ValueError(f"rate and quality have different lengths ({r.size} vs {q.size})")
    ok = np.isfinite(r) & np.isfinite(q) & (r > 0)
    r, q = r[ok], q[ok]
    order = np.lexsort((-q, r))  # by rate; for equal rates the best quality first
    keep_r, keep_q = [], []
    best = -np.inf
    for i in order:
        if q[i] > best:
            keep_r.append(r[i])
            keep_q.append(q[i])
            best = q[i]
    kept = len(keep_r)
    return np.array(keep_r), np.array(keep_q), int(ok.size - kept)


def bd_rate(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
    higher_is_better: bool = True,
    metric: str = "quality",
) -> BDResult:
    """BD-rate of the test curve against the anchor curve.

    Args:
        anchor_rate: anchor rates (bpp).
        anchor_quality: anchor qualities at those rates (e.g. PSNR in dB).
        test_rate: test codec rates.
        test_quality: test codec qualities.
        higher_is_better: False for distortion-like metrics such as LPIPS.
        metric: metric name used in the NaN reasons.

    Returns:
        A :class:`BDResult`; ``percent`` is NaN with a ``reason`` when not computable.
    """
    from scipy.interpolate import PchipInterpolator

    sign = 1.0 if higher_is_better else -1.0
    ra, qa, da = pareto_front(anchor_rate, sign * np.asarray(anchor_quality, dtype=np.float64))
    rt, qt, dt = pareto_front(test_rate, sign * np.asarray(test_quality, dtype=np.float64))
    points, dropped = (len(ra), len(rt)), (da, dt)
    for label, n in (("anchor", len(ra)), ("test", len(rt))):
        if n < 2:
            return BDResult(
                float("nan"),
                f"{label} curve has {n} usable point(s) on its {metric} Pareto front; need at least 2",
                None, points, dropped,
            )
    lo, hi = max(qa[0], qt[0]), min(qa[-1], qt[-1])

    def span(q: np.ndarray) -> str:
        a, b = sorted((sign * q[0], sign * q[-1]))
        return f"{a:.4g}..{b:.4g}"

    if not hi > lo:
        return BDResult(
            float("nan"),
            f"curves do not overlap in {metric} (anchor {span(qa)}, test {span(qt)})",
            None, points, dropped,
        )
    ia = PchipInterpolator(qa, np.log(ra)).integrate(lo, hi)
    it = PchipInterpolator(qt, np.log(rt)).integrate(lo, hi)
    mean_log_ratio = float(it - ia) / float(hi - lo)
    percent = (math.exp(mean_log_ratio) - 1.0) * 100.0
    overlap = tuple(sorted((float(sign * lo), float(sign * hi))))
    return BDResult(percent, None, overlap, points, dropped)  # type: ignore[arg-type]
