"""Times as the BNC 575 holds them: seconds checked and converted to 250 ps ticks and to the
command text, and the pair timing read back.

Widths 10 ns to 999.99999999975 s, delays 0 to 999.99999999975 s, on the 250 ps grid, sent with
11 decimals; periods 100 ns to 5000 s on a 1 ns grid, sent with 9. A value off the grid (beyond
1e-15 relative) or out of range is :class:`~acquisition.synchronizer_errors.UnrepresentableWidthError`.
The grid arithmetic itself is :mod:`acquisition.bnc575`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from acquisition import bnc575
from acquisition.synchronizer_errors import UnrepresentableWidthError

# The instrument's facts live in acquisition.bnc575 (shared with the emulator and the planner).
RESOLUTION_S = bnc575.RESOLUTION_S
TICKS_PER_S = bnc575.TICKS_PER_S
MIN_WIDTH_S = bnc575.MIN_WIDTH_S
MAX_TIME_S = bnc575.MAX_TIME_S
MIN_PERIOD_S = bnc575.MIN_PERIOD_S
MAX_PERIOD_S = bnc575.MAX_PERIOD_S
RELATIVE_TOLERANCE = bnc575.RELATIVE_TOLERANCE

TimeKind = bnc575.TimeKind


def _finite(seconds: object, name: str) -> float:
    if not bnc575.is_finite_seconds(seconds):
        raise UnrepresentableWidthError(
            f"{name} must be a finite number of seconds, got {seconds!r}"
        )
    return float(seconds)


def _ticks(seconds: float, kind: TimeKind = "width", name: str | None = None) -> int:
    """``seconds`` as a count of 250 ps ticks, or ``UnrepresentableWidthError``."""
    name = name or kind
    if kind not in bnc575.MIN_TICKS:
        raise ValueError(f"kind must be 'width' or 'delay', got {kind!r}")
    seconds = _finite(seconds, name)
    ticks = bnc575.nearest_ticks(seconds)
    if not bnc575.on_grid(seconds):
        raise UnrepresentableWidthError(
            f"{name} {seconds!r} s is not a multiple of {RESOLUTION_S * 1e12:g} ps "
            f"(nearest: {ticks / TICKS_PER_S!r} s); quantise() it first"
        )
    if not bnc575.representable(seconds, kind):
        low = MIN_WIDTH_S if kind == "width" else 0.0
        raise UnrepresentableWidthError(
            f"{name} {seconds!r} s is outside [{low:g} s, {MAX_TIME_S!r} s]"
        )
    return ticks


representable = bnc575.representable


def quantise(seconds: float) -> float:
    """``seconds`` rounded to the nearest multiple of 250 ps (ties to even); idempotent.

    Only the grid is applied, never the range: a value outside it stays outside (it is not
    clamped), so check ``representable(quantise(x), kind)`` before use. Raises
    ``UnrepresentableWidthError`` only for a non-finite or non-numeric ``seconds``.
    """
    return bnc575.quantise(_finite(seconds, "time"))


def format_time(seconds: float, kind: TimeKind = "width", name: str | None = None) -> str:
    """A width/delay as sent to the instrument: seconds with 11 decimals, exactly."""
    return _format_ticks(_ticks(seconds, kind, name))


def _format_ticks(ticks: int) -> str:
    units = ticks * 25  # units of 1e-11 s
    return f"{units // 10**11}.{units % 10**11:011d}"


def format_period(seconds: float) -> str:
    """A period (100 ns to 5000 s, multiple of 1 ns) as sent: seconds with 9 decimals."""
    seconds = _finite(seconds, "period")
    ns = round(seconds * 1e9)
    if abs(ns / 1e9 - seconds) > RELATIVE_TOLERANCE * abs(seconds):
        raise UnrepresentableWidthError(f"period {seconds!r} s is not a multiple of 1 ns")
    if not MIN_PERIOD_S <= seconds <= MAX_PERIOD_S:
        raise UnrepresentableWidthError(f"period {seconds!r} s is outside [100 ns, 5000 s]")
    return f"{ns // 10**9}.{ns % 10**9:09d}"


def _reply_ticks(reply: str) -> Decimal | None:
    try:
        value = Decimal(reply) * TICKS_PER_S
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


@dataclass(frozen=True)
class PairTiming:
    """The pair's timing as the instrument holds it after ``configure_pair`` (read back), in
    250 ps ticks: both widths and both channels' delays after T0."""

    width_b_ticks: int
    width_s_ticks: int
    delay_b_ticks: int
    delay_s_ticks: int

    @property
    def width_b_s(self) -> float:
        return self.width_b_ticks / TICKS_PER_S

    @property
    def width_s_s(self) -> float:
        return self.width_s_ticks / TICKS_PER_S

    @property
    def delay_b_s(self) -> float:
        return self.delay_b_ticks / TICKS_PER_S

    @property
    def delay_s_s(self) -> float:
        return self.delay_s_ticks / TICKS_PER_S

    @property
    def sharp_delay_s(self) -> float:
        """How long after camera B's trigger camera S's comes (s)."""
        return (self.delay_s_ticks - self.delay_b_ticks) / TICKS_PER_S
