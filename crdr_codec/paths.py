"""Where models are found: the environment variables and folders crdr looks in.

Only the standard library is imported here (the torch side and the runtime both use it).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_PATH = "CRDR_WEIGHTS_PATH"
ENV_DEFAULT = "CRDR_WEIGHTS"
#: File name of the default model in :func:`package_models_dir`.
DEFAULT_WEIGHTS_NAME = "crdr-lite.crdrm"


def package_models_dir() -> Path:
    """Where the default model is: ``crdr_codec/models/`` of an installed crdr (the wheel
    takes it from ``weights/``, pyproject.toml), else ``weights/`` of the source checkout."""
    installed = Path(__file__).resolve().parent / "models"
    return installed if installed.is_dir() else checkout_weights_dir()


def checkout_weights_dir() -> Path:
    """The ``weights/`` folder of a source checkout (torch weights; absent when installed)."""
    return Path(__file__).resolve().parent.parent / "weights"


def default_weights_file(env=None) -> Path:
    """The model ``crdr encode`` uses without ``--weights``: ``$CRDR_WEIGHTS`` if set,
    else ``crdr-lite.crdrm`` in :func:`package_models_dir`."""
    env = os.environ if env is None else env
    named = env.get(ENV_DEFAULT)
    return Path(named) if named else package_models_dir() / DEFAULT_WEIGHTS_NAME


def _cache_root(env=None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("CRDR_CACHE_DIR") or os.path.join("~", ".cache", "crdr")).expanduser()


def cache_path(env=None) -> Path:
    return _cache_root(env) / "weights-ids.json"


def exported_dir(env=None) -> Path:
    """Where packages exported from weights files on first use are kept."""
    return _cache_root(env) / "models"
