"""Rig backends: who provides a rig's cameras, its pulse-generator port and its operator.

A rig file names each camera's ``driver`` and the synchronizer's ``port``; a *backend* turns
those names into devices. Backends are found through the ``reloblur.rig_backends`` entry-point
group (driver name → backend), and a backend that serves a pulse generator itself (an emulator)
also lists that ``port`` value in ``reloblur.rig_ports`` (port → backend), so this package
never imports a backend by name and loads only the ones a rig uses:

- ``harvesters`` (this package, :mod:`acquisition.harvesters_backend`): GenICam cameras through
  a vendor's GenTL producer; the pulse generator on a real serial port or ``socket://`` URL;
- ``simulated`` (:mod:`hardware_sim.rig`): the digital twin's cameras, and the BNC 575
  emulator served on a real pseudo-terminal for ``port: emulated``.

Another camera SDK is added by a package that declares, in its own ``pyproject.toml``::

    [project.entry-points."reloblur.rig_backends"]
    acme = "acme_rig:AcmeBackend"

A backend is an object with the attributes of :class:`RigBackend`. :func:`build_rig
<acquisition.rig.build_rig>` starts each backend the rig uses once (:meth:`RigBackend.start`),
opens the generator on the port the session gives (or the rig file's), asks the session of each
camera's driver for that camera, and takes the operator and the colour metadata from the first
session that has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from acquisition.cameras.base import Camera
    from acquisition.rig import Operator, RigConfig

__all__ = [
    "ENTRY_POINT_GROUP",
    "PORT_ENTRY_POINT_GROUP",
    "BackendSession",
    "ColourMetadata",
    "MotionHint",
    "RigBackend",
    "UnknownBackendError",
    "backend",
    "backend_names",
    "backends_of",
    "motion_hint",
    "port_backend",
]

#: The entry-point group that lists rig backends (driver name → ``module:attribute``).
ENTRY_POINT_GROUP = "reloblur.rig_backends"
#: The entry-point group of synchronizer ports a backend serves itself (port → backend).
PORT_ENTRY_POINT_GROUP = "reloblur.rig_ports"


class UnknownBackendError(LookupError):
    """A driver name no installed backend declares; the message lists the installed ones."""


@dataclass(frozen=True)
class MotionHint:
    """What a backend knows of the object in front of the rig: its distance (m, > 0) and its
    fastest speed across the view (m/s, > 0). Only a simulated world knows this; a lab rig
    leaves the exposure plan to the operator's figures."""

    object_distance_m: float
    speed_mps: float


@dataclass(frozen=True)
class ColourMetadata:
    """The sensor's colour facts written to every DNG: AsShotNeutral (camera RGB of white,
    green = 1) and ColorMatrix1 (CIE XYZ D65 → camera RGB, 3×3) or ``None``."""

    as_shot_neutral: tuple[float, float, float]
    color_matrix_1: tuple[tuple[float, ...], ...] | None = None


class BackendSession:
    """What a backend started for one rig; :meth:`close` releases it. The defaults provide
    nothing: a backend overrides what it has."""

    #: The serial port (device path, pyserial URL or pty) of a pulse generator this backend
    #: serves itself (an emulator), or ``None``.
    port: str | None = None
    #: Backend-specific handle on a simulated world (tests and the demo inspect it), or ``None``.
    simulation: object | None = None

    def camera(self, role: str, serial: str, channel: int) -> Camera:
        """Camera ``role`` ("B" or "S") with serial number ``serial``, its trigger input wired
        to generator output ``channel`` (1 = A). Not yet opened."""
        raise NotImplementedError(f"{type(self).__name__} provides no cameras")

    def operator(self) -> Operator | None:
        """Who arranges the scene between triggers, or ``None`` (the caller's or a silent one)."""
        return None

    def colour(self) -> ColourMetadata | None:
        """The colour metadata this backend knows better than the rig file, or ``None``."""
        return None

    def close(self) -> None:
        """Release what :meth:`RigBackend.start` started (idempotent)."""


@runtime_checkable
class RigBackend(Protocol):
    """A provider of rig devices, registered under an entry point of :data:`ENTRY_POINT_GROUP`.

    ``name``: the driver name rig files use. ``emulated_ports``: synchronizer ``port`` values it
    serves itself (``("emulated",)`` for the simulator; empty for real hardware).
    """

    name: str
    emulated_ports: tuple[str, ...]

    def check(self, config: RigConfig, roles: tuple[str, ...]) -> None:
        """Raise ``ValueError`` (the reason, naming the key) when ``config`` cannot work with
        this backend's cameras in ``roles`` (or, for an empty tuple, its emulated port)."""

    def start(self, config: RigConfig) -> BackendSession:
        """Start what the rig needs from this backend (nothing is triggered yet)."""

    def motion_hint(self, config: RigConfig) -> MotionHint | None:
        """The object's distance and speed, where this backend knows them."""


@cache
def _registry(group: str = ENTRY_POINT_GROUP) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        found.setdefault(ep.name, ep)
    return found


def backend_names() -> tuple[str, ...]:
    """The installed backends' names, sorted."""
    return tuple(sorted(_registry()))


@cache
def backend(name: str) -> RigBackend:
    """The backend registered as ``name`` (loaded on first use; its imports happen then).

    Raises :class:`UnknownBackendError` listing the installed names, or ``TypeError`` when the
    entry point does not lead to a :class:`RigBackend`.
    """
    try:
        ep = _registry()[name]
    except KeyError:
        known = ", ".join(backend_names()) or "none (is the project installed?)"
        raise UnknownBackendError(f"unknown driver {name!r}; installed rig backends: {known}") from None
    obj = ep.load()
    if isinstance(obj, type):
        obj = obj()
    if not isinstance(obj, RigBackend):
        raise TypeError(f"rig backend entry point {name} = {ep.value} is not a RigBackend")
    return obj


def port_backend(port: str) -> RigBackend | None:
    """The backend that serves synchronizer ``port`` itself (``emulated``: the simulator), or
    ``None`` when the port is a real device or URL (nothing is loaded then)."""
    ep = _registry(PORT_ENTRY_POINT_GROUP).get(port)
    if ep is None:
        return None
    found = backend(_backend_name_of(ep))
    if port not in found.emulated_ports:
        raise TypeError(f"rig port entry point {port} = {ep.value}: backend {found.name!r} does not serve it")
    return found


def _backend_name_of(port_ep: EntryPoint) -> str:
    """The backend (by driver name) whose entry point has the same target as ``port_ep``."""
    for name, ep in _registry().items():
        if ep.value == port_ep.value:
            return name
    raise UnknownBackendError(
        f"rig port {port_ep.name!r} points at {port_ep.value}, which no rig backend entry point names"
    )


def backends_of(config: RigConfig) -> dict[str, tuple[str, ...]]:
    """The backends ``config`` uses → the camera roles each one provides (in role order); the
    backend that serves an emulated port appears with the roles it provides, possibly none."""
    used: dict[str, tuple[str, ...]] = {}
    for role, camera in config.cameras.items():
        used[camera.driver] = (*used.get(camera.driver, ()), role)
    port = port_backend(config.synchronizer.port)
    if port is not None:
        used.setdefault(port.name, ())
    return used


def motion_hint(config: RigConfig) -> MotionHint | None:
    """The first motion hint any backend of ``config`` gives (the simulated world's object
    distance and speed), or ``None`` on a lab rig."""
    for name in backends_of(config):
        hint = backend(name).motion_hint(config)
        if hint is not None:
            return hint
    return None


def clear_cache() -> None:
    """Forget loaded backends and re-read the entry points (after installing a backend)."""
    backend.cache_clear()
    _registry.cache_clear()
