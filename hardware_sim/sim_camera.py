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

Features: GenICam SFNC names and units (ExposureTime in µs, Gain in dB); their specs, defaults
and value checks are :mod:`hardware_sim.sim_camera_features`'s. What a renderer must return and
how a frame is made from it is :mod:`hardware_sim.sim_camera_frames`'s.

Fault injection: ``drop_next(n)`` (the next n triggers give no frame, like lost packets) and
``delay_next(seconds)`` (the next frame arrives that much later).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

from acquisition.cameras.base import (
    INTERESTING_FEATURES,
    NOT_IN_NODE_MAP,
    READ_ONLY,
    Camera,
    CameraError,
    CameraStateError,
    CapturedFrame,
    FetchTimeoutError,
    check_timeout,
)
from hardware_sim.signals import Pulse, PulseBus
from hardware_sim.sim_camera_features import (
    DEFAULT_EXPOSURE_TIME_US,
    EXPOSURE_TIME_RANGE_US,
    GAIN_RANGE_DB,
    PIXEL_FORMAT_PREFIXES,
    SUPPORTED_BITS,
    FeatureSpec,
    coerce,
    feature_specs,
    initial_values,
    pixel_format_for,
)
from hardware_sim.sim_camera_frames import (
    FrameRenderer,
    RenderFailure,
    Trigger,
    drain,
    render_frame,
)

__all__ = [
    "DEFAULT_EXPOSURE_TIME_US",
    "EXPOSURE_TIME_RANGE_US",
    "GAIN_RANGE_DB",
    "PIXEL_FORMAT_PREFIXES",
    "SUPPORTED_BITS",
    "WORKER_JOIN_S",
    "FrameRenderer",
    "SimulatedCamera",
]

_log = logging.getLogger(__name__)

#: How long ``close()`` waits for the worker thread to finish a render, seconds.
WORKER_JOIN_S = 5.0


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
        pixel_format = pixel_format_for(bits, pixel_format)
        self._specs: dict[str, FeatureSpec] = feature_specs(pixel_format)
        self._values: dict[str, object] = initial_values(
            vendor=vendor,
            model=model,
            serial=serial,
            width=self.width,
            height=self.height,
            pixel_format=pixel_format,
        )
        self._lock = threading.Lock()
        self._open = False
        self._acquiring = False
        self._generation = 0
        self._frame_counter = 0
        self._drop_pending = 0
        self._late_pending_s = 0.0
        self._work: queue.Queue[Trigger | None] = queue.Queue()
        self._out: queue.Queue[CapturedFrame | RenderFailure] = queue.Queue()
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

    # configure() hooks (the loop is Camera.configure): the feature specs answer every question.

    def _label(self) -> str:
        return self._serial

    @contextlib.contextmanager
    def _configure_session(self) -> Iterator[None]:
        with self._lock:
            self._require_open()
            yield

    def _locked_while_acquiring(self, name: str) -> bool:
        return name in self._specs and self._specs[name].locked_while_acquiring

    def _why_not_writable(self, name: str) -> str | None:
        spec = self._specs.get(name)
        if spec is None:
            return NOT_IN_NODE_MAP
        return None if spec.writable else READ_ONLY

    def _coerce_feature(self, name: str, value: object) -> object:
        return coerce(name, self._specs[name], value)

    def _write_feature(self, name: str, value: object) -> object:
        self._values[name] = value
        return value

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
            drain(self._work)
            drain(self._out)

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
        if isinstance(item, RenderFailure):
            raise CameraError(item.message)
        return replace(item, received_ns=time.monotonic_ns())

    def flush(self) -> int:
        """Drop the frames waiting to be fetched and the triggers not yet rendered; how many."""
        with self._lock:
            self._generation += 1
            return drain(self._work) + drain(self._out)

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
                Trigger(
                    pulse,
                    frame_id,
                    exposure_s,
                    float(self._values["Gain"]),
                    late_s,
                    self._generation,
                )
            )

    def _work_loop(self, work: queue.Queue[Trigger | None], closing: threading.Event) -> None:
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

    def _render(self, trigger: Trigger) -> CapturedFrame | RenderFailure:
        """The frame for ``trigger``, or the failure to report on fetch (never raises)."""
        result = render_frame(
            self.renderer,
            trigger,
            role=self.role,
            width=self.width,
            height=self.height,
            bits=self.bits,
            pixel_format=str(self._values["PixelFormat"]),
            label=self._serial,
        )
        if isinstance(result, RenderFailure):
            self.last_error = result.message
        return result
