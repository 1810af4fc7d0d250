"""The per-sample loss terms of LBAG training: L1, frequency L1, SSIM, gate MSE, and the
shift-invariant minimum over ±1 px shifts of the ground truth.

Images are tensors ``N×C×H×W`` (values nominally in [0, 1]); element-wise weights (masks) are
``N×1×H×W`` or ``N×C×H×W`` and broadcast over channels. Function forms take ``reduction``:
``"none"`` (one value per sample, shape ``N``), ``"mean"`` (batch mean) or ``"sum"``; module forms
wrap them (kornia habit). :mod:`deblur.losses` composes them into :class:`~deblur.losses.LBAGLoss`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FFTMode",
    "FrequencyL1",
    "GateLoss",
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

Reduction = Literal["none", "mean", "sum"]
FFTMode = Literal["real_imag", "modulus"]
SSIMForm = Literal["one_minus", "negative"]


def _reduce(per_sample: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "none":
        return per_sample
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    raise ValueError(f"unknown reduction {reduction!r}")


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Per-sample mean of ``N×C×H×W`` ``values``, weighted element-wise by ``weight``."""
    if weight is None:
        return values.flatten(1).mean(1)
    w = weight.to(values.dtype).expand_as(values)
    return (values * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1e-12)


# ----------------------------------------------------------------------------------------- L1


def weighted_l1_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """L1 ``|pred − target|``, per sample averaged (weighted by ``weight`` if given)."""
    return _reduce(_weighted_mean((pred - target).abs(), weight), reduction)


class WeightedL1(nn.Module):
    """Module form of :func:`weighted_l1_loss`."""

    def __init__(self, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        return weighted_l1_loss(pred, target, weight, self.reduction)


# ---------------------------------------------------------------------------------------- FFT


def frequency_l1_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    reduction: Reduction = "mean",
    mode: FFTMode = "modulus",
) -> torch.Tensor:
    """L1 between the 2-D real FFTs (``torch.fft.rfft2`` over H, W, unnormalised).

    ``mode="modulus"`` (default): mean of the complex modulus ``|ΔF|``, the "L1 of the complex
    difference" that the released LBAG trainer computes (``F.l1_loss`` on complex tensors).
    ``mode="real_imag"`` (the original MIMO-UNet with the old ``torch.rfft``): real and
    imaginary parts of the difference stacked, mean absolute value over ``C × H × (W//2+1) × 2``
    values. No element-wise weight: the spectrum has no pixel positions.
    """
    if pred.dtype in (torch.float16, torch.bfloat16):
        pred, target = pred.float(), target.float()
    diff = torch.fft.rfft2(pred) - torch.fft.rfft2(target.to(pred.dtype))
    if mode == "real_imag":
        values = torch.view_as_real(diff).abs()
    elif mode == "modulus":
        values = diff.abs()
    else:
        raise ValueError(f"unknown FFT mode {mode!r}")
    return _reduce(values.flatten(1).mean(1), reduction)


class FrequencyL1(nn.Module):
    """Module form of :func:`frequency_l1_loss`."""

    def __init__(self, reduction: Reduction = "mean", mode: FFTMode = "modulus") -> None:
        super().__init__()
        self.reduction = reduction
        self.mode = mode

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return frequency_l1_loss(pred, target, self.reduction, self.mode)


# --------------------------------------------------------------------------------------- SSIM


def gaussian_window(
    window_size: int = 11, sigma: float = 1.5, dtype: torch.dtype = torch.float32, device=None
) -> torch.Tensor:
    """Normalised 2-D Gaussian window ``window_size×window_size`` (outer product of 1-D)."""
    x = torch.arange(window_size, dtype=torch.float64) - window_size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).to(dtype=dtype, device=device)


def _band_matrix(taps: torch.Tensor, n: int) -> torch.Tensor:
    """``(n−k+1)×n`` matrix whose row ``i`` holds ``taps`` (length ``k``) at columns ``i…i+k−1``:
    multiplying by it is the valid-region 1-D correlation with ``taps``."""
    k = taps.numel()
    m = torch.zeros(n - k + 1, n, dtype=taps.dtype)
    for j in range(k):
        m.diagonal(j)[:] = taps[j]
    return m


def ssim_per_sample(
    pred: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
) -> torch.Tensor:
    """Per-sample SSIM (shape ``N``) on the valid region (no padding).

    Gaussian ``window_size``² window (σ ``sigma``), population covariances,
    ``C1 = (0.01·data_range)²``, ``C2 = (0.03·data_range)²``: the SSIM map has size
    ``(H−w+1)×(W−w+1)`` and is averaged over it and the channels (weighted by ``weight`` cropped
    by ``w//2`` px on each side, if given). Matches :func:`deblur.metrics.ssim`.
    """
    n, c, h, w = pred.shape
    if min(h, w) < window_size:
        raise ValueError(f"images must be at least {window_size}×{window_size}, got {h}×{w}")
    # The 2-D Gaussian is the outer product of a 1-D one, so the valid-region filter is
    # ``Gh @ t @ Gwᵀ`` with banded (H−w+1)×H and (W−w+1)×W matrices: two batched matrix
    # products, several times faster on CPU than a depthwise w×w convolution, same window.
    x = torch.arange(window_size, dtype=torch.float64) - window_size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    gh = _band_matrix(g, h).to(dtype=pred.dtype, device=pred.device)
    gw = _band_matrix(g, w).to(dtype=pred.dtype, device=pred.device).T

    def blur(t: torch.Tensor) -> torch.Tensor:
        return torch.matmul(torch.matmul(gh, t), gw)

    mu1, mu2 = blur(pred), blur(target)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1 = blur(pred * pred) - mu1_sq
    s2 = blur(target * target) - mu2_sq
    s12 = blur(pred * target) - mu12
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    smap = ((2 * mu12 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))
    if weight is not None:
        r = window_size // 2
        weight = weight[..., r : h - r, r : w - r]
    return _weighted_mean(smap, weight)


def ssim_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: Reduction = "mean",
    form: SSIMForm = "one_minus",
    window_size: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """SSIM loss: ``1 − SSIM`` (``form="one_minus"``, default, ≥ 0) or ``−SSIM``
    (``form="negative"``, what the released code adds); same gradient."""
    s = ssim_per_sample(pred, target, weight, window_size, sigma)
    if form == "one_minus":
        loss = 1.0 - s
    elif form == "negative":
        loss = -s
    else:
        raise ValueError(f"unknown SSIM loss form {form!r}")
    return _reduce(loss, reduction)


class SSIMLoss(nn.Module):
    """Module form of :func:`ssim_loss`."""

    def __init__(
        self,
        reduction: Reduction = "mean",
        form: SSIMForm = "one_minus",
        window_size: int = 11,
        sigma: float = 1.5,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.form = form
        self.window_size = window_size
        self.sigma = sigma

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        return ssim_loss(
            pred, target, weight, self.reduction, self.form, self.window_size, self.sigma
        )


# ---------------------------------------------------------------------------- shift invariance


def shift_image(img: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """``out[..., y, x] = img[..., y − dy, x − dx]``, borders filled by reflection.

    Same as the released ``F.pad(img, [dx, -dx, dy, -dy], mode="reflect")``.
    """
    if dx == 0 and dy == 0:
        return img
    h, w = img.shape[-2:]
    p = max(abs(dx), abs(dy))
    padded = F.pad(img, [p, p, p, p], mode="reflect")
    return padded[..., p - dy : p - dy + h, p - dx : p - dx + w]


def shift_invariant_min(
    loss_fn: Callable[..., torch.Tensor],
    pred: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    shifts: Sequence[int] = (-1, 0, 1),
    reduction: Reduction = "none",
) -> torch.Tensor:
    """Per-sample minimum of ``loss_fn`` over the target shifted by every ``(dx, dy)`` in
    ``shifts × shifts``.

    ``loss_fn(pred, target[, weight])`` must return per-sample values (shape ``N``); the
    prediction (and ``weight``, unshifted, as released) is repeated for the shifted targets, which
    are evaluated in one batch of ``N·len(shifts)²``. Returns shape ``N`` (``reduction="none"``,
    default) or the reduced value; the minimum is taken per sample, never over the batch.
    """
    n = pred.shape[0]
    targets = [shift_image(target, dx, dy) for dy in shifts for dx in shifts]
    k = len(targets)
    tgt = torch.stack(targets, 1).flatten(0, 1)
    prd = pred.unsqueeze(1).expand(n, k, *pred.shape[1:]).flatten(0, 1)
    if weight is None:
        values = loss_fn(prd, tgt)
    else:
        wgt = weight.unsqueeze(1).expand(n, k, *weight.shape[1:]).flatten(0, 1)
        values = loss_fn(prd, tgt, wgt)
    return _reduce(values.reshape(n, k).amin(1), reduction)


# --------------------------------------------------------------------------------------- gate


def gate_loss(
    gate: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """MSE between a gate ``N×1×h×w`` and the blur mask (``N×1×H×W`` in [0, 1], resized to
    ``h×w`` by nearest if needed); per sample averaged (weighted if ``weight``)."""
    if mask.shape[-2:] != gate.shape[-2:]:
        mask = F.interpolate(mask.to(gate.dtype), size=gate.shape[-2:], mode="nearest")
    if weight is not None and weight.shape[-2:] != gate.shape[-2:]:
        weight = F.interpolate(weight.to(gate.dtype), size=gate.shape[-2:], mode="nearest")
    return _reduce(_weighted_mean((gate - mask.to(gate.dtype)) ** 2, weight), reduction)


class GateLoss(nn.Module):
    """Module form of :func:`gate_loss`."""

    def __init__(self, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(
        self, gate: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        return gate_loss(gate, mask, weight, self.reduction)
