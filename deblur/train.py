"""LBAG / MIMO-UNet training: one YAML file per experiment (``configs/*.yaml``).

``train(config, resume=False)`` runs Adam with the learning rate halved every
``lr_halving_steps`` steps (or, with ``lr_schedule: cosine``, a warm-up and a cosine decay to
the end of the run: :func:`lr_factor`) (the released schedule: 1e-4, halved every 100k steps, 300k steps,
batch 12 of 256² BAPC patches). On CUDA the forward pass runs under bf16 autocast (``amp:
bf16``) with channels_last tensors; on CPU it is fp32 unless ``cpu_amp`` asks for bf16 (about
twice as fast on a CPU with native bf16: :mod:`deblur.precision`). The loss
(:class:`deblur.losses.LBAGLoss`) is computed in fp32; models without gates (MIMO-UNet,
``lbag_no_gate``) simply get no gate term.

Files under ``out_dir``:

- ``config.yaml``: the resolved configuration;
- ``checkpoints/step_<step>.pt``: model, optimiser, scheduler, step, Python/numpy/torch(/CUDA)
  RNG states and the config, written atomically (temporary file + rename); the newest
  ``keep_checkpoints`` are kept. They load with :func:`deblur.infer.load_checkpoint`;
- ``train_log.csv``: step, total loss, every loss term, lr, it/s, elapsed seconds (every
  ``log_every`` steps), and the same scalars in TensorBoard (``tb/``);
- ``val.csv`` and ``val/step_<step>/``: full-image validation every ``val_every`` steps on
  ``val_images`` images: mean PSNR/SSIM/PSNRw/SSIMw(/PSNRa), the same metrics of the blurred
  inputs (``input_*``, the floor: a model that outputs its input scores exactly that), the
  predicted mask's IoU against the true mask (``maskIoU``, gate ≥ 0.5; gated models), the
  deblurred images and the predicted mask (the LBAG gate, ``round(255·gate)``). Each
  validation also prints one line with every metric against the input's
  (:func:`gain_line`), and the progress bar shows the PSNRw gain (``dPSNRw``), so a user sees
  at once whether the model learns.

Exact resume: batches are drawn by :class:`deblur.data.StepBatchSampler` from (seed, step)
alone, and every RNG state is restored, so resuming from a checkpoint gives bit-identical
subsequent losses on CPU (on CUDA up to the non-determinism of cuDNN kernels unless
``deterministic: true``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from core.filestore import atomic_write_text
from deblur.archs import build_model, model_output
from deblur.config import (
    ConfigError,
    RunExistsError,
    TrainConfig,
    load_config,
)
from deblur.data import (
    PatchDataset,
    StepBatchSampler,
    make_loader,
    training_datasets,
)
from deblur.infer import (
    InferenceError,
    resolve_device,
)
from deblur.losses import LBAGLoss
from deblur.metrics import METRIC_KEYS
from deblur.precision import BF16_CPU_FLAGS, cpu_bf16_flag
from deblur.train_state import find_checkpoints, load_latest, save_checkpoint, set_rng_state
from deblur.validation import gain_line, input_floor, validate

__all__ = [
    "TrainingError",
    "find_checkpoints",
    "gain_line",
    "input_floor",
    "train",
    "training_step",
    "validate",
]


class TrainingError(RuntimeError):
    """Training cannot continue (e.g. the loss became non-finite)."""


# ------------------------------------------------------------------------------------ steps


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """The learning rate at ``step`` (0-based) as a fraction of ``cfg.lr``.

    ``lr_schedule: step`` (the released schedule): halved every ``lr_halving_steps``.
    ``cosine`` (for short runs, where a halving every 100k steps is a constant rate): a linear
    warm-up over ``warmup_steps``, then a cosine from 1 down to ``lr_final_ratio`` at
    ``total_steps``. Both apply the warm-up when it is set."""
    warm = cfg.warmup_steps
    ramp = min(1.0, (step + 1) / warm) if warm > 0 else 1.0
    if cfg.lr_schedule == "step":
        return ramp * 0.5 ** (step // cfg.lr_halving_steps)
    span = max(1, cfg.total_steps - warm)
    t = min(1.0, max(0, step - warm) / span)
    final = cfg.lr_final_ratio
    return ramp * (final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * t)))


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig):
    """The learning-rate scheduler of :func:`lr_factor` (stepped once per optimiser step)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg))


def training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LBAGLoss,
    batch: dict[str, Any],
    device: torch.device,
    amp: bool = False,
    channels_last: bool = False,
    grad_clip_norm: float | None = None,
) -> tuple[float, dict[str, float]]:
    """One optimiser step on a batch (``blur``/``sharp`` ``N×3×h×w``, ``mask`` ``N×1×h×w``,
    [0, 1]) → ``(total loss, {term: value})``. ``amp``: bf16 autocast on the forward pass
    (CUDA); the loss is computed in fp32."""
    model.train()
    nb = device.type == "cuda"
    blur = batch["blur"].to(device, non_blocking=nb)
    sharp = batch["sharp"].to(device, non_blocking=nb)
    mask = batch["mask"].to(device, non_blocking=nb)
    if channels_last:
        blur = blur.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(blur)
    outputs, gates = model_output(out)
    outputs = [o.float() for o in outputs]
    gates = None if gates is None else [g.float() for g in gates]
    total, terms = loss_fn(outputs, sharp, gates=gates, mask=mask if gates else None)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    if grad_clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
    optimizer.step()
    return float(total.detach()), {k: float(v) for k, v in terms.items()}


def _datasets(cfg: TrainConfig):
    """(training dataset, validation dataset or ``None``) of ``cfg.data.source``."""
    d = cfg.data
    train_ds = training_datasets(d.source, d, "train", cfg.seed)
    val_ds = None
    if cfg.val_every > 0 and cfg.val_images > 0:
        val_ds = training_datasets(d.source, d, "val", cfg.seed)
    return train_ds, val_ds






def _prepare_csv(path: Path, start_step: int) -> None:
    """Drop rows logged after ``start_step`` (a run that died after its last checkpoint)."""
    if not path.exists():
        return
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    kept = [r for r in body if r and int(r[0]) <= start_step]
    if len(kept) != len(body):
        buf = io.StringIO(newline="")
        w = csv.writer(buf)
        w.writerow(header)
        w.writerows(kept)
        atomic_write_text(path, buf.getvalue())


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    """Append one row to a log (a log grows by whole lines: appended in place, not replaced)."""
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


# ------------------------------------------------------------------------------------ train

_RUN_DIRS = ("checkpoints", "tb", "val")
_RUN_FILES = ("train_log.csv", "val.csv", "config.yaml")


def train(
    config: TrainConfig | Path | str,
    resume: bool = False,
    progress: bool = True,
    stop_at_step: int | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train as ``config`` says (a :class:`TrainConfig` or a YAML path).

    ``resume``: continue from the newest readable checkpoint in ``out_dir`` (a fresh start if
    there is none); without it an ``out_dir`` holding checkpoints raises
    :class:`RunExistsError` unless ``overwrite``, which first deletes what a run writes there
    (``checkpoints/``, ``tb/``, ``val/``, ``train_log.csv``, ``val.csv``, ``config.yaml``; nothing
    else). ``stop_at_step``: stop (with a checkpoint) once this step is done,
    as a graceful interruption. Returns ``{"out_dir", "start_step", "step", "losses" (total loss
    of every step run in this call), "last_terms", "last_checkpoint", "val" (last mean
    validation metrics or None), "val_input" (the blurred inputs' metrics or None), "device",
    "precision" ("bf16" or "fp32", of the forward pass), "seconds"}``.
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    cfg = config if isinstance(config, TrainConfig) else load_config(config)
    try:
        device = resolve_device(cfg.device)
    except InferenceError as exc:
        raise ConfigError(f"device: {exc}") from None
    cuda = device.type == "cuda"
    use_amp = cuda and cfg.amp == "bf16"
    if not cuda and cfg.cpu_amp != "none":
        flag = cpu_bf16_flag()
        if flag is None and cfg.cpu_amp == "bf16":
            raise ConfigError(
                "cpu_amp: bf16 needs a CPU with native bf16 (one of the flags "
                f"{', '.join(BF16_CPU_FLAGS)}) and oneDNN; this one has neither: use auto or none"
            )
        use_amp = flag is not None
    channels_last = cuda and cfg.channels_last
    out_dir = Path(cfg.out_dir)
    ckpt_dir = out_dir / "checkpoints"
    if overwrite and not resume:
        for name in _RUN_DIRS:
            shutil.rmtree(out_dir / name, ignore_errors=True)
        for name in _RUN_FILES:
            (out_dir / name).unlink(missing_ok=True)
    if not resume and find_checkpoints(out_dir):
        raise RunExistsError(
            f"out_dir {out_dir} already holds checkpoints; resume, overwrite, or choose another out_dir"
        )
    out_dir.mkdir(parents=True, exist_ok=True)

    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    torch.manual_seed(cfg.seed)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by cuBLAS
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif cuda:
        torch.backends.cudnn.benchmark = True

    try:
        model = build_model(cfg.model, **cfg.model_kwargs)
    except TypeError as exc:
        raise ConfigError(f"model_kwargs: {exc}") from None
    model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = make_scheduler(optimizer, cfg)
    loss_fn = LBAGLoss(cfg.loss_config())

    start_step = 0
    rng_state = None
    if resume:
        found = load_latest(out_dir)
        if found is not None:
            ckpt, path = found
            saved = ckpt.get("config") or {}
            for key in ("model", "model_kwargs"):
                if key in saved and saved[key] != cfg.model_dump(mode="json")[key]:
                    raise ConfigError(
                        f"{key}: the checkpoint {path} was trained with {saved[key]!r}, the config says "
                        f"{getattr(cfg, key)!r}"
                    )
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            start_step = int(ckpt["step"])
            rng_state = ckpt["rng"]
    atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))

    end_step = cfg.total_steps if stop_at_step is None else min(cfg.total_steps, stop_at_step)
    train_ds, val_ds = _datasets(cfg)
    patches = PatchDataset(train_ds, cfg.patch_size, cfg.p_blur, cfg.flips, colour_permute=cfg.colour_permute)
    sampler = StepBatchSampler(len(train_ds), cfg.batch_size, cfg.seed, start_step, end_step)
    loader = make_loader(patches, batch_sampler=sampler, num_workers=cfg.num_workers, seed=cfg.seed + start_step)

    log_csv = out_dir / "train_log.csv"
    val_csv = out_dir / "val.csv"
    _prepare_csv(log_csv, start_step)
    _prepare_csv(val_csv, start_step)
    writer = SummaryWriter(str(out_dir / "tb"), purge_step=start_step)
    if rng_state is not None:
        set_rng_state(rng_state)

    step = start_step
    losses: list[float] = []
    terms: dict[str, float] = {}
    last_ckpt: Path | None = None
    last_val: dict[str, float | None] | None = None
    t_start = t_log = time.perf_counter()
    step_log = step
    val_dtype = "bf16" if use_amp and cuda else "fp32"
    floor = input_floor(val_ds, cfg.val_images, cfg.val_psnra) if val_ds is not None else None
    try:
        with tqdm(total=end_step, initial=start_step, desc=cfg.name, unit="step", disable=not progress) as bar:
            for batch in loader:
                lr = optimizer.param_groups[0]["lr"]
                total, terms = training_step(
                    model, optimizer, loss_fn, batch, device, use_amp, channels_last, cfg.grad_clip_norm
                )
                scheduler.step()
                step += 1
                if not math.isfinite(total):
                    raise TrainingError(f"loss is {total} at step {step} (terms {terms})")
                losses.append(total)
                bar.update()
                if step % cfg.log_every == 0 or step == end_step:
                    now = time.perf_counter()
                    its = (step - step_log) / max(now - t_log, 1e-9)
                    t_log, step_log = now, step
                    row = {"step": step, "loss": total, **terms, "lr": lr, "it_per_s": its,
                           "elapsed_s": now - t_start}
                    _append_csv(log_csv, row)
                    writer.add_scalar("train/loss", total, step)
                    for k, v in terms.items():
                        writer.add_scalar(f"train/{k}", v, step)
                    writer.add_scalar("train/lr", lr, step)
                    writer.add_scalar("train/it_per_s", its, step)
                    bar.set_postfix(loss=f"{total:.4f}", lr=f"{lr:.2e}")
                if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step == end_step:
                    last_ckpt = save_checkpoint(
                        ckpt_dir / f"step_{step:07d}.pt", model, optimizer, scheduler, step, cfg
                    )
                    for old in find_checkpoints(out_dir)[: -cfg.keep_checkpoints]:
                        old.unlink(missing_ok=True)
                if val_ds is not None and (step % cfg.val_every == 0 or step == cfg.total_steps):
                    mean, rows = validate(
                        model, val_ds, cfg.val_images, device, out_dir / "val" / f"step_{step:07d}",
                        val_dtype, cfg.val_tile, cfg.val_psnra,
                    )
                    last_val = mean
                    _append_csv(val_csv, {
                        "step": step, **{k: mean.get(k) for k in METRIC_KEYS},
                        **{f"input_{k}": floor.get(k) for k in METRIC_KEYS},
                        "maskIoU": mean.get("maskIoU"),
                    })
                    bar.write(gain_line(step, mean, floor))
                    if mean.get("PSNRw") is not None and floor.get("PSNRw") is not None:
                        bar.set_postfix(loss=f"{total:.4f}", lr=f"{lr:.2e}",
                                        dPSNRw=f"{mean['PSNRw'] - floor['PSNRw']:+.2f}")
                    atomic_write_text(
                        out_dir / "val" / f"step_{step:07d}" / "metrics.json",
                        json.dumps({"step": step, "mean": mean, "input": floor, "images": rows}, indent=2),
                    )
                    for k in METRIC_KEYS:
                        if mean.get(k) is not None:
                            writer.add_scalar(f"val/{k}", mean[k], step)
    finally:
        writer.close()
    return {
        "out_dir": out_dir,
        "start_step": start_step,
        "step": step,
        "losses": losses,
        "last_terms": terms,
        "last_checkpoint": last_ckpt,
        "val": last_val,
        "val_input": floor,
        "device": str(device),
        "precision": "bf16" if use_amp else "fp32",
        "seconds": time.perf_counter() - t_start,
    }
