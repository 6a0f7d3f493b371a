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
    """The ``models/`` folder inside the package (installed with it)."""
    return Path(__file__).resolve().parent / "models"


def checkout_weights_dir() -> Path:
    """The ``weights/`` folder of a source checkout (torch weights; absent when installed)."""
    return Path(__file__).resolve().parent.parent / "weights"


def default_weights_file(env=None) -> Path:
    """The model ``crdr encode`` uses without ``--weights``: ``$CRDR_WEIGHTS`` if set,
    else the package's ``models/crdr-lite.crdrm``."""
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
