"""Deblurring networks and a small registry.

``build_model(name, **kwargs)`` builds one of :data:`MODEL_NAMES`:

- ``"mimo_unet"``: :class:`MIMOUNet` (8 ResBlocks per stage), 6,807,171 parameters;
- ``"mimo_unet_plus"``: :class:`MIMOUNetPlus` (20 ResBlocks, Dropout2d(0.1)), 16,107,651;
- ``"lbag"``: :class:`LBAG` (MIMO-UNet+ with gated 4-channel heads), 16,109,670;
- ``"lbag_no_gate"``: alias building :class:`MIMOUNetPlus` (LBAG without the gate = MIMO-UNet+
  trained with the LBAG pipeline).

``kwargs`` go to the class constructor (e.g. ``num_res``, ``clamp_gate``). Whatever a model
returns (LBAG: ``(images, gates)``; MIMO-UNet: ``images``), :func:`model_output` reads it as one
:class:`ModelOutput`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn

from deblur.archs.lbag import LBAG, CheckpointMismatchError, load_mimo_unet_plus_weights
from deblur.archs.mimo_unet import MIMOUNet, MIMOUNetPlus, count_parameters

__all__ = [
    "LBAG",
    "MODEL_NAMES",
    "CheckpointMismatchError",
    "MIMOUNet",
    "MIMOUNetPlus",
    "ModelOutput",
    "build_model",
    "count_parameters",
    "load_mimo_unet_plus_weights",
    "model_output",
]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "mimo_unet": MIMOUNet,
    "mimo_unet_plus": MIMOUNetPlus,
    "lbag": LBAG,
    "lbag_no_gate": MIMOUNetPlus,
}

MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def build_model(name: str, **kwargs) -> nn.Module:
    """Build the model registered as ``name`` (case-insensitive; ``-`` reads as ``_``)."""
    key = name.strip().lower().replace("-", "_")
    try:
        factory = _REGISTRY[key]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}") from None
    return factory(**kwargs)


class ModelOutput(NamedTuple):
    """A model's output: ``images`` from coarse to fine (``[¼, ½, full]``, ``N×3×h×w``) and, for
    gated models, ``gates`` on the same scales (``N×1×h×w`` in [0, 1]), else ``None``."""

    images: list[torch.Tensor]
    gates: list[torch.Tensor] | None

    @property
    def final(self) -> torch.Tensor:
        """The full-resolution restoration."""
        return self.images[-1]

    @property
    def final_gate(self) -> torch.Tensor | None:
        """The full-resolution gate (the predicted blur mask), or ``None``."""
        return self.gates[-1] if self.gates else None


def model_output(out: Any) -> ModelOutput:
    """Read any registered model's raw output: ``(images, gates)`` (LBAG), a list of images
    (MIMO-UNet) or one tensor."""
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], list | tuple):
        return ModelOutput(list(out[0]), list(out[1]))
    if isinstance(out, list | tuple):
        return ModelOutput(list(out), None)
    return ModelOutput([out], None)
