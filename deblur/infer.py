"""Inference: load a checkpoint, deblur images of any size, write results.

- :func:`load_checkpoint` builds the model a checkpoint names and loads its weights (training
  checkpoints of :mod:`deblur.train`, :func:`random_init_checkpoint` files, or a bare state dict
  / ``{"model": state_dict}`` with ``model_name`` given). Problems are :class:`CheckpointError`
  naming the file.
- :func:`deblur_image` takes one image (``H×W``, ``H×W×1``, ``H×W×3`` or ``H×W×4``; uint8,
  uint16 or float in [0, 1]; RGB order) and returns the deblurred ``H×W×3`` float32 image in
  [0, 1] and, for gated models (LBAG), the predicted blur mask ``H×W`` float32: the full-scale
  gate, in [0.1, 1] for the default clamp. No mask file is ever needed. Sizes that are not
  multiples of 4 are reflect-padded and cropped back; ``tile`` bounds memory.
- :func:`deblur_paths` runs files or folders and writes, per input ``<name>``:
  ``<name>_deblurred.png`` (8-bit sRGB), ``<name>_mask.png`` (the soft predicted mask,
  ``round(255·gate)``, gated models only) and ``<name>_mask_bin.png`` (the mask binarised at
  gate ≥ 0.5: 0/255, the ReLoBlur mask convention).

Precision: ``dtype="fp32"`` everywhere; ``"bf16"`` (autocast, and channels_last) only on CUDA.
On CPU ``bf16`` is refused with :class:`InferenceError` (bf16 autocast on most CPUs is slower
than fp32 and its accuracy here is unvalidated).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from core.filestore import write_png
from deblur.archs import CheckpointMismatchError, build_model, model_output
from deblur.data import DatasetError, list_images, read_image

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "ImageInputError",
    "InferenceError",
    "atomic_torch_save",
    "deblur_image",
    "deblur_paths",
    "load_checkpoint",
    "prepare_image",
    "random_init_checkpoint",
    "resolve_device",
    "tile_starts",
]

CHECKPOINT_FORMAT = "reloblur-deblur-checkpoint"
DType = Literal["fp32", "bf16"]
MIN_SIDE = 16
DEFAULT_MAX_SIDE = 8192


class InferenceError(Exception):
    """Inference cannot proceed (bad option, unavailable device, ...)."""


class ImageInputError(InferenceError, ValueError):
    """An input image is unusable: too small, too large, wrong channels or dtype, unreadable."""


class CheckpointError(InferenceError):
    """A checkpoint file is missing, corrupt, or does not fit the model; ``path`` names it."""

    def __init__(self, message: str, path: Path | str | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)


# ---------------------------------------------------------------------------------- devices


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


# ------------------------------------------------------------------------------ checkpoints


def atomic_torch_save(obj: Any, path: Path | str) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then ``os.replace``: the
    file at ``path`` is always either the old or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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


# ---------------------------------------------------------------------------------- images


def prepare_image(
    image: np.ndarray, max_side: int = DEFAULT_MAX_SIDE, min_side: int = MIN_SIDE
) -> np.ndarray:
    """Any accepted image → float32 ``H×W×3`` in [0, 1] (RGB order assumed).

    Gray (``H×W`` or ``H×W×1``) → 3 equal channels; ``H×W×4`` → alpha dropped; uint8 → /255;
    uint16 → /65535; float → as is (must be finite and in [0, 1] within 1e-3, then clipped).
    :class:`ImageInputError` says what is wrong otherwise, and for sides below ``min_side``
    (16) or above ``max_side`` (8192) px.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3:
        raise ImageInputError(f"expected an H×W or H×W×C image, got shape {arr.shape}")
    if arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.shape[2] != 3:
        raise ImageInputError(f"expected 1, 3 or 4 channels, got {arr.shape[2]} (shape {arr.shape})")
    h, w = arr.shape[:2]
    if min(h, w) < min_side:
        raise ImageInputError(f"image is {w}×{h} px; both sides must be at least {min_side} px")
    if max(h, w) > max_side:
        raise ImageInputError(
            f"image is {w}×{h} px; sides above {max_side} px are refused (raise max_side, or "
            "downscale the image)"
        )
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / np.float32(65535.0)
    if np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            raise ImageInputError("float image contains NaN or infinite values")
        lo, hi = float(out.min()), float(out.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ImageInputError(
                f"float image values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}] "
                "(pass uint8/uint16 arrays for integer data)"
            )
        return np.clip(out, 0.0, 1.0)
    raise ImageInputError(f"unsupported image dtype {arr.dtype} (use uint8, uint16 or float)")


def _ceil4(x: int) -> int:
    return -(-x // 4) * 4


def tile_starts(length: int, tile: int, overlap: int) -> tuple[int, list[int]]:
    """Tile length and start offsets along one axis of ``length`` px (a multiple of 4).

    The fewest tiles of at most ``tile`` px that overlap by ``overlap`` px cover the axis; the
    tile length is then shrunk to spread them evenly (a multiple of 4, so that the model's ½ and
    ¼ scales stay on the whole image's grid) and starts are multiples of 4; consecutive tiles
    overlap by at least ``overlap − 3`` px.
    """
    if length <= tile:
        return length, [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    t = min(tile, _ceil4(math.ceil((length + (n - 1) * overlap) / n)))
    span = length - t
    starts = [(i * span // (n - 1)) // 4 * 4 for i in range(n - 1)] + [span]
    return t, starts


def _ramp(t: int, overlap: int, rise: bool, fall: bool) -> np.ndarray:
    """Per-axis blending weight of a tile: linear ramps of ``overlap`` px at edges shared with
    a neighbour, 1 elsewhere (strictly positive)."""
    w = np.ones(t, np.float32)
    if overlap > 0:
        r = (np.arange(t, dtype=np.float32) + 0.5) / overlap
        if rise:
            w = np.minimum(w, r)
        if fall:
            w = np.minimum(w, r[::-1])
    return w


def _run(model: nn.Module, x: torch.Tensor, bf16: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """``1×3×h×w`` on the model's device → (``h×w×3`` float32, ``h×w`` float32 or None)."""
    if x.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        result = model_output(model(x))
        img, gate = result.final, result.final_gate
    img_np = img[0].float().permute(1, 2, 0).cpu().numpy()
    gate_np = None if gate is None else gate[0, 0].float().cpu().numpy()
    return img_np, gate_np


def deblur_image(
    model: nn.Module,
    image: np.ndarray,
    device: str | torch.device | None = None,
    dtype: DType = "fp32",
    tile: int | None = None,
    overlap: int = 32,
    max_side: int = DEFAULT_MAX_SIDE,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Deblur one image → ``(H×W×3 float32 in [0, 1], H×W float32 mask or None)``.

    ``image``: see :func:`prepare_image`. ``device``: ``None`` = the model's device (the model
    is moved otherwise). The image is reflect-padded to multiples of 4 and cropped back. With
    ``tile`` (px, a multiple of 4, ≥ 16 and > ``overlap``) the padded image is processed in
    overlapping tiles (:func:`tile_starts`) blended with linear ramps over the overlaps, so
    memory is bounded by the tile size; results differ slightly from the whole image near the
    seams (the network sees less context). The mask is the full-scale gate (``None`` for models
    without gates); the deblurred image is clipped to [0, 1].
    """
    if dtype not in ("fp32", "bf16"):
        raise InferenceError(f"dtype must be 'fp32' or 'bf16', got {dtype!r}")
    img = prepare_image(image, max_side=max_side)
    dev = next(model.parameters()).device if device is None else resolve_device(device)
    model = model.to(dev)
    bf16 = dtype == "bf16"
    if bf16 and dev.type != "cuda":
        raise InferenceError(
            "bf16 inference is only supported on CUDA; use dtype fp32 on CPU "
            "(bf16 autocast on CPU is slower than fp32 on most CPUs and unvalidated here)"
        )
    if tile is not None and (tile % 4 or tile < MIN_SIDE or tile <= overlap or overlap < 0):
        raise InferenceError(
            f"tile must be a multiple of 4, ≥ {MIN_SIDE} and larger than overlap ({overlap}); got {tile}"
        )
    h, w = img.shape[:2]
    hp, wp = _ceil4(h), _ceil4(w)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].to(dev)
            if (hp, wp) != (h, w):
                x = F.pad(x, (0, wp - w, 0, hp - h), mode="reflect")
            if tile is None or (hp <= tile and wp <= tile):
                out, gate = _run(model, x, bf16)
            else:
                out, gate = _run_tiled(model, x, bf16, tile, overlap)
    finally:
        model.train(was_training)
    out = np.clip(out[:h, :w], 0.0, 1.0)
    if gate is not None:
        gate = np.clip(gate[:h, :w], 0.0, 1.0)
    return np.ascontiguousarray(out), None if gate is None else np.ascontiguousarray(gate)


def _run_tiled(
    model: nn.Module, x: torch.Tensor, bf16: bool, tile: int, overlap: int
) -> tuple[np.ndarray, np.ndarray | None]:
    hp, wp = x.shape[-2:]
    th, ys = tile_starts(hp, tile, overlap)
    tw, xs = tile_starts(wp, tile, overlap)
    acc = np.zeros((hp, wp, 3), np.float32)
    acc_gate: np.ndarray | None = None
    weight = np.zeros((hp, wp), np.float32)
    for iy, y0 in enumerate(ys):
        wy = _ramp(th, overlap, iy > 0, iy < len(ys) - 1)
        for ix, x0 in enumerate(xs):
            wx = _ramp(tw, overlap, ix > 0, ix < len(xs) - 1)
            wgt = wy[:, None] * wx[None, :]
            out, gate = _run(model, x[..., y0 : y0 + th, x0 : x0 + tw], bf16)
            acc[y0 : y0 + th, x0 : x0 + tw] += out * wgt[..., None]
            weight[y0 : y0 + th, x0 : x0 + tw] += wgt
            if gate is not None:
                if acc_gate is None:
                    acc_gate = np.zeros((hp, wp), np.float32)
                acc_gate[y0 : y0 + th, x0 : x0 + tw] += gate * wgt
    out = acc / weight[..., None]
    return out, None if acc_gate is None else acc_gate / weight


# ----------------------------------------------------------------------------------- files






def _expand_inputs(inputs: Path | str | Iterable[Path | str]) -> list[tuple[Path, Path]]:
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
    :func:`load_checkpoint`) once it is loaded, before the first image.
    """
    jobs = _expand_inputs(inputs)
    model, meta = load_checkpoint(checkpoint, device)
    if on_model is not None:
        on_model(meta)
    dev = next(model.parameters()).device
    out_dir = Path(out_dir)
    rows: list[dict[str, Any]] = []
    for src, stem in tqdm(jobs, desc="deblur", unit="img", disable=not progress):
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
    return rows
