"""A small simulated rig, a migrated database and an exposure plan for capture tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from acquisition.planner import PlanRequest, plan_exposures
from acquisition.rig import build_rig, load_rig_config

WIDTH, HEIGHT = 192, 128


def write_rig_file(folder: Path, width: int = WIDTH, height: int = HEIGHT, timeout_s: float = 1.0, **changes) -> Path:
    """The twin rig at a small size (same field of view as the 2152-px sensor)."""
    data = yaml.safe_load((Path(__file__).parents[2] / "configs" / "rigs" / "twin.yaml").read_text())
    data["optics"].update(pixel_pitch_um=4.5 * 2152 / width, sensor_width_px=width, sensor_height_px=height)
    data["synchronizer"]["timeout_s"] = timeout_s
    data.update(changes)
    path = folder / "rig.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def rig_file(tmp_path: Path) -> Path:
    return write_rig_file(tmp_path)


@pytest.fixture
def rig(rig_file: Path):
    with build_rig(load_rig_config(rig_file)) as r:
        yield r



def plan_for(rig, sharp_timing: str | None = None):
    """The plan for the simulated scene (its distance and speed), with the rig's optics and
    (unless given) its sharp timing."""
    spec = rig.simulation.world.twin.spec
    o = rig.config.optics
    return plan_exposures(PlanRequest(
        object_distance_m=spec.optics.object_distance_m, speed_mps=spec.fastest_speed_mps,
        pixel_pitch_um=o.pixel_pitch_um, focal_length_mm=o.focal_length_mm, sharp_blur_px=0.5,
        nd_filters=o.nd_filters, blur_range_px=(1.0, 70.0), target_blur_px=5.0, exposure_range_s=o.exposure_range_s,
        sharp_timing=sharp_timing or rig.config.sharp_timing,
    ))
