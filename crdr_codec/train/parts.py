"""Split a file into parts of bounded size and join them back, checked by SHA-256.

Used to move weights files through channels that limit the size of each file (the GPU
training bundle, see docs/TRAINING_GPU.md). ``split`` writes ``NAME.part0``,
``NAME.part1``, ... and a manifest ``NAME.parts.json``::

    {"format": "crdr-parts", "version": 1, "name": NAME, "size": bytes, "sha256": hex,
     "parts": [{"file": "NAME.part0", "size": bytes, "sha256": hex}, ...]}

``join`` reads the manifest, checks every part and the whole against their sizes and
digests, and writes the file atomically, so a missing, truncated or mixed-up part is an
error and never a damaged weights file. No torch needed::

    python -m crdr_codec.train.parts split FILE OUT_DIR [--part-mib 15]
    python -m crdr_codec.train.parts join OUT_DIR/NAME.parts.json DEST
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

FORMAT = "crdr-parts"
MANIFEST_SUFFIX = ".parts.json"
#: Default part size: under the 16 MiB per file that the GPU machine hands back.
DEFAULT_PART_BYTES = 15 * 2**20
_CHUNK = 1 << 20


class PartsError(Exception):
    pass


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def manifest_path(out_dir: str | os.PathLike, name: str) -> Path:
    return Path(out_dir) / f"{name}{MANIFEST_SUFFIX}"


def split_file(src: str | os.PathLike, out_dir: str | os.PathLike,
               part_bytes: int = DEFAULT_PART_BYTES, name: str | None = None) -> Path:
    """Write ``src`` as parts of at most ``part_bytes`` bytes into ``out_dir``; returns the
    manifest's path. Parts of an earlier split with the same name are removed first."""
    src, out = Path(src), Path(out_dir)
    if part_bytes <= 0:
        raise PartsError("part size must be positive")
    name = name or src.name
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{name}.part*"):
        if old.name[len(name) + 5:].isdigit():
            old.unlink()
    whole = hashlib.sha256()
    parts = []
    with open(src, "rb") as f:
        i = 0
        while True:
            data = f.read(part_bytes)
            if not data and i > 0:
                break
            part = out / f"{name}.part{i}"
            tmp = part.with_name(part.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, part)
            whole.update(data)
            parts.append({"file": part.name, "size": len(data),
                          "sha256": hashlib.sha256(data).hexdigest()})
            i += 1
            if len(data) < part_bytes:
                break
    man = {"format": FORMAT, "version": 1, "name": name, "size": src.stat().st_size,
           "sha256": whole.hexdigest(), "parts": parts}
    mpath = manifest_path(out, name)
    tmp = mpath.with_name(mpath.name + ".tmp")
    tmp.write_text(json.dumps(man, indent=1) + "\n")
    os.replace(tmp, mpath)
    return mpath


def read_manifest(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        man = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise PartsError(f"{path}: not a readable parts manifest ({e})") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT or not man.get("parts"):
        raise PartsError(f"{path}: not a {FORMAT} manifest")
    return man


def join_parts(manifest: str | os.PathLike, dest: str | os.PathLike) -> str:
    """Join the parts listed in ``manifest`` (looked up beside it) into ``dest``, checking
    each part's size and SHA-256 and the whole file's; returns the whole file's SHA-256."""
    manifest = Path(manifest)
    man = read_manifest(manifest)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".joining")
    whole = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for p in man["parts"]:
                part = manifest.parent / p["file"]
                if not part.is_file():
                    raise PartsError(f"missing part {part}")
                data = part.read_bytes()
                if len(data) != p["size"] or hashlib.sha256(data).hexdigest() != p["sha256"]:
                    raise PartsError(f"{part}: size or SHA-256 differs from {manifest.name}")
                whole.update(data)
                out.write(data)
        digest = whole.hexdigest()
        if tmp.stat().st_size != man["size"] or digest != man["sha256"]:
            raise PartsError(f"{dest.name}: the joined file's size or SHA-256 differs from "
                             f"{manifest.name}")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return digest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m crdr_codec.train.parts", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split", help="FILE OUT_DIR: write parts and a manifest")
    s.add_argument("file")
    s.add_argument("out_dir")
    s.add_argument("--part-mib", type=float, default=DEFAULT_PART_BYTES / 2**20)
    s.add_argument("--name", help="name of the parts (default: the file's name)")
    j = sub.add_parser("join", help="MANIFEST DEST: check and join parts")
    j.add_argument("manifest")
    j.add_argument("dest")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "split":
            m = split_file(a.file, a.out_dir, int(a.part_mib * 2**20), a.name)
            n = len(read_manifest(m)["parts"])
            print(f"{a.file} -> {n} part(s) + {m}")
        else:
            digest = join_parts(a.manifest, a.dest)
            print(f"{a.dest}: joined, sha256 {digest}")
    except (PartsError, OSError) as e:
        print(f"parts: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
