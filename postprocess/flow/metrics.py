"""Flow accuracy: the mean end-point error (px) against a known flow."""

from __future__ import annotations

import numpy as np

from postprocess.flow.common import FlowInputError, _check_flow


def end_point_error(flow, truth, valid=None) -> float:
    """Mean end-point error (px): mean of |flow − truth| (Euclidean, per pixel) over the
    (H, W) boolean mask ``valid`` (default: every pixel). flow, truth: (H, W, 2)."""
    f = _check_flow("flow", flow)
    t = _check_flow("truth", truth)
    if f.shape != t.shape:
        raise FlowInputError(f"size mismatch: flow has shape {f.shape}, truth has {t.shape}")
    err = np.hypot(f[:, :, 0] - t[:, :, 0], f[:, :, 1] - t[:, :, 1])
    if valid is None:
        valid = np.ones(err.shape, bool)
    valid = np.asarray(valid, bool)
    if valid.shape != err.shape:
        raise FlowInputError(f"valid mask has shape {valid.shape}, expected {err.shape}")
    if not valid.any():
        raise FlowInputError("valid mask selects no pixel")
    vals = err[valid]
    if not np.all(np.isfinite(vals)):
        raise FlowInputError("flow or truth has non-finite vectors inside the valid mask")
    return float(vals.mean())
