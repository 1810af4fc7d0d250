"""benchmarks/recipe_eval.py and benchmarks/real_photos.py keep working: tiny runs with an
untrained model write their tables and pictures."""

from __future__ import annotations

import csv
import importlib.util
import json
import statistics
from pathlib import Path

import cv2
import numpy as np
import pytest

from deblur.infer import random_init_checkpoint

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO.parent / "shared" / "data" / "reloblur-samples"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_dir(path: Path) -> Path:
    path.mkdir()
    rows = [{"step": s, "PSNRw": 20 + s / 100, "input_PSNRw": 20.0} for s in (100, 200, 300)]
    with (path / "val.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with (path / "train_log.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["step", "it_per_s"])
        w.writeheader()
        w.writerows([{"step": s, "it_per_s": v} for s, v in ((50, 1.0), (100, 2.0), (150, 3.0))])
    return path


def test_recipe_eval_scores_both_held_out_sets(tmp_path):
    ckpt = random_init_checkpoint("lbag", tmp_path / "m.pt", num_res=1)
    out = tmp_path / "eval"
    assert _script("recipe_eval").main([
        "--checkpoint", str(ckpt), "--run-dir", str(_run_dir(tmp_path / "run")), "--width", "128",
        "--height", "96", "--pedestrian-seeds", "1", "--random-seeds", "1", "--out", str(out)]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert set(doc["sets"]) == {"pedestrian", "held-out random"}
    for s in doc["sets"].values():
        assert s["gain"]["PSNRw"] == pytest.approx(s["model"]["PSNRw"] - s["input"]["PSNRw"])
        assert 0.0 <= s["model"]["maskIoU"] <= 1.0
    assert doc["training"]["median_it_per_s"] == 2.0
    assert doc["training"]["last_val_gain_PSNRw"] == pytest.approx(3.0)
    assert cv2.imread(str(out / "learning_curve.png")) is not None
    sheet = cv2.imread(str(out / "pedestrian_before_after.png"))
    assert sheet.shape[1] == pytest.approx(5 * 128 * 0.4, abs=2)  # 5 panels at 0.4×
    assert "| gain |" in (out / "table.md").read_text()


def test_recipe_eval_scores_noisy_sets_and_a_reloblur_export(tmp_path):
    """``--noise-sigma`` scores noisy inputs (a lower floor than the clean set's);
    ``--reloblur-root`` adds the export's test split (here a tiny twin export)."""
    from hardware_sim.training_data import export_twin_dataset

    export_twin_dataset(tmp_path / "export", presets=["ball", "car"], n_scenes=1, pairs=1, width=128, height=96)
    ckpt = random_init_checkpoint("lbag", tmp_path / "m.pt", num_res=1)
    common = ["--checkpoint", str(ckpt), "--width", "128", "--height", "96", "--pedestrian-seeds", "1",
              "--random-seeds", "1", "--pairs", "2"]
    script = _script("recipe_eval")
    assert script.main([*common, "--out", str(tmp_path / "clean")]) == 0
    assert script.main([*common, "--noise-sigma", "0.02", "--reloblur-root", str(tmp_path / "export"),
                        "--out", str(tmp_path / "noisy")]) == 0
    clean = json.loads((tmp_path / "clean" / "results.json").read_text())["sets"]
    noisy = json.loads((tmp_path / "noisy" / "results.json").read_text())["sets"]
    for s in noisy.values():
        floor = [r["PSNRw"] for r in s["input_images"]]
        model = [r["PSNRw"] for r in s["images"]]
        if len(floor) > 1:
            gains = [m - f for f, m in zip(floor, model, strict=True)]
            assert s["gain_se"]["PSNRw"] == pytest.approx(statistics.stdev(gains) / len(gains) ** 0.5)
        else:
            assert s["gain_se"]["PSNRw"] is None
    assert set(noisy) == {"pedestrian (noise σ 0.02)", "held-out random (noise σ 0.02)", "export test split"}
    assert noisy["pedestrian (noise σ 0.02)"]["input"]["PSNR"] < clean["pedestrian"]["input"]["PSNR"] - 1.0
    export = noisy["export test split"]
    assert export["pairs"] == 1 and export["images"][0]["name"].startswith("car_s0/")
    assert (tmp_path / "noisy" / "export_test_split_before_after.png").is_file()


def test_mask_geometry_reports_share_box_and_centroid():
    mask = np.zeros((100, 200), bool)
    mask[10:30, 50:150] = True
    geo = _script("real_photos").mask_geometry(mask)
    assert geo["mask %"] == pytest.approx(10.0)
    assert geo["bbox (x0,y0,x1,y1)"] == "0.25,0.10,0.75,0.30"
    assert geo["centroid (x,y)"] == "0.50,0.20"
    assert _script("real_photos").mask_geometry(np.zeros((4, 4), bool))["mask %"] == 0.0


def test_real_photos_writes_pictures(tmp_path):
    if not SAMPLES.is_dir():
        pytest.skip(f"the real ReLoBlur samples are not at {SAMPLES}")
    samples = tmp_path / "one"
    samples.mkdir()
    (samples / "s12_02_73_blur.png").symlink_to(SAMPLES / "s12_02_73_blur.png")
    ckpt = random_init_checkpoint("lbag", tmp_path / "m.pt", num_res=1)
    out = tmp_path / "photos"
    assert _script("real_photos").main(["--checkpoint", str(ckpt), "--samples", str(samples),
                                         "--scale", "0.25", "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {f"s12_02_73_blur_{k}.png" for k in ("before_after", "mask", "overlay")}
    mask = cv2.imread(str(out / "s12_02_73_blur_mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (360, 536)  # 2152×1436 at 0.25 (538×359), to multiples of 4
