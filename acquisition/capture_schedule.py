"""What a capture session does, before any device is touched: the trigger schedule of a scene
and the GenICam (SFNC) settings each camera gets for hardware-triggered RAW capture.

Trigger indices: whiteboard 0, static reference 1, pairs 2..n+1. ``ExposureTime`` is in µs,
``Gain`` in dB; a camera that does not take one of :data:`ESSENTIAL_FEATURES` cannot capture.
"""

from __future__ import annotations

from acquisition.rig import Stage

ESSENTIAL_FEATURES = ("ExposureTime", "TriggerMode", "TriggerSource", "PixelFormat")
PIXEL_FORMAT_PREFIX = {"RGGB": "BayerRG", "BGGR": "BayerBG", "GRBG": "BayerGR", "GBRG": "BayerGB"}


def trigger_schedule(n_pairs: int) -> list[tuple[int, Stage]]:
    """(trigger index, stage) of a scene session: whiteboard 0, reference 1, pairs 2..n+1."""
    if n_pairs < 1:
        raise ValueError(f"a scene needs at least one pair, got {n_pairs}")
    return [
        (0, Stage("whiteboard", 0, n_pairs)),
        (1, Stage("reference", 0, n_pairs)),
        *[(2 + i, Stage("pair", i, n_pairs)) for i in range(n_pairs)],
    ]


def camera_settings(exposure_s: float, optics) -> dict[str, object]:
    """GenICam (SFNC) settings for hardware-triggered RAW capture; ExposureTime in µs."""
    return {
        "AcquisitionMode": "Continuous",
        "PixelFormat": f"{PIXEL_FORMAT_PREFIX[optics.cfa_pattern]}{optics.bit_depth}",
        "TriggerSelector": "FrameStart",
        "TriggerMode": "On",
        "TriggerSource": "Line0",
        "TriggerActivation": "RisingEdge",
        "ExposureMode": "Timed",
        "ExposureTime": exposure_s * 1e6,
        "Gain": 0.0,
    }
