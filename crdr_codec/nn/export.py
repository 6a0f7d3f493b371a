"""``crdr export``: a weights file (torch) -> a model package (``.crdrm``) for the runtime.

The transforms g_a, h_a and g_s become ONNX graphs (TorchScript exporter, opset 17,
dynamic height and width); the integer entropy model is copied as it is. Graph weights
that float16 represents exactly (all of them for shipped weights, which are stored in
float16) are stored as float16 and cast to float32 inside the graph, which ONNX Runtime
folds once when a session is created: the arithmetic is float32 as in torch, the file
half the size. Needs torch and onnx (``pip install 'crdr[train]'``).
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import torch
from torch import nn

from pathlib import Path

from ..errors import CrdrError
from ..fileutil import atomic_writer
from ..runtime.model import GRAPHS, SUFFIX, RuntimeModel, write_package
from .model import CRDRModel
from .weights import load_weights

OPSET = 17


class _GA(nn.Module):
    def __init__(self, m: CRDRModel) -> None:
        super().__init__()
        self.g_a = m.g_a

    def forward(self, x, q):
        return self.g_a(x, q)


class _HA(nn.Module):
    def __init__(self, m: CRDRModel) -> None:
        super().__init__()
        self.h_a = m.h_a

    def forward(self, y):
        return self.h_a(y)


class _GS(nn.Module):
    def __init__(self, m: CRDRModel) -> None:
        super().__init__()
        self.g_s = m.g_s

    def forward(self, y, q, beta):
        return self.g_s(y, q, beta)


def _half_initializers(data: bytes) -> bytes:
    """Store float32 initializers that float16 holds exactly as float16 + a Cast node."""
    import onnx
    from onnx import helper, numpy_helper

    g = onnx.load_from_string(data)
    graph = g.graph
    keep, casts = [], []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size >= 16 and np.isfinite(arr).all() \
                and np.array_equal(arr.astype(np.float16).astype(np.float32), arr):
            half = numpy_helper.from_array(arr.astype(np.float16), init.name + "__f16")
            keep.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT,
                                          name=init.name + "__cast"))
        else:
            keep.append(init)
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(g)
    return g.SerializeToString()


def export_graphs(model: CRDRModel) -> dict[str, bytes]:
    """The three ONNX graphs of a model (CPU, float32), weights stored as float16 where exact."""
    model = model.eval().cpu()
    x = torch.zeros(1, 3, 128, 192)
    y = torch.zeros(1, model.cfg.latent, 8, 12)
    q = torch.tensor([2.0])
    beta = torch.tensor([0.0])
    specs = {
        "g_a": (_GA(model), (x, q), ["x", "q"], ["y"], {"x": {2: "h", 3: "w"}, "y": {2: "h16", 3: "w16"}}),
        "h_a": (_HA(model), (y,), ["y"], ["z"], {"y": {2: "h16", 3: "w16"}, "z": {2: "h64", 3: "w64"}}),
        "g_s": (_GS(model), (y, q, beta), ["y", "q", "beta"], ["x"],
                {"y": {2: "h16", 3: "w16"}, "x": {2: "h", 3: "w"}}),
    }
    out = {}
    for name in GRAPHS:
        mod, args, inputs, outputs, axes = specs[name]
        buf = io.BytesIO()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(mod, args, buf, dynamo=False, opset_version=OPSET, input_names=inputs,
                              output_names=outputs, dynamic_axes=axes, do_constant_folding=True)
        out[name] = _half_initializers(buf.getvalue())
    return out


def package_arrays(model: CRDRModel, fingerprint: bytes) -> tuple[dict, dict, dict]:
    """(meta, graphs, entropy arrays) of a model's package."""
    if model.entropy_state is None:
        model.quantize_entropy()
    meta = {"fingerprint": fingerprint.hex(), "config": model.cfg.to_dict(),
            "meta": {k: v for k, v in getattr(model, "meta", {}).items()
                     if isinstance(v, (str, int, float, bool))}}
    entropy = {k: v.cpu().numpy() for k, v in model.entropy_state.items()}
    return meta, export_graphs(model), entropy


def export_package(model: CRDRModel, fingerprint: bytes, path: str | os.PathLike) -> None:
    """Write the model's package to ``path`` atomically."""
    meta, graphs, entropy = package_arrays(model, fingerprint)
    with atomic_writer(path) as tmp, open(tmp, "wb") as f:
        write_package(f, meta, graphs, entropy)


def runtime_model(model: CRDRModel, fingerprint: bytes | None = None, device: str = "cpu",
                  threads: int | None = None) -> RuntimeModel:
    """A torch model as the runtime runs it (exported in memory; for tests, training
    evaluation and weights files that have no package yet)."""
    buf = io.BytesIO()
    meta, graphs, entropy = package_arrays(model, fingerprint or b"\0" * 32)
    write_package(buf, meta, graphs, entropy)
    buf.seek(0)
    return RuntimeModel(dict(np.load(buf, allow_pickle=False)), device=device, threads=threads,
                        name="<exported model>")


def package_from_weights(path: str | os.PathLike, exported: Path | None = None,
                         device: str = "cpu", threads: int | None = None) -> RuntimeModel:
    """The runtime model of a weights file: exported now, and kept as
    ``exported/<model id>.crdrm`` when ``exported`` is given and writable (the next run
    then loads that package, without torch)."""
    model, fp = load_weights(path)
    if exported is not None:
        target = Path(exported) / f"{fp[:4].hex()}{SUFFIX}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            export_package(model, fp, target)
            return RuntimeModel(target, device=device, threads=threads)
        except (OSError, CrdrError):
            pass  # an unwritable cache: export in memory
    return runtime_model(model, fp, device=device, threads=threads)
