"""The world in front of the simulated rig: a twin scene plus what the operator has set up.

The capture protocol tells the world what stands in front of the rig before each trigger
(``set_view``: the lightbox, the white board, the still reference scene, or pair i of n in
motion), as an operator would arrange it. The world listens to the pulse generator's T0 (any
pulse on channel ``listen_channel``) and remembers which view was in place at each firing, so
that each simulated camera, whenever its worker gets to render, renders what was there when
*its* trigger fired. Rendering is ``RigTwin.render_frame`` with the camera's own exposure and
gain, and with its exposure starting when its own pulse arrives: a pulse delayed after camera
B's (channel B's ``:PULSE2:DELAY`` beyond channel A's) integrates the scene's motion over
[delay, delay + exposure] of B's window. A frame depends only on the view, the camera, its
settings and its trigger's delay (not on render order).
"""

from __future__ import annotations

import threading

import numpy as np

from hardware_sim.signals import Pulse, PulseBus
from hardware_sim.twin import RigTwin, View


class UnknownFiringError(RuntimeError):
    """A camera asked for a frame of a firing the world never saw (wiring error)."""


class SimulatedWorld:
    """Scene state shared by the simulated instruments; ``render`` is a camera FrameRenderer."""

    def __init__(self, twin: RigTwin, bus: PulseBus | None = None, listen_channel: int = 1):
        self.twin = twin
        self._view = View("whiteboard")
        self._views_at_fire: dict[int, tuple[View, float]] = {}  # fire → (view, B's pulse delay)
        self._lock = threading.Lock()
        if bus is not None:
            bus.connect(listen_channel, self._on_pulse)

    @property
    def view(self) -> View:
        with self._lock:
            return self._view

    def set_view(self, view: View) -> None:
        """Arrange what stands in front of the rig for the next trigger."""
        with self._lock:
            self._view = view

    def _on_pulse(self, pulse: Pulse) -> None:
        with self._lock:
            self._views_at_fire[pulse.fire_count] = (self._view, pulse.delay_s)

    def view_at(self, fire_count: int) -> View:
        return self._firing(fire_count)[0]

    def _firing(self, fire_count: int) -> tuple[View, float]:
        with self._lock:
            try:
                return self._views_at_fire[fire_count]
            except KeyError:
                raise UnknownFiringError(
                    f"no firing {fire_count} was seen by the world: is it wired to the pulse generator?"
                ) from None

    def render(self, *, role: str, pulse: Pulse, exposure_s: float, gain_db: float) -> np.ndarray:
        """The RAW frame (H, W) uint16 that camera ``role`` records for ``pulse``: its exposure
        starts ``pulse.delay_s`` minus camera B's pulse delay after B's (the world's clock)."""
        view, b_delay_s = self._firing(pulse.fire_count)
        return self.twin.render_frame(role, view, exposure_s, gain_db, delay_s=pulse.delay_s - b_delay_s).cfa
