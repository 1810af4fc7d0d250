"""Inference: load a checkpoint, deblur images of any size, write results.

This module is the entry point the API, CLI, jobs and benchmarks import; the parts live in
:mod:`deblur.checkpoint` (loading, describing, writing, shipping checkpoints),
:mod:`deblur.tiled` (one image in memory, whole or tiled), :mod:`deblur.device` and
:mod:`deblur.errors`, and are re-exported here.

- :func:`load_checkpoint` builds the model a checkpoint names and loads its weights (training
  checkpoints of :mod:`deblur.train`, :func:`random_init_checkpoint` files, or a bare state dict
  / ``{"model": state_dict}`` with ``model_name`` given). Problems are :class:`CheckpointError`
  naming the file.
- :func:`deblur_image` takes one image (``H×W``, ``H×W×1``, ``H×W×3`` or ``H×W×4``; uint8,
  uint16 or float in [0, 1]; RGB order) and returns the deblurred ``H×W×3`` float32 image in
  [0, 1] and, for gated models (LBAG), the predicted blur mask ``H×W`` float32: the full-scale
  gate, in [0.1, 1] for the default clamp. No mask file is ever needed. Sizes that are not
  multiples of 4 are reflect-padded and cropped back; ``tile`` bounds memory.
- :func:`deblur_paths` (here) runs files or folders and writes, per input ``<name>``:
  ``<name>_deblurred.png`` (8-bit sRGB), ``<name>_mask.png`` (the soft predicted mask,
  ``round(255·gate)``, gated models only) and ``<name>_mask_bin.png`` (the mask binarised at
  gate ≥ 0.5: 0/255, the ReLoBlur mask convention).

Precision: ``dtype="fp32"`` everywhere; ``"bf16"`` (autocast, and channels_last) only on CUDA.
On CPU ``bf16`` is refused with :class:`InferenceError` (bf16 autocast on most CPUs is slower
than fp32 and its accuracy here is unvalidated).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from core.filestore import write_png
from deblur.checkpoint import (
    CHECKPOINT_FORMAT,
    atomic_torch_save,
    describe_checkpoint,
    export_model,
    load_checkpoint,
    random_init_checkpoint,
    trained_sharp_timing,
)
from deblur.data import DatasetError, list_images, read_image
from deblur.device import resolve_device
from deblur.errors import CheckpointError, ImageInputError, InferenceError
from deblur.tiled import DEFAULT_MAX_SIDE, MIN_SIDE, DType, deblur_image, prepare_image, tile_starts

__all__ = [
    "CHECKPOINT_FORMAT",
    "DEFAULT_MAX_SIDE",
    "MIN_SIDE",
    "expand_inputs",
    "CheckpointError",
    "DType",
    "ImageInputError",
    "InferenceError",
    "atomic_torch_save",
    "deblur_image",
    "deblur_paths",
    "describe_checkpoint",
    "export_model",
    "load_checkpoint",
    "prepare_image",
    "random_init_checkpoint",
    "resolve_device",
    "tile_starts",
    "trained_sharp_timing",
]


def expand_inputs(inputs: Path | str | Iterable[Path | str]) -> list[tuple[Path, Path]]:
    """``(image file, output stem relative to out_dir)`` for each input image."""
    items = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    found: list[tuple[Path, Path]] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files = list_images(p)
            if any(f.stem.endswith("_blur") for f in files):  # ReLoBlur layout: skip *_sharp
                files = [f for f in files if f.stem.endswith("_blur")]
            if not files:
                raise ImageInputError(f"folder {p} holds no image file")
            found += [(f, f.relative_to(p).with_suffix("")) for f in files]
        elif p.is_file():
            found.append((p, Path(p.stem)))
        else:
            raise ImageInputError(f"input {p} does not exist")
    seen: dict[Path, Path] = {}
    for f, stem in found:
        if stem in seen:
            raise ImageInputError(f"inputs {seen[stem]} and {f} would write the same output {stem}")
        seen[stem] = f
    return found


def deblur_paths(
    inputs: Path | str | Sequence[Path | str],
    checkpoint: Path | str,
    out_dir: Path | str,
    device: str | torch.device | None = "auto",
    dtype: DType = "fp32",
    tile: int | None = None,
    overlap: int = 32,
    max_side: int = DEFAULT_MAX_SIDE,
    progress: bool = True,
    on_model: Callable[[dict[str, Any]], None] | None = None,
    before_image: Callable[[int, int, Path, Path], None] | None = None,
    after_image: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Deblur image files and/or folders (recursive; the folder structure is kept under
    ``out_dir``) with the model of ``checkpoint``. A folder holding ``*_blur.*`` files (the
    ReLoBlur layout, e.g. ``dataset/test``) contributes only those, not the sharp images.

    Writes ``<name>_deblurred.png`` (8-bit sRGB) and, for gated models, ``<name>_mask.png``
    (soft predicted mask, ``round(255·gate)``) and ``<name>_mask_bin.png`` (gate ≥ 0.5 → 255,
    else 0). Returns one dict per image: ``input``, ``deblurred``, ``mask``, ``mask_bin``
    (paths or ``None``), ``seconds`` (model time), ``width``, ``height``. Errors:
    :class:`ImageInputError` (naming the file), :class:`CheckpointError`,
    :class:`InferenceError`. ``on_model`` is called with the checkpoint's meta (see
    :func:`load_checkpoint`) once it is loaded, before the first image;
    ``before_image(index, total, file, stem)`` before each image and ``after_image(row)`` once
    its files are written.
    """
    jobs = expand_inputs(inputs)
    model, meta = load_checkpoint(checkpoint, device)
    if on_model is not None:
        on_model(meta)
    dev = next(model.parameters()).device
    out_dir = Path(out_dir)
    rows: list[dict[str, Any]] = []
    for index, (src, stem) in enumerate(tqdm(jobs, desc="deblur", unit="img", disable=not progress)):
        if before_image is not None:
            before_image(index, len(jobs), src, stem)
        try:
            raw = read_image(src)
        except DatasetError as exc:
            raise ImageInputError(str(exc)) from None
        t0 = time.perf_counter()
        try:
            out, gate = deblur_image(model, raw, dev, dtype, tile, overlap, max_side)
        except ImageInputError as exc:
            raise ImageInputError(f"{src}: {exc}") from None
        seconds = time.perf_counter() - t0
        base = out_dir / stem
        row: dict[str, Any] = {
            "input": src,
            "deblurred": base.parent / f"{base.name}_deblurred.png",
            "mask": None,
            "mask_bin": None,
            "seconds": seconds,
            "width": raw.shape[1],
            "height": raw.shape[0],
        }
        write_png(row["deblurred"], out)
        if gate is not None:
            row["mask"] = base.parent / f"{base.name}_mask.png"
            row["mask_bin"] = base.parent / f"{base.name}_mask_bin.png"
            write_png(row["mask"], gate)
            write_png(row["mask_bin"], ((gate >= 0.5) * 255).astype(np.uint8))
        rows.append(row)
        if after_image is not None:
            after_image(row)
    return rows
