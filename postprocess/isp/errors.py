"""The ISP's named errors (calibration errors too: a bad whiteboard fails a scene like a bad lightbox)."""

from __future__ import annotations

from postprocess.calibration import CalibrationError


class IspError(CalibrationError):
    """Base class of the ISP's own errors."""


class WhiteboardSaturatedError(IspError):
    """Too many whiteboard pixels are clipped: the gains would be biased."""


class WhiteboardTooDarkError(IspError):
    """The whiteboard signal is too low for reliable gains."""
