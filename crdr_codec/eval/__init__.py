"""Evaluation harness: rate-distortion-realism sweeps, BD-rates, plots and timings.

Submodules (import them explicitly; this package itself imports only the standard
library, so ``crdr --help`` stays fast and torch is not loaded):

* :mod:`crdr_codec.eval.anchors`: JPEG, WebP, AVIF, JPEG XL and HEIC through Pillow and
  its plugins, with default quality sweeps covering ~0.05-1.5 bpp on Kodak.
* :mod:`crdr_codec.eval.run`: ``crdr eval``, the resumable sweep (real .crdr files,
  per-image CSV, summary JSON, BD-rate table, plots): :func:`~crdr_codec.eval.run.run_eval`
  runs it over the parts below.

  - :mod:`~crdr_codec.eval.config`: :class:`~crdr_codec.eval.config.EvalConfig`, its
    checks and its parsing from the command line's options; the image set.
  - :mod:`~crdr_codec.eval.store`: the output folder (per-image CSV, features, files).
  - :mod:`~crdr_codec.eval.resume`: continuing a folder, ``--anchors-from``.
  - :mod:`~crdr_codec.eval.measure`: PSNR, MS-SSIM, LPIPS, Inception features.
  - :mod:`~crdr_codec.eval.pool`: the anchors' encodes in worker processes.
  - :mod:`~crdr_codec.eval.progress`: the progress bar.
  - :mod:`~crdr_codec.eval.summary`: set means, FID/KID, BD-rates, summary.json, bdrate.csv.
  - :mod:`~crdr_codec.eval.cropsheet` and :mod:`~crdr_codec.eval.report`: the crop sheet,
    the plots and the printed report.

* :mod:`crdr_codec.eval.bdrate`: Bjøntegaard delta rate (piecewise cubic, log rate).
* :mod:`crdr_codec.eval.plots`: RD curves, beta sweep and crop sheet (matplotlib, Agg).
* :mod:`crdr_codec.eval.bench`: ``crdr bench``, encode/decode timing and memory (each
  entry timed in a :mod:`~crdr_codec.eval.bench_worker` child process).

The value-list parser shared by the command line lives here.
"""

from __future__ import annotations

import math
from typing import List, Optional

from crdr_codec.errors import ParameterError, ResumeError

__all__ = ["parse_values", "ResumeError"]


def _number(text: str, option: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ParameterError(f"{option}: '{text}' is not a number") from None
    if not math.isfinite(value):
        raise ParameterError(f"{option}: '{text}' is not a finite number")
    return value


def parse_values(
    spec: str,
    option: str = "value",
    lo: Optional[float] = None,
    hi: Optional[float] = None,
    integer: bool = False,
) -> List[float]:
    """Parse a list of values like ``"0:4:0.25"``, ``"0,2.56,3.84"`` or ``"0:1:0.5,3"``.

    Comma-separated items; each is a number or an inclusive range ``start:stop:step``
    (``start:stop`` means step 1). Range values are computed as ``start + i * step`` and
    rounded to 10 decimals, so ``0:4:0.25`` gives exactly 0, 0.25, ..., 4. The result is
    sorted with duplicates removed.

    Args:
        spec: the text.
        option: option name for error messages (``"--q"``).
        lo: smallest allowed value (inclusive), or None.
        hi: largest allowed value (inclusive), or None.
        integer: values must be integers (returned as floats with integral values).

    Returns:
        The sorted distinct values.

    Raises:
        ParameterError: malformed text, step <= 0, empty list, or a value out of range.
    """
    values: List[float] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        parts = [p.strip() for p in item.split(":")]
        if len(parts) == 1:
            values.append(_number(parts[0], option))
            continue
        if len(parts) not in (2, 3):
            raise ParameterError(f"{option}: '{item}' is not START:STOP:STEP")
        start, stop = _number(parts[0], option), _number(parts[1], option)
        step = _number(parts[2], option) if len(parts) == 3 else 1.0
        if step <= 0:
            raise ParameterError(f"{option}: step must be positive in '{item}'")
        if stop < start:
            raise ParameterError(f"{option}: STOP is below START in '{item}'")
        count = int(math.floor((stop - start) / step + 1e-9)) + 1
        if count > 10_000:
            raise ParameterError(f"{option}: '{item}' has {count} values; that is too many")
        values.extend(round(start + i * step, 10) for i in range(count))
    if not values:
        raise ParameterError(f"{option}: no values given")
    for v in values:
        if integer and v != int(v):
            raise ParameterError(f"{option}: {v:g} is not an integer")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            low = "-inf" if lo is None else f"{lo:g}"
            high = "inf" if hi is None else f"{hi:g}"
            raise ParameterError(f"{option}: {v:g} is outside [{low}, {high}]")
    return sorted(set(values))
