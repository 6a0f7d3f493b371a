"""Public API: images (uint8 RGB arrays) <-> .crdr bytes.

Example::

    from crdr_codec import Codec
    codec = Codec()                           # shipped weights, best device
    data = codec.encode(rgb, q=2.5).data      # rgb: (H, W, 3) uint8 -> bytes of a .crdr file
    rec = codec.decode(data, beta=3.84)       # -> (H, W, 3) uint8

Entropy parameters are computed in exact integer arithmetic on the CPU, so a file
decodes to the same symbols on any machine; the transforms use ``device``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from . import bitstream
from .config import PAD_MULTIPLE, Q_MAX, check_beta, code_to_q, q_to_code
from .errors import BitstreamError, ModelMismatchError
from .image_io import crop, pad_to_multiple, to_tensor, to_uint8
from .limits import DEFAULT_MAX_PIXELS, check_max_pixels, check_pixels, padded
from .tiling import tiled, tiled_rows
from .weights import load_weights

#: Images with more padded pixels than this are transformed in tiles.
TILE_THRESHOLD = 2048 * 2048
TILE = 1024  # image pixels (a multiple of 64)
OVERLAP = 256  # image pixels (a multiple of 16)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        from .errors import CrdrError

        raise CrdrError("--device cuda was requested but no CUDA device is available")
    return torch.device(device)


class _PaddedTiles:
    """An (H, W, 3) uint8 image, padded like :func:`pad_to_multiple` (edge replication),
    that hands out network-input tiles: ``src[:, :, y0:y1, x0:x1]`` is exactly that region
    of ``pad_to_multiple(to_tensor(rgb))``, but the whole image is never converted."""

    def __init__(self, rgb: np.ndarray, multiple: int, device: torch.device) -> None:
        h, w = rgb.shape[:2]
        self.rgb = rgb
        self.shape = (1, 3, h + (-h) % multiple, w + (-w) % multiple)
        self.device = device

    def __getitem__(self, index) -> torch.Tensor:
        _, _, rows, cols = index
        h, w = self.rgb.shape[:2]
        # the padding replicates the last row and column: clip the indices into the image
        r = np.minimum(np.arange(*rows.indices(self.shape[2])), h - 1)
        c = np.minimum(np.arange(*cols.indices(self.shape[3])), w - 1)
        return to_tensor(self.rgb[r[:, None], c[None, :]]).to(self.device)


@dataclass(frozen=True)
class EncodeResult:
    data: bytes
    q: float  # the exact q used (as stored in the header)


@dataclass(frozen=True)
class DecodedLatent:
    """A file entropy-decoded once (:meth:`Codec.decode_latent`), ready to be synthesized
    at any beta (:meth:`Codec.synthesize`) without decoding the payload again."""

    header: bitstream.Header
    sections: tuple
    y_hat: torch.Tensor  # (1, M, H/16, W/16), padded size, on the CPU


class Codec:
    """A loaded model ready to encode and decode.

    Args:
        weights: path of a weights file (default: the shipped weights).
        device: "auto", "cpu" or "cuda" for the transforms.
        tile: tile size in pixels for large images (None: automatic above a threshold).
        model: an already built model (instead of ``weights``), with its fingerprint.
        max_pixels: largest image encoded or decoded, in pixels after padding to
            multiples of 64 (default :data:`~crdr_codec.limits.DEFAULT_MAX_PIXELS`).
            Decoding checks a file's claimed size against it before any model work.
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        device: str = "auto",
        tile: int | None = None,
        model=None,
        fingerprint: bytes | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.max_pixels = check_max_pixels(max_pixels)
        if model is None:
            model, fingerprint = load_weights(weights)
        self.model = model.eval()
        self.fingerprint = fingerprint or b"\0" * 32
        self.model_id = self.fingerprint[: bitstream.MODEL_ID_BYTES]
        self.device = resolve_device(device)
        self.model.place(self.device)
        self.tile = tile
        # Weights exported before stage 3 never trained the realism conditioning.
        self.realism_trained = int(getattr(self.model, "meta", {}).get("stage", 3)) >= 3

    def _use_tiles(self, h: int, w: int) -> bool:
        if self.tile is not None:
            return True
        return h * w > TILE_THRESHOLD

    def _tile_size(self) -> tuple[int, int]:
        t = self.tile or TILE
        return t, min(OVERLAP, t // 2)

    # -------------------------------------------------------------- encode
    def encode(self, rgb, q: float = 2.0, sections=(), refine: int = 0) -> EncodeResult:
        """Encode an image at quality q in [0, 4].

        ``rgb``: an (H, W, 3) uint8 array, or a PIL image (its ICC profile, EXIF, XMP and
        grayscale mode are then stored too, unless ``sections`` is given).
        ``sections``: optional container sections to store (e.g. metadata.to_sections).
        ``refine``: steps of encode-time latent refinement (:mod:`crdr_codec.refine`;
        0 = none): a slower encode and a better file, decoded as any other.
        """
        if not isinstance(rgb, np.ndarray):  # a PIL image
            from . import metadata

            if not sections:
                sections = metadata.to_sections(metadata.from_image(rgb))
            rgb = np.asarray(rgb.convert("RGB"), dtype=np.uint8)
        code = q_to_code(q)
        q_used = code_to_q(code)
        h, w = rgb.shape[:2]
        check_pixels(w, h, self.max_pixels)
        m = self.model
        if self._use_tiles(padded(h), padded(w)):
            # large images: only the current tile is ever in floating point
            t, o = self._tile_size()
            qt = torch.tensor([q_used], device=self.device)
            src = _PaddedTiles(rgb, PAD_MULTIPLE, self.device)
            with torch.inference_mode():
                y = tiled(lambda p: m.g_a(p, qt), src, t, o, 1 / 16, m.cfg.latent)
        else:
            src = pad_to_multiple(to_tensor(rgb), PAD_MULTIPLE).to(self.device)
            y = m.analyze(src, q_used)
        z = None
        if refine:
            from .refine import refine_latent

            y, z = refine_latent(m, src, y, q_used, refine, h, w)
        coded = m.compress_latent(y, z)
        header = bitstream.Header(model_id=self.model_id, q_code=code, height=h, width=w,
                                  check=coded.check)
        return EncodeResult(bitstream.pack(header, coded.payload, sections), q_used)

    def encode_to_bpp(self, rgb: np.ndarray, target_bpp: float, iterations: int = 9,
                      sections=(), progress=None, refine: int = 0) -> EncodeResult:
        """Largest q whose real file size is at most ``target_bpp``, on a grid of
        ``2 ** iterations`` steps from 0 to 4 (:func:`crdr_codec.bpp_search.search_bpp`:
        the same answer as a bisection of that many halvings, in a few encodes).

        If even q = 0 exceeds the target, the q = 0 file is returned (the smallest we can
        make; the caller can tell from its size).

        ``progress``: called after each real encode as ``progress(n, q, bpp)``, n = 1, 2,
        ... (so its last call tells how many encodes the search took). ``refine``: as in
        :meth:`encode`, for every one of them.
        """
        from .bpp_search import search_bpp

        pixels = rgb.shape[0] * rgb.shape[1]
        found = search_bpp(lambda q: self.encode(rgb, q, sections, refine),
                           lambda res: len(res.data) * 8 / pixels, target_bpp, q_max=Q_MAX,
                           steps=2 ** iterations, progress=progress)
        return found.result

    # -------------------------------------------------------------- decode
    def read(self, data: bytes) -> tuple[bitstream.Header, bytes, tuple[bitstream.Section, ...]]:
        """Parse a file and check that this model can decode it, before any model work:
        the model id, the pixel limit, and the payload's lower bound for that size.

        Returns:
            (header, payload, sections)
        Raises:
            BitstreamError: not a valid file, or a payload too short for its claimed size.
            LimitError: the image is over ``max_pixels``.
            ModelMismatchError: the file was written by another model.
        """
        header, payload, sections = bitstream.unpack(data)
        check_pixels(header.width, header.height, self.max_pixels)
        if header.model_id != self.model_id:
            raise ModelMismatchError(
                f"file was written by model {header.model_id.hex()}, "
                f"but the loaded weights are model {self.model_id.hex()} (use --weights)"
            )
        hp, wp = padded(header.height), padded(header.width)
        need = self.model.min_payload_bytes(hp, wp)
        if len(payload) < need:
            raise BitstreamError(
                f"truncated or forged .crdr file (a {header.width}x{header.height} image needs "
                f"a payload of at least {need:,} bytes; this one has {len(payload):,})"
            )
        return header, payload, sections

    def decode_image(self, data: bytes, beta: float = 0.0):
        """Decode to a PIL image carrying the file's ICC profile, EXIF and XMP (in
        ``.info``), one-channel ("L") for a grayscale original."""
        from PIL import Image

        from . import metadata

        beta = check_beta(beta)
        latent = self.decode_latent(data)
        rgb = self.synthesize(latent, beta)
        meta = metadata.from_sections(latent.sections)
        if meta.grayscale:
            im = metadata.to_gray(rgb)
        else:
            im = Image.fromarray(rgb)
        for key, value in (("icc_profile", meta.icc), ("exif", meta.exif), ("xmp", meta.xmp)):
            if value:
                im.info[key] = value
        return im

    def decode(self, data: bytes, beta: float = 0.0) -> np.ndarray:
        """Decode .crdr bytes at realism beta in [0, 5.12] to an (H, W, 3) uint8 image.

        Raises:
            BitstreamError: the file is damaged, forged or truncated (including a payload
                that decodes to symbols other than the ones the header's check value
                describes). Any other exception (e.g. out of memory) is not about the
                data and propagates unchanged.
        """
        beta = check_beta(beta)
        return self.synthesize(self.decode_latent(data), beta)

    def decode_latent(self, data: bytes) -> DecodedLatent:
        """Entropy-decode a file once (checks as :meth:`read`, then the symbols' CRC).

        ``codec.synthesize(codec.decode_latent(data), beta)`` equals
        ``codec.decode(data, beta)``; use it to decode one file at many betas.

        Raises:
            BitstreamError: the file is damaged, forged or truncated.
        """
        header, payload, sections = self.read(data)
        hp, wp = padded(header.height), padded(header.width)
        # decode_latent raises PayloadError (a BitstreamError) for undecodable data.
        y_hat, check = self.model.decode_latent(payload, hp, wp)
        if check != header.check:
            raise BitstreamError(
                "corrupt .crdr payload (decoded symbols do not match the file's check value)"
            )
        return DecodedLatent(header, sections, y_hat)

    def synthesize(self, latent: DecodedLatent, beta: float = 0.0) -> np.ndarray:
        """The (H, W, 3) uint8 image of a decoded latent at realism beta in [0, 5.12]."""
        beta = check_beta(beta)
        header, y_hat = latent.header, latent.y_hat
        hp, wp = padded(header.height), padded(header.width)
        m = self.model
        if not self._use_tiles(hp, wp):
            x_hat = m.synthesize(y_hat, header.q, beta)
            return to_uint8(crop(x_hat.cpu(), header.height, header.width))
        # large images: g_s tile by tile, each finished band of rows straight to uint8
        t, o = self._tile_size()
        height, width = header.height, header.width
        rgb = np.empty((height, width, 3), np.uint8)

        def emit(r0: int, r1: int, rows: torch.Tensor) -> None:
            r1 = min(r1, height)
            if r0 < r1:
                rgb[r0:r1] = to_uint8(rows[:, :, : r1 - r0, :width].clamp_(-1, 1))

        tiled_rows(lambda p: m.synthesize(p, header.q, beta), y_hat, t // 16, o // 16, 16, 3, emit)
        return rgb
