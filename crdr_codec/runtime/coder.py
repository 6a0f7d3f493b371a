"""Range coding of z and y with constriction, against integer probability tables.

Every probability the coder uses is an integer frequency stored in the weights file
(nothing is evaluated with erf/exp at run time), so the coder's models are identical on
every machine:

* z: one table per channel, over the symbols 0 .. length_c - 1 (``round(z - median)``
  shifted by the channel's minimum).
* y: one table per scale index i = 0..63, a zero-mean Gaussian of standard deviation
  ``table[i]`` discretised over the residuals -R_i .. R_i, R_i = max(63, ceil(24 * table[i])).

Each table's frequencies are >= 1 and sum to 2^24 (the coder's precision). constriction
is given the frequencies minus one as "probabilities" (``Categorical(perfect=False)``):
its fast quantisation then reproduces our integer CDF exactly (every intermediate is an
integer below 2^53, and its scale factor is exactly 1). One queue (FIFO) range coder
carries z first, then the y slices in order; within a slice, symbols are coded grouped
by scale index (ascending), each group in (channel, row, column) order.
"""

from __future__ import annotations

import math

import constriction
import numpy as np

from ..errors import PayloadError

PRECISION = 24
TOTAL = 1 << PRECISION


def _model(freq: np.ndarray):
    return constriction.stream.model.Categorical(
        (np.asarray(freq, dtype=np.int64) - 1).astype(np.float64), perfect=False
    )


class Tables:
    """The coder's models, built once per loaded model from the integer tables."""

    def __init__(self, state) -> None:
        zf = np.asarray(state["z.freq"]).astype(np.int64)
        self.z_lengths = np.asarray(state["z.lengths"]).astype(np.int64)
        self.z_models = [_model(zf[c, : n]) for c, n in enumerate(self.z_lengths)]
        # Cheapest possible cost of one symbol per z channel, in bits (for size bounds).
        self.z_min_bits = np.array(
            [-math.log2(int(zf[c, :n].max()) / TOTAL) for c, n in enumerate(self.z_lengths)]
        )
        yf = np.asarray(state["y.freq"]).astype(np.int64)
        off = np.asarray(state["y.offset"]).astype(np.int64)
        self.y_limits = np.asarray(state["y.limit"]).astype(np.int64)
        self.y_models = [_model(yf[off[i] : off[i + 1]]) for i in range(len(self.y_limits))]


class Encoder:
    def __init__(self, tables: Tables) -> None:
        self._t = tables
        self._enc = constriction.stream.queue.RangeEncoder()

    def encode_z(self, sym: np.ndarray) -> None:
        """sym: (C, n) int, channel c's symbols already shifted into 0..len_c-1."""
        for c, model in enumerate(self._t.z_models):
            self._enc.encode(np.ascontiguousarray(sym[c], dtype=np.int32), model)

    def encode_y(self, sym: np.ndarray, idx: np.ndarray) -> None:
        """sym, idx: flat arrays of residuals (already clamped to +-limit) and scale indices."""
        for i in np.unique(idx):
            sel = idx == i
            self._enc.encode((sym[sel] + self._t.y_limits[i]).astype(np.int32), self._t.y_models[i])

    def finish(self) -> bytes:
        return self._enc.get_compressed().astype("<u4").tobytes()


class Decoder:
    def __init__(self, tables: Tables, payload: bytes) -> None:
        self._t = tables
        self._words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
        self._dec = constriction.stream.queue.RangeDecoder(self._words)
        self._calls: list[tuple[np.ndarray, object]] = []  # replayed by finish()

    def decode_z(self, n: int) -> np.ndarray:
        try:
            out = [self._dec.decode(model, n) for model in self._t.z_models]
        except (ValueError, AssertionError) as e:  # constriction's "invalid compressed data"
            raise PayloadError(f"corrupt .crdr payload ({e})") from None
        self._calls += [(sym, model) for sym, model in zip(out, self._t.z_models)]
        return np.stack(out).astype(np.int64)

    def decode_y(self, idx: np.ndarray) -> np.ndarray:
        out = np.zeros(idx.shape, dtype=np.int64)
        for i in np.unique(idx):
            sel = idx == i
            try:
                sym = self._dec.decode(self._t.y_models[i], int(sel.sum()))
            except (ValueError, AssertionError) as e:
                raise PayloadError(f"corrupt .crdr payload ({e})") from None
            self._calls.append((sym, self._t.y_models[i]))
            out[sel] = sym.astype(np.int64) - self._t.y_limits[i]
        return out

    def finish(self) -> None:
        """Check that the payload is exactly the encoding of the decoded symbols.

        The decoded symbols are encoded again (a few milliseconds): a payload with words
        appended, or altered where the decoder did not look, is refused.
        """
        if not self._dec.maybe_exhausted():
            raise PayloadError("corrupt .crdr payload (data left over after the last symbol)")
        enc = constriction.stream.queue.RangeEncoder()
        for sym, model in self._calls:
            enc.encode(sym, model)
        if not np.array_equal(enc.get_compressed(), self._words):
            raise PayloadError("corrupt .crdr payload (it is not the encoding of its own symbols)")
