"""Range coding of z and y with constriction. The only module that imports constriction.

All coding is done against *fixed* models, so the decoder's symbol stream can never
depend on floating-point noise:

* z: one categorical model per channel, from probability tables exported into the
  weights file (float32, identical for encoder and decoder).
* y: each symbol is the integer residual round(y - mu), coded with a zero-mean quantised
  Gaussian whose standard deviation is an entry of the fixed scale table, chosen by index.
  Residuals are clamped to +-limit(index) (far in the tails: 24 standard deviations or
  more), and the encoder reconstructs from the clamped value, so both sides agree.

One queue (FIFO) range coder carries z first and then the y slices in order.
"""

from __future__ import annotations

import numpy as np
import constriction

from ..errors import PayloadError

# Symbol ranges for y, chosen per scale index: the smallest R with R >= 24 * scale.
_RANGES = (63, 511, 4095, 32767)
_SIGMAS = 24.0


def y_limits(table: np.ndarray) -> np.ndarray:
    """Per scale-table index, the largest |residual| that is coded (int64)."""
    need = _SIGMAS * table.astype(np.float64)
    return np.array([next(r for r in _RANGES if r >= n) for n in need], dtype=np.int64)


class ZTables:
    """Per-channel categorical models for z (exported from the training-time prior)."""

    def __init__(self, pmf: np.ndarray, lengths: np.ndarray) -> None:
        # pmf: (C, Lmax) float32; channel c uses pmf[c, :lengths[c]].
        self.models = [
            constriction.stream.model.Categorical(
                pmf[c, : int(lengths[c])].astype(np.float64), perfect=False
            )
            for c in range(pmf.shape[0])
        ]


class YTables:
    def __init__(self, table: np.ndarray) -> None:
        self.std = table.astype(np.float64)
        self.limits = y_limits(table)
        self.families = {
            r: constriction.stream.model.QuantizedGaussian(-r, r) for r in sorted(set(self.limits))
        }


class Encoder:
    def __init__(self, z: ZTables, y: YTables) -> None:
        self._z, self._y = z, y
        self._enc = constriction.stream.queue.RangeEncoder()

    def encode_z(self, sym: np.ndarray) -> None:
        """sym: (C, n) int32, channel c's symbols already shifted into 0..len_c-1."""
        for c, model in enumerate(self._z.models):
            self._enc.encode(np.ascontiguousarray(sym[c], dtype=np.int32), model)

    def encode_y(self, sym: np.ndarray, idx: np.ndarray) -> None:
        """sym, idx: flat arrays of residuals (already clamped) and scale indices."""
        lim = self._y.limits[idx]
        for r, family in self._y.families.items():
            sel = lim == r
            if sel.any():
                stds = self._y.std[idx[sel]]
                self._enc.encode(
                    sym[sel].astype(np.int32), family, np.zeros_like(stds), stds
                )

    def finish(self) -> bytes:
        return self._enc.get_compressed().astype("<u4").tobytes()


class Decoder:
    def __init__(self, z: ZTables, y: YTables, payload: bytes) -> None:
        self._z, self._y = z, y
        words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
        self._dec = constriction.stream.queue.RangeDecoder(words)

    def decode_z(self, n: int) -> np.ndarray:
        try:
            out = [self._dec.decode(model, n) for model in self._z.models]
        except (ValueError, AssertionError) as e:  # constriction's "invalid compressed data"
            raise PayloadError(f"corrupt .crdr payload ({e})") from None
        return np.stack(out).astype(np.int64)

    def decode_y(self, idx: np.ndarray) -> np.ndarray:
        out = np.zeros(idx.shape, dtype=np.int64)
        lim = self._y.limits[idx]
        for r, family in self._y.families.items():
            sel = lim == r
            if sel.any():
                stds = self._y.std[idx[sel]]
                try:
                    out[sel] = self._dec.decode(family, np.zeros_like(stds), stds)
                except (ValueError, AssertionError) as e:
                    raise PayloadError(f"corrupt .crdr payload ({e})") from None
        return out

    def finish(self) -> None:
        """Check that the symbols used up the payload exactly (no words left over)."""
        if not self._dec.maybe_exhausted():
            raise PayloadError("corrupt .crdr payload (data left over after the last symbol)")
