"""Training and evaluation data for the deblurring models.

Sources
-------
- :class:`ReLoBlurDataset` reads ReLoBlur's own layout (the public dataset's and our export's)::

      <root>/dataset/{train,test}/<scene>/<seq>/<idx>_blur.png    8-bit sRGB RGB
      <root>/dataset/{train,test}/<scene>/<seq>/<idx>_sharp.png
      <root>/masks/{train,test}/<scene>/<seq>/<idx>.png           blur mask, 0/255, one channel

- :class:`TwinPairDataset` renders pairs from the rig's digital twin on the fly. Twin pairs are
  *ideal* pairs: the blurred camera's noise-free view already aligned onto the sharp camera's
  grid, with the true (geometric) blur mask. They skip the RAW → post-processing pipeline (no
  sensor noise, demosaicing, colour or geometric correction residuals), so they are cleaner
  than ReLoBlur's pairs; optional Gaussian noise can be added to the blurred input.
- :func:`export_twin_dataset` writes twin pairs in the ReLoBlur layout (scene-disjoint splits).

Samples are dicts ``{"blur": 3×H×W, "sharp": 3×H×W, "mask": 1×H×W, "id": str}``: float32
tensors in [0, 1] (the mask is 0/1). Patches for training come from :class:`PatchDataset`
(BAPC or uniform crops, :func:`bapc_crop` / :func:`uniform_crop`, numpy ``H×W×C`` arrays) driven
by :class:`StepBatchSampler`, whose draws depend only on (seed, step): a resumed run sees
exactly the batches an uninterrupted run would, whatever the number of workers.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from core.samples import pair_sample, to_float01

__all__ = [
    "CorruptImageError",
    "DatasetError",
    "EmptyDatasetError",
    "MissingFileError",
    "PatchDataset",
    "ReLoBlurDataset",
    "SizeMismatchError",
    "StepBatchSampler",
    "TRAINING_DATASETS_GROUP",
    "training_datasets",
    "dataset_sources",
    "bapc_crop",
    "list_images",
    "make_loader",
    "read_image",
    "read_mask",
    "to_float01",
    "uniform_crop",
    "worker_init_fn",
]

OnBad = Literal["error", "skip"]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


# ----------------------------------------------------------------------------------- errors


class DatasetError(Exception):
    """A dataset file problem; ``path`` names the file (or the first of several)."""

    def __init__(self, message: str, path: Path | str | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)


class MissingFileError(DatasetError, FileNotFoundError):
    """An expected file (sharp image, mask) does not exist."""


class CorruptImageError(DatasetError):
    """A file exists but does not decode as an image (truncated, not an image, empty)."""


class SizeMismatchError(DatasetError):
    """The blurred image, sharp image and mask of one sample differ in size."""


class EmptyDatasetError(DatasetError):
    """No sample was found (wrong root or split)."""


# ----------------------------------------------------------------------------------- images


def read_image(path: Path | str) -> np.ndarray:
    """Read an image file as RGB ``H×W×3`` (uint8 or uint16, as stored; gray → 3 channels,
    alpha dropped). Raises :class:`MissingFileError` / :class:`CorruptImageError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"image file {path} does not exist", path)
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise CorruptImageError(f"image file {path} is corrupt or not an image", path)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    elif img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def read_mask(path: Path | str) -> np.ndarray:
    """Read a blur mask file as ``H×W`` bool (``value > 0``; colour masks: any channel)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"mask file {path} does not exist", path)
    data = np.fromfile(path, dtype=np.uint8)
    m = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if m is None:
        raise CorruptImageError(f"mask file {path} is corrupt or not an image", path)
    return (m > 0).any(axis=2) if m.ndim == 3 else m > 0


# --------------------------------------------------------------------------------- ReLoBlur


class ReLoBlurDataset(Dataset):
    """Pairs of a ReLoBlur-layout root (see the module docstring), full images.

    ``split``: ``"train"`` or ``"test"`` (any folder name under ``dataset/``). ``scenes``: keep
    only these scene folders. ``on_bad``: ``"error"`` (default) raises a :class:`DatasetError`
    subclass naming the file; ``"skip"`` warns (``warnings.warn``, naming the file) and skips
    the sample. Missing sharp images and masks are found when the index is built; corrupt files
    and size mismatches when a sample is loaded, or at construction with ``verify=True`` (decodes
    every file once). In skip mode a sample found bad at load time is replaced by the next good
    one (index + 1, cyclically) and remembered as bad.

    ``ds[i]`` → ``{"blur": 3×H×W, "sharp": 3×H×W, "mask": 1×H×W, "id": "<scene>/<seq>/<idx>"}``,
    float32 in [0, 1]; :meth:`load_arrays` gives the raw numpy arrays (uint8 ``H×W×3`` images,
    bool ``H×W`` mask) for cropping before conversion.
    """

    def __init__(
        self,
        root: Path | str,
        split: str = "train",
        scenes: Sequence[str] | None = None,
        on_bad: OnBad = "error",
        verify: bool = False,
    ) -> None:
        if on_bad not in ("error", "skip"):
            raise ValueError(f"on_bad must be 'error' or 'skip', got {on_bad!r}")
        self.root = Path(root)
        self.split = split
        self.on_bad = on_bad
        image_dir = self.root / "dataset" / split
        mask_dir = self.root / "masks" / split
        if not image_dir.is_dir():
            raise EmptyDatasetError(f"no image folder {image_dir} (expected <root>/dataset/{split})", image_dir)
        wanted = None if scenes is None else set(scenes)
        self.samples: list[tuple[str, Path, Path, Path]] = []
        for blur in sorted(image_dir.glob("*/*/*_blur.png")):
            rel = blur.relative_to(image_dir)
            scene, seq = rel.parts[0], rel.parts[1]
            if wanted is not None and scene not in wanted:
                continue
            idx = blur.name[: -len("_blur.png")]
            sid = f"{scene}/{seq}/{idx}"
            sharp = blur.with_name(f"{idx}_sharp.png")
            mask = mask_dir / scene / seq / f"{idx}.png"
            problem = None
            if not sharp.is_file():
                problem = MissingFileError(f"sample {sid}: sharp image {sharp} does not exist", sharp)
            elif not mask.is_file():
                problem = MissingFileError(f"sample {sid}: mask file {mask} does not exist", mask)
            if problem is not None:
                self._bad(problem)
                continue
            self.samples.append((sid, blur, sharp, mask))
        self._bad_indices: set[int] = set()
        if verify:
            good = []
            for i in range(len(self.samples)):
                try:
                    self._load_index(i)
                except DatasetError as exc:
                    self._bad(exc)
                    continue
                good.append(self.samples[i])
            self.samples = good
        if not self.samples:
            raise EmptyDatasetError(f"no usable sample under {image_dir}", image_dir)

    def _bad(self, exc: DatasetError) -> None:
        if self.on_bad == "error":
            raise exc
        warnings.warn(f"skipping: {exc}", stacklevel=3)

    @property
    def ids(self) -> list[str]:
        return [s[0] for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def _load_index(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        sid, blur_p, sharp_p, mask_p = self.samples[i]
        blur = read_image(blur_p)
        sharp = read_image(sharp_p)
        mask = read_mask(mask_p)
        if blur.shape != sharp.shape:
            raise SizeMismatchError(
                f"sample {sid}: blurred image {blur_p} is {blur.shape[1]}×{blur.shape[0]} but "
                f"sharp image {sharp_p} is {sharp.shape[1]}×{sharp.shape[0]}",
                blur_p,
            )
        if mask.shape != blur.shape[:2]:
            raise SizeMismatchError(
                f"sample {sid}: mask {mask_p} is {mask.shape[1]}×{mask.shape[0]} but "
                f"blurred image {blur_p} is {blur.shape[1]}×{blur.shape[0]}",
                mask_p,
            )
        return blur, sharp, mask, sid

    def load_arrays(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """``(blur H×W×3, sharp H×W×3, mask H×W bool, id)`` as stored (uint8/uint16 images)."""
        n = len(self.samples)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        index %= n
        if self.on_bad == "error":
            return self._load_index(index)
        for k in range(n):
            j = (index + k) % n
            if j in self._bad_indices:
                continue
            try:
                return self._load_index(j)
            except DatasetError as exc:
                self._bad_indices.add(j)
                warnings.warn(f"skipping: {exc}", stacklevel=2)
        raise EmptyDatasetError(f"every sample under {self.root} is bad", self.root)

    def __getitem__(self, index: int) -> dict:
        blur, sharp, mask, sid = self.load_arrays(index)
        return pair_sample(blur, sharp, mask, sid)


# ------------------------------------------------------------------------------------ crops


def _check_crop_inputs(blur, sharp, mask, size: int) -> tuple[int, int]:
    h, w = blur.shape[:2]
    if sharp.shape[:2] != (h, w) or mask.shape[:2] != (h, w):
        raise ValueError(
            f"blur {blur.shape}, sharp {sharp.shape} and mask {mask.shape} must share H×W"
        )
    if size > h or size > w:
        raise ValueError(f"patch size {size} is larger than the image ({w}×{h})")
    return h, w


def _flip(arrays: list[np.ndarray], rng: np.random.Generator, flips: bool) -> tuple[list, bool, bool]:
    hflip = vflip = False
    if flips:
        hflip = bool(rng.random() < 0.5)
        vflip = bool(rng.random() < 0.5)
    out = []
    for a in arrays:
        if hflip:
            a = a[:, ::-1]
        if vflip:
            a = a[::-1]
        out.append(np.ascontiguousarray(a))
    return out, hflip, vflip


def _crop_at(blur, sharp, mask, top: int, left: int, size: int) -> list[np.ndarray]:
    sl = (slice(top, top + size), slice(left, left + size))
    return [blur[sl], sharp[sl], mask[sl]]


def uniform_crop(
    blur: np.ndarray,
    sharp: np.ndarray,
    mask: np.ndarray,
    size: int = 256,
    rng: np.random.Generator | None = None,
    flips: bool = True,
    return_info: bool = False,
):
    """A uniformly placed ``size×size`` patch (the "without BAPC" ablation), then random
    horizontal and vertical flips (probability ½ each).

    numpy in, numpy out: ``blur``/``sharp`` ``H×W×C``, ``mask`` ``H×W``; any dtype, returned
    unchanged (contiguous copies). ``return_info`` adds a dict (top, left, mode, hflip, vflip).
    """
    rng = rng if rng is not None else np.random.default_rng()
    h, w = _check_crop_inputs(blur, sharp, mask, size)
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    out, hflip, vflip = _flip(_crop_at(blur, sharp, mask, top, left, size), rng, flips)
    if return_info:
        info = {"top": top, "left": left, "centre": None, "mode": "uniform", "hflip": hflip, "vflip": vflip}
        return (*out, info)
    return tuple(out)


def bapc_crop(
    blur: np.ndarray,
    sharp: np.ndarray,
    mask: np.ndarray,
    size: int = 256,
    p_blur: float = 0.5,
    rng: np.random.Generator | None = None,
    flips: bool = True,
    erode_px: int = 3,
    return_info: bool = False,
):
    """Blur-aware patch cropping (BAPC) as released with LBAG.

    With probability ``p_blur`` the patch is centred on a pixel drawn uniformly from the blur
    mask's interior (the mask eroded by ``erode_px`` px with a square kernel; if that is empty,
    from the mask itself; if the mask is empty, a uniform crop); otherwise a uniform crop. The
    patch is then clamped inside the image (so near a border the drawn pixel is off-centre but
    still inside the patch), and flipped horizontally and vertically with probability ½ each.

    numpy in, numpy out: ``blur``/``sharp`` ``H×W×C``, ``mask`` ``H×W`` (nonzero = blurred), any
    dtype, returned unchanged (contiguous copies). ``rng``: a ``numpy.random.Generator`` (all
    draws come from it: seeded → deterministic). ``return_info`` adds a dict: ``top``, ``left``
    (before flipping), ``centre`` (the drawn ``(y, x)`` or ``None``), ``mode`` (``"blur"``,
    ``"blur_edge"`` when the eroded mask was empty, ``"uniform"``, ``"uniform_empty_mask"``),
    ``hflip``, ``vflip``.
    """
    rng = rng if rng is not None else np.random.default_rng()
    h, w = _check_crop_inputs(blur, sharp, mask, size)
    if not rng.random() < p_blur:
        return uniform_crop(blur, sharp, mask, size, rng, flips, return_info)
    m = np.asarray(mask) > 0
    mode = "blur"
    if erode_px > 0:
        kernel = np.ones((2 * erode_px + 1, 2 * erode_px + 1), np.uint8)
        inner = cv2.erode(m.astype(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE) > 0
    else:
        inner = m
    ys, xs = np.nonzero(inner)
    if ys.size == 0:
        mode = "blur_edge"
        ys, xs = np.nonzero(m)
    if ys.size == 0:
        out = uniform_crop(blur, sharp, mask, size, rng, flips, return_info)
        if return_info:
            out[-1]["mode"] = "uniform_empty_mask"
        return out
    k = int(rng.integers(0, ys.size))
    cy, cx = int(ys[k]), int(xs[k])
    top = min(max(cy - size // 2, 0), h - size)
    left = min(max(cx - size // 2, 0), w - size)
    out, hflip, vflip = _flip(_crop_at(blur, sharp, mask, top, left, size), rng, flips)
    if return_info:
        info = {"top": top, "left": left, "centre": (cy, cx), "mode": mode, "hflip": hflip, "vflip": vflip}
        return (*out, info)
    return tuple(out)


# ------------------------------------------------------------------------ dataset registry

#: Entry-point group of training-data sources: name → ``factory(data_config, split, seed)``
#: returning a dataset (:mod:`core.samples`) or ``None``; ``split`` is ``"train"`` or ``"val"``.
#: This package provides ``reloblur``; hardware_sim provides ``twin``.
TRAINING_DATASETS_GROUP = "reloblur.training_datasets"


def reloblur_datasets(data: Any, split: Literal["train", "val"], seed: int) -> ReLoBlurDataset:
    """The ``reloblur`` source: :class:`ReLoBlurDataset` of ``data.root``'s ``train_split`` or
    ``val_split`` (``on_bad`` as given); ``seed`` is unused (the files are fixed)."""
    return ReLoBlurDataset(data.root, data.train_split if split == "train" else data.val_split, on_bad=data.on_bad)


def dataset_sources() -> tuple[str, ...]:
    """The installed training-data sources' names, sorted."""
    from importlib.metadata import entry_points

    return tuple(sorted({ep.name for ep in entry_points(group=TRAINING_DATASETS_GROUP)}))


def training_datasets(source: str, data: Any, split: Literal["train", "val"], seed: int):
    """The dataset of ``source`` (an entry point of :data:`TRAINING_DATASETS_GROUP`) for
    ``split``, or ``None`` when that source has none (e.g. the twin without ``val_presets``).
    Raises ``LookupError`` naming the installed sources for an unknown one."""
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group=TRAINING_DATASETS_GROUP)}
    if source not in found:
        raise LookupError(f"unknown data source {source!r}; installed: {', '.join(sorted(found)) or 'none'}")
    return found[source].load()(data, split, seed)


# ----------------------------------------------------------------------- patches, sampling


class PatchDataset(Dataset):
    """Training patches from a full-image dataset (anything with ``load_arrays(i)`` and
    ``len``: :class:`ReLoBlurDataset`, :class:`TwinPairDataset`).

    Keys are ``(index, crop_seed)`` pairs (from :class:`StepBatchSampler`) or plain indices
    (crop seed = index). The patch is :func:`bapc_crop` with ``p_blur`` (``p_blur=0`` is a
    uniform crop: "without BAPC"), drawn from ``numpy.random.default_rng(crop_seed)``. Returns
    the sample dict with ``patch_size``² tensors.
    """

    def __init__(
        self,
        base: Dataset,
        patch_size: int = 256,
        p_blur: float = 0.5,
        flips: bool = True,
        erode_px: int = 3,
    ) -> None:
        if not 0.0 <= p_blur <= 1.0:
            raise ValueError(f"p_blur must lie in [0, 1], got {p_blur}")
        self.base = base
        self.patch_size = int(patch_size)
        self.p_blur = float(p_blur)
        self.flips = flips
        self.erode_px = erode_px

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, crop_seed = key if isinstance(key, tuple) else (int(key), int(key))
        blur, sharp, mask, sid = self.base.load_arrays(index)
        rng = np.random.default_rng(crop_seed)
        blur, sharp, mask = bapc_crop(
            blur, sharp, mask, self.patch_size, self.p_blur, rng, self.flips, self.erode_px
        )
        return pair_sample(blur, sharp, mask, sid)


class StepBatchSampler(Sampler):
    """Batches of ``(index, crop_seed)`` keys for steps ``start_step … total_steps − 1``.

    Step ``s`` draws its ``batch_size`` indices uniformly with replacement (and one crop seed
    per sample) from ``numpy.random.default_rng([seed, s])``: what a step sees depends only on
    the seed and the step, so resuming at step ``s`` reproduces the uninterrupted run exactly.
    (Sampling with replacement instead of epochs; at 300k steps × 12 the difference is nil.)
    """

    def __init__(self, n_samples: int, batch_size: int, seed: int, start_step: int, total_steps: int) -> None:
        if n_samples < 1:
            raise ValueError("no samples to draw from")
        self.n_samples = int(n_samples)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.start_step = int(start_step)
        self.total_steps = int(total_steps)

    def batch_for_step(self, step: int) -> list[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, step])
        idx = rng.integers(0, self.n_samples, size=self.batch_size)
        seeds = rng.integers(0, 2**63 - 1, size=self.batch_size)
        return [(int(i), int(s)) for i, s in zip(idx, seeds, strict=True)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.total_steps):
            yield self.batch_for_step(step)

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)


def worker_init_fn(worker_id: int) -> None:
    """Seed ``random`` and numpy's global RNG in a DataLoader worker from the worker's torch
    seed (which the loader's generator determines)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def make_loader(
    dataset: Dataset,
    batch_size: int | None = None,
    batch_sampler: Sampler | None = None,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    prefetch_factor: int = 4,
    multiprocessing_context: str | None = "spawn",
) -> DataLoader:
    """A DataLoader that keeps a GPU fed: ``num_workers`` processes, ``pin_memory`` when CUDA
    is available, persistent workers and ``prefetch_factor`` batches per worker when
    ``num_workers > 0``, worker RNGs seeded through a seeded generator + :func:`worker_init_fn`.

    Workers are started with ``multiprocessing_context`` (default ``"spawn"``): forked workers
    hang in the twin renderer (``hardware_sim.render`` keeps a module-level thread pool whose
    threads do not survive a fork once the parent has rendered), and fork is also unsafe after
    CUDA or OpenMP initialisation. Spawned workers import the modules afresh (a few seconds,
    once: the workers persist); as usual with spawn, a training *script* must guard its entry
    point with ``if __name__ == "__main__":``.

    Give either ``batch_sampler`` (e.g. :class:`StepBatchSampler`) or ``batch_size``.
    """
    kwargs: dict[str, Any] = {
        "num_workers": num_workers,
        "pin_memory": torch.cuda.is_available(),
        "worker_init_fn": worker_init_fn,
        "generator": torch.Generator().manual_seed(int(seed)),
    }
    if num_workers > 0:
        kwargs["persistent_workers"] = True
        kwargs["prefetch_factor"] = prefetch_factor
        kwargs["multiprocessing_context"] = multiprocessing_context
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, **kwargs)
    if batch_size is None:
        raise ValueError("give batch_size or batch_sampler")
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, **kwargs)


def list_images(folder: Path | str) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

