"""A calibration's residual colour cast as a heat-map PNG (what the console shows).

``residual_heatmap_png(residual, range_pct)``: ``residual`` (3, K_rows, K_cols) fractions from
:func:`postprocess.calibration.residual_cast`; three panels side by side (R, G, B), each patch a
square of ``CELL_PX`` px, on a diverging blue–white–red scale from −``range_pct`` % to
+``range_pct`` % (values beyond are clipped), with a grey gap between panels.
"""

from __future__ import annotations

import cv2
import numpy as np

CELL_PX = 24
GAP_PX = 4


def _diverging(t: np.ndarray) -> np.ndarray:
    """t in [−1, 1] → (…, 3) uint8 BGR: −1 blue (59, 76, 192), 0 white, +1 red (180, 4, 38)."""
    t = np.clip(t, -1.0, 1.0)[..., None]
    white = np.array([255.0, 255.0, 255.0])
    blue = np.array([192.0, 76.0, 59.0])  # BGR
    red = np.array([38.0, 4.0, 180.0])
    out = np.where(t < 0, white + (blue - white) * (-t), white + (red - white) * t)
    return np.rint(out).astype(np.uint8)


def residual_heatmap_png(residual: np.ndarray, range_pct: float) -> bytes:
    """The heat map (module docstring) as PNG bytes; ValueError for a bad shape or range."""
    residual = np.asarray(residual, dtype=np.float64)
    if residual.ndim != 3 or residual.shape[0] != 3:
        raise ValueError(f"residual must be (3, rows, cols); got {residual.shape}")
    if not 0 < range_pct <= 100:
        raise ValueError(f"range_pct must be in (0, 100] %, got {range_pct}")
    panels = []
    for channel in residual:
        cells = _diverging(channel * 100.0 / range_pct)
        panels.append(cv2.resize(cells, None, fx=CELL_PX, fy=CELL_PX, interpolation=cv2.INTER_NEAREST))
        panels.append(np.full((panels[-1].shape[0], GAP_PX, 3), 128, np.uint8))
    ok, png = cv2.imencode(".png", np.hstack(panels[:-1]))
    if not ok:  # pragma: no cover - encoding a uint8 array does not fail
        raise ValueError("PNG encoding failed")
    return png.tobytes()
