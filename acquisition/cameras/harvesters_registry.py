"""The process's harvesters: one ``Harvester`` per GenTL producer (.cti), created lazily and
``update()``-d exactly once, the cameras open on them, and the shutdown that closes them all.

GenTL's rules (see :mod:`acquisition.cameras.harvesters_camera`): a second Harvester on the same
.cti sees no devices, and ``update()`` destroys every open ImageAcquirer, so a camera plugged in
later is seen only after :func:`shutdown_all`. ``_REGISTRY_LOCK`` guards the registry and every
ImageAcquirer creation or removal.
"""

from __future__ import annotations

import logging
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from genicam.gentl import GenericException as GenTLError
from harvesters.core import Harvester

from acquisition.cameras.base import CameraError, ProducerNotFoundError

if TYPE_CHECKING:
    from acquisition.cameras.harvesters_camera import HarvestersCamera

# The camera module's logger: what the registry logs is about its cameras.
_log = logging.getLogger("acquisition.cameras.harvesters_camera")

_REGISTRY_LOCK = threading.RLock()
_HARVESTERS: dict[str, Harvester] = {}
_OPEN_CAMERAS: weakref.WeakSet[HarvestersCamera] = weakref.WeakSet()


def _producer_key(cti_path: str | Path) -> str:
    path = Path(cti_path).expanduser()
    if not path.is_file():
        raise ProducerNotFoundError(f"GenTL producer not found: {path}")
    return str(path.resolve())


def harvester_for(cti_path: str | Path) -> Harvester:
    """The process's one Harvester for the producer at ``cti_path`` (created on first use).

    Raises ProducerNotFoundError when the file does not exist.
    """
    key = _producer_key(cti_path)
    with _REGISTRY_LOCK:
        harvester = _HARVESTERS.get(key)
        if harvester is None:
            harvester = Harvester()
            harvester.add_file(key, check_existence=True)
            harvester.update()
            _log.info("harvester for %s sees %d device(s)", key, len(harvester.device_info_list))
            _HARVESTERS[key] = harvester
        return harvester


def _info_value(info: object, name: str) -> str:
    try:
        value = getattr(info, name)
    except GenTLError:
        return ""
    return "" if value is None else str(value)


def list_devices(cti_path: str | Path) -> list[dict[str, str]]:
    """The devices the producer offers: dicts with serial, model, vendor, id (in list order)."""
    harvester = harvester_for(cti_path)
    with _REGISTRY_LOCK:
        infos = list(harvester.device_info_list)
    return [
        {
            "serial": _info_value(info, "serial_number"),
            "model": _info_value(info, "model"),
            "vendor": _info_value(info, "vendor"),
            "id": _info_value(info, "id_"),
        }
        for info in infos
    ]


def shutdown_all() -> None:
    """Close every open HarvestersCamera and reset every Harvester (process exit, tests).

    Afterwards ``harvester_for`` creates fresh harvesters, which see the devices again.
    """
    with _REGISTRY_LOCK:
        for camera in list(_OPEN_CAMERAS):
            try:
                camera.close()
            except CameraError:
                _log.exception("closing %r during shutdown", camera)
        for key, harvester in list(_HARVESTERS.items()):
            try:
                harvester.reset()
            except GenTLError:
                _log.exception("resetting the harvester for %s", key)
            del _HARVESTERS[key]
