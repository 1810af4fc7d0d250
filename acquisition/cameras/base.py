"""The one camera interface of the rig: real GenICam cameras and the twin's cameras follow it.

Features use GenICam SFNC names and units: ``ExposureTime`` in MICROseconds, ``Gain`` in dB,
``Width``/``Height`` in pixels, ``TriggerMode`` On/Off, ``TriggerSource`` Line0/Software,
``TriggerSelector`` FrameStart, ``TriggerActivation`` RisingEdge, ``ExposureMode``
Timed/TriggerWidth, ``PixelFormat`` BayerRG12 etc. ``CapturedFrame`` carries SI units
(``exposure_s`` in seconds, times in nanoseconds).

``configure(settings)`` has the same rules everywhere:

* a feature the node map does not have, or that is read-only / not available now, is not set
  and is listed in ``ConfigureReport.not_applied`` with the reason (never an exception);
* while acquiring, a feature that is locked (not writable then) makes the whole call raise
  ``CameraStateError`` before anything is set; ``ExposureTime`` and ``Gain`` usually stay
  writable;
* a value the feature cannot take (outside its range, not one of its entries, wrong type)
  raises ``FeatureValueError`` naming the range or the entries; features before it in the
  call are already applied (the message says which);
* what was set is read back into ``ConfigureReport.applied``.

Frames are paired by trigger index by the caller, never by ``CapturedFrame.frame_id``.
"""

from __future__ import annotations

import abc
import contextlib
from dataclasses import dataclass, field
from types import TracebackType

import numpy as np

#: Features ``Camera.features()`` reports when the camera has them (SFNC names).
INTERESTING_FEATURES: tuple[str, ...] = (
    "DeviceVendorName",
    "DeviceModelName",
    "DeviceSerialNumber",
    "Width",
    "Height",
    "PixelFormat",
    "AcquisitionMode",
    "AcquisitionFrameRate",
    "ExposureMode",
    "ExposureTime",
    "Gain",
    "TriggerSelector",
    "TriggerMode",
    "TriggerSource",
    "TriggerActivation",
)

#: Features that select which instance of other features is addressed: ``configure`` sets them
#: first, whatever their position in the settings.
SELECTOR_FEATURES: tuple[str, ...] = ("TriggerSelector",)

#: Features that change the payload (buffer size/layout): refused while acquiring on every
#: camera, even where the node map would let them be written (the buffers were announced for
#: the old payload).
PAYLOAD_FEATURES: frozenset[str] = frozenset(
    {
        "Width",
        "Height",
        "OffsetX",
        "OffsetY",
        "PixelFormat",
        "BinningHorizontal",
        "BinningVertical",
        "DecimationHorizontal",
        "DecimationVertical",
    }
)

# Reasons used in ConfigureReport.not_applied.
NOT_IN_NODE_MAP = "not in the node map"
READ_ONLY = "read-only"
NOT_AVAILABLE = "not available now"
LOCKED_WHILE_ACQUIRING = "locked while acquiring"


class CameraError(Exception):
    """Base of every camera error."""


class CameraNotFoundError(CameraError):
    """The requested camera is not connected; ``available`` lists the serials that are."""

    def __init__(self, wanted: str, available: list[str], producer: str = "") -> None:
        self.wanted = wanted
        self.available = list(available)
        where = f" on {producer}" if producer else ""
        shown = ", ".join(repr(s) for s in self.available) if self.available else "none"
        super().__init__(f"camera {wanted} is not connected{where}; available serials: {shown}")


class FetchTimeoutError(CameraError):
    """No frame arrived within the fetch timeout."""

    def __init__(self, serial: str, timeout_s: float) -> None:
        self.serial = serial
        self.timeout_s = timeout_s
        super().__init__(f"camera {serial}: no frame within {timeout_s:g} s")


class CameraStateError(CameraError):
    """The call is not allowed in the camera's current state (closed, not acquiring, locked)."""


class FeatureValueError(CameraError, ValueError):
    """A feature cannot take the requested value (out of range, not an entry, wrong type)."""


class FeatureNotAppliedError(CameraError):
    """A driver's write the device refused (configure() reports it in ``not_applied``)."""


class ProducerNotFoundError(CameraError):
    """The GenTL producer (.cti file) does not exist."""


@dataclass(frozen=True)
class CapturedFrame:
    """One frame, owned by the caller.

    data: a private copy: 2-D uint16 (H, W) for Bayer/Mono formats (values as the sensor
        delivered them, not rescaled: a BayerRG12 frame holds 0..4095, a Mono8 frame 0..255),
        (H, W, C) uint8 for RGB-type formats as delivered (RGBa8: C = 4).
    pixel_format: the PFNC name, e.g. "BayerRG12", "Mono8", "RGBa8".
    width, height: pixels.
    frame_id: the camera's own frame counter; informational only, never used for pairing.
    timestamp_ns: the camera's clock in ns when it was exposed, or None if the camera has none.
    exposure_s: exposure time in SECONDS, or None when the camera cannot tell (e.g. a real
        camera in TriggerWidth mode, or one without ExposureTime).
    gain_db: analogue gain in dB, or None when the camera has no Gain.
    received_ns: host ``time.monotonic_ns()`` when the frame was fetched.
    """

    data: np.ndarray
    pixel_format: str
    width: int
    height: int
    frame_id: int
    timestamp_ns: int | None
    exposure_s: float | None
    gain_db: float | None
    received_ns: int


@dataclass
class ConfigureReport:
    """What ``Camera.configure`` did.

    applied: feature -> value read back after setting it (the camera may round).
    not_applied: feature -> why it was not set ("not in the node map", "read-only",
        "not available now", "locked while acquiring", or the camera's exception text).
    """

    applied: dict[str, object] = field(default_factory=dict)
    not_applied: dict[str, str] = field(default_factory=dict)


def ordered_settings(settings: dict[str, object]) -> list[tuple[str, object]]:
    """The settings in the order to apply them: selectors first, then the caller's order."""
    first = [(k, v) for k, v in settings.items() if k in SELECTOR_FEATURES]
    rest = [(k, v) for k, v in settings.items() if k not in SELECTOR_FEATURES]
    return first + rest


class Camera(abc.ABC):
    """A camera of the rig (see the module docstring for the feature and configure rules).

    Lifetime: ``open()`` once, ``configure()`` while stopped, ``start()``, ``fetch()`` frames,
    ``stop()``, ``close()``. ``open``/``close``/``start``/``stop`` are idempotent. Used as a
    context manager, it opens on enter and stops and closes on exit.

    Threading: one thread drives a camera object; different cameras may be driven from
    different threads.
    """

    @property
    @abc.abstractmethod
    def serial(self) -> str:
        """The device serial number."""

    @property
    @abc.abstractmethod
    def model(self) -> str:
        """The device model name."""

    @property
    @abc.abstractmethod
    def vendor(self) -> str:
        """The device vendor name."""

    @abc.abstractmethod
    def open(self) -> None:
        """Connect to the device (idempotent)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop acquiring if needed and release the device (idempotent)."""

    @property
    @abc.abstractmethod
    def is_open(self) -> bool:
        """Whether ``open()`` succeeded and ``close()`` has not been called since."""

    @abc.abstractmethod
    def features(self) -> dict[str, object]:
        """Current values of the ``INTERESTING_FEATURES`` the camera has and can read."""

    def configure(self, settings: dict[str, object]) -> ConfigureReport:
        """Set features by SFNC name (ExposureTime in µs, Gain in dB); see the module rules.

        The one loop both drivers share: selectors first (:func:`ordered_settings`); while
        acquiring, a feature locked then raises CameraStateError before anything is set; a
        feature the camera lacks or may not write now goes to ``not_applied`` with the reason; a
        bad value raises FeatureValueError naming what was already applied; a write the device
        refuses goes to ``not_applied`` with the device's reason. A driver supplies the hooks
        (or overrides configure() whole, as a third-party driver may):
        ``_configure_session``, ``_locked_while_acquiring``, ``_why_not_writable``,
        ``_coerce_feature``, ``_write_feature``, ``_after_configure``."""
        steps = ordered_settings(settings)
        report = ConfigureReport()
        with self._configure_session():
            acquiring = self.is_acquiring
            if acquiring:
                locked = [name for name, _ in steps if self._locked_while_acquiring(name)]
                if locked:
                    raise CameraStateError(
                        f"camera {self._label()}: {', '.join(locked)} {LOCKED_WHILE_ACQUIRING}; "
                        "stop() before changing them"
                    )
            for name, value in steps:
                why = self._why_not_writable(name)
                if why is not None:
                    report.not_applied[name] = why
                    continue
                try:
                    coerced = self._coerce_feature(name, value)
                except FeatureValueError as exc:
                    done = ", ".join(report.applied) or "nothing"
                    raise FeatureValueError(f"camera {self._label()}: {exc} (already applied: {done})") from None
                try:
                    report.applied[name] = self._write_feature(name, coerced)
                except FeatureNotAppliedError as exc:
                    report.not_applied[name] = str(exc)
            self._after_configure(acquiring)
        return report

    # hooks of configure() ----------------------------------------------------------------

    def _label(self) -> str:
        """How messages name this camera."""
        return self.serial

    def _configure_session(self) -> contextlib.AbstractContextManager[object]:
        """Held around a whole configure() (a lock, an open-check); none by default."""
        return contextlib.nullcontext()

    def _locked_while_acquiring(self, name: str) -> bool:
        """Whether feature ``name`` exists and may not change while acquiring."""
        raise NotImplementedError(f"{type(self).__name__} must implement _locked_while_acquiring or override configure()")

    def _why_not_writable(self, name: str) -> str | None:
        """Why ``name`` cannot be set now (``NOT_IN_NODE_MAP``, ``READ_ONLY``...), or None."""
        raise NotImplementedError(f"{type(self).__name__} must implement _why_not_writable or override configure()")

    def _coerce_feature(self, name: str, value: object) -> object:
        """``value`` as the feature's type, checked against its range/entries (FeatureValueError)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _coerce_feature or override configure()")

    def _write_feature(self, name: str, value: object) -> object:
        """Write a coerced value; return it as read back (FeatureNotAppliedError if refused)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _write_feature or override configure()")

    def _after_configure(self, acquiring: bool) -> None:  # noqa: B027 - optional hook
        """Called at the end of configure() (``acquiring``: whether it ran while acquiring)."""

    @abc.abstractmethod
    def start(self) -> None:
        """Start acquiring (idempotent); frames then arrive as the camera is triggered."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop acquiring (idempotent); frames not yet fetched are discarded."""

    @property
    @abc.abstractmethod
    def is_acquiring(self) -> bool:
        """Whether the camera is between ``start()`` and ``stop()``."""

    @abc.abstractmethod
    def fetch(self, timeout_s: float) -> CapturedFrame:
        """The next frame, waiting at most ``timeout_s`` seconds (> 0).

        Raises FetchTimeoutError when none arrives in time, CameraStateError when the camera is
        not open or not acquiring.
        """

    @abc.abstractmethod
    def flush(self) -> int:
        """Drop the frames waiting to be fetched; returns how many were dropped."""

    def __enter__(self) -> Camera:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = (
            "acquiring"
            if self.is_open and self.is_acquiring
            else ("open" if self.is_open else "closed")
        )
        return f"<{type(self).__name__} serial={self.serial!r} {state}>"


def check_timeout(timeout_s: float) -> float:
    """``timeout_s`` as a float, or ValueError when it is not a positive number of seconds."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not timeout_s > 0:
        raise ValueError(f"fetch timeout must be a positive number of seconds, got {timeout_s!r}")
    return float(timeout_s)
