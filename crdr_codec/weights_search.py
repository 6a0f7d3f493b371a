"""Finding the model that decodes a file: by the model id in its header.

Every .crdr header carries a model id (the first 4 bytes of the weights fingerprint).
Models come as runtime packages (``*.crdrm``, :mod:`crdr_codec.runtime.model`) or torch
weights files (``*.pt``; exported to a package on first use, which needs torch, and kept
in ``${CRDR_CACHE_DIR:-~/.cache/crdr}/models/``). A decoder given a file from another model
looks for one with that id, in order:

1. the ``--weights`` value: a file, or a folder of model files (without ``--weights``:
   ``$CRDR_WEIGHTS`` if set);
2. the folders in ``$CRDR_WEIGHTS_PATH`` (separated by ``os.pathsep``, ``:`` on Unix);
3. the folder of the default model (``crdr_codec/models/`` installed, ``weights/`` in a
   source checkout), then a checkout's ``weights/`` folder (every shipped model's ``.pt``);
4. the cache of exported packages.

Folders are searched non-recursively, packages before weights files, each in name order.
A file's model id is read without torch (a package's meta in milliseconds; a weights
file's fingerprint by :mod:`crdr_codec.weights_id`, about 0.1 s for the lite weights),
and only the matching file is loaded. The ids found are remembered in
``${CRDR_CACHE_DIR:-~/.cache/crdr}/weights-ids.json`` as ``{path: [size, mtime_ns,
id]}``; an entry is used only while the file's size and mtime are unchanged, and the
chosen file's fingerprint is always verified after loading, so a stale cache can cost
time but never pick wrong weights. An unwritable cache is silently skipped.

Only the standard library is imported here; torch loads with the first weights file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .bitstream import MODEL_ID_BYTES
from .errors import CrdrError, ModelMismatchError, WeightsError

from .paths import (  # noqa: F401 (re-exported)
    DEFAULT_WEIGHTS_NAME, ENV_DEFAULT, ENV_PATH, cache_path, checkout_weights_dir,
    default_weights_file, exported_dir, package_models_dir,
)

CACHE_NAME = "weights-ids.json"
_CACHE_VERSION = 2
SUFFIXES = (".crdrm", ".pt")


class WeightsSearch:
    """The ordered places to look for weights, and a lookup by model id.

    Args:
        weights: the ``--weights`` value: a weights file or a folder of ``*.pt`` files
            (None: ``$CRDR_WEIGHTS`` if set, else nothing before the search path).
        env: environment to read ``CRDR_WEIGHTS``, ``CRDR_WEIGHTS_PATH`` and
            ``CRDR_CACHE_DIR`` from (default ``os.environ``).
        use_cache: remember model ids on disk between runs.

    Raises:
        WeightsError: ``weights`` (or ``$CRDR_WEIGHTS``) names nothing that exists.
    """

    def __init__(self, weights: str | os.PathLike | None = None, env=None,
                 use_cache: bool = True, device: str = "cpu", threads: int | None = None) -> None:
        env = os.environ if env is None else env
        self.device, self.threads = device, threads
        self._exported = exported_dir(env) if use_cache else None
        # (path, is_dir, how it was named for messages)
        self.places: list[tuple[Path, bool, str]] = []
        explicit = weights if weights is not None else env.get(ENV_DEFAULT) or None
        self.explicit: Path | None = None
        if explicit is not None:
            p = Path(explicit).expanduser()
            source = "--weights" if weights is not None else f"${ENV_DEFAULT}"
            if p.is_dir():
                self.places.append((p, True, source))
            elif p.is_file():
                self.places.append((p, False, source))
                self.explicit = p
            else:
                raise WeightsError(f"weights file not found: {p} ({source})")
        for d in env.get(ENV_PATH, "").split(os.pathsep):
            if d.strip():
                self.places.append((Path(d).expanduser(), True, f"${ENV_PATH}"))
        self.places.append((package_models_dir(), True, "package"))
        # a checkout's weights/ holds the earlier models' .pt files (in a checkout it is
        # also where the default model is: then it is searched once)
        if checkout_weights_dir().is_dir() and checkout_weights_dir() != package_models_dir():
            self.places.append((checkout_weights_dir(), True, "checkout"))
        if self._exported is not None:
            self.places.append((self._exported, True, "exported"))
        self._cache_file = cache_path(env) if use_cache else None
        self._cache: dict | None = None
        self._cache_dirty = False
        self._ids: dict[Path, bytes | None] = {}  # this process: resolved path -> id (None: unreadable)

    # ----------------------------------------------------------------- candidates
    def candidates(self) -> list[Path]:
        """Weights files in search order (each once; missing folders are skipped)."""
        out: list[Path] = []
        seen: set[Path] = set()
        for p, is_dir, _ in self.places:
            if is_dir:
                try:
                    files = [f for suffix in SUFFIXES for f in sorted(p.glob("*" + suffix))
                             if f.is_file()]
                except OSError:
                    files = []
            else:
                files = [p]
            for f in files:
                key = f.resolve()
                if key not in seen:
                    seen.add(key)
                    out.append(f)
        return out

    def describe_places(self) -> str:
        parts = []
        for p, is_dir, source in self.places:
            shown = f"{p}{os.sep}" if is_dir else str(p)
            parts.append(f"{shown} ({source})" if source not in ("package", "checkout", "exported")
                         else shown)
        return ", ".join(parts)

    # ----------------------------------------------------------------- cache
    def _load_cache(self) -> dict:
        if self._cache is None:
            self._cache = {}
            if self._cache_file is not None:
                try:
                    raw = json.loads(self._cache_file.read_text(encoding="utf-8"))
                    if isinstance(raw, dict) and raw.get("version") == _CACHE_VERSION \
                            and isinstance(raw.get("entries"), dict):
                        self._cache = raw["entries"]
                except (OSError, ValueError):
                    pass
        return self._cache

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    def _cached_id(self, path: Path) -> tuple[bool, bytes | None]:
        """(known, id) for a file: from this process, else from an up-to-date cache entry."""
        key = path.resolve()
        if key in self._ids:
            return True, self._ids[key]
        entry = self._load_cache().get(str(key))
        stamp = self._stamp(key)
        if (isinstance(entry, list) and len(entry) == 3 and stamp is not None
                and (entry[0], entry[1]) == stamp):
            try:
                mid = None if entry[2] is None else bytes.fromhex(entry[2])
            except (TypeError, ValueError):
                return False, None
            self._ids[key] = mid
            return True, mid
        return False, None

    def _remember(self, path: Path, model_id: bytes | None) -> None:
        key = path.resolve()
        self._ids[key] = model_id
        stamp = self._stamp(key)
        if stamp is not None and self._cache_file is not None:
            self._load_cache()[str(key)] = [stamp[0], stamp[1], None if model_id is None else model_id.hex()]
            self._cache_dirty = True

    def _save_cache(self) -> None:
        if not self._cache_dirty or self._cache_file is None:
            return
        self._cache_dirty = False
        entries = {k: v for k, v in self._load_cache().items() if os.path.exists(k)}
        try:
            from .fileutil import atomic_write_bytes

            self._cache_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self._cache_file, json.dumps(
                {"version": _CACHE_VERSION, "entries": entries}, indent=0, sort_keys=True).encode())
        except (OSError, CrdrError):
            pass  # a cache is an optimisation only

    # ----------------------------------------------------------------- lookup
    def _load(self, path: Path):
        """(RuntimeModel, fingerprint) of a model file, or None if it cannot be read."""
        try:
            model = load_file(path, self.device, self.threads, self._exported)
        except WeightsError:
            self._remember(path, None)
            if self.explicit is not None and path == self.explicit:
                raise  # the user named this file: say what is wrong with it
            return None
        self._remember(path, model.fingerprint[:MODEL_ID_BYTES])
        return model, model.fingerprint

    def _probe(self, path: Path):
        """(model id or None, (model, fingerprint) if it had to be loaded, else None).

        The id comes from a package's meta, or from the torch-free reader of weights files
        (:mod:`crdr_codec.weights_id`, ~0.1 s for the lite weights), and is remembered; a
        weights file that reader does not understand is loaded instead (returned, so it is
        not loaded twice)."""
        from .runtime.model import SUFFIX, read_meta
        from .weights_id import UnsupportedWeights, read_fingerprint

        try:
            if path.suffix == SUFFIX:
                mid = bytes.fromhex(read_meta(path)["fingerprint"])[:MODEL_ID_BYTES]
            else:
                mid = read_fingerprint(path)[:MODEL_ID_BYTES]
        except (UnsupportedWeights, WeightsError):
            got = self._load(path)  # records the id (None if unreadable)
            return (None if got is None else got[1][:MODEL_ID_BYTES]), got
        except OSError:
            mid = None
        self._remember(path, mid)
        return mid, None

    def torch_weights(self, model_id: bytes):
        """The torch model (CRDRModel) of ``model_id`` from a ``.pt`` file in the places.

        Raises:
            CrdrError: no weights file with that id (packages hold no torch weights).
        """
        from .weights_id import UnsupportedWeights, read_fingerprint

        for path in self.candidates():
            if path.suffix != ".pt":
                continue
            known, mid = self._cached_id(path)
            if not known:
                try:
                    mid = read_fingerprint(path)[:MODEL_ID_BYTES]
                except (UnsupportedWeights, OSError):
                    continue
            if mid == bytes(model_id):
                from .nn.weights import load_weights

                return load_weights(path)[0]
        raise CrdrError(
            f"encode-time refinement needs the torch weights file (.pt) of model "
            f"{bytes(model_id).hex()}; none in {self.describe_places()} (give it with --weights)")

    def find(self, model_id: bytes):
        """Load the weights whose model id is ``model_id``.

        Candidates whose id is already known (cache) are tried first; the others are
        loaded one by one in search order until one matches.

        Returns:
            (RuntimeModel, fingerprint, path)
        Raises:
            ModelMismatchError: no weights with that id; the message names the id and
                every place searched.
            WeightsError: the explicitly given weights file cannot be read.
        """
        model_id = bytes(model_id)
        try:
            cands = self.candidates()
            unknown: list[Path] = []
            for path in cands:
                known, mid = self._cached_id(path)
                if not known:
                    unknown.append(path)
                elif mid == model_id:
                    got = self._load(path)
                    if got is not None and got[1][:MODEL_ID_BYTES] == model_id:
                        return got[0], got[1], path
            for path in unknown:
                mid, got = self._probe(path)
                if mid == model_id:
                    got = got or self._load(path)
                    if got is not None and got[1][:MODEL_ID_BYTES] == model_id:
                        return got[0], got[1], path
        finally:
            self._save_cache()
        unreadable = sum(1 for p in cands if self._ids.get(p.resolve(), b"") is None)
        extra = f" ({unreadable} file{'s' if unreadable != 1 else ''} there could not be read)" \
            if unreadable else ""
        raise ModelMismatchError(
            f"file was written by model {model_id.hex()}; no weights with that model id in "
            f"{self.describe_places()}{extra}; give them with --weights FILE|DIR or "
            f"${ENV_PATH}"
        )


def model_id_of(path: str | os.PathLike, env=None, use_cache: bool = True) -> bytes | None:
    """The model id of one weights file, or None if it is not a readable weights file.

    Answered from the id cache when its entry is up to date; else the file's fingerprint
    is computed without torch (:mod:`crdr_codec.weights_id`, about 0.1 s for the lite
    weights) and cached. Only a file that reader does not understand is loaded with torch
    (about 2 s). ``crdr --version`` uses this for the default weights.

    Raises:
        WeightsError: ``path`` does not exist.
    """
    search = WeightsSearch(path, env=env, use_cache=use_cache)
    p = Path(path).expanduser()
    known, mid = search._cached_id(p)
    if known:
        return mid
    try:
        return search._probe(p)[0]
    except WeightsError:
        return None
    finally:
        search._save_cache()


def load_file(path: Path, device: str = "cpu", threads: int | None = None,
              exported: Path | None = None):
    """A RuntimeModel from a package, or from a torch weights file (the package exported
    from it on an earlier run when ``exported`` holds one, else exported now and kept
    there; exporting needs torch).

    Raises:
        WeightsError: not a readable model file, or a weights file without torch.
    """
    from .runtime.model import SUFFIX, RuntimeModel, read_meta

    path = Path(path)
    if path.suffix == SUFFIX:
        return RuntimeModel(path, device=device, threads=threads)
    from .extras import missing
    from .weights_id import UnsupportedWeights, read_fingerprint

    if exported is not None:  # exported on an earlier run: no torch needed
        try:
            fp = read_fingerprint(path)
            target = exported / f"{fp[:MODEL_ID_BYTES].hex()}{SUFFIX}"
            if target.is_file() and read_meta(target)["fingerprint"] == fp.hex():
                return RuntimeModel(target, device=device, threads=threads)
        except (UnsupportedWeights, OSError, WeightsError):
            pass
    if missing("torch") or missing("onnx"):
        raise WeightsError(
            f"{path} is a torch weights file; the runtime loads model packages (.crdrm): "
            f"convert it with 'crdr export {path}' (needs pip install 'crdr[train]')")
    from .nn.export import package_from_weights

    return package_from_weights(path, exported, device=device, threads=threads)


def load_model(weights: str | os.PathLike | None = None, device: str = "cpu",
               threads: int | None = None):
    """(RuntimeModel, path) for ``--weights`` (a file; None: the default model).

    Raises:
        WeightsError: the file is missing or is not a model file.
    """
    path = Path(weights).expanduser() if weights is not None else default_weights_file()
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    return load_file(path, device, threads, exported_dir()), path


def torch_weights_for(model_id: bytes, path: Path | None = None):
    """The torch CRDRModel of ``model_id`` (for --refine): ``path`` itself if it is a
    weights file of that model, else a ``.pt`` of that id in the search places."""
    if path is not None and Path(path).suffix == ".pt":
        from .nn.weights import load_weights

        model, fp = load_weights(path)
        if fp[:MODEL_ID_BYTES] == bytes(model_id):
            return model
    return WeightsSearch(None).torch_weights(model_id)
