"""The model id of a weights file, computed without importing torch.

A weights file is a ``torch.save`` zip archive: ``data.pkl`` (a pickle of the record,
tensors stored by reference) and one raw little-endian byte file per tensor storage.
:func:`read_fingerprint` unpickles ``data.pkl`` with only the few classes such a record
uses (a tensor becomes a small description: storage, offset, shape, strides), reads the
tensor bytes from the archive and hashes them with :func:`hash_record`, as
:func:`crdr_codec.nn.weights.fingerprint` does. It takes about 0.1 s for the 60 MB lite
weights, against about 2 s for importing torch and loading them, so ``crdr --version``
can name the default model quickly.

Anything unexpected (another archive layout, a class outside the list, big-endian
data) raises :class:`UnsupportedWeights`; callers then load the file with torch.
Only the standard library is imported here; numpy only for non-contiguous tensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import posixpath
import zipfile
from collections import OrderedDict
from dataclasses import dataclass

# torch storage class name -> (str(torch dtype), bytes per element)
_STORAGES = {
    "HalfStorage": ("torch.float16", 2),
    "BFloat16Storage": ("torch.bfloat16", 2),
    "FloatStorage": ("torch.float32", 4),
    "DoubleStorage": ("torch.float64", 8),
    "ByteStorage": ("torch.uint8", 1),
    "CharStorage": ("torch.int8", 1),
    "ShortStorage": ("torch.int16", 2),
    "IntStorage": ("torch.int32", 4),
    "LongStorage": ("torch.int64", 8),
    "BoolStorage": ("torch.bool", 1),
}


class UnsupportedWeights(Exception):
    """The file is not a weights file this reader understands (use torch instead)."""


@dataclass(frozen=True)
class _StorageType:
    dtype: str
    itemsize: int


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: str
    itemsize: int
    numel: int


@dataclass(frozen=True)
class _Tensor:
    storage: _Storage
    offset: int
    shape: tuple
    stride: tuple


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    if not isinstance(storage, _Storage):
        raise UnsupportedWeights("tensor without a storage")
    return _Tensor(storage, int(storage_offset), tuple(int(s) for s in size),
                   tuple(int(s) for s in stride))


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGES:
            return _StorageType(*_STORAGES[name])
        raise UnsupportedWeights(f"unexpected class {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise UnsupportedWeights(f"unexpected storage reference {pid!r:.80}")
        _, stype, key, _location, numel = pid
        return _Storage(str(key), stype.dtype, stype.itemsize, int(numel))


def _contiguous_strides(shape: tuple) -> tuple:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _tensor_bytes(t: _Tensor, raw: bytes) -> bytes:
    """The bytes of ``t.contiguous()``."""
    numel = 1
    for n in t.shape:
        numel *= n
    if numel == 0:
        return b""
    size = t.storage.itemsize
    if t.stride == _contiguous_strides(t.shape) or numel == 1:
        start = t.offset * size
        out = raw[start:start + numel * size]
        if len(out) != numel * size:
            raise UnsupportedWeights("tensor extends past its storage")
        return out
    import numpy as np
    from numpy.lib.stride_tricks import as_strided

    if min(t.stride) < 0:
        raise UnsupportedWeights("negative strides")
    last = t.offset + sum((n - 1) * s for n, s in zip(t.shape, t.stride))
    if (last + 1) * size > len(raw):
        raise UnsupportedWeights("tensor extends past its storage")
    words = np.frombuffer(raw, dtype=np.dtype(f"V{size}"))
    view = as_strided(words[t.offset:], shape=t.shape, strides=[s * size for s in t.stride])
    return np.ascontiguousarray(view).tobytes()


def hash_record(config: dict, groups) -> bytes:
    """The fingerprint of a weights record, the one definition of the model id.

    ``groups``: the record's tensor groups in order (state_dict, z_tables, entropy), each
    a mapping name -> (str(dtype), shape tuple, the contiguous tensor's bytes or a
    bytes-like buffer of them (a uint8 array), or a callable returning them). SHA-256 of
    the config as sorted JSON, then per group, per name in sorted order,
    ``name|dtype|shape|`` and the bytes.
    """
    h = hashlib.sha256()
    h.update(json.dumps(config, sort_keys=True).encode())
    for group in groups:
        for name in sorted(group):
            dtype, shape, data = group[name]
            h.update(f"{name}|{dtype}|{tuple(shape)}|".encode())
            h.update(data() if callable(data) else data)
    return h.digest()


def read_fingerprint(path: str | os.PathLike) -> bytes:
    """The SHA-256 fingerprint of a weights file, equal to
    :func:`crdr_codec.nn.weights.record_fingerprint` of the loaded record.

    Raises:
        OSError: the file cannot be read.
        UnsupportedWeights: not a zip ``torch.save`` file of the expected layout, or
            not a crdr weights record.
    """
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise UnsupportedWeights("not a zip archive") from None
    with zf:
        names = zf.namelist()
        pkl = [n for n in names if posixpath.basename(n) == "data.pkl"]
        if len(pkl) != 1:
            raise UnsupportedWeights("no single data.pkl")
        root = posixpath.dirname(pkl[0])
        order = posixpath.join(root, "byteorder")
        if order in names and zf.read(order).strip() not in (b"little", b""):
            raise UnsupportedWeights("big-endian tensors")
        try:
            rec = _Unpickler(zf.open(pkl[0])).load()
        except UnsupportedWeights:
            raise
        except Exception as e:  # noqa: BLE001 - a damaged pickle fails in many ways
            raise UnsupportedWeights(f"unreadable data.pkl ({type(e).__name__})") from None
        if not (isinstance(rec, dict) and rec.get("format") == "crdr-weights"
                and isinstance(rec.get("config"), dict)):
            raise UnsupportedWeights("not a crdr weights record")
        storages: dict[str, bytes] = {}

        def data_of(s: _Storage) -> bytes:
            if s.key not in storages:
                try:
                    storages[s.key] = zf.read(posixpath.join(root, "data", s.key))
                except KeyError:
                    raise UnsupportedWeights(f"storage {s.key} missing") from None
            return storages[s.key]

        groups = []
        for key in ("state_dict", "z_tables", "entropy"):
            group = rec.get(key) or {}
            if not isinstance(group, dict):
                raise UnsupportedWeights(f"{key} is not a dict")
            for name, t in group.items():
                if not isinstance(t, _Tensor):
                    raise UnsupportedWeights(f"{key}.{name} is not a tensor")
            groups.append({name: (t.storage.dtype, t.shape,
                                  lambda t=t: _tensor_bytes(t, data_of(t.storage)))
                           for name, t in group.items()})
        return hash_record(rec["config"], groups)
