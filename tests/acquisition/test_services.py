"""The acquisition use cases (acquisition.services): one request model and one function each,
called alike by the CLI and the job handlers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from acquisition.planner import PlanError
from acquisition.requests import DEFAULT_SHARP_BLUR_PX, LightboxRequest, SceneCaptureRequest
from acquisition.rig import load_rig_config
from acquisition.services import (
    capture_lightbox,
    capture_scene,
    plan_scene_capture,
)
from api.jobs.params import CaptureParams, LightboxParams
from core.db import session_factory
from core.models import CaptureRun

from .conftest import write_rig_file


def test_the_job_parameters_are_the_request_plus_the_rig():
    assert issubclass(CaptureParams, SceneCaptureRequest) and issubclass(LightboxParams, LightboxRequest)
    request_fields = set(SceneCaptureRequest.model_fields)
    assert set(CaptureParams.model_fields) == request_fields | {"rig"}
    assert set(LightboxParams.model_fields) == set(LightboxRequest.model_fields) | {"rig"}


@pytest.mark.parametrize(("values", "field"), [
    ({"scene": "a/b", "pairs": 1}, "scene"),
    ({"scene": "s", "pairs": 0}, "pairs"),
    ({"scene": "s", "pairs": 1, "sharp_timing": "middle"}, "sharp_timing"),
    ({"scene": "s", "pairs": 1, "speed_mps": 0}, "speed_mps"),
    ({"scene": "s", "pairs": 1, "colour": "red"}, "colour"),
])
def test_a_bad_request_names_its_field(values, field):
    with pytest.raises(ValidationError) as info:
        SceneCaptureRequest(**values)
    assert info.value.errors()[0]["loc"][0] == field


def test_the_plan_takes_the_request_first_and_the_rig_for_the_rest(tmp_path):
    rig = load_rig_config(write_rig_file(tmp_path))
    from_rig = plan_scene_capture(rig, SceneCaptureRequest(scene="s", pairs=1))
    assert from_rig.sharp_timing == rig.sharp_timing
    assert from_rig.blur_s_px <= DEFAULT_SHARP_BLUR_PX + 1e-9
    asked = plan_scene_capture(rig, SceneCaptureRequest(scene="s", pairs=1, sharp_timing="start",
                                                        distance_m=7.0, speed_mps=2.0, sharp_blur=3.0))
    assert asked.sharp_timing == "start" and asked.sharp_delay_s == 0.0
    assert asked.blur_s_px <= 3.0 + 1e-9 and asked.blur_s_px != from_rig.blur_s_px


def test_a_rig_that_does_not_know_the_motion_needs_distance_and_speed(tmp_path):
    lab = load_rig_config(write_rig_file(
        tmp_path, simulation=None, synchronizer={"port": "/dev/ttyUSB0"},
        cameras={"B": {"driver": "harvesters", "serial": "x", "cti": "/p.cti"},
                 "S": {"driver": "harvesters", "serial": "y", "cti": "/p.cti"}}))
    with pytest.raises(PlanError, match="give --distance, --speed"):
        plan_scene_capture(lab, SceneCaptureRequest(scene="s", pairs=1),
                           names={"distance_m": "--distance", "speed_mps": "--speed"})
    plan = plan_scene_capture(lab, SceneCaptureRequest(scene="s", pairs=1, distance_m=10.0, speed_mps=2.0))
    assert plan.short_exposure_s > 0 and plan.long_exposure_s > plan.short_exposure_s


def test_capture_scene_and_lightbox_store_what_they_planned(tmp_path, engine):
    rig = load_rig_config(write_rig_file(tmp_path))
    stored = []
    plan, outcome = capture_scene(rig, SceneCaptureRequest(scene="s1", pairs=1), tmp_path / "data", engine,
                                  on_stored=lambda index, stage: stored.append((index, stage.kind)))
    assert outcome.stored == [0, 1, 2] and [i for i, _ in stored] == [0, 1, 2]
    with session_factory(engine)() as session:
        run = session.scalars(select(CaptureRun)).one()
    assert run.config["plan"]["short_exposure_s"] == plan.short_exposure_s
    assert run.config["plan"]["sharp_timing"] == plan.sharp_timing
    plan, outcome = capture_lightbox(rig, LightboxRequest(exposure_ms=5.0, nd=0.5), tmp_path / "data", engine)
    assert len(outcome.stored) == 1
    assert plan.long_exposure_s == pytest.approx(2 * plan.short_exposure_s, rel=1e-6)
