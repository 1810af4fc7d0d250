"""From an accepted trigger to a RAW frame on the simulated camera: what the renderer must
return, the checks on it, and the frame record.

A renderer (:class:`FrameRenderer`) returns ``(height, width)`` integer counts; they are clipped
to the sensor's white level ``2**bits − 1`` and stored as uint16. The frame's ``timestamp_ns``
is when its exposure started: ``pulse.time_ns`` + the channel's delay (``pulse.delay_s``). A
renderer that raises or returns the wrong shape or dtype gives a :class:`RenderFailure` (its
message is reported when the frame is fetched), never an exception on the worker thread.
"""

from __future__ import annotations

import logging
import queue
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from acquisition.cameras.base import CapturedFrame
from hardware_sim.signals import Pulse

__all__ = ["FrameRenderer", "RenderFailure", "Trigger", "drain", "render_frame"]

# The camera's logger: a render failure is logged as the camera's, as before the split.
_log = logging.getLogger("hardware_sim.sim_camera")


class FrameRenderer(Protocol):
    """Renders what a camera records for one trigger.

    role: the camera's role ("B" or "S"); pulse: the trigger; exposure_s: exposure in seconds;
    gain_db: gain in dB. Returns the RAW frame, (height, width) uint16 (values above the
    camera's white level 2**bits - 1 are clipped, as a saturated sensor reads).
    """

    def __call__(
        self, *, role: str, pulse: Pulse, exposure_s: float, gain_db: float
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class Trigger:
    """An accepted pulse waiting to be rendered: the camera's ``frame_id``, the exposure (s) and
    gain (dB) taken when it arrived, an injected lateness (s) and the camera's generation (a
    trigger of an older generation was flushed)."""

    pulse: Pulse
    frame_id: int
    exposure_s: float
    gain_db: float
    late_s: float
    generation: int


@dataclass(frozen=True)
class RenderFailure:
    """A frame whose rendering failed; ``message`` names the camera and the trigger."""

    message: str


def render_frame(
    renderer: FrameRenderer,
    trigger: Trigger,
    *,
    role: str,
    width: int,
    height: int,
    bits: int,
    pixel_format: str,
    label: str,
) -> CapturedFrame | RenderFailure:
    """The frame for ``trigger``, or the failure to report on fetch (never raises); ``label``
    names the camera in the message (its serial)."""
    pulse = trigger.pulse
    try:
        raw = renderer(role=role, pulse=pulse, exposure_s=trigger.exposure_s, gain_db=trigger.gain_db)
        data = np.asarray(raw)
        if data.shape != (height, width):
            raise ValueError(f"renderer returned shape {data.shape}, expected {(height, width)}")
        if data.dtype.kind not in "ui":
            raise ValueError(f"renderer returned {data.dtype}, expected an integer array (uint16)")
        data = np.clip(data, 0, 2**bits - 1).astype(np.uint16)
    except Exception as exc:  # a renderer bug must not kill the worker
        message = (
            f"camera {label}: rendering the frame of trigger fire_count={pulse.fire_count} "
            f"failed: {type(exc).__name__}: {exc}"
        )
        _log.exception("%s", message)
        return RenderFailure(message)
    return CapturedFrame(
        data=data,
        pixel_format=pixel_format,
        width=width,
        height=height,
        frame_id=trigger.frame_id,
        timestamp_ns=pulse.time_ns + round(pulse.delay_s * 1e9),
        exposure_s=trigger.exposure_s,
        gain_db=trigger.gain_db,
        received_ns=0,
    )


def drain(q: queue.Queue) -> int:
    """Empty ``q`` without blocking; how many items (not counting a None sentinel) it held."""
    count = 0
    while True:
        try:
            item = q.get_nowait()
        except queue.Empty:
            return count
        if item is None:
            q.put(None)  # keep the worker's stop sentinel
            return count
        count += 1
