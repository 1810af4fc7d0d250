"""A simulated GenICam camera of the twin, behind the same ``Camera`` interface as real ones.

Its Line0 input is wired to one output of the simulated pulse generator (``bus`` channel
``line_channel``). While acquiring with TriggerMode On and TriggerSource Line0, each pulse
exposes one frame, as a hardware-triggered camera does:

* exposure: ``pulse.width_s`` in ExposureMode TriggerWidth, else ExposureTime (MICROseconds)
  x 1e-6 s, both taken when the pulse arrives;
* the pulse listener only enqueues (it runs on the generator's thread); a worker thread calls
  ``renderer(role=..., pulse=..., exposure_s=..., gain_db=...)`` and queues the frame;
* the exposure starts when the pulse reaches Line0, i.e. at the generator's T0 plus the
  channel's delay (``pulse.delay_s``): the renderer gets the pulse, so a camera S triggered
  (tL − tS)/2 after camera B renders the middle of B's window;
* the frame's ``timestamp_ns`` is when its exposure started: ``pulse.time_ns`` + the
  channel's delay; ``frame_id`` is the camera's own counter (it counts dropped frames too).

Pulses are ignored (as a real camera would) while the camera is stopped, with TriggerMode Off,
with TriggerSource Software, or with inverted polarity (Line0 triggers on a RisingEdge of an
active-high pulse only).

Features (GenICam SFNC names and units): ExposureTime (µs, 20..10 000 000), ExposureMode
(Timed | TriggerWidth), Gain (dB, 0..24), TriggerSelector (FrameStart), TriggerMode (Off | On),
TriggerSource (Line0 | Software), TriggerActivation (RisingEdge), AcquisitionMode (Continuous),
PixelFormat (one entry: BayerRG<bits> unless another CFA is given), and read-only Width, Height (the sensor), DeviceSerialNumber,
DeviceModelName, DeviceVendorName. Locked while acquiring: Width, Height, PixelFormat,
TriggerMode, TriggerSource, ExposureMode; ExposureTime and Gain stay writable.

Fault injection: ``drop_next(n)`` (the next n triggers give no frame, like lost packets) and
``delay_next(seconds)`` (the next frame arrives that much later).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from acquisition.cameras.base import (
    INTERESTING_FEATURES,
    LOCKED_WHILE_ACQUIRING,
    NOT_IN_NODE_MAP,
    READ_ONLY,
    Camera,
    CameraError,
    CameraStateError,
    CapturedFrame,
    ConfigureReport,
    FeatureValueError,
    FetchTimeoutError,
    check_timeout,
    ordered_settings,
)
from hardware_sim.signals import Pulse, PulseBus

_log = logging.getLogger(__name__)

EXPOSURE_TIME_RANGE_US = (20.0, 10_000_000.0)
GAIN_RANGE_DB = (0.0, 24.0)
DEFAULT_EXPOSURE_TIME_US = 10_000.0
SUPPORTED_BITS = (8, 10, 12, 16)
PIXEL_FORMAT_PREFIXES = ("BayerRG", "BayerBG", "BayerGR", "BayerGB", "Mono")
#: How long ``close()`` waits for the worker thread to finish a render, seconds.
WORKER_JOIN_S = 5.0


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
class _FeatureSpec:
    kind: str  # "enum", "float", "int", "str"
    writable: bool
    locked_while_acquiring: bool = False
    entries: tuple[str, ...] = ()
    low: float = 0.0
    high: float = 0.0
    unit: str = ""


@dataclass(frozen=True)
class _Trigger:
    pulse: Pulse
    frame_id: int
    exposure_s: float
    gain_db: float
    late_s: float
    generation: int


@dataclass(frozen=True)
class _RenderFailure:
    message: str


class SimulatedCamera(Camera):
    """A hardware-triggered camera of the twin (see the module docstring).

    serial: DeviceSerialNumber; role: "B" or "S", passed to the renderer; renderer: makes the
    frames; width, height: the sensor in pixels; bits: sensor bit depth (PixelFormat
    BayerRG<bits>); bus, line_channel: the pulse generator output wired to Line0 (1 = A);
    pixel_format: the sensor's one PixelFormat when not BayerRG<bits> (e.g. "BayerGB12" for a
    GBRG mosaic); its bit depth must be ``bits``.
    """

    def __init__(
        self,
        serial: str,
        role: str,
        renderer: FrameRenderer,
        width: int,
        height: int,
        bits: int = 12,
        bus: PulseBus | None = None,
        line_channel: int | None = None,
        model: str = "TwinCam (simulated)",
        vendor: str = "ReLoBlur Lab",
        pixel_format: str | None = None,
    ) -> None:
        if bits not in SUPPORTED_BITS:
            raise ValueError(f"bits must be one of {SUPPORTED_BITS}, got {bits}")
        if width <= 0 or height <= 0:
            raise ValueError(f"sensor size must be positive, got {width}x{height}")
        if bus is not None and line_channel is None:
            raise ValueError("a camera on a pulse bus needs the line_channel its Line0 is wired to")
        self.role = role
        self.renderer = renderer
        self.width = int(width)
        self.height = int(height)
        self.bits = int(bits)
        self.bus = bus
        self.line_channel = line_channel
        self._serial = serial
        self._model = model
        self._vendor = vendor
        pixel_format = pixel_format or f"BayerRG{bits}"
        allowed = [f"{prefix}{bits}" for prefix in PIXEL_FORMAT_PREFIXES]
        if pixel_format not in allowed:
            raise ValueError(
                f"pixel_format for {bits} bits must be one of {allowed}, got {pixel_format!r}"
            )
        self._specs: dict[str, _FeatureSpec] = {
            "DeviceVendorName": _FeatureSpec("str", writable=False),
            "DeviceModelName": _FeatureSpec("str", writable=False),
            "DeviceSerialNumber": _FeatureSpec("str", writable=False),
            "Width": _FeatureSpec("int", writable=False, locked_while_acquiring=True),
            "Height": _FeatureSpec("int", writable=False, locked_while_acquiring=True),
            "PixelFormat": _FeatureSpec("enum", True, True, entries=(pixel_format,)),
            "AcquisitionMode": _FeatureSpec("enum", True, entries=("Continuous",)),
            "ExposureMode": _FeatureSpec("enum", True, True, entries=("Timed", "TriggerWidth")),
            "ExposureTime": _FeatureSpec(
                "float",
                True,
                low=EXPOSURE_TIME_RANGE_US[0],
                high=EXPOSURE_TIME_RANGE_US[1],
                unit="us",
            ),
            "Gain": _FeatureSpec(
                "float", True, low=GAIN_RANGE_DB[0], high=GAIN_RANGE_DB[1], unit="dB"
            ),
            "TriggerSelector": _FeatureSpec("enum", True, entries=("FrameStart",)),
            "TriggerMode": _FeatureSpec("enum", True, True, entries=("Off", "On")),
            "TriggerSource": _FeatureSpec("enum", True, True, entries=("Line0", "Software")),
            "TriggerActivation": _FeatureSpec("enum", True, entries=("RisingEdge",)),
        }
        self._values: dict[str, object] = {
            "DeviceVendorName": vendor,
            "DeviceModelName": model,
            "DeviceSerialNumber": serial,
            "Width": self.width,
            "Height": self.height,
            "PixelFormat": pixel_format,
            "AcquisitionMode": "Continuous",
            "ExposureMode": "Timed",
            "ExposureTime": DEFAULT_EXPOSURE_TIME_US,
            "Gain": 0.0,
            "TriggerSelector": "FrameStart",
            "TriggerMode": "Off",
            "TriggerSource": "Line0",
            "TriggerActivation": "RisingEdge",
        }
        self._lock = threading.Lock()
        self._open = False
        self._acquiring = False
        self._generation = 0
        self._frame_counter = 0
        self._drop_pending = 0
        self._late_pending_s = 0.0
        self._work: queue.Queue[_Trigger | None] = queue.Queue()
        self._out: queue.Queue[CapturedFrame | _RenderFailure] = queue.Queue()
        self._closing = threading.Event()
        self._worker: threading.Thread | None = None
        #: Pulses that exposed a frame / were ignored / whose frame was dropped (drop_next).
        self.triggers_accepted = 0
        self.triggers_ignored = 0
        self.frames_dropped = 0
        #: The last renderer failure's message, or None.
        self.last_error: str | None = None

    # identity -----------------------------------------------------------------------------

    @property
    def serial(self) -> str:
        return self._serial

    @property
    def model(self) -> str:
        return self._model

    @property
    def vendor(self) -> str:
        return self._vendor

    # lifetime -----------------------------------------------------------------------------

    def open(self) -> None:
        """Start the render worker and wire Line0 to the bus (idempotent)."""
        with self._lock:
            if self._open:
                return
            self._open = True
            self._work = queue.Queue()
            self._out = queue.Queue()
            self._closing = threading.Event()
            self._worker = threading.Thread(
                target=self._work_loop,
                args=(self._work, self._closing),
                name=f"sim-camera-{self._serial}",
                daemon=True,
            )
            self._worker.start()
        if self.bus is not None:
            self.bus.connect(self.line_channel, self._on_pulse)

    def close(self) -> None:
        """Stop, unwire Line0 and end the render worker (idempotent)."""
        with self._lock:
            if not self._open:
                return
            self._open = False
            self._acquiring = False
            self._generation += 1
            worker = self._worker
            self._worker = None
            self._work.put(None)
            self._closing.set()
        if self.bus is not None:
            self.bus.disconnect(self.line_channel, self._on_pulse)
        if worker is not None:
            worker.join(WORKER_JOIN_S)
            if worker.is_alive():
                _log.warning(
                    "camera %s: render worker still busy after %s s", self._serial, WORKER_JOIN_S
                )

    @property
    def is_open(self) -> bool:
        return self._open

    def _require_open(self) -> None:
        if not self._open:
            raise CameraStateError(f"camera {self._serial} is not open")

    # features -----------------------------------------------------------------------------

    def features(self) -> dict[str, object]:
        with self._lock:
            self._require_open()
            return {
                name: self._values[name] for name in INTERESTING_FEATURES if name in self._values
            }

    def configure(self, settings: dict[str, object]) -> ConfigureReport:
        """Set features by SFNC name (ExposureTime in µs, Gain in dB); see ``Camera``.

        Unknown names and read-only features are reported in ``not_applied``; while acquiring,
        a locked feature raises CameraStateError before anything is set; a value outside the
        feature's range or entries raises FeatureValueError naming them.
        """
        steps = ordered_settings(settings)
        report = ConfigureReport()
        with self._lock:
            self._require_open()
            if self._acquiring:
                locked = [
                    name
                    for name, _ in steps
                    if name in self._specs and self._specs[name].locked_while_acquiring
                ]
                if locked:
                    raise CameraStateError(
                        f"camera {self._serial}: {', '.join(locked)} {LOCKED_WHILE_ACQUIRING}; "
                        "stop() before changing them"
                    )
            for name, value in steps:
                spec = self._specs.get(name)
                if spec is None:
                    report.not_applied[name] = NOT_IN_NODE_MAP
                    continue
                if not spec.writable:
                    report.not_applied[name] = READ_ONLY
                    continue
                try:
                    coerced = _coerce(name, spec, value)
                except FeatureValueError as exc:
                    done = ", ".join(report.applied) or "nothing"
                    raise FeatureValueError(
                        f"camera {self._serial}: {exc} (already applied: {done})"
                    ) from None
                self._values[name] = coerced
                report.applied[name] = coerced
        return report

    # acquisition --------------------------------------------------------------------------

    def start(self) -> None:
        """Start acquiring (idempotent): from now on, accepted pulses become frames."""
        with self._lock:
            self._require_open()
            self._acquiring = True

    def stop(self) -> None:
        """Stop acquiring (idempotent); frames queued or being rendered are discarded."""
        with self._lock:
            if not self._acquiring:
                return
            self._acquiring = False
            self._generation += 1
            _drain(self._work)
            _drain(self._out)

    @property
    def is_acquiring(self) -> bool:
        return self._acquiring

    def fetch(self, timeout_s: float) -> CapturedFrame:
        """The next frame, waiting at most ``timeout_s`` seconds.

        Raises FetchTimeoutError when none arrives in time, CameraStateError when not open or
        not acquiring, CameraError with the renderer's message when rendering that frame failed.
        """
        timeout_s = check_timeout(timeout_s)
        with self._lock:
            self._require_open()
            if not self._acquiring:
                raise CameraStateError(f"camera {self._serial} is not acquiring: start() it first")
            out = self._out
        try:
            item = out.get(timeout=timeout_s)
        except queue.Empty:
            raise FetchTimeoutError(self._serial, timeout_s) from None
        if isinstance(item, _RenderFailure):
            raise CameraError(item.message)
        return replace(item, received_ns=time.monotonic_ns())

    def flush(self) -> int:
        """Drop the frames waiting to be fetched and the triggers not yet rendered; how many."""
        with self._lock:
            self._generation += 1
            return _drain(self._work) + _drain(self._out)

    # fault injection ----------------------------------------------------------------------

    def drop_next(self, n: int = 1) -> None:
        """The next ``n`` accepted triggers expose (frame_id advances) but give no frame."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        with self._lock:
            self._drop_pending += n

    def delay_next(self, seconds: float) -> None:
        """The frame of the next accepted trigger arrives ``seconds`` later than it would."""
        if seconds < 0:
            raise ValueError(f"delay must be >= 0 s, got {seconds}")
        with self._lock:
            self._late_pending_s = float(seconds)

    # trigger path -------------------------------------------------------------------------

    def _on_pulse(self, pulse: Pulse) -> None:
        """Line0 listener (runs on the pulse generator's thread): only decides and enqueues."""
        with self._lock:
            accepted = (
                self._acquiring
                and pulse.channel == self.line_channel
                and self._values["TriggerMode"] == "On"
                and self._values["TriggerSource"] == "Line0"
                and pulse.polarity == "NORM"
            )
            if not accepted:
                self.triggers_ignored += 1
                return
            self.triggers_accepted += 1
            frame_id = self._frame_counter
            self._frame_counter += 1
            if self._values["ExposureMode"] == "TriggerWidth":
                exposure_s = float(pulse.width_s)
            else:
                exposure_s = float(self._values["ExposureTime"]) * 1e-6
            if self._drop_pending > 0:
                self._drop_pending -= 1
                self.frames_dropped += 1
                return
            late_s = self._late_pending_s
            self._late_pending_s = 0.0
            self._work.put(
                _Trigger(
                    pulse,
                    frame_id,
                    exposure_s,
                    float(self._values["Gain"]),
                    late_s,
                    self._generation,
                )
            )

    def _work_loop(self, work: queue.Queue[_Trigger | None], closing: threading.Event) -> None:
        """Render worker: one frame per queued trigger, until the None sentinel."""
        while True:
            trigger = work.get()
            if trigger is None:
                return
            if trigger.generation != self._generation:
                continue
            result = self._render(trigger)
            if trigger.late_s > 0 and closing.wait(trigger.late_s):
                return
            with self._lock:
                if trigger.generation == self._generation:
                    self._out.put(result)

    def _render(self, trigger: _Trigger) -> CapturedFrame | _RenderFailure:
        """The frame for ``trigger``, or the failure to report on fetch (never raises)."""
        pulse = trigger.pulse
        try:
            raw = self.renderer(
                role=self.role, pulse=pulse, exposure_s=trigger.exposure_s, gain_db=trigger.gain_db
            )
            data = np.asarray(raw)
            if data.shape != (self.height, self.width):
                raise ValueError(
                    f"renderer returned shape {data.shape}, expected {(self.height, self.width)}"
                )
            if data.dtype.kind not in "ui":
                raise ValueError(
                    f"renderer returned {data.dtype}, expected an integer array (uint16)"
                )
            data = np.clip(data, 0, 2**self.bits - 1).astype(np.uint16)
        except Exception as exc:  # a renderer bug must not kill the worker
            message = (
                f"camera {self._serial}: rendering the frame of trigger fire_count={pulse.fire_count} "
                f"failed: {type(exc).__name__}: {exc}"
            )
            _log.exception("%s", message)
            self.last_error = message
            return _RenderFailure(message)
        return CapturedFrame(
            data=data,
            pixel_format=str(self._values["PixelFormat"]),
            width=self.width,
            height=self.height,
            frame_id=trigger.frame_id,
            timestamp_ns=pulse.time_ns + round(pulse.delay_s * 1e9),
            exposure_s=trigger.exposure_s,
            gain_db=trigger.gain_db,
            received_ns=0,
        )


def _coerce(name: str, spec: _FeatureSpec, value: object) -> object:
    """``value`` as the feature takes it; FeatureValueError naming the entries or the range."""
    if spec.kind == "enum":
        if not isinstance(value, str) or value not in spec.entries:
            raise FeatureValueError(
                f"{name} must be one of {', '.join(spec.entries)}; got {value!r}"
            )
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise FeatureValueError(f"{name} takes a number in {spec.unit}; got {value!r}")
    number = float(value)
    if not spec.low <= number <= spec.high:
        raise FeatureValueError(
            f"{name}={number:g} {spec.unit} outside [{spec.low:g}, {spec.high:g}] {spec.unit}"
        )
    return number


def _drain(q: queue.Queue) -> int:
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
