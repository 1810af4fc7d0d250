"""β (Eq. 6–7) from camera-RGB frames after aligning B onto S: the scene's, or one pair's own.

Frames are (H, W, 3) colour-corrected camera RGB on the white range; the flow is the scene's
S → B flow (H, W, 2) float32 px; β is (3,) float64, the per-channel ratio mean(S) / mean(B).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from core.dng import RawMetadata
from core.models import Frame
from postprocess.params import PipelineParams
from postprocess.stages.common import PipelineError, SceneContext
from postprocess.stages.frames import camera_rgb, load_frame
from postprocess.warp import warp

BETA_BORDER_PX = 8  # pixels at the frame edge left out of the aligned β means
CLIP_LEVEL = 0.98  # a pixel this close to the white level is left out of the β means


def valid_flow_mask(flow: np.ndarray, border: int = BETA_BORDER_PX) -> np.ndarray:
    """(H, W) bool: pixels whose flow target lies at least ``border`` px inside the frame."""
    h, w = flow.shape[:2]
    xs = np.arange(w, dtype=np.float32)[None, :] + flow[..., 0]
    ys = np.arange(h, dtype=np.float32)[:, None] + flow[..., 1]
    valid = (xs >= border) & (xs <= w - 1 - border) & (ys >= border) & (ys <= h - 1 - border)
    valid[:border] = valid[-border:] = False
    valid[:, :border] = valid[:, -border:] = False
    return valid


def aligned_beta(sharp_rgb: np.ndarray, blurred_rgb: np.ndarray, flow: np.ndarray,
                 exclude: np.ndarray | None = None) -> np.ndarray:
    """β (3,) from camera-RGB frames after warping B onto S (bilinear: means need no CMTF).

    sharp_rgb, blurred_rgb: (H, W, 3) colour-corrected camera RGB on the white range; flow:
    the S → B flow. Means over pixels whose flow stays inside the frame, not clipped in either
    frame, and not in ``exclude`` ((H, W) bool, True = leave out).
    """
    aligned = warp(blurred_rgb, flow, "linear")
    keep = valid_flow_mask(flow)
    keep &= np.all(sharp_rgb < CLIP_LEVEL, axis=2) & np.all(aligned < CLIP_LEVEL, axis=2)
    if exclude is not None:
        keep &= ~exclude
    if np.count_nonzero(keep) < 64:
        raise PipelineError("fewer than 64 usable pixels for β: the pair is clipped or the flow leaves the frame")
    s = sharp_rgb[keep].mean(axis=0, dtype=np.float64)
    b = aligned[keep].mean(axis=0, dtype=np.float64)
    if np.any(b <= 0) or np.any(s <= 0):
        raise PipelineError(f"channel means must be positive for β; sharp {s}, blurred {b}")
    return s / b


def pair_beta(data_dir: Path, params: PipelineParams, ctx: SceneContext, b: tuple[np.ndarray, RawMetadata],
              s: tuple[np.ndarray, RawMetadata], reference_sharp: Frame) -> np.ndarray:
    """β of one pair from its own aligned means (``photometric.source == "pair"``); with
    ``photometric.static_only`` the pixels where the pair's S frame differs from the reference
    S frame (dilated by 15 px) are left out. b, s: the pair's (CFA, metadata)."""
    sharp = camera_rgb(*s, ctx.calibrations["S"])
    exclude = None
    if params.photometric.static_only:
        if ctx.reference_sharp is None:
            ctx.reference_sharp = load_frame(data_dir, reference_sharp)
        ref = camera_rgb(*ctx.reference_sharp, ctx.calibrations["S"])
        change = np.abs(sharp - ref).max(axis=2) > params.photometric.change_threshold * (
            ref.mean(axis=2) + 1e-3)
        exclude = cv2.dilate(change.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    return aligned_beta(sharp, camera_rgb(*b, ctx.calibrations["B"]), ctx.flow, exclude)
