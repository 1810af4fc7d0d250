"""The capture protocol end to end on the simulated rig: real pty, real files, real databases."""

from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from acquisition import capture as capture_module
from acquisition.capture import (
    FrameMissingError,
    RigBusyError,
    SceneCapture,
    SceneExistsError,
    StorageError,
    TriggerFailedError,
    rig_lock,
    trigger_schedule,
)
from core.db import session_factory
from core.dng import read_dng
from core.models import Capture, CaptureRun, Frame, RunStatus
from hardware_sim.pulse_generator import FaultPlan
from hardware_sim.twin import View

from .conftest import plan_for

N_PAIRS = 3


def stored_state(engine, data_dir: Path, scene: str | None = "s1"):
    """(complete trigger indices, frame paths in the DB, DNG files on disk) of a scene."""
    with session_factory(engine)() as session:
        captures = session.scalars(select(Capture)).all()
        triggers = sorted(c.trigger_index for c in captures if c.status == "complete")
        paths = {f.path for f in session.scalars(select(Frame)).all()}
    files = {str(p.relative_to(data_dir)) for p in data_dir.rglob("*.dng")}
    temps = [p for p in data_dir.rglob("*") if p.name.startswith(".") and p.is_file()]
    return triggers, paths, files, temps


def assert_frames_are_what_the_twin_saw(engine, data_dir, rig, plan):
    """Every stored frame equals, pixel for pixel, the twin's render of that trigger's view,
    its exposure starting when the plan's delay says (S (tL − tS)/2 after B with ``centre``)."""
    twin = rig.simulation.world.twin
    views = {i: stage for i, stage in trigger_schedule(N_PAIRS)}
    exposure = {"B": plan.long_exposure_s, "S": plan.short_exposure_s}
    delay = {"B": 0.0, "S": plan.sharp_delay_s}
    with session_factory(engine)() as session:
        for frame in session.scalars(select(Frame)).all():
            cfa, meta = read_dng(data_dir / frame.path)
            assert hashlib.sha256((data_dir / frame.path).read_bytes()).hexdigest() == frame.sha256
            assert meta.exposure_time_s == pytest.approx(frame.exposure_s)
            assert frame.exposure_delay_s == delay[frame.role]  # as the generator held it, exactly
            assert json.loads(meta.description)["exposure_delay_s"] == delay[frame.role]
            stage = views[frame.trigger_index]
            expected = twin.render_frame(frame.role, View(stage.kind, stage.index, stage.n_pairs), exposure[frame.role],
                                         delay_s=delay[frame.role])
            np.testing.assert_array_equal(cfa, expected.cfa)


def test_a_scene_session_lands_complete_and_traceable(rig, engine, tmp_path):
    plan = plan_for(rig)
    data_dir = tmp_path / "data"
    outcome = SceneCapture(rig, plan, data_dir, engine).capture_scene("s1", N_PAIRS)
    assert outcome.status == RunStatus.COMPLETE and outcome.stored == list(range(N_PAIRS + 2))
    triggers, paths, files, temps = stored_state(engine, data_dir)
    assert triggers == list(range(N_PAIRS + 2))
    assert paths == files and len(files) == 2 * (N_PAIRS + 2) and not temps
    assert_frames_are_what_the_twin_saw(engine, data_dir, rig, plan)
    with session_factory(engine)() as session:
        run = session.scalars(select(CaptureRun)).one()
        assert run.status == RunStatus.COMPLETE and run.finished_at is not None
        assert run.config["plan"]["nd_transmittance"] == plan.nd_transmittance
        assert run.config["software"].startswith("reloblur-lab")
        assert run.outcome["stored"] == list(range(N_PAIRS + 2))


def test_the_blurred_frame_is_blurred_and_the_sharp_one_is_not(rig, engine, tmp_path):
    """B's pair frame differs from S's mostly where the object moved (the true mask)."""
    plan = plan_for(rig)
    SceneCapture(rig, plan, tmp_path, engine).capture_scene("s1", N_PAIRS)
    twin = rig.simulation.world.twin
    shot = twin.pair(0, N_PAIRS)
    assert shot.mask.mean() > 0.01


@pytest.mark.parametrize("sharp_timing", ["centre", "start"])
def test_the_sharp_delay_reaches_the_generator_the_frames_and_the_run(rig, engine, tmp_path, sharp_timing):
    """``centre``: camera S is triggered (tL − tS)/2 after B, the generator holds that delay on
    channel B, S's frames show the middle of B's window, and every frame and the run record it;
    ``start``: delay 0 everywhere (the paper's timing)."""
    from acquisition.synchronizer import TICKS_PER_S

    assert rig.config.sharp_timing == "centre"  # the twin rig's default
    plan = plan_for(rig, sharp_timing)
    expected = round((plan.long_exposure_s - plan.short_exposure_s) / 2 * TICKS_PER_S) / TICKS_PER_S
    assert plan.sharp_timing == sharp_timing
    assert plan.sharp_delay_s == (expected if sharp_timing == "centre" else 0.0)
    if sharp_timing == "centre":
        assert plan.sharp_delay_s > 0
    data_dir = tmp_path / "data"
    SceneCapture(rig, plan, data_dir, engine).capture_scene("s1", N_PAIRS)
    emulator = rig.simulation.emulator
    assert emulator.channels[2].delay_ticks - emulator.channels[1].delay_ticks == round(plan.sharp_delay_s * TICKS_PER_S)
    assert_frames_are_what_the_twin_saw(engine, data_dir, rig, plan)
    twin = rig.simulation.world.twin
    with session_factory(engine)() as session:
        run = session.scalars(select(CaptureRun)).one()
        assert run.config["plan"]["sharp_timing"] == sharp_timing
        assert run.config["plan"]["sharp_delay_s"] == plan.sharp_delay_s
        assert run.outcome["sharp_delay_s"] == plan.sharp_delay_s
        for capture in session.scalars(select(Capture)).all():
            frames = {f.role: f for f in capture.frames}
            assert (frames["B"].exposure_delay_s, frames["S"].exposure_delay_s) == (0.0, plan.sharp_delay_s)
            # The simulated cameras time-stamp their exposure start: S's comes the delay after B's.
            gap_ns = frames["S"].sensor_timestamp_ns - frames["B"].sensor_timestamp_ns
            assert gap_ns == round(plan.sharp_delay_s * 1e9)
        pair = session.scalars(select(Frame).join(Capture).where(
            Capture.kind == "pair", Frame.role == "S")).first()
        cfa, _ = read_dng(data_dir / pair.path)
    view = View("pair", pair.trigger_index - 2, N_PAIRS)
    at_start = twin.render_frame("S", view, plan.short_exposure_s, delay_s=0.0).cfa
    assert np.array_equal(cfa, at_start) == (sharp_timing == "start")


def test_a_second_capture_on_a_busy_rig_is_refused(rig, engine, tmp_path):
    plan = plan_for(rig)
    with rig_lock(tmp_path, rig.name), pytest.raises(RigBusyError, match="busy"):
        SceneCapture(rig, plan, tmp_path, engine).capture_scene("s1", 1)
    with session_factory(engine)() as session:
        assert session.scalar(select(func.count()).select_from(CaptureRun)) == 0


def test_an_existing_scene_needs_resume(rig, engine, tmp_path):
    plan = plan_for(rig)
    SceneCapture(rig, plan, tmp_path, engine).capture_scene("s1", 1)
    with pytest.raises(SceneExistsError, match="--resume"):
        SceneCapture(rig, plan, tmp_path, engine).capture_scene("s1", 1)


class FaultAt:
    """An operator that injects a fault when the protocol arranges a given pair."""

    def __init__(self, rig, pair_index: int, inject):
        self.inner, self.pair_index, self.inject = rig.operator, pair_index, inject

    def mount_nd_filter(self, transmittance):
        self.inner.mount_nd_filter(transmittance)

    def arrange(self, stage):
        self.inner.arrange(stage)
        if stage.kind == "pair" and stage.index == self.pair_index:
            self.inject()


def run_with_fault(rig, engine, data_dir, inject, error):
    plan = plan_for(rig)
    rig.operator = FaultAt(rig, 1, inject)
    with pytest.raises(error):
        SceneCapture(rig, plan, data_dir, engine, fetch_margin_s=0.5).capture_scene("s1", N_PAIRS)
    triggers, paths, files, temps = stored_state(engine, data_dir)
    assert triggers == [0, 1, 2]  # whiteboard, reference, pair 0: kept
    assert paths == files and not temps  # no row without its file, no file without its row
    with session_factory(engine)() as session:
        run = session.scalars(select(CaptureRun)).one()
        assert run.status == RunStatus.FAILED and error.__name__ in run.error
    return plan


@pytest.mark.parametrize("role, fault", [("B", "dropped"), ("S", "dropped"), ("B", "late"), ("S", "late")])
def test_a_frame_missing_on_one_camera_keeps_earlier_pairs_and_resume_completes(rig, engine, tmp_path, role, fault):
    """A dropped frame, or one later than the fetch timeout: a named error, earlier pairs kept;
    on resume the late frame is not paired with a later trigger."""
    data_dir = tmp_path / "data"
    camera = rig.cameras[role]
    inject = camera.drop_next if fault == "dropped" else (lambda: camera.delay_next(1.0))
    plan = run_with_fault(rig, engine, data_dir, inject, FrameMissingError)
    rig.operator = rig.operator.inner
    outcome = SceneCapture(rig, plan, data_dir, engine).capture_scene("s1", N_PAIRS, resume=True)
    assert outcome.already_present == [0, 1, 2] and outcome.stored == [3, 4]
    triggers, paths, files, _ = stored_state(engine, data_dir)
    assert triggers == [0, 1, 2, 3, 4] and paths == files
    assert_frames_are_what_the_twin_saw(engine, data_dir, rig, plan)  # paired by trigger, not by counters


@pytest.mark.parametrize("fault", [
    FaultPlan(no_reply_to={"*TRG"}),
    FaultPlan(garble_after=0),
    FaultPlan(disconnect_after=0),
], ids=["no-reply", "garbled", "disconnect"])
def test_synchronizer_faults_end_in_a_named_error_and_nothing_half_written(rig, engine, tmp_path, fault):
    emulator = rig.simulation.emulator

    def inject():
        emulator.faults = fault

    run_with_fault(rig, engine, tmp_path / "data", inject, TriggerFailedError)


def test_disk_full_leaves_no_half_written_pair(rig, engine, tmp_path, monkeypatch):
    real_write = capture_module.write_dng
    calls = {"n": 0}

    def write_until_full(path, cfa, meta):
        calls["n"] += 1
        if calls["n"] == 8:  # the second frame of pair 1 (triggers 0..2 wrote 6 files)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, cfa, meta)

    monkeypatch.setattr(capture_module, "write_dng", write_until_full)
    data_dir = tmp_path / "data"
    plan = plan_for(rig)
    with pytest.raises(StorageError, match="disk is full"):
        SceneCapture(rig, plan, data_dir, engine).capture_scene("s1", N_PAIRS)
    triggers, paths, files, temps = stored_state(engine, data_dir)
    assert triggers == [0, 1, 2] and paths == files and not temps


def test_lightbox_capture_is_a_rig_level_flat_field(rig, engine, tmp_path):
    from acquisition.planner import ExposurePlan

    plan = ExposurePlan(0.01, 0.1, 0.1, 0, 0, 0.1, 0.01, 0, 0)
    first = SceneCapture(rig, plan, tmp_path, engine).capture_lightbox()
    second = SceneCapture(rig, plan, tmp_path, engine).capture_lightbox()
    assert (first.stored, second.stored) == ([0], [1])
    twin = rig.simulation.world.twin
    with session_factory(engine)() as session:
        frames = session.scalars(select(Frame)).all()
        assert {(f.capture.kind, f.capture.scene_id) for f in frames} == {("lightbox", None)}
        for f in frames:
            cfa, _ = read_dng(tmp_path / f.path)
            expected = twin.render_frame(f.role, View("lightbox"), plan.long_exposure_s if f.role == "B" else 0.01)
            np.testing.assert_array_equal(cfa, expected.cfa)
