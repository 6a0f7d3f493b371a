"""``crdr encode/decode --ray``, and Ray Data pipelines of image and .crdr bytes.

Design (see the README section "Batches on a Ray cluster"):

* The files become a Ray dataset with one file per block; ``map_batches`` runs them through
  an actor pool of :class:`CrdrWorker` (one model per actor, loaded once, ``batch_size=1`` so
  an actor holds one image at a time: memory stays bounded on a 24 MP image). The work on
  each file is :class:`crdr_codec.batch.Encoder` / :class:`~crdr_codec.batch.Decoder`, the
  code the single-process batch runs, so the bytes are the same.
* The workers return the output bytes; the driver writes them, with the single-process
  batch's rules (:class:`~crdr_codec.cli.common.OutputGuard`: temporary file and rename,
  never over an input, an existing file only with ``--force``). A worker or node that dies
  mid-file has written nothing, so there is nothing half-written to clean up; Ray runs its
  file again (actor restarts and task retries), and a file whose result never comes back is
  reported by name as missing.
* Resume is ``--skip-existing``: an output exists only once it is complete (it is renamed
  into place), so a rerun does exactly the files that are missing.
* At the end: one summary line and a manifest, ``crdr-manifest.csv`` in the output folder
  (written atomically), one row per input.

Python entry points for Ray pipelines: :func:`encode_dataset` and :func:`decode_dataset`.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import time
import warnings

from .errors import CrdrError

#: the manifest's file name, in the output folder
MANIFEST = "crdr-manifest.csv"
MANIFEST_FIELDS = ("input", "output", "bytes_in", "bytes", "bpp", "q", "model_id", "status",
                   "error")
#: CPUs Ray reserves per worker: below 1, so that the dataset's own tasks are never starved
#: by a pool that takes every CPU (measured on 2 cores: at 1 CPU per actor a pool of 2 never
#: finished)
WORKER_CPUS = 0.5


def import_ray():
    """``ray`` with Ray Data, or a one-line error naming the extra."""
    try:
        import ray
        import ray.data  # noqa: F401  (needs pyarrow and pandas: the ray[data] extra)
    except ImportError as e:
        raise CrdrError(f"--ray needs ray[data], which is not installed ({e}): "
                        "pip install 'crdr[ray]'") from None
    return ray


# ----------------------------------------------------------------------- the workers


class CrdrWorker:
    """One actor of the pool: holds one Encoder or Decoder (its model loaded once) and
    turns each row into the output bytes and what the manifest says of them.

    A row has the input's bytes in ``column``, or (for the CLI) the input's path in
    ``src``, read here. Errors about a file (CrdrError) and anything else raised by its
    work are that file's failure, not the job's: the row says so and the rest go on.
    """

    def __init__(self, kind: str, settings, fmt: str | None = None, column: str = "bytes",
                 out_column: str = "out") -> None:
        from .batch import Decoder, Encoder

        self.kind = kind
        self.fmt = fmt
        self.column = column
        self.out_column = out_column
        self.model_notes: list[str] = []
        self.work = (Encoder(settings) if kind == "encode"
                     else Decoder(settings, note=self.model_notes.append))

    def _one(self, source, name: str, dst: str | None, fmt: str | None) -> dict:
        from .cli.common import error_line, named, note_line
        from .errors import InputNotice

        row = {"out": b"", "status": "ok", "error": "", "line": "", "notes": "",
               "warning": "", "width": 0, "height": 0, "q": float("nan"),
               "bpp": float("nan"), "model_id": "", "bytes_in": 0}
        notes: list[str] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                if isinstance(source, str):  # a path (the CLI)
                    try:
                        row["bytes_in"] = os.path.getsize(source)
                    except OSError:
                        pass  # reported by the reader, naming the file
                    if self.kind == "decode":
                        from .cli.common import read_crdr

                        source = read_crdr(source)
                else:
                    source = bytes(source)
                    row["bytes_in"] = len(source)
                if self.kind == "encode":
                    res = self.work.encode(source, name)
                else:
                    res = self.work.decode(source, fmt or self.fmt)
                out = dst if dst is not None else "<bytes>"
                row.update(out=res.data, line=res.line(name, out), width=res.width,
                           height=res.height, q=float(res.q), bpp=float(res.bpp),
                           model_id=res.model_id.hex())
                if self.kind == "encode" and res.missed:
                    row["warning"] = res.warning(name, out)
            except CrdrError as e:
                row.update(status="failed", error=error_line(named(e, name))[len("crdr: error: "):])
            except Exception as e:  # a bug or a resource limit: this file fails, not the job
                detail = " ".join(str(e).split())
                row.update(status="failed",
                           error=f"{name}: internal error: {type(e).__name__}: {detail}")
        for w in caught:
            if issubclass(w.category, InputNotice):
                notes.append(note_line(w, name))
        notes += self.model_notes
        self.model_notes.clear()
        row["notes"] = "\n".join(notes)
        return row

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        n = len(next(iter(batch.values())))
        rows = []
        for i in range(n):
            if self.column in batch:
                source = batch[self.column][i]
                name = str(batch["path"][i]) if "path" in batch else f"row {i}"
            else:
                source = name = str(batch["src"][i])
            dst = str(batch["dst"][i]) if "dst" in batch else None
            rows.append(self._one(source, name, dst, None))
        out = {k: v for k, v in batch.items() if k != self.column}
        for key in rows[0] if rows else ():
            values = [r[key] for r in rows]
            name = self.out_column if key == "out" else key
            out[name] = np.array(values, dtype=object if isinstance(values[0], (bytes, str))
                                 else None)
        return out


def _map(ds, kind: str, settings, fmt, column: str, out_column: str, workers: int | None):
    """The dataset of results: ``ds`` through a pool of ``workers`` crdr actors."""
    import ray

    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    return ds.map_batches(
        CrdrWorker, fn_constructor_args=(kind, settings, fmt, column, out_column),
        batch_size=1, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=WORKER_CPUS)
    # (Ray Data's actor pools restart a killed actor and retry its tasks without limit:
    # max_restarts=-1, max_task_retries=-1 are its defaults)


# ----------------------------------------------------------------- the Python entry points


def encode_dataset(ds, *, q: float = 2.0, target_bpp: float | None = None,
                   alpha: str = "refuse", strip: bool = False, max_pixels: int | None = None,
                   weights: str | None = None, threads: int | None = None,
                   column: str = "bytes", workers: int | None = None):
    """A Ray dataset of image files' bytes -> a dataset of .crdr files' bytes.

    Each row of ``ds`` holds an image file's bytes in ``column`` (as
    ``ray.data.read_binary_files(..., include_paths=True)`` makes them; its ``path`` column,
    if any, names the file in error messages). The result has the other columns of ``ds``
    and: ``crdr`` (the .crdr file's bytes, ``b""`` if it failed), ``status`` (``ok`` or
    ``failed``), ``error`` (one line naming the file), ``width``, ``height``, ``q``,
    ``bpp``, ``model_id`` (hex), ``bytes_in``, ``notes``. The bytes are those ``crdr
    encode`` writes with the same options. Lazy, as Ray datasets are; ``workers`` actors
    (default one per CPU of the cluster) each load the model once.

    Example::

        import ray
        from crdr_codec.raybatch import encode_dataset

        ds = ray.data.read_binary_files("photos/", include_paths=True)
        for row in encode_dataset(ds, q=2).iter_rows():
            ...  # row["path"], row["crdr"], row["status"], row["error"]
    """
    from .batch import EncodeSettings
    from .config import check_q
    from .limits import DEFAULT_MAX_PIXELS

    settings = EncodeSettings(q=check_q(q), target_bpp=target_bpp, alpha=alpha, strip=strip,
                              max_pixels=max_pixels or DEFAULT_MAX_PIXELS, weights=weights,
                              device="cpu", threads=threads)
    return _map(ds, "encode", settings, None, column, "crdr", workers)


def decode_dataset(ds, *, beta: float = 0.0, format: str = "png",
                   jpeg_quality: int | None = None, strip: bool = False,
                   max_pixels: int | None = None, weights: str | None = None,
                   threads: int | None = None, column: str = "bytes",
                   workers: int | None = None):
    """A Ray dataset of .crdr files' bytes -> a dataset of image files' bytes (``format``).

    As :func:`encode_dataset`, the reverse: the result's ``image`` column holds the image
    file's bytes (``b""`` if it failed), the bytes ``crdr decode --format FORMAT`` writes.
    """
    from .batch import DecodeSettings
    from .config import check_beta
    from .image_io import _canonical_format
    from .limits import DEFAULT_MAX_PIXELS

    settings = DecodeSettings(beta=check_beta(beta), jpeg_quality=jpeg_quality, strip=strip,
                              max_pixels=max_pixels or DEFAULT_MAX_PIXELS, weights=weights,
                              device="cpu", threads=threads)
    return _map(ds, "decode", settings, _canonical_format(format), column, "image", workers)


# ------------------------------------------------------------------------------ the CLI


def _connect(ray, quiet: bool) -> bool:
    """Connect to $RAY_ADDRESS, else start a local cluster; True if we started one (and so
    stop it after the run). Connected already (a test, a notebook): nothing to do."""
    import logging

    if ray.is_initialized():
        return False
    if quiet or not sys.stderr.isatty():  # Ray's info lines would bury crdr's
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
    address = os.environ.get("RAY_ADDRESS") or None
    kwargs = dict(logging_level=logging.WARNING, log_to_driver=False)
    if address is None:
        ray.init(address="local", include_dashboard=False, **kwargs)
        return True
    ray.init(address=address, **kwargs)
    return False


def _manifest_row(src: str, dst: str, status: str, error: str = "", **fields) -> dict:
    row = dict.fromkeys(MANIFEST_FIELDS, "")
    row.update(input=src, output=dst, status=status, error=error)
    for key, value in fields.items():
        if key == "bpp" or key == "q":
            value = "" if value != value else f"{value:.6g}"  # nan: not known
        row[key] = value
    return row


def write_manifest(path: str, rows: list[dict]) -> None:
    """The manifest CSV (one row per input, in the order of the inputs), atomically."""
    from .fileutil import atomic_write_bytes

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def _size(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)  # not reached


def run_cli(kind: str, pairs, guard, settings, output_dir: str, quiet: bool,
            workers: int | None, fmt: str | None = None) -> None:
    """Run ``crdr encode/decode --ray``: every (src, dst) of ``pairs``, checked by
    ``guard`` (skips, refusals) and written by the driver; exits 1 if a file failed or is
    missing, 3 if an encode missed its --bpp target (as the single-process batch)."""
    import click

    from .cli.common import OutputRefused, error_line, named, plural
    from .errors import OutputError

    ray = import_ray()
    t0 = time.monotonic()
    manifest: dict[int, dict] = {}
    todo: list[int] = []
    for k, (src, dst) in enumerate(pairs):
        if guard.skips(dst):
            manifest[k] = _manifest_row(src, dst, "skipped", "exists",
                                        bytes=os.path.getsize(dst))
            continue
        try:
            guard.check(dst)
        except OutputRefused as e:
            click.echo(error_line(e), err=True)
            manifest[k] = _manifest_row(src, dst, "failed", str(e))
            continue
        todo.append(k)

    bytes_in = bytes_out = 0
    failed = missed_bpp = 0
    seen_notes: set[str] = set()
    job_error = None
    started = False
    interrupted = False
    try:
        if todo:
            started = _connect(ray, quiet)
            from ray.data import DataContext

            ctx = DataContext.get_current()
            if quiet or not sys.stderr.isatty():  # Ray's progress bars: on a terminal
                ctx.enable_progress_bars = False
            ctx.print_on_execution_start = False
            items = [{"i": k, "src": pairs[k][0], "dst": pairs[k][1]} for k in todo]
            # one file per block: a lost block is one file to redo
            ds = ray.data.from_items(items, override_num_blocks=len(items))
            results = _map(ds, kind, settings, fmt, "bytes", "out", workers)
            for row in results.iter_rows():
                k = int(row["i"])
                if k in manifest:  # (a retried task's duplicate; never written twice)
                    continue
                src, dst = pairs[k]
                for note in filter(None, str(row["notes"]).split("\n")):
                    if not quiet and note not in seen_notes:
                        seen_notes.add(note)
                        click.echo(note, err=True)
                fields = dict(bytes_in=int(row["bytes_in"]), bpp=float(row["bpp"]),
                              q=float(row["q"]), model_id=str(row["model_id"]))
                if row["status"] != "ok":
                    failed += 1
                    click.echo(f"crdr: error: {row['error']}", err=True)
                    manifest[k] = _manifest_row(src, dst, "failed", str(row["error"]), **fields)
                    continue
                data = bytes(row["out"])
                try:
                    guard.write(dst, lambda replace: _write(dst, data, replace))
                except (OutputRefused, OutputError) as e:
                    failed += 1
                    err = e if isinstance(e, OutputRefused) else named(e, src)
                    click.echo(error_line(err), err=True)
                    manifest[k] = _manifest_row(src, dst, "failed", str(err), **fields)
                    continue
                bytes_in += fields["bytes_in"]
                bytes_out += len(data)
                if row["warning"]:
                    missed_bpp += 1
                    click.echo(str(row["warning"]), err=True)
                manifest[k] = _manifest_row(src, dst, "ok", bytes=len(data), **fields)
    except KeyboardInterrupt:
        interrupted = True
        job_error = "interrupted"
    except Exception as e:  # Ray gave up (e.g. retries exhausted after losing nodes)
        job_error = f"the Ray job failed: {type(e).__name__}: " + " ".join(str(e).split())[:300]
        click.echo(f"crdr: error: {job_error}", err=True)
    finally:
        if started:
            ray.shutdown()
    missing = [k for k in todo if k not in manifest]
    for k in missing:
        src, dst = pairs[k]
        reason = f"not done ({job_error or 'no result came back from Ray'})"
        if not interrupted:
            click.echo(f"crdr: error: {src}: {reason}; {dst} was not written", err=True)
        manifest[k] = _manifest_row(src, dst, "missing", reason)
    manifest_path = os.path.join(output_dir, MANIFEST)
    write_manifest(manifest_path, [manifest[k] for k in range(len(pairs))])
    if interrupted:
        raise KeyboardInterrupt
    skipped = sum(1 for r in manifest.values() if r["status"] == "skipped")
    refused = len(pairs) - len(todo) - skipped
    failed += refused
    done = len(todo) - failed + refused - len(missing)
    if not quiet or failed or missing:
        parts = [f"{done} done"]
        if skipped:
            parts.append(f"{skipped} skipped")
        parts += [f"{failed} failed"] + ([f"{len(missing)} missing"] if missing else [])
        click.echo(f"crdr: {plural(len(pairs), 'file')} ({', '.join(parts)}), "
                   f"{_size(bytes_in)} in, {_size(bytes_out)} out, "
                   f"{time.monotonic() - t0:.1f} s; manifest {manifest_path}", err=True)
    if failed or missing:
        sys.exit(1)
    if missed_bpp:
        from .cli.common import EXIT_BPP_NOT_REACHED

        sys.exit(EXIT_BPP_NOT_REACHED)


def _write(dst: str, data: bytes, replace: bool) -> None:
    from .cli.common import write_output

    write_output(dst, data, replace)
