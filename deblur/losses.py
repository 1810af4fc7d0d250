"""LBAG training losses: L1, frequency L1, SSIM, shift-invariant minimum, gate loss.

Images are tensors ``N×C×H×W`` (values nominally in [0, 1]); element-wise weights (masks) are
``N×1×H×W`` or ``N×C×H×W`` and broadcast over channels. Function forms take ``reduction``:
``"none"`` (one value per sample, shape ``N``), ``"mean"`` (batch mean) or ``"sum"``; module forms
wrap them (kornia habit).

Per output scale (¼, ½, full; ground truth resized by bilinear interpolation, masks and weights
by nearest) :class:`LBAGLoss` adds ``λ_l1·L1 + λ_fft·FFT-L1 + λ_ssim·SSIM term``, each term first
reduced per sample, minimised per sample over the ground truth shifted by every
``(dx, dy) ∈ {−1, 0, 1}²`` (reflect padding), then averaged over the batch; plus
``λ_gate·MSE(gate, mask)`` per scale.

The terms themselves (functions and module forms) live in :mod:`deblur.loss_terms` and are
re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deblur.loss_terms import (
    FFTMode,
    FrequencyL1,
    GateLoss,
    Reduction,
    SSIMForm,
    SSIMLoss,
    WeightedL1,
    frequency_l1_loss,
    gate_loss,
    gaussian_window,
    shift_image,
    shift_invariant_min,
    ssim_loss,
    ssim_per_sample,
    weighted_l1_loss,
)

__all__ = [
    "FFTMode",
    "FrequencyL1",
    "GateLoss",
    "LBAGLoss",
    "LBAGLossConfig",
    "Reduction",
    "SSIMForm",
    "SSIMLoss",
    "WeightedL1",
    "frequency_l1_loss",
    "gate_loss",
    "gaussian_window",
    "shift_image",
    "shift_invariant_min",
    "ssim_loss",
    "ssim_per_sample",
    "weighted_l1_loss",
]


@dataclass
class LBAGLossConfig:
    """Weights and switches of :class:`LBAGLoss` (released ``configs/LBAG.yaml`` values).

    A term whose weight is 0 is not computed and does not appear in the terms dict (ablation).
    ``lambda_gate`` defaults to 0.1 as in the released configuration; the paper's text says
    0.01. ``ssim_form``: ``"one_minus"`` adds ``1 − SSIM`` (default), ``"negative"`` adds
    ``−SSIM`` as the released code; same gradient. ``fft_mode``: see
    :func:`frequency_l1_loss`. ``multiscale=False`` keeps only the full-scale image terms,
    ``multiscale_gate=False`` only the full-scale gate term; ``shift_invariant=False`` compares
    with the unshifted ground truth only.
    """

    lambda_l1: float = 1.0
    lambda_fft: float = 0.1
    lambda_ssim: float = 1.0
    lambda_gate: float = 0.1
    shift_invariant: bool = True
    shifts: tuple[int, ...] = (-1, 0, 1)
    multiscale: bool = True
    multiscale_gate: bool = True
    ssim_form: SSIMForm = "one_minus"
    fft_mode: FFTMode = "modulus"


def _resize_like(t: torch.Tensor, ref: torch.Tensor, mode: str) -> torch.Tensor:
    if t.shape[-2:] == ref.shape[-2:]:
        return t
    t = t.to(ref.dtype)
    if mode == "bilinear":
        return F.interpolate(t, size=ref.shape[-2:], mode="bilinear", align_corners=False)
    return F.interpolate(t, size=ref.shape[-2:], mode="nearest")


class LBAGLoss(nn.Module):
    """Multi-scale LBAG loss.

    ``forward(outputs, target, gates=None, mask=None, weight=None)``:

    - ``outputs``: list of restorations from coarse to fine (``[¼, ½, full]``, ``N×3×h×w``), or
      an ``(outputs, gates)`` tuple as returned by :class:`~deblur.archs.LBAG`;
    - ``target``: full-resolution ground truth ``N×3×H×W`` in [0, 1] (resized by bilinear to each
      scale);
    - ``gates``: ``N×1×h×w`` gates aligned with the last ``len(gates)`` scales; ``mask``: the blur
      mask ``N×1×H×W`` in [0, 1] (resized by nearest), required when gates are given and
      ``lambda_gate > 0``; models without gates just get no gate term;
    - ``weight``: optional element-wise weight ``N×1×H×W`` for the L1 and SSIM terms (resized by
      nearest; not for the FFT and gate terms); the released training passes none.

    Returns ``(total, terms)``: the scalar loss and a dict of detached per-scale terms (before
    their λ) named ``"l1/s0"``, ``"fft/s1"``, ``"ssim/s2"``, ``"gate/s2"`` ... where ``s0`` is the
    coarsest scale of ``outputs`` and ``s{len-1}`` the full scale.
    """

    def __init__(self, config: LBAGLossConfig | None = None) -> None:
        super().__init__()
        self.config = config or LBAGLossConfig()

    def _image_terms(self) -> dict[str, tuple[float, Callable[..., torch.Tensor], bool]]:
        cfg = self.config
        terms: dict[str, tuple[float, Callable[..., torch.Tensor], bool]] = {}
        if cfg.lambda_l1 > 0:
            terms["l1"] = (
                cfg.lambda_l1,
                lambda p, t, w=None: weighted_l1_loss(p, t, w, reduction="none"),
                True,
            )
        if cfg.lambda_fft > 0:
            terms["fft"] = (
                cfg.lambda_fft,
                lambda p, t: frequency_l1_loss(p, t, reduction="none", mode=cfg.fft_mode),
                False,
            )
        if cfg.lambda_ssim > 0:
            terms["ssim"] = (
                cfg.lambda_ssim,
                lambda p, t, w=None: ssim_loss(p, t, w, reduction="none", form=cfg.ssim_form),
                True,
            )
        return terms

    def forward(
        self,
        outputs: Sequence[torch.Tensor] | tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]],
        target: torch.Tensor,
        gates: Sequence[torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        weight: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.config
        if (
            isinstance(outputs, tuple)
            and len(outputs) == 2
            and not isinstance(outputs[0], torch.Tensor)
        ):
            outputs, model_gates = outputs
            if gates is None:
                gates = model_gates
        preds = list(outputs)
        n_scales = len(preds)
        scale_ids = list(range(n_scales))
        if not cfg.multiscale:
            scale_ids = scale_ids[-1:]

        total = target.new_zeros(())
        terms: dict[str, torch.Tensor] = {}
        image_terms = self._image_terms()
        for i in scale_ids:
            pred = preds[i]
            tgt = _resize_like(target, pred, "bilinear")
            w = None if weight is None else _resize_like(weight, pred, "nearest")
            for name, (lam, fn, weighted) in image_terms.items():
                args_w = w if weighted else None
                if cfg.shift_invariant:
                    per_sample = shift_invariant_min(fn, pred, tgt, args_w, cfg.shifts)
                elif args_w is None:
                    per_sample = fn(pred, tgt)
                else:
                    per_sample = fn(pred, tgt, args_w)
                value = per_sample.mean()
                total = total + lam * value
                terms[f"{name}/s{i}"] = value.detach()

        if gates is not None and len(gates) > 0 and cfg.lambda_gate > 0:
            if mask is None:
                raise ValueError("the gate loss needs the blur mask (mask=None)")
            gate_list = list(gates)
            offset = n_scales - len(gate_list)
            if offset < 0:
                raise ValueError(f"{len(gate_list)} gates for {n_scales} output scales")
            pairs = list(zip(range(offset, n_scales), gate_list, strict=True))
            if not cfg.multiscale_gate:
                pairs = pairs[-1:]
            for i, gate in pairs:
                value = gate_loss(gate, _resize_like(mask, gate, "nearest"))
                total = total + cfg.lambda_gate * value
                terms[f"gate/s{i}"] = value.detach()
        return total, terms
