"""Held-out validation during training: full-image metrics of the model, the floor of the
blurred inputs themselves, and the one progress line that compares them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.filestore import write_png
from core.samples import to_float01
from deblur.metrics import METRIC_KEYS, average_metrics, evaluate_pair, mask_iou
from deblur.tiled import deblur_image

__all__ = ["gain_line", "input_floor", "validate"]


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
