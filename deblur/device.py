"""Which torch device inference and training run on: ``"auto"`` picks CUDA when available."""

from __future__ import annotations

import torch

from deblur.errors import InferenceError

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/``None`` → CUDA when available, else CPU; ``"cuda"`` without CUDA → error."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InferenceError(f"unknown device {device!r}; use auto, cpu or cuda[:i]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InferenceError(f"device {device!r} requested but CUDA is not available")
    return dev
