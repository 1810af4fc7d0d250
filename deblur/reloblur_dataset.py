"""ReLoBlur's folder layout as a dataset of full-image pairs, and the image and mask files in it.

:class:`ReLoBlurDataset` reads ReLoBlur's own layout (the public dataset's and our export's)::

    <root>/dataset/{train,test}/<scene>/<seq>/<idx>_blur.png    8-bit sRGB RGB
    <root>/dataset/{train,test}/<scene>/<seq>/<idx>_sharp.png
    <root>/masks/{train,test}/<scene>/<seq>/<idx>.png           blur mask, 0/255, one channel

Samples are dicts ``{"blur": 3×H×W, "sharp": 3×H×W, "mask": 1×H×W, "id": str}``: float32
tensors in [0, 1] (the mask is 0/1). :func:`read_image` / :func:`read_mask` decode one file
(RGB ``H×W×3`` uint8/uint16 as stored; bool ``H×W``); a bad file is a :class:`DatasetError`
subclass naming it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from torch.utils.data import Dataset

from core import layouts
from core.errors import UserError
from core.samples import pair_sample

__all__ = [
    "IMAGE_SUFFIXES",
    "CorruptImageError",
    "DatasetError",
    "EmptyDatasetError",
    "MissingFileError",
    "OnBad",
    "ReLoBlurDataset",
    "SizeMismatchError",
    "list_images",
    "read_image",
    "read_mask",
]

OnBad = Literal["error", "skip"]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


# ----------------------------------------------------------------------------------- errors


class DatasetError(UserError):
    """A dataset file problem; ``path`` names the file (or the first of several)."""

    http_status = 422

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
        image_dir = self.root / layouts.DATASET_DIR / split
        if not image_dir.is_dir():
            raise EmptyDatasetError(f"no image folder {image_dir} (expected <root>/dataset/{split})", image_dir)
        wanted = None if scenes is None else set(scenes)
        self.samples: list[tuple[str, Path, Path, Path]] = []
        for scene, seq, idx, blur in layouts.blurred_images(self.root, split):
            if wanted is not None and scene not in wanted:
                continue
            sid = layouts.sample_id(scene, seq, idx)
            sharp = layouts.sharp_path(self.root, split, scene, seq, idx)
            mask = layouts.mask_path(self.root, split, scene, seq, idx)
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


def list_images(folder: Path | str) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
