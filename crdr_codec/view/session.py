"""What the viewer shows, without any HTTP: one .crdr file decoded at many betas.

The payload is entropy-decoded once (:meth:`Codec.decode_latent`); each beta asked for
is then only a synthesis (:meth:`Codec.synthesize`), and its image is cached, keyed by
beta rounded to 0.01 (the slider's step). The image at beta b is exactly what
``crdr decode FILE --beta b`` writes (same PNG encoder, same colour profile).

With the original image the session also measures PSNR and LPIPS-Alex, and encodes
the original with conventional codecs (AVIF, WebP, JPEG by default) at the largest
quality whose file is no larger than the .crdr file.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ..bitstream import SECTION_SUGGESTED_BETA
from ..config import BETA_MAX, check_beta
from ..errors import CrdrError, ImageError
from ..image_io import encode_image_bytes
from ..metadata import from_sections, to_gray

#: The slider's step: betas are cached (and decoded) rounded to this.
BETA_STEP = 0.01
#: Decoded betas kept in memory (each an RGB array and a PNG).
CACHE_SIZE = 64
#: The conventional codecs compared by default.
DEFAULT_ANCHORS = ("avif", "webp", "jpeg")


def beta_key(beta: float) -> int:
    """Cache key of a beta: hundredths, after the range check."""
    return int(round(check_beta(float(beta)) / BETA_STEP))


def _displayed(rgb: np.ndarray, grayscale: bool) -> np.ndarray:
    """The pixels a viewer sees: a grayscale file decodes to one channel (see
    :func:`crdr_codec.metadata.to_gray`), shown as equal RGB."""
    if not grayscale:
        return rgb
    g = np.asarray(to_gray(rgb))
    return np.repeat(g[:, :, None], 3, axis=2)


@dataclass
class AnchorResult:
    """A conventional codec's file of (at most) the .crdr file's size."""

    name: str
    label: str
    available: bool
    note: str = ""
    quality: int | None = None
    size: int | None = None  # file bytes
    bpp: float | None = None
    fits: bool = True  # False: even the lowest quality is larger than the .crdr file
    psnr: float | None = None
    lpips: float | None = None
    png: bytes | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in ("name", "label", "available", "note", "quality",
                                             "bpp", "fits", "psnr", "lpips")}
        d["bytes"] = self.size
        return d


def match_size(anchor, rgb: np.ndarray, target_bytes: int) -> tuple[int, bytes, bool]:
    """The largest quality of ``anchor`` whose file is at most ``target_bytes``.

    File size grows with quality, so a bisection over the anchor's integer quality range
    finds it in about log2(range) encodes.

    Returns:
        (quality, file bytes, fits): ``fits`` is False when even the lowest quality is
        larger than the target (that smallest file is returned).
    """
    lo, hi = anchor.quality_range
    made: dict[int, bytes] = {}

    def size(q: int) -> int:
        if q not in made:
            made[q] = anchor.encode(rgb, q)
        return len(made[q])

    if size(lo) > target_bytes:
        return lo, made[lo], False
    if size(hi) <= target_bytes:
        return hi, made[hi], True
    while hi - lo > 1:  # size(lo) <= target < size(hi)
        mid = (lo + hi) // 2
        if size(mid) <= target_bytes:
            lo = mid
        else:
            hi = mid
    return lo, made[lo], True


class ViewSession:
    """One .crdr file (and optionally its original) as the viewer serves it.

    Args:
        codec: a :class:`~crdr_codec.codec.Codec` that can decode ``data``.
        data: the .crdr file's bytes.
        name: the file's name, for the page.
        original: the original image as an (H, W, 3) uint8 array, or None.
        original_meta: the original's :class:`~crdr_codec.metadata.Metadata` (colour
            profile carried into the PNG the browser gets), or None.
        original_name: the original's name, for the page.
        anchors: names of conventional codecs to compare with (needs ``original``).
        lpips: measure LPIPS-Alex (False: PSNR only).

    Raises:
        BitstreamError: ``data`` is not a valid .crdr file (decoded here, once).
        ImageError: ``original`` is not the decoded image's size.
    """

    def __init__(self, codec, data: bytes, name: str = "image.crdr", original=None,
                 original_meta=None, original_name: str | None = None,
                 anchors=DEFAULT_ANCHORS, lpips: bool = True) -> None:
        self.codec = codec
        self.data = bytes(data)
        self.name = name
        self.latent = codec.decode_latent(self.data)
        self.entropy_decodes = 1
        self.syntheses = 0
        header = self.latent.header
        self.width, self.height = header.width, header.height
        self.meta = from_sections(self.latent.sections)
        self.suggested_beta = 0.0
        for s in self.latent.sections:
            if s.type == SECTION_SUGGESTED_BETA:
                self.suggested_beta = min(max(float(s.value()), 0.0), BETA_MAX)
        self.initial_beta = self.suggested_beta  # the slider's first position
        if original is not None and original.shape[:2] != (self.height, self.width):
            oh, ow = original.shape[:2]
            raise ImageError(
                f"{original_name or 'original'} is {ow}x{oh}, but {name} is "
                f"{self.width}x{self.height}; give the image it was encoded from")
        self.original = original
        self.original_meta = original_meta
        self.original_name = original_name
        self.anchor_names = tuple(anchors) if original is not None else ()
        self._want_lpips = lpips and original is not None
        self._images: OrderedDict[int, tuple[np.ndarray, bytes]] = OrderedDict()
        self._metrics: dict[int, dict] = {}
        self._anchors: list[AnchorResult] | None = None
        self._original_png: bytes | None = None
        self._lpips = None
        self._lpips_note = "" if original is not None else "no original given"
        self._decode_lock = threading.Lock()
        self._metric_lock = threading.Lock()
        self._anchor_lock = threading.Lock()

    # ------------------------------------------------------------------ facts
    @property
    def file_bytes(self) -> int:
        return len(self.data)

    @property
    def bpp(self) -> float:
        return self.file_bytes * 8 / (self.width * self.height)

    def info(self) -> dict:
        h = self.latent.header
        return {
            "file": self.name, "width": self.width, "height": self.height,
            "q": h.q, "model_id": h.model_id.hex(), "bytes": self.file_bytes, "bpp": self.bpp,
            "grayscale": bool(self.meta.grayscale),
            "beta_min": 0.0, "beta_max": BETA_MAX, "beta_step": BETA_STEP,
            "suggested_beta": self.suggested_beta, "initial_beta": self.initial_beta,
            "realism_trained": bool(getattr(self.codec, "realism_trained", True)),
            "original": self.original_name if self.original is not None else None,
            "anchors": list(self.anchor_names),
        }

    def stats(self) -> dict:
        """How much work was done: the payload is entropy-decoded once, each cached beta
        synthesized once."""
        with self._decode_lock:
            cached = [k * BETA_STEP for k in self._images]
        return {"entropy_decodes": self.entropy_decodes, "syntheses": self.syntheses,
                "cached_betas": [round(b, 2) for b in sorted(cached)]}

    # ------------------------------------------------------------------ decoded images
    def _decoded(self, beta: float) -> tuple[np.ndarray, bytes]:
        key = beta_key(beta)
        with self._decode_lock:
            hit = self._images.get(key)
            if hit is not None:
                self._images.move_to_end(key)
                return hit
            rgb = self.codec.synthesize(self.latent, key * BETA_STEP)
            self.syntheses += 1
            png = encode_image_bytes(rgb, "png", self.meta)  # as `crdr decode` writes it
            hit = (_displayed(rgb, self.meta.grayscale), png)
            self._images[key] = hit
            while len(self._images) > CACHE_SIZE:
                self._images.popitem(last=False)
            return hit

    def image_png(self, beta: float) -> bytes:
        """The decoded image at ``beta`` (rounded to 0.01) as a PNG file."""
        return self._decoded(beta)[1]

    def image(self, beta: float) -> np.ndarray:
        """The decoded image at ``beta`` (rounded to 0.01) as displayed (H, W, 3)."""
        return self._decoded(beta)[0]

    def original_png(self) -> bytes | None:
        if self.original is None:
            return None
        if self._original_png is None:
            self._original_png = encode_image_bytes(self.original, "png", self._carried_meta())
        return self._original_png

    def _carried_meta(self):
        """The original's colour profile only (for the PNGs the browser shows)."""
        from ..metadata import Metadata

        m = self.original_meta
        return Metadata(icc=m.icc) if m is not None and m.icc else None

    # ------------------------------------------------------------------ metrics
    def _lpips_model(self):
        """LPIPS-Alex, loaded on first use; None (with a note) when it cannot load."""
        if self._lpips is None and self._want_lpips:
            try:
                from ..metrics.lpips import LPIPS

                self._lpips = LPIPS("alex")
            except Exception as e:  # noqa: BLE001 - any failure: show PSNR, say why not LPIPS
                self._want_lpips = False
                reason = " ".join(str(e).split()) or type(e).__name__
                self._lpips_note = f"LPIPS unavailable: {reason}"
        return self._lpips

    def _distance(self, rgb: np.ndarray) -> tuple[float | None, float | None]:
        """(PSNR, LPIPS) of ``rgb`` against the original."""
        from ..metrics.basic import psnr

        p = psnr(self.original, rgb)
        lp = None
        model = self._lpips_model()
        if model is not None:
            import torch

            from ..image_io import to_tensor

            with torch.inference_mode():
                lp = float(model(to_tensor(self.original), to_tensor(rgb))[0])
        return (None if p == float("inf") else p), lp

    def metrics(self, beta: float) -> dict:
        """bpp, and PSNR / LPIPS against the original when one was given."""
        key = beta_key(beta)
        out = {"beta": round(key * BETA_STEP, 2), "bpp": self.bpp, "psnr": None,
               "lpips": None, "note": self._lpips_note}
        if self.original is None:
            out["note"] = "no original given: PSNR and LPIPS need it"
            return out
        rgb = self.image(beta)
        with self._metric_lock:
            if key not in self._metrics:
                p, lp = self._distance(rgb)
                self._metrics[key] = {"psnr": p, "lpips": lp}
            out.update(self._metrics[key])
            out["note"] = self._lpips_note
        return out

    # ------------------------------------------------------------------ anchors
    def anchors(self) -> list[AnchorResult]:
        """The conventional codecs at the .crdr file's size (made on first call)."""
        with self._anchor_lock:
            if self._anchors is None:
                self._anchors = [self._make_anchor(n) for n in self.anchor_names]
            return self._anchors

    def _make_anchor(self, name: str) -> AnchorResult:
        from ..eval.anchors import ANCHORS

        a = ANCHORS[name]
        try:
            a.ensure_available()
        except CrdrError as e:
            return AnchorResult(name, a.label, False, note=f"{a.label} unavailable: {e}")
        quality, encoded, fits = match_size(a, self.original, self.file_bytes)
        rgb = a.decode(encoded)
        res = AnchorResult(name, a.label, True, quality=quality, size=len(encoded),
                           bpp=len(encoded) * 8 / (self.width * self.height), fits=fits,
                           png=encode_image_bytes(rgb, "png", self._carried_meta()))
        if not fits:
            res.note = (f"{a.label} cannot be this small: its lowest quality gives "
                        f"{len(encoded):,} bytes")
        with self._metric_lock:
            res.psnr, res.lpips = self._distance(rgb)
        return res

    def anchor_png(self, name: str) -> bytes | None:
        for a in self.anchors():
            if a.name == name and a.available:
                return a.png
        return None
