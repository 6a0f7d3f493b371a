"""Golden files: .crdr files made with the shipped model on another machine.

CI machines differ from the one that made them (CPU model, thread count, library
versions), so this is a real cross-machine test: the integer latent must be reproduced
exactly, by default and with ONNX Runtime and BLAS at 1, 2 and 3 threads and every graph
optimisation level; the decoded pixels must be within the stated tolerance of the stored
references (the synthesis transform is float arithmetic). The files of the current model
were written by the torch path (crdr 0.2), so this is also a cross-engine test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import HAVE_TORCH

from crdr_codec.weights_search import default_weights_file

GOLDEN = Path(__file__).parent / "golden"
EXPECTED = json.loads((GOLDEN / "expected.json").read_text())
#: Decoded pixels may differ from the reference by at most this many levels anywhere,
#: and by this mean absolute difference.
MAX_LEVELS, MAX_MEAN = 3, 0.05

pytestmark = [pytest.mark.weights, pytest.mark.slow]


@pytest.fixture(scope="module")
def shipped():
    from crdr_codec.codec import Codec

    path = default_weights_file({})
    codec = Codec(path, device="cpu")
    if codec.model_id.hex() != EXPECTED["model_id"]:
        pytest.fail(f"the golden files were made by model {EXPECTED['model_id']}, the shipped "
                    f"weights are {codec.model_id.hex()}: run scripts/make_golden.py")
    return codec


@pytest.mark.parametrize("name", sorted(EXPECTED["files"]))
def test_golden_file_decodes_exactly(shipped, name):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    from make_golden import latent_digest

    exp = EXPECTED["files"][name]
    data = (GOLDEN / name).read_bytes()
    assert latent_digest(shipped, data) == (exp["latent_sha256"], exp["check"])
    for beta, png in exp["decodes"].items():
        ref = np.asarray(Image.open(GOLDEN / png)).astype(np.int16)
        got = shipped.decode(data, float(beta)).astype(np.int16)
        diff = np.abs(got - ref)
        assert got.shape == ref.shape
        assert diff.max() <= MAX_LEVELS and diff.mean() <= MAX_MEAN, (beta, diff.max(), diff.mean())


_WORKER = textwrap.dedent("""
    import json, sys
    import onnxruntime as ort
    sys.path.insert(0, sys.argv[3])
    from make_golden import latent_digest
    from crdr_codec.codec import Codec
    from crdr_codec.runtime import model as rt
    from pathlib import Path
    rt.GRAPH_OPTIMIZATION = getattr(ort.GraphOptimizationLevel, sys.argv[4])
    codec = Codec(None, device="cpu", threads=int(sys.argv[1]))
    g = Path(sys.argv[2])
    files = sorted(json.loads((g / "expected.json").read_text())["files"])
    print(json.dumps({n: list(latent_digest(codec, (g / n).read_bytes())) for n in files}))
    print(json.dumps({n: codec.decode((g / n).read_bytes(), 3.84).tolist() for n in files[:1]}))
""")


@pytest.mark.parametrize("threads,level", [(1, "ORT_DISABLE_ALL"), (2, "ORT_ENABLE_BASIC"),
                                           (3, "ORT_ENABLE_ALL")])
def test_golden_latents_under_other_threads_and_graph_levels(shipped, threads, level):
    """Symbols and latents exact, pixels within tolerance, with ONNX Runtime's and the BLAS
    library's thread counts and the graph optimisation level changed."""
    scripts = Path(__file__).resolve().parent.parent / "scripts"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", _WORKER, str(threads), str(GOLDEN), str(scripts), level],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    got = json.loads(lines[0])
    for name, exp in EXPECTED["files"].items():
        assert got[name] == [exp["latent_sha256"], exp["check"]], name
    for name, rgb in json.loads(lines[1]).items():
        ref = np.asarray(Image.open(GOLDEN / EXPECTED["files"][name]["decodes"]["3.84"])).astype(np.int16)
        diff = np.abs(np.asarray(rgb, np.int16) - ref)
        assert diff.max() <= MAX_LEVELS and diff.mean() <= MAX_MEAN, (name, diff.max(), diff.mean())


#: Golden sets of earlier shipped models, kept in tests/golden/<model id>/ (make_golden.py)
EARLIER = sorted(p.parent for p in GOLDEN.glob("*/expected.json"))


@pytest.mark.parametrize("folder", EARLIER, ids=[p.name for p in EARLIER])
def test_files_of_earlier_shipped_models_still_decode(folder, tmp_path):
    """A user's files outlive a model update: a plain `crdr decode` (no --weights) finds the
    earlier model in weights/ by the id in the header and decodes to the stored reference."""
    from crdr_codec.codec import Codec
    from crdr_codec.weights_search import WeightsSearch

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    from make_golden import latent_digest

    exp = json.loads((folder / "expected.json").read_text())
    assert folder.name == exp["model_id"] != EXPECTED["model_id"]
    if not HAVE_TORCH:  # earlier models ship as torch weights, exported on first use
        pytest.skip("needs torch to export the earlier model's weights file")
    _, fp, path = WeightsSearch(None).find(bytes.fromhex(exp["model_id"]))
    earlier = Codec(path, device="cpu")
    for name, entry in exp["files"].items():
        data = (folder / name).read_bytes()
        assert latent_digest(earlier, data) == (entry["latent_sha256"], entry["check"]), name
        for beta, png in entry["decodes"].items():
            out = tmp_path / f"{name}_{beta}.png"
            r = subprocess.run([sys.executable, "-m", "crdr_codec", "decode", str(folder / name),
                                str(out), "--beta", beta], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            ref = np.asarray(Image.open(folder / png)).astype(np.int16)
            diff = np.abs(np.asarray(Image.open(out)).astype(np.int16) - ref)
            assert diff.max() <= MAX_LEVELS and diff.mean() <= MAX_MEAN, (name, beta)
