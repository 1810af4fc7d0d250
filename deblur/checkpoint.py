"""Checkpoint files: load one into its model, describe it, write one atomically, ship one.

- :func:`load_checkpoint` builds the model a checkpoint names and loads its weights (training
  checkpoints of :mod:`deblur.train`, :func:`random_init_checkpoint` files, or a bare state dict
  / ``{"model": state_dict}`` with ``model_name`` given). Problems are :class:`CheckpointError`
  naming the file.
- ``meta`` (what :func:`load_checkpoint` returns beside the model) says the model's name and
  arguments, whether it is gated, the training step and config, and the sharp timing it was
  trained for (:func:`trained_sharp_timing`, ``"centre"`` | ``"start"`` | ``None``).
- :func:`export_model` writes a training checkpoint's model alone (fp32 weights) for shipping;
  :func:`atomic_torch_save` is how every checkpoint file is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.filestore import atomic_path
from deblur.archs import CheckpointMismatchError, build_model
from deblur.device import resolve_device
from deblur.errors import CheckpointError

__all__ = [
    "CHECKPOINT_FORMAT",
    "atomic_torch_save",
    "describe_checkpoint",
    "export_model",
    "load_checkpoint",
    "random_init_checkpoint",
    "trained_sharp_timing",
]

CHECKPOINT_FORMAT = "reloblur-deblur-checkpoint"


def atomic_torch_save(obj: Any, path: Path | str) -> Path:
    """``torch.save`` through :func:`core.filestore.atomic_path`: the file at ``path`` is always
    either the old or the complete new one."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "xb") as fh:
        torch.save(obj, fh)
    return path


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _mismatch(model: nn.Module, sd: dict[str, torch.Tensor]) -> CheckpointMismatchError | None:
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = {
        k: (tuple(sd[k].shape), tuple(v.shape))
        for k, v in own.items()
        if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    }
    if missing or unexpected or shapes:
        return CheckpointMismatchError(missing, unexpected, shapes)
    return None


def load_checkpoint(
    path: Path | str,
    device: str | torch.device | None = "auto",
    model_name: str | None = None,
    **model_kwargs: Any,
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint → ``(model in eval mode on device, meta)``.

    Accepted: our checkpoints (``{"model_name", "model_kwargs", "model": state_dict, ...}``,
    training checkpoints included), or a bare state dict / ``{"model": state_dict}`` (official
    releases) when ``model_name`` (and any ``model_kwargs``) are given; given arguments override
    the file's. ``meta``: ``model_name``, ``model_kwargs``, ``gated`` (the model returns gates),
    ``step`` (training step or ``None``), ``config`` (training config dict or ``None``),
    ``path``. Raises :class:`CheckpointError` naming the file: missing, unreadable/corrupt, no
    model name, unknown model, or weights that do not fit (missing/unexpected keys, shapes).
    Loaded with ``weights_only=True`` (no code runs from the file). On CUDA the model is put in
    channels_last.
    """
    path = Path(path)
    dev = resolve_device(device)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist", path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure means a bad file
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a PyTorch checkpoint: {type(exc).__name__}: {exc}",
            path,
        ) from None
    if _is_state_dict(obj):
        obj = {"model": obj}
    if not isinstance(obj, dict) or not _is_state_dict(obj.get("model")):
        raise CheckpointError(f"checkpoint {path} holds no model state dict", path)
    name = model_name or obj.get("model_name")
    if not name:
        raise CheckpointError(
            f"checkpoint {path} does not say which model it holds; pass model_name", path
        )
    kwargs = dict(obj.get("model_kwargs") or {}) if model_name is None else {}
    kwargs.update(model_kwargs)
    try:
        model = build_model(name, **kwargs)
    except (KeyError, TypeError) as exc:
        msg = exc.args[0] if exc.args else exc
        raise CheckpointError(f"checkpoint {path}: cannot build model {name!r}: {msg}", path) from None
    sd = obj["model"]
    problem = _mismatch(model, sd)
    if problem is not None:
        raise CheckpointError(f"checkpoint {path} does not fit model {name!r} {kwargs}: {problem}", path)
    model.load_state_dict(sd)
    model.eval().to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    meta = {
        "model_name": name,
        "model_kwargs": kwargs,
        "gated": bool(getattr(model, "head_channels", 3) == 4),
        "step": obj.get("step"),
        "config": obj.get("config"),
        "sharp_timing": trained_sharp_timing(obj),
        "path": path,
    }
    return model, meta


def trained_sharp_timing(checkpoint: dict[str, Any]) -> str | None:
    """The sharp timing of the pairs a checkpoint was trained on: ``"centre"`` (the sharp
    exposure at the centre of the blurred one's) or ``"start"`` (both start together, the
    paper's and the published ReLoBlur set's timing), or ``None`` when the file does not say.

    Read from the checkpoint's ``sharp_timing`` key, else its training config's
    ``data.sharp_timing``; twin-trained checkpoints made before that setting existed were
    trained on ``start`` pairs. A model may be used on data of the other timing; this is what
    ``reloblur deblur`` prints so that the user knows."""
    timing = checkpoint.get("sharp_timing")
    if timing in ("centre", "start"):
        return timing
    data = (checkpoint.get("config") or {}).get("data") or {}
    if data.get("sharp_timing") in ("centre", "start"):
        return data["sharp_timing"]
    if data.get("source") == "twin":
        return "start"
    return None


def describe_checkpoint(meta: dict[str, Any]) -> str:
    """One line about a loaded checkpoint's model and the data it was trained for."""
    step = f", step {meta['step']}" if meta.get("step") is not None else ""
    timing = meta.get("sharp_timing")
    if timing == "centre":
        trained = "trained for sharp timing 'centre' (sharp exposure at the centre of the blurred one's)"
    elif timing == "start":
        trained = "trained for sharp timing 'start' (both exposures start together, as in ReLoBlur)"
    else:
        trained = "trained on data of unknown sharp timing"
    return f"model {meta['model_name']}{step}: {trained}"


def export_model(checkpoint: Path | str, out: Path | str, notes: str | None = None) -> Path:
    """Write the model of a (training) checkpoint alone, for shipping: its weights in fp32, the
    model name and arguments, the step, the training config, the sharp timing it was trained
    for (:func:`trained_sharp_timing`) and optional ``notes`` (how it was made), without the
    optimiser, scheduler and RNG states (a third of a training checkpoint's size). The file
    loads with :func:`load_checkpoint` like any checkpoint. CheckpointError for a bad file."""
    path = Path(checkpoint)
    _model, meta = load_checkpoint(path, "cpu")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    state = obj["model"] if isinstance(obj, dict) and "model" in obj else obj
    shipped = {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "model_name": meta["model_name"],
        "model_kwargs": dict(meta["model_kwargs"]),
        "model": {k: v.float() if v.is_floating_point() else v for k, v in state.items()},
        "step": meta["step"],
        "config": meta["config"],
        "sharp_timing": meta["sharp_timing"],
        "notes": notes,
    }
    return atomic_torch_save(shipped, out)


def random_init_checkpoint(
    model_name: str, path: Path | str, seed: int = 0, **model_kwargs: Any
) -> Path:
    """Write a valid checkpoint of an untrained ``model_name`` (initialised under ``seed``),
    for tests and demos. Returns the path."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(model_name, **model_kwargs)
    obj = {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "model_name": model_name,
        "model_kwargs": dict(model_kwargs),
        "model": model.state_dict(),
        "step": 0,
    }
    return atomic_torch_save(obj, path)
