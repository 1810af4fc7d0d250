"""The shipped model (``deblur/weights/lbag_twin_cpu.pt``) is what the README says it is, and it
restores: scored against the twin's ground truth on a held-out scene it never saw.

The floors here are well below what ``benchmarks/recipe_eval.py`` measures (README, "The shipped
model"); they catch a model that has collapsed to its input or a file that does not belong to
the recipe, not a small regression.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deblur.config import load_config
from deblur.data import to_float01
from deblur.infer import deblur_image, load_checkpoint
from deblur.metrics import evaluate_pair, mask_iou
from hardware_sim.training_data import TwinPairDataset

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "deblur" / "weights" / "lbag_twin_cpu.pt"
RECIPE = REPO / "configs" / "lbag_cpu.yaml"


@pytest.fixture(scope="module")
def shipped():
    return load_checkpoint(SHIPPED, "cpu")


def test_the_shipped_model_is_the_recipes(shipped):
    model, meta = shipped
    assert SHIPPED.stat().st_size <= 25 * 1024 * 1024
    recipe = load_config(RECIPE)
    assert meta["model_name"] == recipe.model == "lbag"
    assert meta["model_kwargs"] == recipe.model_kwargs
    assert meta["sharp_timing"] == recipe.data.sharp_timing == "centre"
    assert meta["step"] == recipe.total_steps
    trained = meta["config"]
    assert {k: trained[k] for k in ("patch_size", "batch_size", "lr", "lr_schedule", "total_steps")} == {
        k: getattr(recipe, k) for k in ("patch_size", "batch_size", "lr", "lr_schedule", "total_steps")}
    assert trained["data"]["exclude_assets"] == ["pedestrian"]


def test_the_shipped_model_restores_a_held_out_scene(shipped):
    """The pedestrian never appears in training: a scene-disjoint pair at the recipe's size."""
    model, _ = shipped
    recipe = load_config(RECIPE).data
    pair = TwinPairDataset(["pedestrian"], recipe.width, recipe.height, [100], 1,
                           sharp_timing=recipe.sharp_timing)
    blur, sharp, mask, _ = pair.load_arrays(0)
    blur, sharp = to_float01(blur), to_float01(sharp)
    pred, gate = deblur_image(model, blur, "cpu")
    before = evaluate_pair(blur, sharp, mask, aligned=False)
    after = evaluate_pair(pred, sharp, mask, aligned=False)
    assert after["PSNRw"] > before["PSNRw"] + 0.5, (before, after)
    assert after["SSIMw"] > before["SSIMw"], (before, after)
    assert after["PSNR"] > before["PSNR"] - 0.5, (before, after)  # the static scene is kept
    assert mask_iou(gate, mask) > 0.0
