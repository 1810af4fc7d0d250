"""A training run's resumable state: checkpoints under ``out_dir/checkpoints/step_<step>.pt``
with the model, optimiser, scheduler, step, every RNG state and the config (written atomically),
and the newest readable one found again on resume."""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deblur.checkpoint import CHECKPOINT_FORMAT, atomic_torch_save
from deblur.config import TrainConfig

__all__ = ["find_checkpoints", "load_latest", "rng_state", "save_checkpoint", "set_rng_state"]


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states, as tensors and plain values (weights_only-safe)."""
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


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
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


def save_checkpoint(path: Path, model, optimizer, scheduler, step: int, cfg: TrainConfig) -> Path:
    """A training checkpoint (model, optimiser, scheduler, step, RNG states, config), atomically."""
    obj = {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "model_name": cfg.model,
        "model_kwargs": dict(cfg.model_kwargs),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "rng": rng_state(),
        "config": cfg.model_dump(mode="json"),
    }
    return atomic_torch_save(obj, path)


def load_latest(out_dir: Path) -> tuple[dict[str, Any], Path] | None:
    """The newest readable training checkpoint in ``out_dir`` and its path (a corrupt newest one
    is skipped with a warning), or None."""
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
