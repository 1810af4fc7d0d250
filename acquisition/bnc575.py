"""The BNC 575 / Quantum Composers 9520 pulse generator's facts, shared by the driver
(:mod:`acquisition.synchronizer`), its emulator (:mod:`hardware_sim.pulse_generator`) and the
exposure planner (:mod:`acquisition.planner`).

Times are held on a 250 ps grid (4·10⁹ ticks a second): widths 10 ns to 999.99999999975 s,
delays 0 to 999.99999999975 s; periods 100 ns to 5000 s on a 1 ns grid. Channel A (``:PULSE1``)
drives camera B, channel B (``:PULSE2``) camera S. Errors come back as ``?1`` … ``?9``.
This module is pure arithmetic and tables: no I/O, no exceptions of its own beyond ``ValueError``.
"""

from __future__ import annotations

import math
import numbers
from typing import Literal

__all__ = [
    "CHANNEL_CAMERA_B",
    "CHANNEL_CAMERA_S",
    "ERROR_MEANINGS",
    "MAX_PERIOD_S",
    "MAX_TICKS",
    "MAX_TIME_S",
    "MIN_PERIOD_S",
    "MIN_TICKS",
    "MIN_WIDTH_S",
    "RELATIVE_TOLERANCE",
    "RESOLUTION_S",
    "SUPPORTED_MODELS",
    "TICKS_PER_S",
    "TimeKind",
    "is_finite_seconds",
    "nearest_ticks",
    "on_grid",
    "quantise",
    "representable",
]

RESOLUTION_S = 250e-12
TICKS_PER_S = 4_000_000_000
MIN_WIDTH_S = 10e-9
MAX_TIME_S = 999.99999999975
MIN_PERIOD_S = 100e-9
MAX_PERIOD_S = 5000.0
#: How far (relative) a value may sit off the grid and still count as on it (float rounding).
RELATIVE_TOLERANCE = 1e-15
#: Smallest and largest tick counts of a width and of a delay.
MIN_TICKS = {"width": 40, "delay": 0}
MAX_TICKS = 3_999_999_999_999

CHANNEL_CAMERA_B = 1  # channel A, :PULSE1
CHANNEL_CAMERA_S = 2  # channel B, :PULSE2

#: ``*IDN?`` make → model prefixes of the supported instruments.
SUPPORTED_MODELS = {
    "BNC": ("575",),
    "BERKELEY NUCLEONICS": ("575",),
    "QC": ("952",),
    "QUANTUM COMPOSERS": ("952",),
}

#: The instrument's error replies ``?code`` → what they mean.
ERROR_MEANINGS = {
    1: "incorrect prefix (no ':' or '*')",
    2: "missing command keyword",
    3: "invalid command keyword",
    4: "missing parameter",
    5: "invalid parameter",
    6: "query only (command needs a '?')",
    7: "invalid query (command has no query form)",
    8: "command unavailable in the current system state",
    9: "value out of bounds",
}

TimeKind = Literal["width", "delay"]


def is_finite_seconds(seconds: object) -> bool:
    """Whether ``seconds`` is a finite real number (``bool`` is not)."""
    return not isinstance(seconds, bool) and isinstance(seconds, numbers.Real) and math.isfinite(seconds)


def nearest_ticks(seconds: float) -> int:
    """The tick count nearest to ``seconds`` (ties to even); ``ValueError`` if not finite."""
    if not is_finite_seconds(seconds):
        raise ValueError(f"time must be a finite number of seconds, got {seconds!r}")
    return round(float(seconds) * TICKS_PER_S)


def on_grid(seconds: float) -> bool:
    """Whether finite ``seconds`` is a multiple of 250 ps (within :data:`RELATIVE_TOLERANCE`)."""
    ticks = nearest_ticks(seconds)
    return abs(ticks / TICKS_PER_S - seconds) <= RELATIVE_TOLERANCE * abs(seconds)


def representable(seconds: float, kind: TimeKind = "width") -> bool:
    """True when the instrument holds ``seconds`` exactly as a ``kind`` (width: 10 ns to
    999.99999999975 s; delay: 0 to 999.99999999975 s; both multiples of 250 ps)."""
    if kind not in MIN_TICKS:
        raise ValueError(f"kind must be 'width' or 'delay', got {kind!r}")
    if not is_finite_seconds(seconds) or not on_grid(seconds):
        return False
    return MIN_TICKS[kind] <= nearest_ticks(seconds) <= MAX_TICKS


def quantise(seconds: float) -> float:
    """``seconds`` rounded to the nearest multiple of 250 ps (ties to even); idempotent. Only
    the grid is applied, never the range (check :func:`representable` before use)."""
    return nearest_ticks(seconds) / TICKS_PER_S
