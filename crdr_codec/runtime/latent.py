"""Range coding of a latent with the exact integer entropy model (both engines share it).

The encoder rounds z and the y residuals (its only floating-point decisions); every
number the decoder must reproduce is integer (:mod:`crdr_codec.runtime.entropy`). The
entropy executor ``ie`` is anything with the methods of
:class:`crdr_codec.runtime.entropy.IntegerEntropy` (channels-last integer arrays); the
product path uses that class, the tests also run the torch reference through here.

Latents come and go as float32 arrays (1, C, h, w), the transforms' layout.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from .coder import Decoder, Encoder, Tables
from .entropy import FRAC


@dataclass(frozen=True)
class CodedLatent:
    """What the encoder's entropy coding produced for one latent."""

    payload: bytes  # the range coder's words (little-endian uint32)
    y_hat: np.ndarray  # (1, M, h, w) float32: the latent the decoder will reconstruct, bit for bit
    check: int  # CRC-32 of the coded integer symbols (stored in the file header)


def _slices(y: np.ndarray, num_slices: int) -> list[np.ndarray]:
    """(1, M, h, w) -> num_slices channels-last (h, w, M / num_slices) arrays."""
    return [s[0].transpose(1, 2, 0) for s in np.split(y, num_slices, axis=1)]


def _assemble(decoded: list[np.ndarray]) -> np.ndarray:
    """Channels-last integer slices (units of 2^-8) -> y_hat (1, M, h, w) float32."""
    y = np.concatenate(decoded, axis=2).transpose(2, 0, 1)[None]
    return (y.astype(np.float64) / (1 << FRAC)).astype(np.float32)


def compress_latent(ie, tables: Tables, num_slices: int, y: np.ndarray, z: np.ndarray) -> CodedLatent:
    """Range-code y (1, M, h, w) with hyper latent z (1, C, h/4, w/4), both float32."""
    z = np.asarray(z, dtype=np.float64)[0].transpose(1, 2, 0)  # (zh, zw, C)
    lo = ie.z_minsym
    hi = lo + tables.z_lengths - 1
    med = ie.z_med.astype(np.float64) / (1 << FRAC)
    z_sym = np.clip(np.round(z - med).astype(np.int64), lo, hi) - lo  # 0 .. len-1
    enc = Encoder(tables)
    flat_z = z_sym.transpose(2, 0, 1).reshape(z_sym.shape[2], -1)
    enc.encode_z(flat_z)
    check = zlib.crc32(np.ascontiguousarray(flat_z, dtype="<i4").tobytes())
    hm, hs = ie.hyper(z_sym)
    decoded: list[np.ndarray] = []
    for k, y_k in enumerate(_slices(np.asarray(y, dtype=np.float32), num_slices)):
        mu, idx = ie.params(k, hm, hs, decoded)
        lim = tables.y_limits[idx]
        res = np.round(y_k.astype(np.float64) - mu.astype(np.float64) / (1 << FRAC)).astype(np.int64)
        res = np.maximum(np.minimum(res, lim), -lim)
        flat = res.transpose(2, 0, 1).ravel()
        enc.encode_y(flat, idx.transpose(2, 0, 1).ravel())
        check = zlib.crc32(flat.astype("<i4").tobytes(), check)
        decoded.append(ie.refine(k, hm, decoded, res * (1 << FRAC) + mu))
    return CodedLatent(enc.finish(), _assemble(decoded), check)


def decode_latent(ie, tables: Tables, num_slices: int, payload: bytes, height: int,
                  width: int) -> tuple[np.ndarray, int]:
    """Entropy-decode y_hat (1, M, H/16, W/16) of a padded image of size (height, width).

    Returns y_hat and the CRC-32 of the decoded symbols (compare it with the header's).
    Raises PayloadError if the payload cannot be decoded or is not consumed exactly.
    """
    zh, zw = height // 64, width // 64
    dec = Decoder(tables, payload)
    flat_z = dec.decode_z(zh * zw)
    check = zlib.crc32(np.ascontiguousarray(flat_z, dtype="<i4").tobytes())
    z_sym = flat_z.reshape(-1, zh, zw).transpose(1, 2, 0)
    hm, hs = ie.hyper(z_sym)
    decoded: list[np.ndarray] = []
    for k in range(num_slices):
        mu, idx = ie.params(k, hm, hs, decoded)
        flat = dec.decode_y(idx.transpose(2, 0, 1).ravel())
        check = zlib.crc32(flat.astype("<i4").tobytes(), check)
        res = flat.reshape(mu.shape[2], mu.shape[0], mu.shape[1]).transpose(1, 2, 0)
        decoded.append(ie.refine(k, hm, decoded, res * (1 << FRAC) + mu))
    dec.finish()
    return _assemble(decoded), check


def min_payload_bytes(tables: Tables, height: int, width: int) -> int:
    """A lower bound on the payload bytes of any valid file of this padded size.

    Every z symbol costs at least the channel's cheapest symbol; a range coder's output
    cannot be shorter than the information it carries, less a few words of flushing slack
    (128 bits allowed).
    """
    bits = (height // 64) * (width // 64) * float(tables.z_min_bits.sum())
    return max(0, int((bits - 128) // 32)) * 4
