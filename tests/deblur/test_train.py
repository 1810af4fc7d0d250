"""Training: tiny CPU runs, logs, atomic checkpoints, exact resume, configs, CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from deblur.archs import build_model
from deblur.config import ConfigError, RunExistsError, TrainConfig, load_config, parse_config
from deblur.infer import atomic_torch_save, load_checkpoint
from deblur.losses import LBAGLoss
from deblur.train import (
    find_checkpoints,
    gain_line,
    input_floor,
    lr_factor,
    make_scheduler,
    train,
    training_step,
)
from hardware_sim.training_data import TwinPairDataset, export_twin_dataset

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
TINY = CONFIGS / "tiny_twin.yaml"


def tiny(tmp_path: Path, **overrides) -> TrainConfig:
    """configs/tiny_twin.yaml made smaller still: 96×64 twin images, 48² patches."""
    base = {"out_dir": str(tmp_path / "run"), "patch_size": 48, "total_steps": 4,
            "checkpoint_every": 2, "val_every": 2, "val_images": 1}
    cfg = load_config(TINY, {**base, **overrides})
    cfg.data.width, cfg.data.height, cfg.data.pairs_per_scene = 96, 64, 2
    return cfg


def test_tiny_config_runs_and_logs(tmp_path):
    cfg = tiny(tmp_path)
    result = train(cfg, progress=False)
    out = Path(result["out_dir"])
    assert result["step"] == 4 and len(result["losses"]) == 4
    assert all(np.isfinite(result["losses"]))
    assert result["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    # checkpoints (atomic: no temporary file left), pruned to keep_checkpoints
    ckpts = find_checkpoints(out)
    assert [p.name for p in ckpts] == ["step_0000002.pt", "step_0000004.pt"]
    assert not [p for p in (out / "checkpoints").iterdir() if p.suffix == ".tmp"]
    model, meta = load_checkpoint(ckpts[-1], "cpu")
    assert meta["step"] == 4 and meta["model_name"] == "lbag" and meta["gated"]
    # CSV log: every step, loss terms with the gate term, lr, it/s
    with (out / "train_log.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert {"loss", "l1/s2", "fft/s2", "ssim/s2", "gate/s2", "lr", "it_per_s"} <= set(rows[0])
    assert float(rows[0]["lr"]) == pytest.approx(5e-4)
    assert float(rows[0]["loss"]) == pytest.approx(result["losses"][0])
    assert list((out / "tb").glob("events.out.tfevents.*"))
    # validation on full images, with the predicted (gate) mask saved
    with (out / "val.csv").open() as fh:
        val = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in val] == [2, 4] and float(val[-1]["PSNR"]) > 10
    # ... against the blurred input's own metrics (the floor), in the CSV and the result
    val_ds = TwinPairDataset(cfg.data.val_presets, cfg.data.width, cfg.data.height,
                             cfg.data.val_seeds, cfg.data.val_pairs)
    floor = input_floor(val_ds, 1)
    assert result["val_input"] == floor
    assert float(val[-1]["input_PSNRw"]) == pytest.approx(floor["PSNRw"])
    line = gain_line(4, result["val"], floor)
    gain = result["val"]["PSNRw"] - floor["PSNRw"]
    assert f"PSNRw {result['val']['PSNRw']:.2f} (input {floor['PSNRw']:.2f}, {gain:+.2f})" in line
    masks = list((out / "val" / "step_0000004").glob("*_mask.png"))
    assert len(masks) == 1
    assert (out / "config.yaml").is_file()
    with pytest.raises(RunExistsError, match="resume"):
        train(cfg, progress=False)


def test_resume_gives_identical_losses(tmp_path):
    """CPU: bit-identical (cuDNN kernels need not be deterministic)."""
    full = train(tiny(tmp_path / "a", val_every=0, device="cpu"), progress=False)
    cfg_b = tiny(tmp_path / "b", val_every=0, device="cpu")
    first = train(cfg_b, progress=False, stop_at_step=2)
    assert first["step"] == 2 and first["losses"] == full["losses"][:2]
    resumed = train(cfg_b, resume=True, progress=False)
    assert resumed["start_step"] == 2 and resumed["step"] == 4
    assert resumed["losses"] == full["losses"][2:]  # bit-identical
    a = torch.load(full["last_checkpoint"], weights_only=True)["model"]
    b = torch.load(resumed["last_checkpoint"], weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with (Path(cfg_b.out_dir) / "train_log.csv").open() as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == [1, 2, 3, 4]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_training_bf16_channels_last(tmp_path):
    cfg = tiny(tmp_path, device="cuda", total_steps=2, val_every=2)
    assert cfg.amp == "bf16" and cfg.channels_last
    result = train(cfg, progress=False)
    assert result["device"].startswith("cuda") and all(np.isfinite(result["losses"]))
    assert result["val"]["PSNR"] > 10
    resumed = train(tiny(tmp_path, device="cuda", total_steps=3, val_every=0), resume=True, progress=False)
    assert resumed["start_step"] == 2 and resumed["step"] == 3


def test_overfit_fixed_batch_loss_decreases():
    torch.manual_seed(0)
    model = build_model("lbag", num_res=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    sharp = torch.rand(2, 3, 12, 12, generator=g)
    sharp = torch.nn.functional.interpolate(sharp, size=(48, 48), mode="bilinear", align_corners=False)
    blur = torch.nn.functional.avg_pool2d(sharp, 9, 1, 4, count_include_pad=False)
    mask = torch.zeros(2, 1, 48, 48)
    mask[:, :, 12:36, 12:36] = 1
    batch = {"blur": blur, "sharp": sharp, "mask": mask}
    losses = [training_step(model, opt, LBAGLoss(), batch, torch.device("cpu"))[0] for _ in range(8)]
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert np.mean(losses[-3:]) < 0.95 * np.mean(losses[:3])


def test_non_gated_model_has_no_gate_term():
    torch.manual_seed(0)
    model = build_model("mimo_unet", num_res=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = {"blur": torch.rand(1, 3, 48, 48), "sharp": torch.rand(1, 3, 48, 48),
             "mask": torch.ones(1, 1, 48, 48)}
    total, terms = training_step(model, opt, LBAGLoss(), batch, torch.device("cpu"))
    assert np.isfinite(total) and terms and not [k for k in terms if k.startswith("gate")]


def test_train_on_reloblur_layout(tmp_path):
    root = tmp_path / "data"
    export_twin_dataset(root, ("ball", "pedestrian"), 1, 2, 96, 64, test_presets=("pedestrian",))
    cfg = tiny(tmp_path, model="mimo_unet", total_steps=2, val_every=2,
               data={"source": "reloblur", "root": str(root)})
    result = train(cfg, progress=False)
    assert result["step"] == 2 and result["val"]["PSNRw"] is not None
    assert not list((Path(cfg.out_dir) / "val").rglob("*_mask.png"))  # no gate, no mask


def test_atomic_checkpoint_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    atomic_torch_save({"a": torch.ones(3)}, path)
    real_save = torch.save

    def broken(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_torch_save({"a": torch.zeros(3)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_shipped_configs_hold_the_released_values():
    names = {p.stem for p in CONFIGS.glob("*.yaml")}
    assert {"lbag", "lbag_no_gate", "lbag_no_bapc", "lbag_no_ssim", "mimo_unet", "tiny_twin"} <= names
    cfgs = {n: load_config(CONFIGS / f"{n}.yaml") for n in
            ("lbag", "lbag_no_gate", "lbag_no_bapc", "lbag_no_ssim", "mimo_unet")}
    for c in cfgs.values():
        assert (c.batch_size, c.patch_size, c.lr, c.lr_halving_steps, c.total_steps) == (
            12, 256, 1e-4, 100_000, 300_000)
        assert c.loss_config().lambda_gate == 0.1 and c.data.source == "reloblur"
    assert cfgs["lbag"].p_blur == 0.5 and cfgs["lbag_no_bapc"].p_blur == 0.0
    assert cfgs["lbag_no_ssim"].loss_config().lambda_ssim == 0.0
    assert cfgs["lbag"].loss_config().lambda_ssim == 1.0
    assert (cfgs["mimo_unet"].model, cfgs["lbag_no_gate"].model) == ("mimo_unet", "lbag_no_gate")
    assert "0.01" in (CONFIGS / "lbag.yaml").read_text()  # the paper's text value is noted


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"bogus": 1}, "bogus: unknown key"),
        ({"data": {"source": "twin", "colour": 3}}, "data.colour: unknown key"),
        ({"loss": {"lambda_gaet": 0.1}}, "lambda_gaet"),
        ({"model": "lbagg"}, "model: unknown model 'lbagg'"),
        ({"patch_size": 32}, "patch_size"),
        ({"data": {"source": "reloblur"}}, "data.root"),
        ({"amp": "fp16"}, "amp"),
        ({"cpu_amp": "fp16"}, "cpu_amp"),
        ({"data": {"source": "imagenet"}}, "data.source: unknown data source 'imagenet'; installed: reloblur, twin"),
    ],
)
def test_bad_config_is_named_error(change, named):
    data = {"data": {"source": "twin"}, **change}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert named in str(info.value)


def test_bad_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_cli_train(tmp_path):
    from api.cli import app

    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY.read_text().replace("total_steps: 20", "total_steps: 1")
                   .replace("patch_size: 64", "patch_size: 48")
                   .replace("width: 192", "width: 96").replace("height: 128", "height: 64")
                   .replace("val_every: 10", "val_every: 0"))
    runner = CliRunner()
    r = runner.invoke(app, ["train", "--config", str(cfg), "--out-dir", str(tmp_path / "o"), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "steps 0→1" in r.output and (tmp_path / "o/checkpoints/step_0000001.pt").is_file()
    args = ["train", "--config", str(cfg), "--out-dir", str(tmp_path / "o"), "--no-progress"]
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "already holds checkpoints" in r.output
    r = runner.invoke(app, [*args, "--overwrite"])
    assert r.exit_code == 0, r.output
    cfg.write_text("model: lbag\ndata: {source: twin}\nwat: 1\n")
    r = runner.invoke(app, ["train", "--config", str(cfg)])
    assert r.exit_code == 2 and "error:" in r.output and "wat" in r.output


def test_learning_rate_schedules(tmp_path):
    """step: the released halving; cosine: warm-up, then a cosine to lr_final_ratio at the end."""
    step_cfg = tiny(tmp_path, lr_halving_steps=3, total_steps=10)
    assert [lr_factor(s, step_cfg) for s in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    cos = tiny(tmp_path, lr_schedule="cosine", warmup_steps=4, total_steps=104, lr_final_ratio=0.1)
    assert [lr_factor(s, cos) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lr_factor(54, cos) == pytest.approx(0.55)  # half-way down the cosine
    assert lr_factor(104, cos) == pytest.approx(0.1) and lr_factor(500, cos) == pytest.approx(0.1)
    factors = [lr_factor(s, cos) for s in range(4, 105)]
    assert all(a >= b for a, b in zip(factors, factors[1:], strict=False))
    # the scheduler follows it, and a run logs it
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = make_scheduler(opt, cos)
    seen = []
    for _ in range(6):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([1e-3 * lr_factor(s, cos) for s in range(6)])
    result = train(tiny(tmp_path / "run", lr_schedule="cosine", warmup_steps=2, val_every=0,
                        device="cpu"), progress=False)
    with (Path(result["out_dir"]) / "train_log.csv").open() as fh:
        lrs = [float(r["lr"]) for r in csv.DictReader(fh)]
    assert lrs[:2] == pytest.approx([2.5e-4, 5e-4]) and lrs[3] < lrs[2]


def test_cpu_amp_choices(tmp_path, monkeypatch):
    """cpu_amp: ``none`` stays fp32; ``auto`` uses bf16 exactly where the CPU has native bf16;
    ``bf16`` on a CPU without it is a named error that says what to use instead."""
    import deblur.train as train_module

    cfg = tiny(tmp_path, device="cpu", val_every=0, total_steps=2)
    assert train(cfg, progress=False)["precision"] == "fp32"

    monkeypatch.setattr(train_module, "cpu_bf16_flag", lambda: None)
    auto = train(tiny(tmp_path, device="cpu", val_every=0, total_steps=2, cpu_amp="auto"),
                 progress=False, overwrite=True)
    assert auto["precision"] == "fp32"
    with pytest.raises(ConfigError, match=r"cpu_amp: bf16 needs a CPU with native bf16.*avx512_bf16"):
        train(tiny(tmp_path, device="cpu", cpu_amp="bf16"), progress=False, overwrite=True)

    monkeypatch.setattr(train_module, "cpu_bf16_flag", lambda: "avx512_bf16")
    bf16 = train(tiny(tmp_path, device="cpu", val_every=0, total_steps=2, cpu_amp="bf16"),
                 progress=False, overwrite=True)
    assert bf16["precision"] == "bf16" and all(np.isfinite(bf16["losses"]))


def test_cpu_bf16_training_step_tracks_fp32():
    """One bf16-autocast step on CPU gives the fp32 step's loss to bf16 precision (the loss
    itself is computed in fp32 from the upcast outputs)."""
    torch.manual_seed(0)
    batch = {"blur": torch.rand(2, 3, 48, 48), "sharp": torch.rand(2, 3, 48, 48),
             "mask": (torch.rand(2, 1, 48, 48) > 0.5).float()}
    losses = {}
    for amp in (False, True):
        torch.manual_seed(1)
        model = build_model("lbag", num_res=1)
        opt = torch.optim.Adam(model.parameters(), 1e-4)
        losses[amp], _ = training_step(model, opt, LBAGLoss(), batch, torch.device("cpu"), amp=amp)
    assert losses[True] == pytest.approx(losses[False], rel=2e-2)
