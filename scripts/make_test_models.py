"""Write tests/data/{tiny,other}.crdrm: the packages of the tiny test models.

The test suite runs where torch is not installed too; there these packages stand in for
the tiny models that tests/conftest.py builds from their seeds (tests/test_engines.py
checks they are up to date). Run after a change to the tiny config or to the export:

    python scripts/make_test_models.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import DATA, TINY_SEEDS, make_tiny_model  # noqa: E402
from crdr_codec.nn.export import export_package  # noqa: E402
from crdr_codec.nn.weights import model_to_record, record_fingerprint  # noqa: E402


def main() -> None:
    DATA.mkdir(exist_ok=True)
    for name, seed in sorted(TINY_SEEDS.items()):
        model = make_tiny_model(seed)
        fp = record_fingerprint(model_to_record(model, half=False))
        out = DATA / f"{name}.crdrm"
        export_package(model, fp, out)
        print(f"{out}: model {fp[:4].hex()}, {out.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
