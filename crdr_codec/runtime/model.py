"""Model packages (``.crdrm``) and the model the product path runs: ONNX Runtime for the
transforms, numpy for the exact integer entropy model, constriction for range coding.

A model package is an uncompressed numpy ``.npz`` archive (a zip file; read with
``allow_pickle=False``, so loading one never runs code) made by ``crdr export`` from a
weights file (:mod:`crdr_codec.nn.export`)::

    meta            uint8: UTF-8 JSON {"format": "crdr-model", "version": 1,
                    "fingerprint": hex (the weights file's, whose first 4 bytes are the
                    model id in every .crdr header), "config": {...}, "meta": {...}}
    graph.g_a       uint8: ONNX graph  (x (1, 3, H, W), q (1,))         -> y (1, M, H/16, W/16)
    graph.h_a       uint8: ONNX graph  (y)                               -> z (1, C, H/64, W/64)
    graph.g_s       uint8: ONNX graph  (y, q (1,), beta (1,))            -> x (1, 3, H, W)
    entropy.<name>  integer arrays of the exact entropy model (as in a weights file)

The graphs store their weights as float16 where that is exact (the shipped weights are
float16) and compute in float32.
"""

from __future__ import annotations

import json
import os
import threading
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..config import ModelConfig
from ..errors import CrdrError, WeightsError
from .coder import Tables
from .entropy import IntegerEntropy

FORMAT = "crdr-model"
VERSION = 1
SUFFIX = ".crdrm"
GRAPHS = ("g_a", "h_a", "g_s")
#: ONNX Runtime's graph optimisation level for new sessions (None: its default, all);
#: the tests vary it to show that it changes no symbol.
GRAPH_OPTIMIZATION = None


def read_meta(path: str | os.PathLike) -> dict:
    """The JSON meta of a package, without reading the rest (a few milliseconds).

    Raises:
        WeightsError: not a readable crdr model package.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo("meta.npy")
            if info.file_size > 1 << 20:
                raise ValueError("meta too large")
            with zf.open(info) as f:
                arr = np.lib.format.read_array(f, allow_pickle=False)
        meta = json.loads(arr.tobytes().decode("utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError("not a model package")
        if meta.get("version") != VERSION:
            raise WeightsError(f"{path}: unsupported model package version {meta.get('version')}")
        bytes.fromhex(meta["fingerprint"])
        return meta
    except WeightsError:
        raise
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile, EOFError) as e:
        raise WeightsError(f"{path}: not a crdr model package ({e})") from None


def write_package(path_or_file, meta: dict, graphs: dict[str, bytes], entropy: dict[str, np.ndarray]) -> None:
    """Write a package (``path_or_file``: a path or a binary file object)."""
    arrays = {"meta": np.frombuffer(json.dumps({**meta, "format": FORMAT, "version": VERSION},
                                               sort_keys=True).encode(), np.uint8)}
    for name in GRAPHS:
        arrays[f"graph.{name}"] = np.frombuffer(graphs[name], np.uint8)
    for name, value in entropy.items():
        arrays[f"entropy.{name}"] = np.asarray(value)
    np.savez(path_or_file, **arrays)


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """Two background threads that build what a model needs next (see ``prefetch``)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="crdr-load")
    return _POOL


def _providers(device: str) -> list:
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    have = ort.get_available_providers()
    if "CUDAExecutionProvider" not in have:
        if device == "auto":
            return ["CPUExecutionProvider"]
        raise CrdrError("--device cuda needs ONNX Runtime's CUDA provider: pip install 'crdr[gpu]' "
                        "(onnxruntime-gpu) and a CUDA GPU")
    # exact float32 arithmetic, as on the CPU (the CUDA provider defaults to TF32)
    return [("CUDAExecutionProvider", {"use_tf32": 0}), "CPUExecutionProvider"]


class RuntimeModel:
    """A loaded model package.

    Args:
        source: a package path, or an open npz mapping (``np.load`` result / dict).
        device: "cpu", "cuda" or "auto" for the transforms (the entropy model always
            runs on the CPU).
        threads: CPU threads for the transforms (None: ONNX Runtime's default).
    """

    def __init__(self, source, device: str = "cpu", threads: int | None = None,
                 name: str | None = None) -> None:
        self.name = name or str(source if isinstance(source, (str, os.PathLike)) else "<model>")
        if isinstance(source, (str, os.PathLike)):
            if not Path(source).is_file():
                raise WeightsError(f"model file not found: {source}")
            meta = read_meta(source)  # a clear error for anything that is not a package
            try:
                self._arrays = np.load(source, allow_pickle=False)
            except (OSError, ValueError, zipfile.BadZipFile) as e:
                raise WeightsError(f"{source}: not a crdr model package ({e})") from None
        else:
            self._arrays = source
            meta = None
        try:
            if meta is None:
                meta = json.loads(self._array("meta").tobytes().decode("utf-8"))
            self.fingerprint = bytes.fromhex(meta["fingerprint"])
            self.config = ModelConfig.from_dict(meta["config"])
        except (KeyError, ValueError, TypeError) as e:
            raise WeightsError(f"{self.name}: not a crdr model package ({e})") from None
        self.meta = meta.get("meta", {})
        self.device = device
        self.threads = threads
        self._providers = _providers(device)
        self._sessions: dict = {}
        self._lock = threading.Lock()
        self._pending: dict[str, Future] = {}  # what prefetch() is building
        self._entropy: IntegerEntropy | None = None
        self._tables: Tables | None = None

    def _array(self, key: str) -> np.ndarray:
        try:
            return np.asarray(self._arrays[key])
        except KeyError:
            raise WeightsError(f"{self.name}: model package has no {key}") from None
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise WeightsError(f"{self.name}: damaged model package ({key}: {e})") from None

    @property
    def uses_cuda(self) -> bool:
        return self._providers[0] != "CPUExecutionProvider"

    # ------------------------------------------------------------ lazy parts
    def prefetch(self, *names: str) -> None:
        """Start building these parts in background threads ("entropy" for the integer
        model and the coder's tables, or a graph name), so that they are ready when the
        work reaches them: a decode builds g_s's session while it entropy-decodes, an
        encode the entropy model while g_a runs. Errors surface when the part is used."""
        with self._lock:
            for name in names:
                done = self._entropy is not None if name == "entropy" else name in self._sessions
                if not done and name not in self._pending:
                    build = self._build_entropy if name == "entropy" else self._build_session
                    self._pending[name] = _pool().submit(build, name)

    def _get(self, name: str, build):
        with self._lock:
            pending = self._pending.pop(name, None)
        if pending is not None:
            return pending.result()
        return build(name)

    def _entropy_state(self) -> dict[str, np.ndarray]:
        keys = [k for k in self._arrays.keys() if k.startswith("entropy.")]
        return {k[len("entropy."):]: self._array(k) for k in keys}

    def _build_entropy(self, _name: str = "entropy") -> tuple[IntegerEntropy, Tables]:
        if self._entropy is None:
            c = self.config
            state = self._entropy_state()
            try:
                tables = Tables(state)
            except (KeyError, ValueError, IndexError) as e:
                raise WeightsError(f"{self.name}: damaged coding tables ({e})") from None
            try:
                entropy = IntegerEntropy(state, c.num_slices, c.max_support, c.slice_channels)
            except (KeyError, ValueError) as e:
                raise WeightsError(f"{self.name}: damaged integer entropy model ({e})") from None
            self._tables, self._entropy = tables, entropy
        return self._entropy, self._tables

    @property
    def entropy(self) -> IntegerEntropy:
        """The exact integer entropy model (numpy)."""
        return self._entropy if self._entropy is not None else self._get("entropy", self._build_entropy)[0]

    @property
    def tables(self) -> Tables:
        """The range coder's probability tables."""
        return self._tables if self._tables is not None else self._get("entropy", self._build_entropy)[1]

    # ------------------------------------------------------------ transforms
    def _build_session(self, name: str):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if self.threads:
            opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        if GRAPH_OPTIMIZATION is not None:
            opts.graph_optimization_level = GRAPH_OPTIMIZATION
        try:
            session = ort.InferenceSession(self._array(f"graph.{name}").tobytes(), sess_options=opts,
                                           providers=self._providers)
        except WeightsError:
            raise
        except Exception as e:  # onnxruntime raises its own exception types
            raise WeightsError(f"{self.name}: cannot load its {name} graph "
                               f"({' '.join(str(e).split())[:200]})") from None
        self._sessions[name] = session
        return session

    def session(self, name: str):
        """The ONNX Runtime session of graph ``name`` (created on first use)."""
        got = self._sessions.get(name)
        return got if got is not None else self._get(name, self._build_session)

    def g_a(self, x: np.ndarray, q: float) -> np.ndarray:
        """Analysis: image (1, 3, H, W) float32 in [-1, 1], H and W multiples of 16 -> y."""
        return self.session("g_a").run(None, {"x": np.ascontiguousarray(x, np.float32),
                                              "q": np.array([q], np.float32)})[0]

    def h_a(self, y: np.ndarray) -> np.ndarray:
        return self.session("h_a").run(None, {"y": np.ascontiguousarray(y, np.float32)})[0]

    def g_s(self, y: np.ndarray, q: float, beta: float) -> np.ndarray:
        """Synthesis: y_hat (1, M, h, w) -> image (1, 3, 16h, 16w) float32 (not clamped)."""
        return self.session("g_s").run(None, {"y": np.ascontiguousarray(y, np.float32),
                                              "q": np.array([q], np.float32),
                                              "beta": np.array([beta], np.float32)})[0]
