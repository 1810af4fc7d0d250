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
import dataclasses
import json
import math
import os
import random
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from torch import nn

from core.filestore import write_png
from deblur.archs import MODEL_NAMES, build_model, model_output
from deblur.data import (
    PatchDataset,
    StepBatchSampler,
    dataset_sources,
    make_loader,
    to_float01,
    training_datasets,
)
from deblur.infer import (
    CHECKPOINT_FORMAT,
    InferenceError,
    atomic_torch_save,
    deblur_image,
    resolve_device,
)
from deblur.losses import LBAGLoss, LBAGLossConfig
from deblur.metrics import METRIC_KEYS, average_metrics, evaluate_pair, mask_iou
from deblur.precision import BF16_CPU_FLAGS, cpu_bf16_flag

__all__ = [
    "ConfigError",
    "DataConfig",
    "RunExistsError",
    "TrainConfig",
    "TrainingError",
    "find_checkpoints",
    "gain_line",
    "input_floor",
    "load_config",
    "train",
    "training_step",
    "validate",
]


class ConfigError(ValueError):
    """A training configuration is invalid; the message names the key."""


class RunExistsError(ConfigError):
    """``out_dir`` already holds checkpoints and ``resume`` was not asked for."""


class TrainingError(RuntimeError):
    """Training cannot continue (e.g. the loss became non-finite)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    """Where training and validation images come from.

    ``source: reloblur``: ``root`` holds the ReLoBlur layout (``dataset/<split>/...``,
    ``masks/<split>/...``); training on ``train_split``, validation on the first
    ``val_images`` samples of ``val_split``; ``on_bad`` as :class:`deblur.data.ReLoBlurDataset`.

    ``source: twin``: :class:`hardware_sim.training_data.TwinPairDataset` pairs at ``width``×``height`` from
    ``presets`` × ``seeds`` × ``pairs_per_scene`` (optional ``noise_sigma`` on the blurred
    input); validation on ``val_presets`` × ``val_seeds`` × ``val_pairs`` (keep them disjoint
    from the training presets for a scene-disjoint validation). ``cache_pairs`` > 0 keeps that
    many rendered training pairs per data-loader worker (``28·width·height`` bytes each) instead
    of re-rendering a pair for every patch; 0 (the default) renders every time. The preset
    ``random`` is a different random scene per seed, without the assets in ``exclude_assets``
    (:func:`hardware_sim.scene_sampler.random_scene`). ``sharp_timing``: the twin's sharp frame at
    the ``centre`` of the blurred one's exposure (default) or at its ``start`` (the paper's timing).
    """

    source: str = "reloblur"
    root: Path | None = None
    train_split: str = "train"
    val_split: str = "test"
    on_bad: Literal["error", "skip"] = "error"
    presets: list[str] = Field(default_factory=lambda: ["ball", "car"])
    width: int = Field(512, ge=16, le=16384)
    height: int = Field(342, ge=16, le=16384)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2, 3])
    pairs_per_scene: int = Field(8, ge=1)
    noise_sigma: float = Field(0.0, ge=0.0, le=1.0)
    cache_pairs: int = Field(0, ge=0)
    exclude_assets: list[str] = Field(default_factory=list)
    val_presets: list[str] = Field(default_factory=lambda: ["pedestrian"])
    val_seeds: list[int] = Field(default_factory=lambda: [0])
    val_pairs: int = Field(2, ge=1)
    sharp_timing: Literal["centre", "start"] = "centre"

    @field_validator("source")
    @classmethod
    def _installed(cls, v: str) -> str:
        if v not in dataset_sources():
            raise ValueError(f"unknown data source {v!r}; installed: {', '.join(dataset_sources()) or 'none'}")
        return v

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.source == "reloblur" and self.root is None:
            raise ValueError("data.root is required when data.source is 'reloblur'")
        if self.source == "twin" and not self.presets:
            raise ValueError("data.presets must name at least one preset when data.source is 'twin'")
        return self


_LOSS_FIELDS = {f.name for f in dataclasses.fields(LBAGLossConfig)}


class TrainConfig(_Strict):
    """One training experiment; see ``configs/lbag.yaml`` for the released values.

    Unknown keys are refused (:class:`ConfigError` naming the key). ``loss`` holds
    :class:`deblur.losses.LBAGLossConfig` fields. ``p_blur``: BAPC probability (0.5 released;
    0 = "without BAPC", uniform crops). ``device``: ``auto`` | ``cpu`` | ``cuda[:i]``. ``amp``
    (``bf16``) and ``channels_last`` apply on CUDA only. ``cpu_amp``: bf16 autocast of the
    forward pass on CPU: ``none`` (default), ``bf16`` (the CPU must have native bf16, see
    :func:`deblur.precision.cpu_bf16_flag`, else :class:`ConfigError`) or ``auto`` (bf16 where
    native, fp32 elsewhere); validation stays fp32 on CPU. ``val_every`` / ``checkpoint_every``:
    0 = never (a checkpoint is always written at the last step). Relative paths (``out_dir``,
    ``data.root``) are relative to the current directory.
    """

    name: str = "lbag"
    model: str = "lbag"
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    loss: dict[str, Any] = Field(default_factory=dict)
    data: DataConfig
    patch_size: int = Field(256, ge=16)
    p_blur: float = Field(0.5, ge=0.0, le=1.0)
    flips: bool = True
    batch_size: int = Field(12, ge=1)
    lr: float = Field(1e-4, gt=0)
    lr_halving_steps: int = Field(100_000, ge=1)
    lr_schedule: Literal["step", "cosine"] = "step"
    warmup_steps: int = Field(0, ge=0)
    lr_final_ratio: float = Field(0.01, ge=0.0, le=1.0)
    total_steps: int = Field(300_000, ge=1)
    grad_clip_norm: float | None = Field(None, gt=0)
    val_every: int = Field(10_000, ge=0)
    val_images: int = Field(4, ge=0)
    val_tile: int | None = Field(None, ge=16)
    val_psnra: bool = False
    checkpoint_every: int = Field(5_000, ge=0)
    keep_checkpoints: int = Field(3, ge=1)
    log_every: int = Field(100, ge=1)
    out_dir: Path = Path("runs/lbag")
    seed: int = 0
    device: str = "auto"
    amp: Literal["bf16", "none"] = "bf16"
    cpu_amp: Literal["none", "bf16", "auto"] = "none"
    channels_last: bool = True
    num_workers: int = Field(8, ge=0)
    deterministic: bool = False

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        key = v.strip().lower().replace("-", "_")
        if key not in MODEL_NAMES:
            raise ValueError(f"unknown model {v!r}; known: {', '.join(MODEL_NAMES)}")
        return key

    @field_validator("loss", mode="before")
    @classmethod
    def _loss_fields(cls, v: Any) -> dict[str, Any]:
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise ValueError(f"must be a mapping of LBAGLossConfig fields, got {type(v).__name__}")
        unknown = sorted(set(v) - _LOSS_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown loss key(s) {', '.join(unknown)}; known: {', '.join(sorted(_LOSS_FIELDS))}"
            )
        cfg = TypeAdapter(LBAGLossConfig).validate_python(v)
        return {k: v[k] if k != "shifts" else list(cfg.shifts) for k in v}

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v != "auto":
            try:
                torch.device(v)
            except (RuntimeError, ValueError):
                raise ValueError(f"device must be auto, cpu or cuda[:i], got {v!r}") from None
        return v

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        loss = self.loss_config()
        if self.patch_size % 4:
            raise ValueError(f"patch_size must be a multiple of 4, got {self.patch_size}")
        smallest = self.patch_size // 4 if loss.multiscale else self.patch_size
        if loss.lambda_ssim > 0 and smallest < 11:
            raise ValueError(
                f"patch_size {self.patch_size} is too small for the SSIM loss (every scale needs ≥ 11 px)"
            )
        if self.val_tile is not None and self.val_tile % 4:
            raise ValueError(f"val_tile must be a multiple of 4, got {self.val_tile}")
        return self

    def loss_config(self) -> LBAGLossConfig:
        kw = dict(self.loss)
        if "shifts" in kw:
            kw["shifts"] = tuple(kw["shifts"])
        return LBAGLossConfig(**kw)


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown key {loc!r}")
        elif e["type"] == "missing":
            lines.append(f"missing key {loc!r}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{loc}: {msg}")
    return "invalid training config: " + "; ".join(lines)


def parse_config(data: Any, source: str = "config") -> TrainConfig:
    """Validate a config mapping → :class:`TrainConfig` (or :class:`ConfigError`)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a training config must be a mapping, got {type(data).__name__}")
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: {_format_validation_error(err)}") from None


def load_config(path: Path | str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML experiment file (top-level ``overrides`` replace its keys)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if isinstance(data, dict) and overrides:
        data = {**data, **overrides}
    return parse_config(data, str(path))


# ----------------------------------------------------------------------------- checkpoints


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def find_checkpoints(out_dir: Path | str) -> list[Path]:
    """Checkpoint files ``out_dir/checkpoints/step_*.pt``, oldest first."""
    folder = Path(out_dir) / "checkpoints"
    return sorted(folder.glob("step_*.pt"))


def _save_checkpoint(path: Path, model, optimizer, scheduler, step: int, cfg: TrainConfig) -> Path:
    obj = {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "model_name": cfg.model,
        "model_kwargs": dict(cfg.model_kwargs),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "rng": _rng_state(),
        "config": cfg.model_dump(mode="json"),
    }
    return atomic_torch_save(obj, path)


def _load_latest(out_dir: Path) -> tuple[dict[str, Any], Path] | None:
    for path in reversed(find_checkpoints(out_dir)):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(obj, dict) or not {"model", "optimizer", "scheduler", "step", "rng"} <= set(obj):
                raise ValueError("not a training checkpoint (model/optimizer/scheduler/step/rng)")
        except Exception as exc:  # a corrupt newest checkpoint: fall back to the one before
            warnings.warn(f"ignoring unreadable checkpoint {path}: {exc}", stacklevel=3)
            continue
        return obj, path
    return None


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






def validate(
    model: nn.Module,
    dataset,
    n_images: int,
    device: torch.device,
    out_dir: Path | None = None,
    dtype: str = "fp32",
    tile: int | None = None,
    aligned: bool = False,
) -> tuple[dict[str, float | None], list[dict[str, Any]]]:
    """Full-image validation on the first ``n_images`` samples of ``dataset`` → (mean metrics,
    per-image rows). With ``out_dir``, writes ``<id>_deblurred.png`` and, for gated models,
    ``<id>_mask.png`` (the predicted mask, ``round(255·gate)``) there (``/`` in ids → ``_``)."""
    rows: list[dict[str, Any]] = []
    for i in range(min(n_images, len(dataset))):
        blur, sharp, mask, sid = dataset.load_arrays(i)
        pred, gate = deblur_image(model, blur, device, dtype=dtype, tile=tile)
        metrics = evaluate_pair(pred, to_float01(sharp), mask, aligned=aligned)
        if gate is not None:
            metrics["maskIoU"] = mask_iou(gate, mask)
        rows.append({"name": sid, **metrics})
        if out_dir is not None:
            stem = sid.replace("/", "_")
            write_png(out_dir / f"{stem}_deblurred.png", pred)
            if gate is not None:
                write_png(out_dir / f"{stem}_mask.png", gate)
    return average_metrics(rows), rows


def input_floor(dataset, n_images: int, aligned: bool = False) -> dict[str, float | None]:
    """Mean metrics of the blurred inputs themselves on the first ``n_images`` samples of
    ``dataset``: the floor a deblurring model must rise above (a model that outputs its input
    scores exactly this)."""
    rows = []
    for i in range(min(n_images, len(dataset))):
        blur, sharp, mask, _ = dataset.load_arrays(i)
        rows.append(evaluate_pair(to_float01(blur), to_float01(sharp), mask, aligned=aligned))
    return average_metrics(rows)


def gain_line(step: int, mean: dict[str, float | None], floor: dict[str, float | None]) -> str:
    """One line of held-out progress: each table metric against the blurred input's, in dB
    (PSNR-type) or in absolute units (SSIM-type), e.g. ``PSNRw 19.02 (input 17.94, +1.08)``."""
    parts = []
    for key in METRIC_KEYS:
        value, base = mean.get(key), floor.get(key)
        if value is None or base is None:
            continue
        fmt = ".2f" if key.startswith("PSNR") else ".4f"
        parts.append(f"{key} {value:{fmt}} (input {base:{fmt}}, {value - base:+{fmt}})")
    if mean.get("maskIoU") is not None:
        parts.append(f"mask IoU {mean['maskIoU']:.3f}")
    return f"step {step} held-out: " + ", ".join(parts)


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
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(kept)


def _append_csv(path: Path, row: dict[str, Any]) -> None:
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
        found = _load_latest(out_dir)
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
    (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))

    end_step = cfg.total_steps if stop_at_step is None else min(cfg.total_steps, stop_at_step)
    train_ds, val_ds = _datasets(cfg)
    patches = PatchDataset(train_ds, cfg.patch_size, cfg.p_blur, cfg.flips)
    sampler = StepBatchSampler(len(train_ds), cfg.batch_size, cfg.seed, start_step, end_step)
    loader = make_loader(patches, batch_sampler=sampler, num_workers=cfg.num_workers, seed=cfg.seed + start_step)

    log_csv = out_dir / "train_log.csv"
    val_csv = out_dir / "val.csv"
    _prepare_csv(log_csv, start_step)
    _prepare_csv(val_csv, start_step)
    writer = SummaryWriter(str(out_dir / "tb"), purge_step=start_step)
    if rng_state is not None:
        _set_rng_state(rng_state)

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
                    last_ckpt = _save_checkpoint(
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
                    (out_dir / "val" / f"step_{step:07d}" / "metrics.json").write_text(
                        json.dumps({"step": step, "mean": mean, "input": floor, "images": rows},
                                   indent=2)
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
