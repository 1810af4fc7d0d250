"""``reloblur demo`` (what ``make demo`` runs), end to end through a live service on the
simulated rig (configs/rigs/twin.yaml, 1076×718) with one pair and a random-init 1-ResBlock
LBAG: every job succeeds, the metrics table covers the captured pair, the outputs it points to
exist, and a second run resumes."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from api.cli import app
from api.cli.demo import run_demo
from core.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_the_main_job_through_the_api(tmp_path: Path):
    from deblur.infer import random_init_checkpoint

    ckpt = random_init_checkpoint("lbag", tmp_path / "lbag.pt", seed=0, num_res=1)
    settings = Settings(data_dir=tmp_path / "var", database_url=None, rigs_dir=REPO / "configs" / "rigs",
                        device="cpu", dask_workers=1)
    lines: list[str] = []
    out = run_demo(settings, ckpt, scene="demo-test", pairs=1, echo=lines.append)
    text = "\n".join(lines)
    for step in ("lightbox", "capture", "postprocess", "export", "deblur"):
        assert f"[{step}] job" in text and "succeeded" in text
    names = [row["name"] for row in out["table"]]
    assert names[0] == "blurred input (mean)" and names[-1] == "LBAG (mean)"
    assert len(names) == 2 + 1  # the floor, the pair, the mean
    for row in out["table"]:
        assert 0 < row["PSNR"] < 100 and 0 < row["SSIM"] <= 1
        assert row["PSNRw"] is not None  # the masks the pipeline made are not empty
    montage = cv2.imread(str(out["montage"]))
    assert montage.shape == (2 * 718, 3 * 1076, 3)
    assert len(list(out["deblurred"].rglob("*_deblurred.png"))) == 1
    assert len(list((out["export"] / "masks" / "test").rglob("*.png"))) == 1
    assert "lightbox" in text and text.count("[lightbox] job") >= 1
    # a second demo resumes: the capture stores nothing new and the table is the same
    first_run = len(lines)
    again = run_demo(settings, ckpt, scene="demo-test", pairs=1, echo=lines.append)
    assert [r["name"] for r in again["table"]] == names
    assert again["table"][-1]["PSNR"] == pytest.approx(out["table"][-1]["PSNR"])
    second = "\n".join(lines[first_run:])
    assert "[capture] job" in second and "succeeded" in second
    assert "[lightbox] job" not in second  # the rig already has its lightbox frames


def test_demo_cli_refuses_a_missing_checkpoint(tmp_path: Path):
    result = CliRunner().invoke(app, ["demo", "--checkpoint", str(tmp_path / "none.pt")])
    assert result.exit_code == 2
    assert "no checkpoint file" in result.output
    get_settings.cache_clear()
