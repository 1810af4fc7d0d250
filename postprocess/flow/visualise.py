"""The colour-wheel picture of a flow, for the operator (hue = direction, value = magnitude)."""

from __future__ import annotations

import cv2
import numpy as np

from postprocess.flow.common import _check_flow


def flow_to_png(flow, max_magnitude: float | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB picture of a flow for the operator: hue = direction (atan2(dy, dx);
    red = +x (right), yellow-green ~ +y (down), cyan = −x, blue-violet ~ −y), full saturation,
    value = magnitude / ``max_magnitude`` clipped to 1. ``max_magnitude`` (px) defaults to the
    flow's largest finite magnitude (so each picture is scaled on its own); pass a fixed value
    to compare pictures. Non-finite vectors are drawn black."""
    f = _check_flow("flow", flow)
    dx, dy = f[:, :, 0], f[:, :, 1]
    finite = np.isfinite(dx) & np.isfinite(dy)
    mag = np.where(finite, np.hypot(np.where(finite, dx, 0), np.where(finite, dy, 0)), 0.0)
    if max_magnitude is None:
        max_magnitude = float(mag.max()) if mag.size else 0.0
    if max_magnitude <= 0:
        max_magnitude = 1.0
    angle = np.degrees(np.arctan2(np.where(finite, dy, 0), np.where(finite, dx, 0))) % 360.0
    hsv = np.stack(
        [angle, np.ones_like(angle), np.clip(mag / max_magnitude, 0.0, 1.0)], axis=2
    ).astype(np.float32)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
