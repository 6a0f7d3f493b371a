"""Public API: images (uint8 RGB arrays) <-> .crdr bytes.

Example::

    from crdr_codec import Codec
    codec = Codec()                           # the default model
    data = codec.encode(rgb, q=2.5).data      # rgb: (H, W, 3) uint8 -> bytes of a .crdr file
    rec = codec.decode(data, beta=3.84)       # -> (H, W, 3) uint8

This is the product path and needs no torch: the transforms run on ONNX Runtime, the
exact integer entropy model on numpy (:mod:`crdr_codec.runtime`). Entropy parameters are
computed in exact integer arithmetic on the CPU, so a file decodes to the same symbols on
any machine; the transforms use ``device``. Only ``refine`` (a gradient search) needs
torch and the model's torch weights file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from . import bitstream
from .config import PAD_MULTIPLE, Q_MAX, check_beta, code_to_q, q_to_code
from .errors import BitstreamError, CrdrError, ModelMismatchError
from .image_io import crop, pad_to_multiple, to_input, to_uint8
from .limits import DEFAULT_MAX_PIXELS, check_max_pixels, check_pixels, padded
from .runtime import latent as coding
from .runtime.model import RuntimeModel
from .tiling import tiled, tiled_rows

#: Images with more padded pixels than this are transformed in tiles.
TILE_THRESHOLD = 2048 * 2048
TILE = 1024  # image pixels (a multiple of 64)
OVERLAP = 256  # image pixels (a multiple of 16)


class _PaddedTiles:
    """An (H, W, 3) uint8 image, padded like :func:`pad_to_multiple` (edge replication),
    that hands out network-input tiles: ``src[:, :, y0:y1, x0:x1]`` is exactly that region
    of ``pad_to_multiple(to_input(rgb))``, but the whole image is never converted."""

    def __init__(self, rgb: np.ndarray, multiple: int) -> None:
        h, w = rgb.shape[:2]
        self.rgb = rgb
        self.shape = (1, 3, h + (-h) % multiple, w + (-w) % multiple)

    def __getitem__(self, index) -> np.ndarray:
        _, _, rows, cols = index
        h, w = self.rgb.shape[:2]
        # the padding replicates the last row and column: clip the indices into the image
        r = np.minimum(np.arange(*rows.indices(self.shape[2])), h - 1)
        c = np.minimum(np.arange(*cols.indices(self.shape[3])), w - 1)
        return to_input(self.rgb[r[:, None], c[None, :]])


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
    y_hat: np.ndarray  # (1, M, H/16, W/16) float32, padded size


class Codec:
    """A loaded model ready to encode and decode.

    Args:
        weights: a model package (``.crdrm``) or a torch weights file (``.pt``, exported
            on first use; needs torch), default: the default model.
        device: "auto", "cpu" or "cuda" for the transforms ("cuda" needs ONNX Runtime's
            CUDA provider, the ``gpu`` extra).
        tile: tile size in pixels for large images (None: automatic above a threshold).
        model: an already loaded model instead of ``weights``: a
            :class:`~crdr_codec.runtime.model.RuntimeModel`, or a torch ``CRDRModel``
            (exported in memory; needs torch), with its ``fingerprint``.
        max_pixels: largest image encoded or decoded, in pixels after padding to
            multiples of 64 (default :data:`~crdr_codec.limits.DEFAULT_MAX_PIXELS`).
            Decoding checks a file's claimed size against it before any model work.
        threads: CPU threads for the transforms (None: ONNX Runtime's default).
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        device: str = "auto",
        tile: int | None = None,
        model=None,
        fingerprint: bytes | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        threads: int | None = None,
    ) -> None:
        from .weights_search import load_model

        self.max_pixels = check_max_pixels(max_pixels)
        if device not in ("auto", "cpu", "cuda"):
            raise CrdrError(f"unknown device {device!r} (use auto, cpu or cuda)")
        self._torch_model = None  # the torch model, when one was given (refinement uses it)
        self.weights_path = None
        if model is None:
            model, self.weights_path = load_model(weights, device=device, threads=threads)
        elif not isinstance(model, RuntimeModel):  # a torch CRDRModel
            from .nn.export import runtime_model

            self._torch_model = model
            model = runtime_model(model, fingerprint, device=device, threads=threads)
        self.model = model
        self.fingerprint = model.fingerprint
        self.model_id = self.fingerprint[: bitstream.MODEL_ID_BYTES]
        self.device = "cuda" if model.uses_cuda else "cpu"
        self.tile = tile
        # Weights exported before stage 3 never trained the realism conditioning.
        self.realism_trained = int(model.meta.get("stage", 3)) >= 3

    @property
    def torch_model(self):
        """The model as a torch ``CRDRModel`` (refinement, research; needs torch and the
        model's ``.pt`` weights file), loaded on first use."""
        if self._torch_model is None:
            from .extras import require

            require("torch", "the torch model")
            from .weights_search import torch_weights_for

            self._torch_model = torch_weights_for(self.model_id, self.weights_path)
            self._torch_model.place("cuda" if self.device == "cuda" else "cpu")
        return self._torch_model

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
        ``refine``: steps of encode-time latent refinement (:mod:`crdr_codec.nn.refine`;
        0 = none; needs torch): a slower encode and a better file, decoded as any other.
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
        m.prefetch("entropy", "h_a")  # built in the background while g_a runs
        if self._use_tiles(padded(h), padded(w)):
            # large images: only the current tile is ever in floating point
            t, o = self._tile_size()
            src = _PaddedTiles(rgb, PAD_MULTIPLE)
            y = tiled(lambda p: m.g_a(p, q_used), src, t, o, 1 / 16, m.config.latent)
        else:
            src = pad_to_multiple(to_input(rgb), PAD_MULTIPLE)
            y = m.g_a(src, q_used)
        if refine:
            y, z = self._refine(src, y, q_used, refine, h, w)
        else:
            z = m.h_a(y)
        coded = coding.compress_latent(m.entropy, m.tables, m.config.num_slices, y, z)
        header = bitstream.Header(model_id=self.model_id, q_code=code, height=h, width=w,
                                  check=coded.check)
        return EncodeResult(bitstream.pack(header, coded.payload, sections), q_used)

    def _refine(self, src, y: np.ndarray, q: float, steps: int, h: int, w: int):
        """Encode-time refinement with the torch model (y, z as numpy arrays)."""
        from .extras import require

        require("torch", "--refine")
        import torch

        from .nn.refine import refine_latent

        tm = self.torch_model
        dev = next(tm.g_s.parameters()).device

        class _Src:  # tiles of the padded image as tensors on g_s's device
            shape = src.shape

            def __getitem__(self, index):
                return torch.from_numpy(np.ascontiguousarray(src[index])).to(dev)

        y_t, z_t = refine_latent(tm, _Src(), torch.from_numpy(np.ascontiguousarray(y)), q, steps, h, w)
        return y_t.numpy(), z_t.numpy()

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
        need = coding.min_payload_bytes(self.model.tables, hp, wp)
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
        m = self.model
        m.prefetch("g_s")  # its session is built in the background while this decodes
        y_hat, check = coding.decode_latent(m.entropy, m.tables, m.config.num_slices, payload, hp, wp)
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
            x_hat = m.g_s(y_hat, header.q, beta)
            return to_uint8(crop(x_hat, header.height, header.width))
        # large images: g_s tile by tile, each finished band of rows straight to uint8
        t, o = self._tile_size()
        height, width = header.height, header.width
        rgb = np.empty((height, width, 3), np.uint8)

        def emit(r0: int, r1: int, rows: np.ndarray) -> None:
            r1 = min(r1, height)
            if r0 < r1:
                rgb[r0:r1] = to_uint8(rows[:, :, : r1 - r0, :width])

        tiled_rows(lambda p: m.g_s(p, header.q, beta), y_hat, t // 16, o // 16, 16, 3, emit)
        return rgb
