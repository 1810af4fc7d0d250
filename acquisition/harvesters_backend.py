"""The lab rig's backend: GenICam cameras through harvesters and a vendor's GenTL producer.

Registered as the ``harvesters`` rig backend (``pyproject.toml``). Rig files name it per camera
(``driver: harvesters`` with ``serial`` and ``cti``); the pulse generator sits on a real serial
port or a ``socket://`` URL, which the ordinary driver opens. harvesters and genicam are
imported only when a camera is made, so rigs without GenICam cameras never load them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from acquisition.backends import BackendSession, MotionHint

if TYPE_CHECKING:
    from acquisition.cameras.base import Camera
    from acquisition.rig import RigConfig


class _HarvestersSession(BackendSession):
    def __init__(self, config: RigConfig) -> None:
        self._config = config

    def camera(self, role: str, serial: str, channel: int) -> Camera:
        from acquisition.cameras.harvesters_camera import HarvestersCamera

        return HarvestersCamera(serial, self._config.cameras[role].cti)


class HarvestersBackend:
    """GenICam cameras (``cti`` required per camera); no emulated ports, no motion hint."""

    name = "harvesters"
    emulated_ports: tuple[str, ...] = ()

    def check(self, config: RigConfig, roles: tuple[str, ...]) -> None:
        for role in roles:
            if config.cameras[role].cti is None:
                raise ValueError(
                    f"cameras.{role}: the harvesters driver needs `cti`: the path of the camera vendor's GenTL producer"
                )

    def start(self, config: RigConfig) -> BackendSession:
        return _HarvestersSession(config)

    def motion_hint(self, config: RigConfig) -> MotionHint | None:
        return None
