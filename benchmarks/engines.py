"""Cross-engine exactness on a folder of photos: the runtime (ONNX Runtime + numpy, the
product path) against the torch model (training, the reference).

For every image and q, a file is written by each engine: the torch path (torch g_a and
h_a, the torch integer entropy model) and the runtime (``crdr_codec.Codec``). Each file is
entropy-decoded by both engines; the two latents must be identical and their CRC must be
the header's check value. Each latent is synthesised by both engines at every beta; the
report gives the largest and the mean pixel difference, and how many files the two
engines wrote byte-identical (their encoders round floating-point latents, so a rare
coefficient may round the other way; both files are valid everywhere).

    .venv/bin/python benchmarks/engines.py ../shared/data/kodak [--q 0,1,2,3,4]
        [--beta 0,3.84] [--limit N] [--weights weights/crdr-lite.pt] [--threads 2]

Exit status 1 when any latent differs. Needs torch (the train extra).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crdr_codec import bitstream  # noqa: E402
from crdr_codec.codec import Codec  # noqa: E402
from crdr_codec.config import code_to_q, q_to_code  # noqa: E402
from crdr_codec.image_io import crop, pad_to_multiple, read_image, to_tensor, to_uint8  # noqa: E402
from crdr_codec.limits import padded  # noqa: E402
from crdr_codec.nn.weights import default_weights_path, load_weights  # noqa: E402


def torch_encode(m, rgb: np.ndarray, q: float, model_id: bytes) -> bytes:
    code = q_to_code(q)
    coded = m.compress(pad_to_multiple(to_tensor(rgb), 64), code_to_q(code))
    h, w = rgb.shape[:2]
    header = bitstream.Header(model_id=model_id, q_code=code, height=h, width=w, check=coded.check)
    return bitstream.pack(header, coded.payload, ())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--q", default="0,1,2,3,4")
    ap.add_argument("--beta", default="0,3.84")
    ap.add_argument("--limit", type=int, default=0, help="first N images only")
    ap.add_argument("--weights", default=str(default_weights_path()))
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    qs = [float(v) for v in a.q.split(",")]
    betas = [float(v) for v in a.beta.split(",")]
    m, fp = load_weights(a.weights)
    codec = Codec(a.weights, device="cpu", threads=a.threads)
    assert codec.fingerprint == fp
    files = sorted(Path(a.folder).glob("*.png"))[: a.limit or None]
    n_files = n_latents = n_same_bytes = 0
    worst, diffs, bad = 0, [], []
    t0 = time.time()
    for path in files:
        rgb = read_image(path)
        for q in qs:
            by_torch = torch_encode(m, rgb, q, codec.model_id)
            by_runtime = codec.encode(rgb, q).data
            n_same_bytes += by_torch == by_runtime
            for writer, data in (("torch", by_torch), ("runtime", by_runtime)):
                n_files += 1
                header, payload, _ = bitstream.unpack(data)
                latent = codec.decode_latent(data)  # raises if the CRC is not the header's
                with torch.inference_mode():
                    y_ref, check = m.decode_latent(payload, padded(header.height), padded(header.width))
                n_latents += 2
                if check != header.check or not np.array_equal(latent.y_hat, y_ref.numpy()):
                    bad.append(f"{path.name} q={q:g} written by {writer}")
                    continue
                for beta in betas:
                    px = codec.synthesize(latent, beta).astype(np.int16)
                    ref = to_uint8(crop(m.synthesize(y_ref, header.q, beta), header.height,
                                        header.width)).astype(np.int16)
                    d = np.abs(px - ref)
                    worst = max(worst, int(d.max()))
                    diffs.append(float(d.mean()))
        print(f"{path.name}: done ({time.time() - t0:.0f} s); so far {n_latents - 2 * len(bad)} of "
              f"{n_latents} latents identical, {n_same_bytes} of {n_files // 2} file pairs "
              f"byte-identical, pixels at most {worst} levels apart", file=sys.stderr)
    print(f"{len(files)} images x q {a.q} x beta {a.beta}, weights {fp[:4].hex()}")
    print(f"files written: {n_files} ({n_files // 2} by each engine); byte-identical pairs: "
          f"{n_same_bytes} of {n_files // 2}")
    print(f"latents decoded by both engines: {n_latents}; identical latent and check value: "
          f"{n_latents - 2 * len(bad)} of {n_latents}")
    print(f"pixels, runtime vs torch synthesis: largest difference {worst} levels, mean "
          f"absolute difference {np.mean(diffs):.4f} (over {len(diffs)} decodes)")
    for b in bad:
        print("LATENT DIFFERS:", b)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
