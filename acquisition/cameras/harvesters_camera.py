"""GenICam cameras through harvesters (any GenTL producer, e.g. a vendor's .cti or viky.cti).

Process-wide rules imposed by harvesters/GenTL, enforced here:

* ONE ``Harvester`` per producer per process (a second one on the same .cti sees no devices):
  ``harvester_for(cti_path)`` creates it lazily, adds the file and calls ``update()`` exactly
  once. ``update()`` is never called again, because it destroys every open ImageAcquirer: a
  camera plugged in later is seen only after ``shutdown_all()`` (which closes all cameras).
* Cameras are meant to stay open for the process lifetime (each open/close cycle leaks about
  0.4 MiB inside the producer); ``shutdown_all()`` at process exit (or at the end of a test
  module) closes every camera and resets the harvesters.
* Acquisition runs with ``run_as_thread=False``, so ``fetch(timeout_s)`` is honoured; the
  fetched buffer's array is a view into the producer's memory, so it is copied before the
  buffer is queued back.
* Configure before ``start()``: real cameras lock many features while acquiring.

viky.cti (shipped with the ``genicam`` wheel) has 3 devices (serials "0", "1", "2"), RGBa8 or
Mono8, Width/Height 100-800 px, AcquisitionFrameRate 1-200 Hz, free-running only: no
ExposureTime, Gain or Trigger* features, no buffer timestamps, and no Device* identification
features in its remote node map (serial/model/vendor come from the device info list).

Modules: :mod:`acquisition.cameras.harvesters_registry` (the process's harvesters, the open
cameras, :func:`shutdown_all`), :mod:`acquisition.cameras.genicam_nodes` (node lookup and value
checks); this module is the camera (:class:`HarvestersCamera`) and re-exports the registry's
functions.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import numpy as np
from genicam.genapi import EAccessMode, ICommand
from genicam.genapi import GenericException as GenApiError
from genicam.gentl import GenericException as GenTLError
from genicam.gentl import TimeoutException
from harvesters.core import Buffer, ImageAcquirer

from acquisition.cameras.base import (
    INTERESTING_FEATURES,
    NOT_AVAILABLE,
    NOT_IN_NODE_MAP,
    PAYLOAD_FEATURES,
    READ_ONLY,
    Camera,
    CameraError,
    CameraNotFoundError,
    CameraStateError,
    CapturedFrame,
    FeatureNotAppliedError,
    FetchTimeoutError,
    check_timeout,
)
from acquisition.cameras.genicam_nodes import _READABLE, _VALUE_TYPES, _WRITABLE, _coerce, _node
from acquisition.cameras.harvesters_registry import (
    _HARVESTERS,
    _OPEN_CAMERAS,
    _REGISTRY_LOCK,
    harvester_for,
    list_devices,
    shutdown_all,
)

__all__ = [
    "FLUSH_POLL_S",
    "MAX_FLUSH",
    "HarvestersCamera",
    "harvester_for",
    "list_devices",
    "shutdown_all",
]

_log = logging.getLogger(__name__)

#: How many buffers ``flush()`` drains at most (a free-running camera never runs dry).
MAX_FLUSH = 1000
#: How long ``flush()`` waits for each queued buffer, seconds.
FLUSH_POLL_S = 0.001


class HarvestersCamera(Camera):
    """A GenICam camera reached through harvesters (see the module docstring for the rules).

    serial: the device's serial number (``DeviceInfo.serial_number``); or None and ``index``,
        the position in ``list_devices(cti_path)``.
    cti_path: the GenTL producer (.cti) file.

    Nothing touches the producer until ``open()``; a missing .cti raises ProducerNotFoundError
    then, an unknown serial CameraNotFoundError listing the connected serials.
    """

    def __init__(self, serial: str | None, cti_path: str | Path, index: int | None = None) -> None:
        if serial is None and index is None:
            raise ValueError("give a serial or an index")
        self._wanted_serial = serial
        self._index = index
        self.cti_path = Path(cti_path)
        self._ia: ImageAcquirer | None = None
        self._info: dict[str, str] | None = None
        self._exposure_s: float | None = None
        self._gain_db: float | None = None

    # identity -----------------------------------------------------------------------------

    def _device_info(self) -> dict[str, str]:
        """The device's entry in ``list_devices`` (CameraNotFoundError when absent)."""
        if self._info is not None:
            return self._info
        devices = list_devices(self.cti_path)
        serials = [d["serial"] for d in devices]
        if self._wanted_serial is not None:
            matches = [d for d in devices if d["serial"] == self._wanted_serial]
            if not matches:
                raise CameraNotFoundError(self._wanted_serial, serials, str(self.cti_path))
            return matches[0]
        if not 0 <= self._index < len(devices):
            raise CameraNotFoundError(f"#{self._index}", serials, str(self.cti_path))
        return devices[self._index]

    @property
    def serial(self) -> str:
        if self._wanted_serial is not None:
            return self._wanted_serial
        return self._device_info()["serial"]

    @property
    def model(self) -> str:
        return self._device_info()["model"]

    @property
    def vendor(self) -> str:
        return self._device_info()["vendor"]

    def _label(self) -> str:
        """How messages name this camera, without touching the producer."""
        if self._wanted_serial is not None:
            return self._wanted_serial
        if self._info is not None:
            return self._info["serial"]
        return f"#{self._index}"

    def __repr__(self) -> str:
        who = (
            f"serial={self._wanted_serial!r}"
            if self._wanted_serial is not None
            else f"index={self._index}"
        )
        state = (
            "acquiring"
            if self.is_open and self.is_acquiring
            else ("open" if self.is_open else "closed")
        )
        return f"<HarvestersCamera {who} {self.cti_path.name} {state}>"

    # lifetime -----------------------------------------------------------------------------

    def open(self) -> None:
        """Create the ImageAcquirer for the device (idempotent)."""
        if self._ia is not None:
            return
        harvester = harvester_for(self.cti_path)
        info = self._device_info()
        with _REGISTRY_LOCK:
            try:
                if self._wanted_serial is not None:
                    ia = harvester.create({"serial_number": self._wanted_serial})
                else:
                    ia = harvester.create(self._index)
            except (GenTLError, GenApiError, ValueError) as exc:
                raise CameraError(f"cannot open camera {info['serial']}: {exc}") from exc
        self._ia = ia
        self._info = info
        _OPEN_CAMERAS.add(self)
        _log.info("opened camera %s (%s %s)", info["serial"], info["vendor"], info["model"])

    def close(self) -> None:
        """Stop and destroy the ImageAcquirer (idempotent). Keep cameras open instead of
        cycling open/close: each cycle leaks memory in the producer."""
        ia = self._ia
        if ia is None:
            return
        self._ia = None
        _OPEN_CAMERAS.discard(self)
        try:
            ia.destroy()
        except (GenTLError, GenApiError) as exc:
            _log.warning("destroying the acquirer of camera %s: %s", self._label(), exc)
        with _REGISTRY_LOCK:
            for harvester in _HARVESTERS.values():
                if ia in harvester.image_acquirers:
                    harvester.image_acquirers.remove(ia)

    @property
    def is_open(self) -> bool:
        return self._ia is not None

    def _acquirer(self) -> ImageAcquirer:
        if self._ia is None:
            raise CameraStateError(f"camera {self._label()} is not open")
        return self._ia

    @property
    def node_map(self) -> object:
        """The remote device's GenICam node map (for features this class does not cover)."""
        return self._acquirer().remote_device.node_map

    # features -----------------------------------------------------------------------------

    def features(self) -> dict[str, object]:
        node_map = self.node_map
        values: dict[str, object] = {}
        for name in INTERESTING_FEATURES:
            node = _node(node_map, name)
            if node is None or node.get_access_mode() not in _READABLE:
                continue
            try:
                values[name] = node.value
            except (GenApiError, GenTLError) as exc:
                _log.debug("reading %s: %s", name, exc)
        return values

    def _is_locked(self, name: str, node: object) -> bool:
        return name in PAYLOAD_FEATURES or node.get_access_mode() not in _WRITABLE

    # configure() hooks (the loop is Camera.configure): the node map answers every question.

    def _configure_session(self) -> contextlib.AbstractContextManager[object]:
        self.node_map  # noqa: B018 - raises CameraStateError when the camera is not open
        return contextlib.nullcontext()

    def _locked_while_acquiring(self, name: str) -> bool:
        # payload-shaping features (Width/Height/PixelFormat) always count as locked
        node = _node(self.node_map, name)
        return node is not None and isinstance(node, _VALUE_TYPES) and self._is_locked(name, node)

    def _why_not_writable(self, name: str) -> str | None:
        node = _node(self.node_map, name)
        if node is None:
            return NOT_IN_NODE_MAP
        if isinstance(node, ICommand) or not isinstance(node, _VALUE_TYPES):
            return f"not a value feature ({type(node).__name__})"
        access = node.get_access_mode()
        if access not in _WRITABLE:
            return READ_ONLY if access == EAccessMode.RO else NOT_AVAILABLE
        return None

    def _coerce_feature(self, name: str, value: object) -> object:
        return _coerce(name, _node(self.node_map, name), value)

    def _write_feature(self, name: str, value: object) -> object:
        node = _node(self.node_map, name)
        access = node.get_access_mode()
        try:
            node.value = value
            return node.value if access == EAccessMode.RW else value
        except (GenApiError, GenTLError) as exc:
            raise FeatureNotAppliedError(f"{type(exc).__name__}: {exc}") from None

    def _after_configure(self, acquiring: bool) -> None:
        if acquiring:
            self._cache_exposure_and_gain()

    def _cache_exposure_and_gain(self) -> None:
        """Remember ExposureTime (as seconds) and Gain (dB) to stamp the frames with."""
        values = self.features()
        exposure_us = values.get("ExposureTime")
        timed = values.get("ExposureMode", "Timed") == "Timed"
        self._exposure_s = float(exposure_us) * 1e-6 if exposure_us is not None and timed else None
        gain = values.get("Gain")
        self._gain_db = float(gain) if gain is not None else None

    # acquisition --------------------------------------------------------------------------

    def start(self) -> None:
        """Start acquiring with ``run_as_thread=False`` (so fetch timeouts are honoured)."""
        ia = self._acquirer()
        if ia.is_acquiring():
            return
        self._cache_exposure_and_gain()
        try:
            ia.start(run_as_thread=False)
        except (GenTLError, GenApiError) as exc:
            raise CameraError(f"camera {self._label()}: start failed: {exc}") from exc

    def stop(self) -> None:
        ia = self._ia
        if ia is None or not ia.is_acquiring():
            return
        try:
            ia.stop()
        except (GenTLError, GenApiError) as exc:
            raise CameraError(f"camera {self._label()}: stop failed: {exc}") from exc

    @property
    def is_acquiring(self) -> bool:
        return self._ia is not None and self._ia.is_acquiring()

    def fetch(self, timeout_s: float) -> CapturedFrame:
        """The next frame (a private copy), waiting at most ``timeout_s`` seconds."""
        timeout_s = check_timeout(timeout_s)
        ia = self._acquirer()
        if not ia.is_acquiring():
            raise CameraStateError(f"camera {self._label()} is not acquiring: start() it first")
        try:
            buffer = ia.fetch(timeout=timeout_s)
        except TimeoutException:
            raise FetchTimeoutError(self.serial, timeout_s) from None
        except (GenTLError, GenApiError) as exc:
            raise CameraError(f"camera {self._label()}: fetch failed: {exc}") from exc
        received_ns = time.monotonic_ns()
        if buffer is None:  # harvesters discarded a buffer whose information was unavailable
            raise CameraError(f"camera {self._label()}: the producer delivered an unusable buffer")
        with buffer:  # queues the buffer back on exit: copy everything out before that
            try:
                return self._frame_from(buffer, received_ns)
            except (GenTLError, GenApiError) as exc:
                raise CameraError(
                    f"camera {self._label()}: reading the buffer failed: {exc}"
                ) from exc

    def _frame_from(self, buffer: Buffer, received_ns: int) -> CapturedFrame:
        """Copy the buffer's first image component into a CapturedFrame (before it is queued)."""
        component = buffer.payload.components[0]
        width, height = int(component.width), int(component.height)
        channels = int(component.num_components_per_pixel)
        pixel_format = str(component.data_format)
        view = component.data  # a view into the producer's buffer: copied below
        if view is None or view.size != width * height * max(channels, 1):
            size = 0 if view is None else view.size
            raise CameraError(
                f"camera {self._label()}: {pixel_format} buffer holds {size} values, "
                f"expected {width}x{height}x{channels} (padding or packed format not supported)"
            )
        if channels <= 1:
            dtype = np.uint16 if view.dtype == np.uint8 else view.dtype
            data = np.array(view.reshape(height, width), dtype=dtype, copy=True)
        else:
            data = np.array(view.reshape(height, width, channels), copy=True)
        return CapturedFrame(
            data=data,
            pixel_format=pixel_format,
            width=width,
            height=height,
            frame_id=_buffer_frame_id(buffer),
            timestamp_ns=_buffer_timestamp_ns(buffer),
            exposure_s=self._exposure_s,
            gain_db=self._gain_db,
            received_ns=received_ns,
        )

    def flush(self) -> int:
        """Drop the buffers already delivered (at most ``MAX_FLUSH``); returns how many."""
        ia = self._acquirer()
        if not ia.is_acquiring():
            return 0
        dropped = 0
        while dropped < MAX_FLUSH:
            try:
                buffer = ia.try_fetch(timeout=FLUSH_POLL_S)
            except (GenTLError, GenApiError) as exc:
                raise CameraError(f"camera {self._label()}: flush failed: {exc}") from exc
            if buffer is None:
                break
            buffer.queue()
            dropped += 1
        return dropped


def _buffer_frame_id(buffer: Buffer) -> int:
    """The camera's frame counter, or -1 when the producer does not report it."""
    try:
        return int(buffer.module.frame_id)
    except GenTLError:
        return -1


def _buffer_timestamp_ns(buffer: Buffer) -> int | None:
    """The buffer's camera timestamp in ns, or None when the producer has none (viky.cti)."""
    try:
        return int(buffer.module.timestamp_ns)
    except GenTLError:
        pass
    try:
        ticks = int(buffer.module.timestamp)
        frequency = int(buffer.module.parent.parent.timestamp_frequency)
    except (GenTLError, AttributeError):
        return None
    return ticks * 1_000_000_000 // frequency if frequency > 0 else None
