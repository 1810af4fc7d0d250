"""A rig from configuration: camera B + camera S + synchronizer + optics, real or simulated.

A rig file (YAML) names each device's driver; the same capture code runs on either:

    name: lab-rig
    optics: {pixel_pitch_um: 4.5, focal_length_mm: 50, nd_filters: [1, 0.5, 0.25, 0.125, 0.1],
             cfa_pattern: RGGB, bit_depth: 12, sensor_width_px: 2152, sensor_height_px: 1436}
    cameras:
      B: {driver: harvesters, serial: "40123456", cti: /opt/producer/lib/producer.cti}
      S: {driver: harvesters, serial: "40123457", cti: /opt/producer/lib/producer.cti}
    synchronizer: {port: /dev/ttyUSB0, baudrate: 115200}    # or socket://192.168.1.20:2101
    sharp_timing: centre    # S's exposure at the centre of B's (S triggered (tL − tS)/2 later);
                            # `start`: both start together, as in the published ReLoBlur set

The simulated rig (``configs/rigs/twin.yaml``) uses ``driver: simulated`` cameras and
``port: emulated``: the pulse generator's emulator is served on a real pseudo-terminal and the
ordinary pyserial driver talks to it; its output pulses trigger the simulated cameras, which
render what the twin's world holds in front of the rig (the ``simulation`` block).
Drivers are rig backends found by name through entry points (:mod:`acquisition.backends`):
this module knows none of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from acquisition import backends
from acquisition.cameras.base import Camera
from acquisition.planner import DEFAULT_SHARP_TIMING, SharpTiming
from acquisition.synchronizer import PulseGenerator
from core.config import StrictModel, read_yaml, validate_model
from core.errors import UserError

ROLES = ("B", "S")


class RigConfigError(UserError, ValueError):
    """A rig file that cannot describe a rig: the message names the key and what is allowed."""

    http_status = 422


class _Strict(StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OpticsConfig(_Strict):
    pixel_pitch_um: float = Field(gt=0, le=1000)
    focal_length_mm: float = Field(gt=0, le=2000)
    nd_filters: tuple[float, ...] = Field(min_length=1, description="Transmittances of the ND filters at hand.")
    cfa_pattern: Literal["RGGB", "BGGR", "GRBG", "GBRG"] = "RGGB"
    bit_depth: int = Field(12, ge=8, le=16)
    sensor_width_px: int = Field(ge=16, multiple_of=2)
    sensor_height_px: int = Field(ge=16, multiple_of=2)
    exposure_range_s: tuple[float, float] = Field((2e-5, 10.0), description="Cameras' ExposureTime limits (s).")
    black_level: int = Field(64, ge=0)
    as_shot_neutral: tuple[float, float, float] = Field(
        (1.0, 1.0, 1.0), description="Camera RGB of white under the lab light (green = 1), written to every DNG."
    )
    color_matrix_1: tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]] | None = (
        Field(None, description="DNG ColorMatrix1 (CIE XYZ D65 → camera RGB), written to every DNG; "
              "without it the ISP takes white-balanced camera RGB as linear sRGB.")
    )

    @model_validator(mode="after")
    def _check(self) -> OpticsConfig:
        if any(not 0 < t <= 1 for t in self.nd_filters):
            raise ValueError(f"nd_filters must lie in (0, 1], got {self.nd_filters}")
        return self


class CameraConfig(_Strict):
    driver: str = Field(description="An installed rig backend: harvesters, simulated, or a third party's.")
    serial: str = Field(min_length=1)
    cti: Path | None = Field(None, description="GenTL producer (.cti) for the harvesters driver.")

    @field_validator("driver")
    @classmethod
    def _installed(cls, v: str) -> str:
        if v not in backends.backend_names():
            known = ", ".join(backends.backend_names()) or "none (is the project installed?)"
            raise ValueError(f"unknown driver {v!r}; installed rig backends: {known}")
        return v


class SynchronizerConfig(_Strict):
    port: str = Field(description="Device path, pyserial URL (socket://host:port) or `emulated`.")
    baudrate: int = Field(115200, gt=0)
    timeout_s: float = Field(1.0, gt=0, le=60)
    channel_b: int = Field(1, ge=1, le=8, description="Generator output wired to camera B's trigger input (1 = A).")
    channel_s: int = Field(2, ge=1, le=8, description="Generator output wired to camera S's trigger input.")

    @model_validator(mode="after")
    def _check(self) -> SynchronizerConfig:
        if self.channel_b == self.channel_s:
            raise ValueError("channel_b and channel_s must be different outputs")
        return self


class SimulationConfig(_Strict):
    """The world in front of a simulated rig (read only by simulated devices)."""

    scene: str = Field("car", description="A hardware_sim preset name or the path of a scene YAML.")
    seed: int = 0


class RigConfig(_Strict):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    optics: OpticsConfig
    cameras: dict[Literal["B", "S"], CameraConfig]
    synchronizer: SynchronizerConfig
    sharp_timing: SharpTiming = Field(
        DEFAULT_SHARP_TIMING,
        description="When camera S's exposure starts: `centre` of camera B's (S triggered (tL − tS)/2 after B) "
        "or `start`, together with B's (the paper's timing, to match the published ReLoBlur set).",
    )
    simulation: SimulationConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> RigConfig:
        missing = [r for r in ROLES if r not in self.cameras]
        if missing:
            raise ValueError(f"cameras: missing role(s) {', '.join(missing)}; a rig needs camera B and camera S")
        for name, roles in backends.backends_of(self).items():
            backends.backend(name).check(self, roles)
        return self


def load_rig_config(path: str | Path) -> RigConfig:
    """Read and validate a rig YAML file; RigConfigError names unknown keys and bad values."""
    path = Path(path)
    data = read_yaml(path, RigConfigError, "rig")
    return validate_model(RigConfig, data, RigConfigError, f"invalid rig file {path}", root="rig")


class RigNotFoundError(RigConfigError, LookupError):
    """No rig file of that name in the rigs folder."""


def rig_file(rigs_dir: str | Path, name: str) -> Path:
    """Where rig ``name`` lives: ``<rigs_dir>/<name>.yaml``. A rig is known by its ``name``, and
    its file is named after it (the one identity the CLI, the API and the jobs share)."""
    return Path(rigs_dir) / f"{name}.yaml"


def check_rig_identity(path: Path, config: RigConfig) -> RigConfig:
    """``config`` when the file ``path`` is named after its rig; else a RigConfigError."""
    if config.name != path.stem:
        raise RigConfigError(
            f"the rig file {path.name} describes rig {config.name!r}, not {path.stem!r}: a rig file must "
            f"be named after its rig (name: {path.stem})"
        )
    return config


def load_rig(rigs_dir: str | Path, name: str, loader: Callable[[Path], RigConfig] | None = None) -> RigConfig:
    """Rig ``name`` from the rigs folder (:func:`rig_file`), checked to describe that rig.

    Raises :class:`RigNotFoundError` (no such file), or :class:`RigConfigError` (invalid file,
    or a file that describes another rig). ``loader`` reads a file (default
    :func:`load_rig_config`; the API passes a cached one)."""
    path = rig_file(rigs_dir, name)
    if not path.is_file():
        raise RigNotFoundError(f"no rig file {path.name} in the rigs folder")
    return check_rig_identity(path, (loader or load_rig_config)(path))


class Operator:
    """Whoever arranges the scene in front of the rig between triggers.

    The protocol asks for an ND filter on camera B and, before each trigger, for a stage
    (lightbox, whiteboard, reference, or pair i of n). This base operator trusts that the lab
    is arranged as asked (unattended or scripted sessions); ``ConsoleOperator`` prompts a
    person; the simulated rig's operator arranges the twin's world.
    """

    def mount_nd_filter(self, transmittance: float) -> None:  # noqa: B027 - a no-op by design
        """Put the ND filter of ``transmittance`` in front of camera B."""

    def arrange(self, stage: Stage) -> None:  # noqa: B027
        """Set up what should stand in front of the rig for the next trigger."""


class ConsoleOperator(Operator):
    """Prompts a person at the terminal and waits for Enter (for the real rig)."""

    def __init__(self, ask: Callable[[str], str] = input):
        self._ask = ask
        self._last_kind: str | None = None

    def mount_nd_filter(self, transmittance: float) -> None:
        self._ask(f"Mount the ND filter τ = {transmittance:g} in front of camera B, then press Enter ")

    def arrange(self, stage: Stage) -> None:
        if stage.kind == self._last_kind == "pair":
            return  # consecutive pairs: the object keeps moving, nothing to arrange
        self._last_kind = stage.kind
        text = {
            "lightbox": "Place the 6500 K lightbox in front of the rig (dark room)",
            "whiteboard": "Place the white board so that it fills both views",
            "reference": "Remove the board; put the object where it will move and keep everything still",
            "pair": "Start the motion; pairs will be triggered as the object crosses",
        }[stage.kind]
        self._ask(text + ", then press Enter ")


@dataclass(frozen=True)
class Stage:
    """What the protocol wants in front of the rig for one trigger (pair ``index`` of ``n_pairs``)."""

    kind: Literal["lightbox", "whiteboard", "reference", "pair"]
    index: int = 0
    n_pairs: int = 1


@dataclass
class Rig:
    """The devices of a rig, opened together; close() releases everything it started."""

    config: RigConfig
    cameras: dict[str, Camera]
    synchronizer: PulseGenerator
    operator: Operator
    as_shot_neutral: tuple[float, float, float]
    color_matrix_1: tuple[tuple[float, ...], ...] | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)
    simulation: object | None = None  # a backend's simulated world (BackendSession.simulation), if any

    @property
    def name(self) -> str:
        return self.config.name

    def close(self) -> None:
        _close_all(self._closers)

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_rig(config: RigConfig, operator: Operator | None = None) -> Rig:
    """Construct and open the rig's devices as configured (see the module docstring).

    The synchronizer's identity is checked (a BNC 575 / 9520-family instrument) and every
    camera is opened by serial, so a wrong port or a missing camera fails here, before any
    trigger fires.
    """
    closers: list[Callable[[], None]] = []
    try:
        sessions: dict[str, backends.BackendSession] = {}
        for name in backends.backends_of(config):
            session = backends.backend(name).start(config)
            closers.append(session.close)
            sessions[name] = session
        port = next((s.port for s in sessions.values() if s.port is not None), config.synchronizer.port)
        sync = PulseGenerator(port, baudrate=config.synchronizer.baudrate, timeout_s=config.synchronizer.timeout_s)
        sync.open()
        closers.append(sync.close)
        sync.check_identity()
        channels = {"B": config.synchronizer.channel_b, "S": config.synchronizer.channel_s}
        cameras: dict[str, Camera] = {}
        for role in ROLES:
            cam_cfg = config.cameras[role]
            camera = sessions[cam_cfg.driver].camera(role, cam_cfg.serial, channels[role])
            camera.open()
            closers.append(camera.close)
            cameras[role] = camera
        colour = next((c for s in sessions.values() if (c := s.colour()) is not None), None)
        if colour is None:
            colour = backends.ColourMetadata(config.optics.as_shot_neutral, config.optics.color_matrix_1)
        operator = operator or next((o for s in sessions.values() if (o := s.operator()) is not None), None)
        simulation = next((s.simulation for s in sessions.values() if s.simulation is not None), None)
        return Rig(config, cameras, sync, operator or Operator(), colour.as_shot_neutral, colour.color_matrix_1,
                   closers, simulation=simulation)
    except BaseException:
        _close_all(closers)
        raise


def _close_all(closers: list[Callable[[], None]]) -> None:
    """Call every closer, last opened first, even if some fail; empty the list."""
    while closers:
        with contextlib.suppress(Exception):
            closers.pop()()
