"""What a capture run reports: the triggers it stored (and those already there), how it ended,
and per trigger the host's monotonic times (ns) and the bytes written."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.models import RunStatus


@dataclass(frozen=True)
class TriggerTiming:
    """Host monotonic times (ns) of one stored trigger, and the bytes it wrote.

    fired_ns: just before ``*TRG`` was sent; frames_ns: both frames fetched (exposure, readout
    or rendering, transfer); stored_ns: both DNGs on disk and the rows committed.
    """

    trigger_index: int
    fired_ns: int
    frames_ns: int
    stored_ns: int
    bytes_written: int

    @property
    def frames_ms(self) -> float:
        return (self.frames_ns - self.fired_ns) / 1e6

    @property
    def storage_ms(self) -> float:
        return (self.stored_ns - self.frames_ns) / 1e6

    @property
    def total_ms(self) -> float:
        return (self.stored_ns - self.fired_ns) / 1e6


@dataclass
class CaptureOutcome:
    """What a run did: the triggers it stored now, the ones already there, how it ended."""

    run_id: int
    scene: str | None
    stored: list[int] = field(default_factory=list)
    already_present: list[int] = field(default_factory=list)
    status: RunStatus = RunStatus.RUNNING
    error: str | None = None
    timings: list[TriggerTiming] = field(default_factory=list)
