"""What needs an optional dependency, and the one line that says how to get it.

The product path (encode, decode, info, view, the Python API) needs only the base
install: ONNX Runtime, numpy, constriction, Pillow and click. Training, ``crdr eval``,
``crdr bench``'s torch baseline, ``crdr export`` and ``--refine`` need torch (the
``train`` extra).
"""

from __future__ import annotations

import importlib.util

from .errors import CrdrError

#: module -> the extra that installs it
EXTRA = {"torch": "train", "compressai": "train", "onnx": "train", "scipy": "eval",
         "matplotlib": "eval", "onnxruntime": "(base install)"}


def missing(module: str) -> bool:
    return importlib.util.find_spec(module) is None


def require(module: str, feature: str, extras: str | None = None) -> None:
    """Raise a one-line CrdrError if ``module`` is not installed, naming the extra(s)
    that bring it (``extras``, default the module's own)."""
    if missing(module):
        extra = extras or EXTRA.get(module, "train")
        raise CrdrError(f"{feature} needs {module}, which is not installed: "
                        f"pip install 'crdr[{extra}]'")
