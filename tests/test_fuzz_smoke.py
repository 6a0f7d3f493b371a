"""A short run of the fuzzer (fuzz/decode.py) on both models, as CI's fuzz smoke: a fixed
number of inputs from the seeds, no finding. Needs atheris (skipped without it); the
long campaigns are described in fuzz/README.md.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                       reason="atheris is not installed (pip install atheris)"),
]


@pytest.mark.parametrize("model, runs", [("tiny", 3000), ("lite", 300)])
def test_fuzz_smoke(tmp_path, model, runs):
    golden = tmp_path / "golden"
    subprocess.run([sys.executable, str(ROOT / "fuzz" / "make_seeds.py"), str(golden),
                    "--golden"], check=True, capture_output=True, timeout=120)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    cmd = [sys.executable, str(ROOT / "fuzz" / "decode.py"), "--model", model, str(corpus),
           str(ROOT / "fuzz" / "seeds"), str(golden), f"-runs={runs}", "-seed=1",
           "-rss_limit_mb=0", "-timeout=10", f"-artifact_prefix={tmp_path}/"]
    # libFuzzer's -rss_limit_mb reads the peak RSS, which the fuzzer inherits from this
    # (possibly large) pytest process through exec: the harness checks its current RSS
    env = {**os.environ, "CRDR_FUZZ_RSS_MB": "2048"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    log = res.stdout + res.stderr
    findings = sorted(p.name for p in tmp_path.iterdir()
                      if p.name.startswith(("crash-", "timeout-", "oom-", "leak-")))
    assert res.returncode == 0 and not findings, f"{findings}\n{log[-6000:]}"
    assert f"Done {runs} runs" in log, log[-3000:]
