"""Training configuration: one YAML file per experiment (``configs/*.yaml``), validated.

:class:`TrainConfig` (with its :class:`DataConfig`) is what :func:`deblur.train.train` runs;
:func:`load_config` reads a file and :func:`parse_config` a mapping; problems are a
:class:`ConfigError` naming every bad key (``<dotted.key>: <what is wrong>``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import ConfigDict, Field, TypeAdapter, field_validator, model_validator

from core.config import StrictModel, read_yaml, validate_model
from core.errors import UserError
from deblur.archs import MODEL_NAMES
from deblur.data import dataset_sources
from deblur.losses import LBAGLossConfig

__all__ = ["ConfigError", "DataConfig", "RunExistsError", "TrainConfig", "load_config", "parse_config"]


class ConfigError(UserError, ValueError):
    """A training configuration is invalid; the message names the key."""


class RunExistsError(ConfigError):
    """``out_dir`` already holds checkpoints and ``resume`` was not asked for."""


class _Strict(StrictModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    """Where training and validation images come from.

    ``source: reloblur``: ``root`` holds the ReLoBlur layout (``dataset/<split>/...``,
    ``masks/<split>/...``); training on ``train_split``, validation on the first
    ``val_images`` samples of ``val_split``; ``on_bad`` as :class:`deblur.data.ReLoBlurDataset`.

    ``source: twin``: :class:`hardware_sim.training_data.TwinPairDataset` pairs at ``width``×``height`` from
    ``presets`` × ``seeds`` × ``pairs_per_scene`` (optional ``noise_sigma``, Gaussian noise in
    sRGB units on the blurred input: one σ, or ``[min, max]`` for a σ drawn per pair); validation on ``val_presets`` × ``val_seeds`` × ``val_pairs`` (keep them disjoint
    from the training presets for a scene-disjoint validation). ``cache_pairs`` > 0 keeps that
    many rendered training pairs per data-loader worker (``28·width·height`` bytes each) instead
    of re-rendering a pair for every patch; 0 (the default) renders every time. The preset
    ``random`` is a different random scene per seed, its moving object among ``movers`` (default:
    the sampler's nine default movers) less ``exclude_assets``, with ``blur_b_px`` (min, max) px
    of blur in B at the full 2152-px sensor (:func:`hardware_sim.scene_sampler.random_scene`;
    training scenes only, validation scenes keep the defaults). ``sharp_timing``: the twin's sharp frame at
    the ``centre`` of the blurred one's exposure (default) or at its ``start`` (the paper's timing).
    ``render_dir``: a folder where the twin keeps every rendered pair on disk, shared by runs
    and processes that draw the same scenes (none by default).
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
    noise_sigma: float | tuple[float, float] = 0.0
    cache_pairs: int = Field(0, ge=0)
    render_dir: Path | None = None
    exclude_assets: list[str] = Field(default_factory=list)
    movers: list[str] | None = None
    blur_b_px: tuple[float, float] = (20.0, 70.0)
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
        low, high = (self.noise_sigma, self.noise_sigma) if isinstance(self.noise_sigma, float) else self.noise_sigma
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"data.noise_sigma must be a σ in [0, 1] or [min, max] with 0 ≤ min ≤ max ≤ 1, "
                             f"got {self.noise_sigma}")
        if not 1.0 <= self.blur_b_px[0] <= self.blur_b_px[1]:
            raise ValueError(f"data.blur_b_px must be [min, max] with 1 ≤ min ≤ max px, got {list(self.blur_b_px)}")
        return self


_LOSS_FIELDS = {f.name for f in dataclasses.fields(LBAGLossConfig)}


class TrainConfig(_Strict):
    """One training experiment; see ``configs/lbag.yaml`` for the released values.

    Unknown keys are refused (:class:`ConfigError` naming the key). ``loss`` holds
    :class:`deblur.losses.LBAGLossConfig` fields. ``p_blur``: BAPC probability (0.5 released;
    0 = "without BAPC", uniform crops). ``colour_permute``: patches' colour channels in a random
    order (off in the released recipe). ``device``: ``auto`` | ``cpu`` | ``cuda[:i]``. ``amp``
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
    colour_permute: bool = False
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


def parse_config(data: Any, source: str = "config") -> TrainConfig:
    """Validate a config mapping → :class:`TrainConfig` (or :class:`ConfigError`)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a training config must be a mapping, got {type(data).__name__}")
    return validate_model(TrainConfig, data, ConfigError, f"{source}: invalid training config")


def load_config(path: Path | str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML experiment file (top-level ``overrides`` replace its keys)."""
    path = Path(path)
    data = read_yaml(path, ConfigError, "config")
    if isinstance(data, dict) and overrides:
        data = {**data, **overrides}
    return parse_config(data, str(path))
