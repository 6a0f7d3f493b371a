"""Does a .crdr file decode to the same latent and the same pixels in another float environment?

The decoder recomputes the entropy parameters (hyper-synthesis and channel-context nets,
float32 on the CPU) and turns them into integer scale indices for the range decoder. If
the float arithmetic differs from the encoder's (thread count, oneDNN on or off, CPU
instruction set, torch version), an index can flip, the range decoder desynchronises, and
the file decodes to garbage or is refused. This measures how often that happens.

Step 1, in this process (the reference, default environment): every image of DIR is
encoded at each q with ``Codec(weights, device="cpu").encode``; the quantised latent the
encoder coded (``y_hat`` of ``model.compress_latent``) is recorded, and every file is
decoded once here too (beta 0) to get the reference pixels.

Step 2: for each perturbed environment a fresh Python process (this script with
``--worker``) sets it up before anything else runs, loads the codec once and decodes
every file with ``Codec.decode(data, beta=0)``, recording the latent that
``model.decode_latent`` returned and the pixels. Environments are written as
comma-separated settings: ``threads=N`` (OMP_NUM_THREADS and torch.set_num_threads),
``onednn-off`` (torch.backends.mkldnn.enabled = False), ``isa=avx2`` (ATEN_CPU_CAPABILITY,
the instruction set of torch's own kernels) and ``default`` (nothing changed).

Per file and environment the outcome is one of:

* ``exact``: the decoded latent ``y_hat`` is bit-identical to the one the encoder coded
  (SHA-256 of its float32 bytes) and the decoded uint8 pixels are identical to the
  reference decode's. Only this counts as decoding identically;
* ``latent exact, pixels differ``: entropy decoding agreed, synthesis (g_s) rounded some
  pixels differently (the largest absolute level difference is reported);
* ``inexact latent, same symbols``: the range decoder stayed in sync (the CRC-32 of the
  decoded integer symbols, which ``decode_latent`` returns, equals the encoder's), but the
  float part of ``y_hat`` (means, latent residual prediction) came out different;
* ``inexact latent, other symbols``: the file decoded without an error to other symbols,
  i.e. a silent desynchronisation (``inexact latent`` when the symbols' CRC is unknown);
* ``refused``: decoding raised a CrdrError (its message is kept);
* ``crashed``: decoding raised anything else, or the worker process died.

Exit status 0 when every file is exact in every environment (the reference included),
1 otherwise. Run it as::

    nice -n 19 .venv/bin/python benchmarks/portability.py ../shared/data/kodak \\
        --q 0,1,2,3,4 --json portability.json

(all 24 Kodak images x 5 q x 4 environments: about 30 minutes on 2 CPU cores). The
crdr_codec beside this script is the one measured (the repository root is put first on
sys.path and on the workers' PYTHONPATH); its location is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_ENVS = ("threads=1", "threads=3", "onednn-off,threads=1", "onednn-off,threads=2")
from crdr_codec.formats import IMAGE_EXTENSIONS  # noqa: E402 (after the sys.path set-up)
CATEGORIES = ("exact", "latent exact, pixels differ", "inexact latent, same symbols",
              "inexact latent, other symbols", "inexact latent", "refused", "crashed")
MAX_LISTED = 12  # non-exact files listed per environment (all of them go to --json)


# --------------------------------------------------------------------------- environments


@dataclass(frozen=True)
class EnvSpec:
    name: str
    threads: int | None = None
    onednn: bool = True
    isa: str | None = None


def parse_env(spec: str) -> EnvSpec:
    """'onednn-off,threads=1' -> EnvSpec; raises ValueError for an unknown setting."""
    threads, onednn, isa = None, True, None
    for token in (t.strip() for t in spec.split(",")):
        key, _, value = token.partition("=")
        if token in ("", "default"):
            continue
        if key == "threads" and value.isdigit() and int(value) >= 1:
            threads = int(value)
        elif token in ("onednn-off", "mkldnn-off"):
            onednn = False
        elif key == "isa" and value:
            isa = value.lower()
        else:
            raise ValueError(f"unknown environment setting '{token}' in '{spec}' "
                             "(use threads=N, onednn-off, isa=NAME, default)")
    return EnvSpec(spec, threads, onednn, isa)


def process_env(spec: EnvSpec) -> dict[str, str]:
    """os.environ for a worker: this crdr_codec first on PYTHONPATH, plus the spec's variables."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    if spec.threads is not None:
        env["OMP_NUM_THREADS"] = str(spec.threads)
    if spec.isa is not None:
        env["ATEN_CPU_CAPABILITY"] = spec.isa
    return env


def setup_torch(spec: EnvSpec):
    """Apply the in-process part of an environment; must run before the codec is loaded."""
    import torch

    if not spec.onednn:
        torch.backends.mkldnn.enabled = False
    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    return torch


def describe_runtime() -> dict:
    import torch

    import crdr_codec

    cpu = getattr(torch.backends, "cpu", None)
    return {
        "crdr_codec": crdr_codec.__file__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "onednn": bool(torch.backends.mkldnn.enabled and torch.backends.mkldnn.is_available()),
        "cpu_capability": cpu.get_cpu_capability() if cpu else "unknown",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"),
    }


def runtime_line(info: dict) -> str:
    return (f"torch {info['torch']}, {info['threads']} threads, oneDNN "
            f"{'on' if info['onednn'] else 'off'}, ISA {info['cpu_capability']}")


# --------------------------------------------------------------------------- decoding


def _digest(array) -> str:
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


class LatentCapture:
    """Wraps ``model.decode_latent`` and ``model.compress_latent`` on one model instance to
    keep the last latent (and CRC-32 of the coded symbols) each produced, so the normal
    Codec path is what gets measured."""

    def __init__(self, model) -> None:
        self.decoded = self.decoded_check = None  # from the last decode_latent
        self.encoded = self.encoded_check = None  # from the last compress_latent
        dec, enc = model.decode_latent, model.compress_latent

        def decode_latent(*args, **kwargs):
            out = dec(*args, **kwargs)
            self.decoded, self.decoded_check = _latent_and_check(out)
            return out

        def compress_latent(*args, **kwargs):
            out = enc(*args, **kwargs)
            y_hat, check = getattr(out, "y_hat", None), getattr(out, "check", None)
            self.encoded = _as_array(y_hat) if y_hat is not None else None
            self.encoded_check = check if isinstance(check, int) else None
            return out

        self.original_decode_latent = dec
        model.decode_latent = decode_latent
        model.compress_latent = compress_latent


def _as_array(t):
    return t.detach().to("cpu").float().contiguous().numpy().copy()


def _latent_and_check(out) -> tuple[object, int | None]:
    """decode_latent's result, (y_hat, symbols CRC) or y_hat alone -> (array, CRC or None)."""
    if isinstance(out, tuple):
        check = out[1] if len(out) > 1 and isinstance(out[1], int) else None
        return _as_array(out[0]), check
    return _as_array(out), None


def _latent_directly(capture: LatentCapture, data: bytes) -> tuple[object, int | None]:
    """The latent of a file that decoded without calling model.decode_latent (no such path
    exists today; kept so a changed Codec.decode still gets its latent measured)."""
    from crdr_codec import bitstream
    from crdr_codec.config import PAD_MULTIPLE

    unpacked = bitstream.unpack(data)  # (header, payload) or (header, payload, sections)
    header, payload = unpacked[0], unpacked[1]
    hp = -(-header.height // PAD_MULTIPLE) * PAD_MULTIPLE
    wp = -(-header.width // PAD_MULTIPLE) * PAD_MULTIPLE
    return _latent_and_check(capture.original_decode_latent(payload, hp, wp))


def decode_one(codec, capture: LatentCapture, data: bytes) -> tuple[dict, object, object]:
    """Decode one file at beta 0: (record, latent array or None, pixel array or None)."""
    import numpy as np

    from crdr_codec.errors import CrdrError

    capture.decoded = capture.decoded_check = None
    rec: dict = {"status": "decoded", "message": None}
    pixels = None
    t0 = time.perf_counter()
    try:
        pixels = np.ascontiguousarray(codec.decode(data, beta=0.0))
    except CrdrError as e:
        rec.update(status="refused", message=str(e))
    except Exception as e:  # noqa: BLE001 - a crash is one of the measured outcomes
        rec.update(status="crashed", message=f"{type(e).__name__}: {e}")
    rec["decode_s"] = time.perf_counter() - t0
    # Kept also when the file was refused after entropy decoding (e.g. a checksum test).
    latent, check = capture.decoded, capture.decoded_check
    if latent is None and pixels is not None:
        try:
            latent, check = _latent_directly(capture, data)
        except Exception as e:  # noqa: BLE001
            rec["latent_error"] = f"{type(e).__name__}: {e}"
    rec["latent_sha256"] = _digest(latent) if latent is not None else None
    rec["symbols_crc32"] = check
    rec["pixels_sha256"] = _digest(pixels) if pixels is not None else None
    return rec, latent, pixels


# --------------------------------------------------------------------------- worker


def worker(manifest_path: str) -> None:
    """Entry point of a perturbed-environment process (``--worker MANIFEST``)."""
    man = json.loads(Path(manifest_path).read_text())
    spec = parse_env(man["env"])
    setup_torch(spec)  # before crdr_codec (and its model) is imported
    import numpy as np

    from crdr_codec.codec import Codec

    info = describe_runtime()
    out = Path(man["out"])
    t0 = time.perf_counter()
    codec = Codec(man["weights"], device="cpu")
    info["load_s"] = time.perf_counter() - t0
    capture = LatentCapture(codec.model)
    results = []
    for i, item in enumerate(man["files"]):
        rec, latent, pixels = decode_one(codec, capture, Path(item["path"]).read_bytes())
        rec["key"] = item["key"]
        if latent is not None:
            np.save(out / f"{i}.latent.npy", latent)
        if pixels is not None:
            np.save(out / f"{i}.pixels.npy", pixels)
        results.append(rec)
    (out / "results.json").write_text(json.dumps({"runtime": info, "results": results}))


def run_worker(spec: EnvSpec, files: list[dict], weights: str, out: Path) -> tuple[dict, list[dict]]:
    """Run one environment's worker; a dead worker makes every file 'crashed'."""
    out.mkdir(parents=True)
    manifest = out / "manifest.json"
    manifest.write_text(json.dumps({"env": spec.name, "weights": weights, "out": str(out),
                                    "files": files}))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(manifest)],
                          env=process_env(spec), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    res = out / "results.json"
    if proc.returncode == 0 and res.is_file():
        got = json.loads(res.read_text())
        return got["runtime"], got["results"]
    err = (proc.stderr.decode(errors="replace").strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    msg = f"worker process failed (exit {proc.returncode}): {err}"
    return {"error": msg}, [{"key": f["key"], "status": "crashed", "message": msg, "decode_s": None,
                             "latent_sha256": None, "pixels_sha256": None} for f in files]


# --------------------------------------------------------------------------- comparison


def compare(rec: dict, ref: dict, i: int, out: Path | None, ref_dir: Path) -> dict:
    """Classify one decode against the encoder's latent and symbols and the reference pixels.

    ``out`` holds the decode's ``{i}.latent.npy`` / ``{i}.pixels.npy`` (None: not saved),
    ``ref_dir`` the encoder's latent and the reference decode's pixels under the same names.
    """
    import numpy as np

    row = {"key": rec["key"], "status": rec["status"], "message": rec.get("message"),
           "decode_s": rec.get("decode_s"), "max_level_diff": None,
           "latent_diff_fraction": None, "latent_max_abs_diff": None}
    latent_exact = rec["latent_sha256"] is not None and rec["latent_sha256"] == ref["latent_sha256"]
    pixels_exact = rec["pixels_sha256"] is not None and rec["pixels_sha256"] == ref["pixels_sha256"]
    symbols_exact = None  # unknown unless both sides report the CRC-32 of the coded symbols
    if rec.get("symbols_crc32") is not None and ref.get("symbols_crc32") is not None:
        symbols_exact = rec["symbols_crc32"] == ref["symbols_crc32"]
    row.update(latent_exact=latent_exact, pixels_exact=pixels_exact, symbols_exact=symbols_exact)
    if out is not None and rec["latent_sha256"] is not None and not latent_exact:
        a, b = np.load(out / f"{i}.latent.npy"), np.load(ref_dir / f"{i}.latent.npy")
        if a.shape == b.shape:
            row["latent_diff_fraction"] = float(np.mean(a != b))
            row["latent_max_abs_diff"] = float(np.abs(a.astype(np.float64) - b).max())
    if out is not None and rec["pixels_sha256"] is not None and ref["pixels_sha256"] is not None:
        if pixels_exact:
            row["max_level_diff"] = 0
        else:
            a, b = np.load(out / f"{i}.pixels.npy"), np.load(ref_dir / f"{i}.pixels.npy")
            row["max_level_diff"] = (int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())
                                     if a.shape == b.shape else 255)
    if rec["status"] != "decoded":
        row["category"] = rec["status"]
    elif latent_exact and pixels_exact:
        row["category"] = "exact"
    elif latent_exact:
        row["category"] = "latent exact, pixels differ"
    elif symbols_exact is None:
        row["category"] = "inexact latent"
    else:
        row["category"] = "inexact latent, same symbols" if symbols_exact else "inexact latent, other symbols"
    return row


def summarise(rows: list[dict]) -> dict:
    decoded = [r for r in rows if r["status"] == "decoded"]
    differ = [r for r in decoded if not r["pixels_exact"]]
    diffs = [r["max_level_diff"] for r in differ if r["max_level_diff"] is not None]
    same = [r["latent_max_abs_diff"] for r in rows if r["category"] == "inexact latent, same symbols"
            and r["latent_max_abs_diff"] is not None]
    times = [r["decode_s"] for r in rows if r.get("decode_s") is not None]
    known = [r for r in decoded if r["symbols_exact"] is not None]
    return {
        "files": len(rows),
        "symbols_exact": sum(bool(r["symbols_exact"]) for r in decoded) if known else None,
        "latent_exact": sum(r["latent_exact"] for r in decoded),
        "pixels_exact": sum(r["pixels_exact"] for r in decoded),
        "pixels_differ": len(differ),
        "max_level_diff": max(diffs) if diffs else None,
        "inexact_latent": sum(r["category"].startswith("inexact latent") for r in rows),
        "inexact_latent_same_symbols": sum(r["category"] == "inexact latent, same symbols" for r in rows),
        "inexact_latent_other_symbols": sum(r["category"] == "inexact latent, other symbols" for r in rows),
        "latent_max_abs_diff_same_symbols": max(same) if same else None,
        "refused": sum(r["category"] == "refused" for r in rows),
        "crashed": sum(r["category"] == "crashed" for r in rows),
        "categories": {c: sum(r["category"] == c for r in rows) for c in CATEGORIES},
        "decode_s_per_file": statistics.mean(times) if times else None,
    }


def format_table(envs: list[tuple[str, dict]], total: dict) -> str:
    show_crashed = any(s["crashed"] for _, s in envs) or total["crashed"]
    head = ["environment", "files", "symbols exact", "latent exact", "pixels exact",
            "pixels differ (max diff)", "inexact latent (same/other symbols)", "refused"]
    head += (["crashed"] if show_crashed else []) + ["decode s/file"]

    def cells(name: str, s: dict) -> list[str]:
        differ = str(s["pixels_differ"])
        if s["pixels_differ"] and s["max_level_diff"] is not None:
            differ += f" (max {s['max_level_diff']})"
        inexact = str(s["inexact_latent"])
        if s["inexact_latent"]:
            inexact += f" ({s['inexact_latent_same_symbols']}/{s['inexact_latent_other_symbols']})"
        sym = "-" if s["symbols_exact"] is None else str(s["symbols_exact"])
        c = [name, str(s["files"]), sym, str(s["latent_exact"]), str(s["pixels_exact"]), differ,
             inexact, str(s["refused"])]
        if show_crashed:
            c.append(str(s["crashed"]))
        t = s.get("decode_s_per_file")
        return c + [f"{t:.2f}" if t is not None else "-"]

    body = [cells(n, s) for n, s in envs] + [cells("total (perturbed)", total)]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]

    def line(r: list[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), rule, *(line(r) for r in body[:-1]), rule, line(body[-1])])


# --------------------------------------------------------------------------- main


def list_images(folder: Path, limit: int | None) -> list[Path]:
    if not folder.is_dir():
        raise SystemExit(f"{folder}: not a directory")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not paths:
        raise SystemExit(f"{folder}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return paths[:limit] if limit else paths


def git_state() -> dict:
    def git(*args: str) -> str:
        r = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD") or None,
            "crdr_codec_modified": bool(git("status", "--porcelain", "--", "crdr_codec"))}


def _q_list(text: str) -> list[float]:
    try:
        qs = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text}") from None
    if not qs:
        raise argparse.ArgumentTypeError("no q given")
    return qs


def _stats(values: list[float]) -> str:
    return (f"mean {statistics.mean(values):.2f}, median {statistics.median(values):.2f}, "
            f"range {min(values):.2f}-{max(values):.2f}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"] and len(argv) == 2:
        worker(argv[1])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=Path, help="folder of images (e.g. ../shared/data/kodak)")
    p.add_argument("--q", type=_q_list, default=[0.0, 1.0, 2.0, 3.0, 4.0],
                   help="comma-separated quality levels (default 0,1,2,3,4)")
    p.add_argument("--weights", default=None, help="weights file (default: crdr's default)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (sorted by name)")
    p.add_argument("--envs", nargs="+", default=list(DEFAULT_ENVS), metavar="ENV",
                   help="perturbed environments, e.g. threads=1 'onednn-off,threads=2' isa=avx2 "
                        f"(default: {' '.join(DEFAULT_ENVS)})")
    p.add_argument("--json", type=Path, default=None, help="write every measurement here")
    p.add_argument("--work", type=Path, default=None,
                   help="keep the .crdr files and decodes in this folder (default: a temporary one)")
    a = p.parse_args(argv)
    try:
        specs = [parse_env(e) for e in a.envs]
    except ValueError as e:
        p.error(str(e))
    started = time.perf_counter()

    import numpy as np

    from crdr_codec.codec import Codec
    from crdr_codec.errors import CrdrError
    from crdr_codec.image_io import read_image
    from crdr_codec.nn.weights import default_weights_path

    weights = str(Path(a.weights).resolve() if a.weights else default_weights_path())
    images = list_images(a.dir, a.limit)
    ref_info = describe_runtime()
    git = git_state()
    print(f"crdr_codec: {ref_info['crdr_codec']} (commit {(git['commit'] or '?')[:12]}"
          f"{', crdr_codec/ modified' if git['crdr_codec_modified'] else ''})")
    print(f"weights: {weights}")
    print(f"{len(images)} images from {a.dir}, q {','.join(f'{q:g}' for q in a.q)}: "
          f"{len(images) * len(a.q)} files per environment")
    print(f"reference process: {runtime_line(ref_info)}")

    work_ctx = tempfile.TemporaryDirectory(prefix="crdr-portability-") if a.work is None else None
    work = Path(work_ctx.name) if work_ctx else a.work
    files_dir, ref_dir, refdec_dir = work / "files", work / "reference", work / "reference-decode"
    for d in (files_dir, ref_dir, refdec_dir):
        d.mkdir(parents=True, exist_ok=True)
    try:
        # ---- step 1: encode and decode in the reference environment
        try:
            codec = Codec(weights, device="cpu")
        except CrdrError as e:
            raise SystemExit(str(e)) from None
        capture = LatentCapture(codec.model)
        files: list[dict] = []
        refs: list[dict] = []
        ref_rows: list[dict] = []
        for path in images:
            try:
                rgb = read_image(path)
            except CrdrError as e:
                print(f"  skipped: {e}")
                continue
            for q in a.q:
                key = f"{path.stem} q={q:g}"
                capture.encoded = capture.encoded_check = None
                t0 = time.perf_counter()
                res = codec.encode(rgb, q)
                enc_s = time.perf_counter() - t0
                data = getattr(res, "data", res)
                crdr_path = files_dir / f"{path.stem}_q{q:g}.crdr"
                crdr_path.write_bytes(data)
                i = len(files)
                files.append({"key": key, "path": str(crdr_path)})
                rec, latent, pixels = decode_one(codec, capture, data)
                rec["key"] = key
                # The truth for the latent and symbols is what the encoder coded; the
                # reference decode stands in only if compress_latent stops reporting them.
                truth = capture.encoded if capture.encoded is not None else latent
                truth_check = (capture.encoded_check if capture.encoded_check is not None
                               else rec["symbols_crc32"])
                if truth is not None:
                    np.save(ref_dir / f"{i}.latent.npy", truth)
                if pixels is not None:
                    np.save(ref_dir / f"{i}.pixels.npy", pixels)
                ref = {"key": key, "image": path.name, "q": q, "q_used": getattr(res, "q", q),
                       "bytes": len(data), "bpp": len(data) * 8 / (rgb.shape[0] * rgb.shape[1]),
                       "encode_s": enc_s, "decode_s": rec["decode_s"],
                       "encoder_latent_captured": capture.encoded is not None,
                       "latent_sha256": _digest(truth) if truth is not None else None,
                       "symbols_crc32": truth_check,
                       "pixels_sha256": rec["pixels_sha256"], "status": rec["status"],
                       "message": rec["message"]}
                refs.append(ref)
                if latent is not None and rec["latent_sha256"] != ref["latent_sha256"]:
                    np.save(refdec_dir / f"{i}.latent.npy", latent)
                ref_rows.append(compare(rec, ref, i, refdec_dir, ref_dir))
                print(f"  {key}: {len(data)} bytes, encode {enc_s:.2f} s, decode "
                      f"{rec['decode_s']:.2f} s, {ref_rows[-1]['category']}", flush=True)
        del codec, capture
        if not files:
            raise SystemExit("no image could be read")
        enc_times = [r["encode_s"] for r in refs]
        dec_times = [r["decode_s"] for r in refs]
        print(f"reference timing per file: encode {_stats(enc_times)} s; decode {_stats(dec_times)} s")

        # ---- step 2: decode in each perturbed environment
        results = {}
        for n, spec in enumerate(specs):
            out = work / f"env{n}"
            t0 = time.perf_counter()
            info, recs = run_worker(spec, files, weights, out)
            wall = time.perf_counter() - t0
            have_files = "error" not in info
            rows = [compare(rec, refs[i], i, out if have_files else None, ref_dir)
                    for i, rec in enumerate(recs)]
            shutil.rmtree(out, ignore_errors=True)
            results[spec.name] = {"runtime": info, "wall_s": wall, "rows": rows,
                                  "summary": summarise(rows)}
            s = results[spec.name]["summary"]
            where = info.get("error") or runtime_line(info)
            if info.get("crdr_codec") and info["crdr_codec"] != ref_info["crdr_codec"]:
                where += f"; WARNING: imported {info['crdr_codec']}"
            print(f"  {spec.name}: {where}; {s['categories']['exact']}/{s['files']} exact, "
                  f"{wall:.0f} s", flush=True)
    finally:
        if work_ctx:
            work_ctx.cleanup()

    # ---- report
    ref_summary = summarise(ref_rows)
    all_rows = [r for res in results.values() for r in res["rows"]]
    total = summarise(all_rows)
    ref_name = f"reference (threads={ref_info['threads']})"
    print()
    print(format_table([(ref_name, ref_summary)] + [(k, v["summary"]) for k, v in results.items()], total))
    print()
    print("symbols exact: the range decoder returned the encoder's integer symbols (CRC-32); latent "
          "exact: the decoded y_hat (symbols + means + LRP, float32) is bit-identical to the encoder's; "
          "pixels exact: the beta=0 uint8 image is identical to the reference decode")
    for name, rows in [(ref_name, ref_rows)] + [(k, v["rows"]) for k, v in results.items()]:
        s = summarise(rows)
        print(f"\n{name}: " + ", ".join(f"{c} {n}" for c, n in s["categories"].items() if n))
        by_q = []
        for q in a.q:
            sel = [r for r, f in zip(rows, refs) if f["q"] == q]
            by_q.append(f"q={q:g} {sum(bool(r['symbols_exact']) for r in sel)}/"
                        f"{sum(r['category'] == 'exact' for r in sel)}/{len(sel)}")
        print(f"  by q (symbols exact/exact/files): {', '.join(by_q)}")
        if s["latent_max_abs_diff_same_symbols"] is not None:
            print(f"  same symbols but y_hat differs: largest |dy_hat| "
                  f"{s['latent_max_abs_diff_same_symbols']:.3g}")
        messages: dict[str, int] = {}
        for r in rows:
            if r["message"]:
                messages[r["message"]] = messages.get(r["message"], 0) + 1
        for m, n in sorted(messages.items(), key=lambda kv: -kv[1]):
            print(f"  {n} x {m}")
        bad = [r for r in rows if r["category"] in ("inexact latent, other symbols", "inexact latent",
                                                     "refused", "crashed")]
        for r in bad[:MAX_LISTED]:
            detail = r["category"]
            if r["max_level_diff"] is not None:
                detail += f", max level diff {r['max_level_diff']}"
            if r["latent_diff_fraction"] is not None:
                detail += f", {100 * r['latent_diff_fraction']:.1f}% of y_hat values differ"
            print(f"    {r['key']}: {detail}")
        if len(bad) > MAX_LISTED:
            print(f"    ... and {len(bad) - MAX_LISTED} more (see --json)")
    elapsed = time.perf_counter() - started
    print(f"\nreference encode per file: {_stats(enc_times)} s")
    print(f"reference decode per file: {_stats(dec_times)} s")
    print(f"total {elapsed:.0f} s")

    if a.json:
        report = {
            "command": [Path(sys.executable).name, *sys.argv],
            "dir": str(a.dir), "q": a.q, "weights": weights, "git": git,
            "reference": {"runtime": ref_info, "files": refs, "rows": ref_rows, "summary": ref_summary},
            "environments": results, "total": total, "elapsed_s": elapsed,
        }
        a.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {a.json}")
    everything = ref_rows + all_rows
    return 0 if all(r["category"] == "exact" for r in everything) else 1


if __name__ == "__main__":
    sys.exit(main())
