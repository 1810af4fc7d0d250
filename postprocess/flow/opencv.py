"""The OpenCV alternatives to Pyflow: DeepFlow and DIS, on the pair's 8-bit luminance.

reference, moving: (H, W, 3) RGB or (H, W) grey float images in [0, 1], same size; each returns
the (H, W, 2) float32 flow in pixels in the convention of :mod:`postprocess.flow`.
"""

from __future__ import annotations

import cv2
import numpy as np

from postprocess.flow.common import _LUMA, FlowInputError, _check_pair


def _to_grey_u8(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8 luminance of a float image in [0, 1] (values outside are clipped)."""
    if image.ndim == 3:
        grey = _LUMA[0] * image[:, :, 0] + _LUMA[1] * image[:, :, 1] + _LUMA[2] * image[:, :, 2]
    else:
        grey = image
    return np.clip(np.rint(grey * 255.0), 0, 255).astype(np.uint8)


def deepflow_flow(reference, moving) -> np.ndarray:
    """OpenCV DeepFlow (cv2.optflow) on the 8-bit luminance; same shapes and convention as
    :func:`pyflow_flow`: (H, W, 2) float32 px, reference(x, y) ~ moving(x + dx, y + dy)."""
    ref, mov = _check_pair(reference, moving)
    algo = cv2.optflow.createOptFlow_DeepFlow()
    flow = algo.calc(_to_grey_u8(ref), _to_grey_u8(mov), None)
    return np.ascontiguousarray(flow, dtype=np.float32)


_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def dis_flow(reference, moving, preset: str = "medium", finest_scale: int = 0) -> np.ndarray:
    """OpenCV DIS optical flow (preset ``ultrafast`` | ``fast`` | ``medium``, finest pyramid
    scale ``finest_scale``, 0 = full resolution) on the 8-bit luminance; same shapes and
    convention as :func:`pyflow_flow`."""
    ref, mov = _check_pair(reference, moving)
    if preset not in _DIS_PRESETS:
        raise FlowInputError(f"unknown DIS preset {preset!r}; choose one of {sorted(_DIS_PRESETS)}")
    algo = cv2.DISOpticalFlow_create(_DIS_PRESETS[preset])
    algo.setFinestScale(int(finest_scale))
    flow = algo.calc(_to_grey_u8(ref), _to_grey_u8(mov), None)
    return np.ascontiguousarray(flow, dtype=np.float32)
