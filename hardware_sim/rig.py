"""The simulated rig's devices, built from a rig file's ``simulation`` block.

:class:`SimulatedBackend` is the ``simulated`` rig backend (an entry point of
``reloblur.rig_backends`` in ``pyproject.toml``, see :mod:`acquisition.backends`):
``acquisition.rig.build_rig`` starts it when the rig file asks for ``driver: simulated``
cameras or an ``emulated`` pulse generator:

* the BNC 575 emulator is served on a real pseudo-terminal (the ordinary pyserial driver opens
  its path) and drives a PulseBus, the twin's trigger cables;
* the world (``SimulatedWorld``) holds the twin scene, with the rig's own optics and sensor;
* each simulated camera's Line0 is wired to its generator output and renders from the world;
* the simulated operator arranges the world as the protocol asks (stage, ND filter).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from acquisition.backends import BackendSession, ColourMetadata, MotionHint
from acquisition.rig import Operator, Stage
from hardware_sim.pulse_generator import PulseGeneratorEmulator
from hardware_sim.signals import PulseBus
from hardware_sim.sim_camera import SimulatedCamera
from hardware_sim.spec import SceneSpec, load_preset, load_scene_file, parse_scene, preset_names
from hardware_sim.twin import RigTwin, View
from hardware_sim.world import SimulatedWorld

if TYPE_CHECKING:
    from acquisition.cameras.base import Camera
    from acquisition.rig import RigConfig


def scene_for_rig(config: RigConfig) -> SceneSpec:
    """The simulation's scene with the rig's sensor and lens (the rig file wins)."""
    sim = config.simulation
    spec = load_preset(sim.scene) if sim.scene in preset_names() else load_scene_file(Path(sim.scene))
    data = spec.model_dump(mode="json")
    o = config.optics
    data["exposure"] = {"short_s": spec.short_exposure_s, "nd_transmittance": spec.exposure.nd_transmittance,
                        "sharp_timing": config.sharp_timing}
    data["optics"].update(pixel_pitch_um=o.pixel_pitch_um, focal_length_mm=o.focal_length_mm)
    data["sensor"].update(
        width=o.sensor_width_px, height=o.sensor_height_px, bits=o.bit_depth, cfa_pattern=o.cfa_pattern,
        black_level=o.black_level, exposure_range_s=list(o.exposure_range_s),
    )
    return parse_scene(data)


@dataclass
class SimulatedInstruments:
    """The simulated rig's shared parts: trigger cables, world, and the generator's emulator."""

    bus: PulseBus
    world: SimulatedWorld | None  # None: the emulated generator alone, no simulated scene
    emulator: PulseGeneratorEmulator
    port: str

    def close(self) -> None:
        self.emulator.close()


def start_simulated_instruments(config: RigConfig) -> SimulatedInstruments:
    """Start the emulated pulse generator on a real pty, and the world when the rig file has a
    ``simulation`` block (without one, only the generator is emulated)."""
    bus = PulseBus()
    world = None
    if config.simulation is not None:
        twin = RigTwin(scene_for_rig(config), config.simulation.seed)
        twin.warm_up()
        world = SimulatedWorld(twin, bus, listen_channel=config.synchronizer.channel_b)
    emulator = PulseGeneratorEmulator(bus)
    return SimulatedInstruments(bus, world, emulator, emulator.serve_pty())


def simulated_camera(config: RigConfig, role: str, world: SimulatedWorld, bus: PulseBus, channel: int) -> SimulatedCamera:
    """Camera ``role`` of the simulated rig, its trigger input wired to generator ``channel``."""
    o = config.optics
    return SimulatedCamera(
        serial=config.cameras[role].serial, role=role, renderer=world.render,
        width=o.sensor_width_px, height=o.sensor_height_px, bits=o.bit_depth, bus=bus, line_channel=channel,
    )


class SimulatedOperator(Operator):
    """Arranges the twin's world as the protocol asks: the stage and camera B's ND filter."""

    def __init__(self, world: SimulatedWorld):
        self.world = world

    def mount_nd_filter(self, transmittance: float) -> None:
        self.world.twin.nd["B"] = transmittance

    def arrange(self, stage: Stage) -> None:
        self.world.set_view(View(stage.kind, stage.index, stage.n_pairs))


class _SimulatedSession(BackendSession):
    """The emulated generator's pty, the twin's cameras, its operator and its sensor's colour."""

    def __init__(self, config: RigConfig) -> None:
        self._config = config
        self.simulation = start_simulated_instruments(config)
        self.port = self.simulation.port

    def camera(self, role: str, serial: str, channel: int) -> Camera:
        sim = self.simulation
        return simulated_camera(self._config, role, sim.world, sim.bus, channel)

    def operator(self) -> Operator | None:
        world = self.simulation.world
        return None if world is None else SimulatedOperator(world)

    def colour(self) -> ColourMetadata | None:
        world = self.simulation.world
        if world is None:
            return None
        sensor = world.twin.sensor
        return ColourMetadata(sensor.as_shot_neutral, sensor.color_matrix_1)

    def close(self) -> None:
        self.simulation.close()


class SimulatedBackend:
    """The digital twin behind the real drivers: ``driver: simulated`` cameras (which need the
    ``simulation`` block and the emulated generator) and ``port: emulated``."""

    name = "simulated"
    emulated_ports: tuple[str, ...] = ("emulated",)

    def check(self, config: RigConfig, roles: tuple[str, ...]) -> None:
        if not roles:
            return
        if config.synchronizer.port not in self.emulated_ports:
            raise ValueError(
                "simulated cameras can only be triggered by the emulated pulse generator (port: emulated)"
            )
        if config.simulation is None:
            raise ValueError("simulated cameras need a `simulation` block (the scene in front of the rig)")

    def start(self, config: RigConfig) -> BackendSession:
        return _SimulatedSession(config)

    def motion_hint(self, config: RigConfig) -> MotionHint | None:
        """The simulated object's distance and its fastest speed (from the rig's scene)."""
        if config.simulation is None:
            return None
        spec = scene_for_rig(config)
        return MotionHint(spec.optics.object_distance_m, spec.fastest_speed_mps)
