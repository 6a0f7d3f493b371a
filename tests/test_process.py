"""Allocator tuning of the crdr command (Linux/glibc only)."""

import os
import subprocess
import sys

import pytest

CODE = "from crdr_codec.process import tune_malloc; print(tune_malloc())"


def _run(env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env,
                          check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tune_malloc_applies_on_glibc():
    assert _run({}) == "True"


def test_tune_malloc_respects_user_settings():
    assert _run({"CRDR_NO_MALLOC_TUNING": "1"}) == "False"
    assert _run({"MALLOC_MMAP_THRESHOLD_": "65536"}) == "False"
