"""Cameras of the rig behind one interface (``Camera``): GenICam cameras through harvesters
(``HarvestersCamera``) and, in ``hardware_sim.sim_camera``, the twin's ``SimulatedCamera``.

The harvesters names are imported on first use (``acquisition.cameras.HarvestersCamera``), so
importing this package does not load harvesters or the GenICam stack.
"""

from acquisition.cameras.base import (
    INTERESTING_FEATURES,
    LOCKED_WHILE_ACQUIRING,
    NOT_AVAILABLE,
    NOT_IN_NODE_MAP,
    PAYLOAD_FEATURES,
    READ_ONLY,
    SELECTOR_FEATURES,
    Camera,
    CameraError,
    CameraNotFoundError,
    CameraStateError,
    CapturedFrame,
    ConfigureReport,
    FeatureValueError,
    FetchTimeoutError,
    ProducerNotFoundError,
)

_HARVESTERS_NAMES = ("HarvestersCamera", "harvester_for", "list_devices", "shutdown_all")


def __getattr__(name: str):
    if name in _HARVESTERS_NAMES:
        from acquisition.cameras import harvesters_camera

        return getattr(harvesters_camera, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "INTERESTING_FEATURES",
    "LOCKED_WHILE_ACQUIRING",
    "NOT_AVAILABLE",
    "NOT_IN_NODE_MAP",
    "PAYLOAD_FEATURES",
    "READ_ONLY",
    "SELECTOR_FEATURES",
    "Camera",
    "CameraError",
    "CameraNotFoundError",
    "CameraStateError",
    "CapturedFrame",
    "ConfigureReport",
    "FeatureValueError",
    "FetchTimeoutError",
    "HarvestersCamera",
    "ProducerNotFoundError",
    "harvester_for",
    "list_devices",
    "shutdown_all",
]
