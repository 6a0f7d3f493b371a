"""The child process of ``crdr bench``: times one entry on all images and prints its result.

:func:`crdr_codec.eval.bench.run_bench` starts one per entry, so that each entry's peak
memory is its own, as ``python -m crdr_codec.eval.bench_worker SPEC`` where SPEC is a
JSON object (name, images, repeats, threads, q, beta, weights); the result is one JSON
line on stdout. A user error exits 1 with its message as the last line on stderr. This
is not a command for people: use ``crdr bench``.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from crdr_codec.errors import CrdrError, DependencyError
from crdr_codec.eval.bench import MBT

__all__ = ["time_entry"]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def time_entry(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Time one entry on all images in this (fresh) process.

    The process gets the same allocator tuning as the ``crdr`` command (for every entry,
    so the ratios compare like with like).
    """
    import numpy as np

    from crdr_codec.process import tune_malloc

    tune_malloc()

    from crdr_codec.image_io import read_image

    name: str = spec["name"]
    threads: int = spec["threads"]
    repeats: int = spec["repeats"]
    q, beta = spec["q"], spec["beta"]
    images = [read_image(p) for p in spec["images"]]
    params: Optional[int] = None
    if name.startswith("crdr:") or name == MBT:
        import torch

        torch.set_num_threads(threads)
        from crdr_codec.image_io import pad_to_multiple, to_tensor

        if name == MBT:
            try:
                from compressai.zoo import mbt2018_mean
            except ImportError as exc:
                raise DependencyError(f"{MBT} needs compressai: pip install compressai ({exc})") from None
        else:
            from crdr_codec.codec import Codec
            from crdr_codec.config import get_config
            from crdr_codec.nn.model import CRDRModel
            from crdr_codec.nn.weights import load_weights
    else:
        from crdr_codec.eval.anchors import get_anchor

        anchor = get_anchor(name)
    base_mb = _rss_mb()

    codec = None
    if name == MBT:
        net = mbt2018_mean(quality=3, pretrained=False).eval()
        net.update(force=True)
        params = sum(p.numel() for p in net.parameters())
    elif name.startswith("crdr:"):
        if name == "crdr:weights":
            net, fp = load_weights(spec["weights"])
            codec = Codec(model=net, fingerprint=fp, device="cpu")
        else:
            torch.manual_seed(0)
            net = CRDRModel(get_config(name.split(":", 1)[1])).eval()
        params = sum(p.numel() for p in net.parameters())

    def once(rgb: "np.ndarray") -> tuple:
        """One encode + decode; returns (stage seconds, bytes)."""
        t: Dict[str, float] = {}
        if name == MBT:
            x = pad_to_multiple(torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255.0, 64)
            with torch.inference_mode():
                t0 = time.perf_counter()
                y = net.g_a(x)
                t1 = time.perf_counter()
                out = net.compress(x)
                t2 = time.perf_counter()
                net.g_s(y)
                t3 = time.perf_counter()
                net.decompress(out["strings"], out["shape"])
                t4 = time.perf_counter()
            nbytes = sum(len(s[0]) for s in out["strings"])
            t = {"enc_analysis": t1 - t0, "enc_total": t2 - t1, "dec_synthesis": t3 - t2,
                 "dec_total": t4 - t3}
            t["enc_entropy"] = max(0.0, t["enc_total"] - t["enc_analysis"])
            t["dec_entropy"] = max(0.0, t["dec_total"] - t["dec_synthesis"])
        elif name.startswith("crdr:"):
            x = pad_to_multiple(to_tensor(rgb), 64)
            H, W = x.shape[-2:]
            t0 = time.perf_counter()
            y = net.analyze(x, q)
            t1 = time.perf_counter()
            payload = net.compress_latent(y).payload
            t2 = time.perf_counter()
            y_hat, _ = net.decode_latent(payload, H, W)
            t3 = time.perf_counter()
            net.synthesize(y_hat, q, beta)
            t4 = time.perf_counter()
            nbytes = len(payload)
            t = {"enc_analysis": t1 - t0, "enc_entropy": t2 - t1, "enc_total": t2 - t0,
                 "dec_entropy": t3 - t2, "dec_synthesis": t4 - t3, "dec_total": t4 - t2}
            if codec is not None:  # the file-level API end to end
                t5 = time.perf_counter()
                data = codec.encode(rgb, q).data
                t6 = time.perf_counter()
                codec.decode(data, beta)
                t7 = time.perf_counter()
                t.update(file_enc=t6 - t5, file_dec=t7 - t6)
        else:
            t0 = time.perf_counter()
            data = anchor.encode(rgb, anchor.bench_quality, threads=threads)
            t1 = time.perf_counter()
            anchor.decode(data)
            t2 = time.perf_counter()
            nbytes = len(data)
            t = {"enc_total": t1 - t0, "dec_total": t2 - t1}
        return t, nbytes

    per_image = []
    for path, rgb in zip(spec["images"], images):
        once(rgb)  # warm-up
        times: Dict[str, List[float]] = {}
        nbytes = 0
        for _ in range(repeats):
            t, nbytes = once(rgb)
            for k, v in t.items():
                times.setdefault(k, []).append(v)
        h, w = rgb.shape[:2]
        per_image.append({"image": path, "width": w, "height": h, "bytes": nbytes,
                          "bpp": nbytes * 8.0 / (h * w), "times": times})
    setting = (f"quality {anchor.bench_quality}, {anchor.settings}" if not (name.startswith("crdr:") or name == MBT)
               else (f"q={q:g} beta={beta:g}" if name.startswith("crdr:") else "quality 3, untrained"))
    return {"name": name, "setting": setting, "params": params, "threads": threads, "repeats": repeats,
            "per_image": per_image, "base_rss_mb": base_mb, "peak_mb": max(0.0, _rss_mb() - base_mb)}


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.exit("crdr_codec.eval.bench_worker: the child process of crdr bench; use crdr bench")
    try:
        result = time_entry(json.loads(args[0]))
    except CrdrError as e:
        print(" ".join(str(e).split()), file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
