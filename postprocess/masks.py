"""LBFMG ground-truth blur masks by Gaussian-mixture background subtraction.

ReLoBlur's LBFMG masks come from Zivkovic's adaptive Gaussian-mixture background subtractor
(OpenCV MOG2). For a target blurred image BT of a scene, every *other* sharp and blurred image
of the same scene is fed to the subtractor so that it learns the background (the moving objects
are at different places in different pairs, so each background pixel is uncovered in most
images); then BT is applied with ``learningRate=0`` (the target does not update the model) and
its foreground is the mask.

Inputs are 8-bit sRGB images, what the pipeline writes after alignment: (H, W, 3) uint8, or
float images in [0, 1] which are converted by ``to_uint8`` (x 255, rounded, clipped; *no*
transfer curve: give display-referred sRGB, not linear values).

Shadows: with ``detect_shadows`` MOG2 marks shadow pixels 127 (255 = foreground, 0 =
background). ``shadow_policy`` says what 127 becomes: "foreground" (default: in a blurred image the
semi-transparent tail of a moving object darkens the background without changing its hue, which
is exactly what MOG2 calls a shadow, and it is part of the blur mask) or "background".

Pre-processing: a ``median_size`` (default 3) median filter on every image before MOG2.

Post-processing, in this order: binarise (255 -> True, 127 -> per the policy, 0 -> False);
morphological opening with an ``open_size`` ellipse (drops isolated noise pixels), closing with
a ``close_size`` ellipse (fills holes inside the object); connected components (8-connected)
smaller than ``min_area`` pixels are dropped. A size of 0 or 1 skips that step.

Default parameters were chosen by a sweep on the digital twin, see ``DEFAULT_SWEEP_NOTE``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np
from pydantic import ConfigDict, Field, field_validator

from core.config import StrictModel
from core.errors import UserError

DEFAULT_SWEEP_NOTE = """\
Sweep on the digital twin (presets pedestrian, car, ball at 538x360, 8 pairs per scene, every
blurred image of the scene as a target; inputs: the twin's noise-free linear truth + Gaussian
noise sigma 0.0075 (linear), sRGB curve, x255 rounding), score = mean IoU against the true blur
mask per preset, judged by the worst preset:
1. seeds 0-2, history 500, var_threshold {16, 36}, shadows -> background / foreground, open {0, 3},
   close {0, 7}, min_area {0, 50}: 127 -> foreground wins everywhere (car: 0.78 vs 0.50 with
   open 3 / close 7); without a closing the car's mask is holey (IoU 0.36-0.67).
2. seeds 0-1, shadows -> foreground, min_area 50, var_threshold {6, 9, 12, 16}, close {7, 11, 15},
   open {3, 5}: an opening of 5 eats the thin blur tails (car 0.50-0.87); var_threshold 6 lets the
   noise through on the ball (0.58-0.76); best worst-preset: var_threshold 12, open 3, close 15:
   pedestrian 0.974, car 0.911, ball 0.902 (var_threshold 16 with the same morphology:
   0.968 / 0.891 / 0.915).
3. seeds 0-1, noise sigma 0.0075 and 0.01: without pre-filtering the ball drops to 0.66-0.69 at
   sigma 0.01 (noise specks); a 3x3 median on every input image fixes it: mean IoU pedestrian
   0.970 / 0.975, car 0.927 / 0.920, ball 0.962 / 0.959 (sigma 0.0075 / 0.01; var_threshold 12,
   min_area 50 or 150 alike; a Gaussian sigma 1 pre-blur: 0.956, 0.931, 0.966 at 0.0075).
Chosen defaults: median 3, history 500 (OpenCV's; with <= 2n images the automatic learning rate
is 1/k, an equal-weight model of all fed images), var_threshold 12, detect_shadows True, 127 ->
foreground (a blurred object's semi-transparent tail darkens the background like a shadow),
open 3, close 15, min_area 50. The morphology sizes are in pixels for a ~540-px-wide image;
scale them with the image width (x4 at the full 2152-px sensor).
With these defaults, seeds 0-2, 8 pairs, noise sigma 0 / 0.0075 / 0.01: mean IoU pedestrian
0.961-0.977, car 0.914-0.943, ball 0.956-0.972."""


class MaskInputError(UserError, ValueError):
    """Bad input to the mask functions: too few images, mismatched sizes or dtypes."""


class MaskParams(StrictModel):
    """MOG2 and post-processing parameters.

    history: MOG2 history (frames); with ``learning_rate=None`` OpenCV adapts at 1/min(n, history).
    var_threshold: squared Mahalanobis distance threshold of MOG2 (OpenCV default 16).
    detect_shadows: let MOG2 label shadows (value 127).
    shadow_policy: "background" or "foreground": what a 127 pixel becomes.
    open_size, close_size: ellipse sizes (px) of the opening / closing; 0 or 1 = skip.
    min_area: connected components smaller than this (px) are dropped; 0 = keep all.
    learning_rate: learning rate while feeding the other images; None = OpenCV's automatic
        1/min(frames seen, history), i.e. an equal-weight mean over the fed images.
    median_size: median filter (odd px; 0 or 1 = off) applied to every image, target and others,
        before MOG2: removes the pixel noise that otherwise passes the variance test as specks.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    history: int = Field(500, ge=1)
    var_threshold: float = Field(12.0, gt=0)
    detect_shadows: bool = True
    shadow_policy: Literal["foreground", "background"] = "foreground"
    open_size: int = Field(3, ge=0)
    close_size: int = Field(15, ge=0)
    min_area: int = Field(50, ge=0)
    learning_rate: float | None = None
    median_size: int = Field(3, ge=0)

    @field_validator("median_size")
    @classmethod
    def _odd_median(cls, v: int) -> int:
        if v > 1 and v % 2 == 0:
            raise ValueError("median_size must be 0, 1 or an odd number >= 3")
        return v


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W[, C]) uint8 unchanged; float in [0, 1] -> round(x * 255) clipped to 0..255."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    if not np.issubdtype(image.dtype, np.floating):
        raise MaskInputError(f"images must be uint8 or float in [0, 1], got {image.dtype}")
    if not np.all(np.isfinite(image)):
        raise MaskInputError("image contains NaN or infinite values")
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def binarise(raw: np.ndarray, shadow_policy: str = "foreground") -> np.ndarray:
    """MOG2 output (H, W) uint8 {0, 127, 255} -> (H, W) bool; 127 per ``shadow_policy``."""
    fg = raw == 255
    if shadow_policy == "foreground":
        fg |= raw == 127
    return fg


def clean(mask: np.ndarray, params: MaskParams) -> np.ndarray:
    """Opening, closing and small-component removal of a (H, W) bool mask (see module doc)."""
    m = mask.astype(np.uint8)
    if params.open_size > 1:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (params.open_size, params.open_size))
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, k)
    if params.close_size > 1:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (params.close_size, params.close_size))
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, k)
    if params.min_area > 0:
        n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        keep = np.zeros(n, bool)
        keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= params.min_area
        m = keep[labels].astype(np.uint8)
    return m.astype(bool)


def _prepare(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    out = [to_uint8(im) for im in images]
    shape = out[0].shape
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 3)):
        raise MaskInputError(f"images must be (H, W) or (H, W, 3), got {shape}")
    for im in out:
        if im.shape != shape:
            raise MaskInputError(f"all images must have the same shape: {im.shape} != {shape}")
    return out


def raw_foreground(target: np.ndarray, others: Sequence[np.ndarray],
                   params: MaskParams = MaskParams()) -> np.ndarray:
    """MOG2's raw output for ``target`` after feeding ``others``: (H, W) uint8 {0, 127, 255}."""
    if len(others) < 1:
        raise MaskInputError("need the target and at least one other image (2 in all)")
    images = _prepare([target, *others])
    if params.median_size > 1:
        images = [cv2.medianBlur(im, params.median_size) for im in images]
    mog = cv2.createBackgroundSubtractorMOG2(history=int(params.history),
                                             varThreshold=float(params.var_threshold),
                                             detectShadows=bool(params.detect_shadows))
    rate = -1.0 if params.learning_rate is None else float(params.learning_rate)
    for im in images[1:]:
        mog.apply(im, learningRate=rate)
    return mog.apply(images[0], learningRate=0.0)


def lbfmg_mask(target: np.ndarray, others: Sequence[np.ndarray],
               params: MaskParams = MaskParams()) -> np.ndarray:
    """LBFMG mask of ``target``: (H, W) bool, True where MOG2 finds foreground.

    target: (H, W, 3) uint8 sRGB (or float in [0, 1]); others: the scene's other images, same
    shape, fed in the given order with ``params.learning_rate``; the target is applied last with
    learning rate 0. Raises MaskInputError for fewer than 2 images or differing shapes.
    """
    raw = raw_foreground(target, others, params)
    return clean(binarise(raw, params.shadow_policy), params)


def scene_masks(blurred_images: Sequence[np.ndarray], sharp_images: Sequence[np.ndarray],
                params: MaskParams = MaskParams()) -> list[np.ndarray]:
    """One LBFMG mask per blurred image of a scene.

    For blurred image i the other images are fed in this fixed order: for each pair j = 0..n-1,
    j != i: sharp_j then blurred_j; then sharp_i (the sharp image of the same pair) last.
    blurred_images, sharp_images: equal-length sequences of (H, W, 3) uint8 sRGB (or float in
    [0, 1]). Returns a list of (H, W) bool masks.
    """
    if len(blurred_images) != len(sharp_images):
        raise MaskInputError("need as many sharp images as blurred images")
    if len(blurred_images) + len(sharp_images) < 2:
        raise MaskInputError("need at least 2 images in the scene")
    return [lbfmg_mask(target, feed_order(i, blurred_images, sharp_images), params)
            for i, target in enumerate(blurred_images)]


def feed_order(i: int, blurred_images: Sequence[np.ndarray],
               sharp_images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The images fed to MOG2 before blurred image ``i`` (see :func:`scene_masks`)."""
    others = []
    for j in range(len(blurred_images)):
        if j != i:
            others += [sharp_images[j], blurred_images[j]]
    others.append(sharp_images[i])
    return others


def iou(mask: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two (H, W) bool masks; 1.0 when both are empty."""
    mask = np.asarray(mask, bool)
    truth = np.asarray(truth, bool)
    if mask.shape != truth.shape:
        raise MaskInputError(f"mask shapes differ: {mask.shape} != {truth.shape}")
    union = np.count_nonzero(mask | truth)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(mask & truth) / union)


def linear_to_srgb8(linear: np.ndarray) -> np.ndarray:
    """Linear sRGB float (any shape, nominally [0, 1]) -> 8-bit sRGB (IEC 61966-2-1 curve)."""
    x = np.clip(np.asarray(linear, np.float64), 0.0, 1.0)
    encoded = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return np.clip(np.rint(encoded * 255.0), 0, 255).astype(np.uint8)
