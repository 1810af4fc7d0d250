"""benchmarks/paper_comparison.py keeps working: a 3-step smoke run of all four models writes
the Table 1 rows (the blurred input first), says that its scale is reduced, and records what
each model was."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("paper_comparison",
                                                  REPO / "benchmarks" / "paper_comparison.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_run_writes_the_table(tmp_path: Path):
    script = _script()
    assert script.main(["--quick", "--steps", "3", "--batch", "2", "--device", "cpu",
                        "--out", str(tmp_path)]) == 0
    text = (tmp_path / "table.md").read_text()
    assert "(REDUCED SCALE)" in text
    main_table, held_out_table = text.split("Held-out random scenes")
    expected = ["blurred input", "MIMO-UNet", "LBAG w/o gate", "LBAG w/o BAPC", "LBAG"]
    for table in (main_table, held_out_table):
        rows = [line.split("|")[1].strip() for line in table.splitlines()
                if line.startswith("| ") and not line.startswith("| name") and "---" not in line]
        assert rows == expected
    sheet = cv2.imread(str(tmp_path / "training_scenes.png"))
    assert sheet.shape == (3 * 128, 2 * 192, 3)  # --quick: 3 training scenes at 192×128
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["reduced"] is True
    results = doc["results"]
    assert {results[k]["config"] for k in rows[1:]} == {"mimo_unet", "lbag_no_gate",
                                                        "lbag_no_bapc", "lbag"}
    assert results["LBAG"]["num_res"] == 2 and results["MIMO-UNet"]["num_res"] == 1
    assert all(results[k]["steps"] == 3 for k in rows[1:])
    assert results["LBAG w/o gate"]["params"] < results["LBAG"]["params"]
    floor = results["blurred input"]["mean"]
    assert 10 < floor["PSNR"] < 60 and floor["PSNRw"] is not None
    # The held-out scenes are random scenes (never the pedestrian), the test scenes the pedestrian.
    assert results["LBAG"]["held_out_mean"]["PSNR"] > 10
    assert {r["name"].split("_s")[0] for r in results["LBAG"]["held_out_images"]} == {"random"}
    assert {r["name"].split("_s")[0] for r in results["LBAG"]["images"]} == {"pedestrian"}


def test_repeats_timings_and_the_recipe_scale(tmp_path: Path):
    script = _script()
    assert script.main(["--quick", "--steps", "2", "--batch", "2", "--device", "cpu",
                        "--variants", "lbag", "--repeats", "2", "--timings", "centre,start",
                        "--recipe", str(REPO / "configs" / "lbag_cpu.yaml"),
                        "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    results = doc["results"]
    assert set(results) == {"blurred input", "blurred input (start timing)", "LBAG",
                            "LBAG (start timing)"}
    for label in ("LBAG", "LBAG (start timing)"):
        r = results[label]
        assert r["seeds"] == [0, 1] and len(r["per_seed"]) == 2 and r["steps"] == 2
        values = [s["mean"]["PSNR"] for s in r["per_seed"]]
        assert r["mean"]["PSNR"] == pytest.approx(sum(values) / 2)
        assert r["spread"]["PSNR"] == pytest.approx(abs(values[0] - values[1]) / 2)
    assert results["LBAG (start timing)"]["timing"] == "start"
    assert (tmp_path / "lbag_start_s1" / "checkpoints").is_dir()
    # the recipe's training scenes (movers, blur range, noise) come with its scale
    recipe = yaml.safe_load((REPO / "configs" / "lbag_cpu.yaml").read_text())["data"]
    run_data = yaml.safe_load((tmp_path / "lbag_s0" / "config.yaml").read_text())["data"]
    for key in script.RECIPE_SCENE_KEYS:
        default = {"movers": None, "blur_b_px": [20.0, 70.0], "noise_sigma": 0.0}[key]
        assert run_data[key] == recipe.get(key, default), key
    # and so do its schedule and CPU precision (bf16 where the CPU has it)
    recipe_all = yaml.safe_load((REPO / "configs" / "lbag_cpu.yaml").read_text())
    run_all = yaml.safe_load((tmp_path / "lbag_s0" / "config.yaml").read_text())
    for key in script.RECIPE_TRAINING_KEYS:
        if key in recipe_all:
            assert run_all[key] == recipe_all[key], key
    text = (tmp_path / "table.md").read_text()
    assert " ± " in text and "cosine schedule" in text and "training seeds per model: LBAG 2, LBAG (start timing) 2" in text
    # the start-timed test data differ from the centre-timed ones in the sharp images only
    floor_c, floor_s = results["blurred input"]["mean"], results["blurred input (start timing)"]["mean"]
    assert floor_c["PSNRw"] != floor_s["PSNRw"]


def test_finished_runs_are_reused_only_under_the_same_run_key(tmp_path: Path):
    """A second invocation reuses a finished run's scores (``--no-train`` gathers them); a run
    whose training settings changed counts as not run, and is retrained without ``--no-train``."""
    script = _script()
    common = ["--quick", "--batch", "2", "--device", "cpu", "--variants", "lbag", "--out", str(tmp_path)]
    assert script.main([*common, "--steps", "2"]) == 0
    first = json.loads((tmp_path / "lbag" / "scores.json").read_text())
    assert script.main([*common, "--steps", "2", "--no-train"]) == 0
    assert json.loads((tmp_path / "lbag" / "scores.json").read_text()) == first
    assert script.main([*common, "--steps", "3", "--no-train"]) == 1  # other steps: not run yet
    assert script.main([*common, "--steps", "3"]) == 0
    again = json.loads((tmp_path / "lbag" / "scores.json").read_text())
    assert again["run_key"] != first["run_key"]
    assert json.loads((tmp_path / "results.json").read_text())["results"]["LBAG"]["steps"] == 3
