"""The operator's commands, including a capture process killed mid-session and resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from api.cli import app
from core import migrate
from core.db import make_engine, session_factory
from core.models import Capture, CaptureRun, Frame, RunStatus
from core.settings import get_settings

from .conftest import write_rig_file

RELOBLUR = str(Path(sys.executable).parent / "reloblur")
runner = CliRunner()


@pytest.fixture
def env(tmp_path, db_url, monkeypatch):
    data_dir = tmp_path / "data"
    monkeypatch.setenv("RELOBLUR_DATA_DIR", str(data_dir))
    monkeypatch.setenv("RELOBLUR_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield {"data_dir": data_dir, "db_url": db_url}
    get_settings.cache_clear()


def complete_triggers(db_url: str) -> list[int]:
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as session:
            return sorted(c.trigger_index for c in session.scalars(select(Capture)) if c.status == "complete")
    finally:
        engine.dispose()


def test_plan_prints_eq2_for_the_twin_rig():
    result = runner.invoke(app, ["plan", "--rig", "configs/rigs/twin.yaml"])
    assert result.exit_code == 0, result.output
    assert "tS = " in result.output and "ND options" in result.output and "* τ=" in result.output


def test_a_rig_is_named_by_its_file_or_by_its_name_in_the_rigs_folder(tmp_path, monkeypatch):
    by_file = runner.invoke(app, ["plan", "--rig", "configs/rigs/twin.yaml"])
    monkeypatch.setenv("RELOBLUR_RIGS_DIR", "configs/rigs")
    get_settings.cache_clear()
    try:
        by_name = runner.invoke(app, ["plan", "--rig", "twin"])
        unknown = runner.invoke(app, ["plan", "--rig", "nope"])
    finally:
        get_settings.cache_clear()
    assert by_name.exit_code == 0 and by_name.output == by_file.output
    assert unknown.exit_code == 2 and "no rig file nope.yaml in the rigs folder" in unknown.output


def test_plan_refusal_is_a_clear_error():
    result = runner.invoke(app, ["plan", "--distance", "10", "--speed", "2", "--focal-length", "50",
                                 "--pixel-pitch", "4.5", "--nd", "1,0.5"])
    assert result.exit_code == 2 and "no ND filter gives a usable long exposure" in result.output


def test_plan_prints_the_sharp_delay_from_the_rig_or_the_option(tmp_path):
    result = runner.invoke(app, ["plan", "--rig", "configs/rigs/twin.yaml"])  # the twin rig: centre
    assert result.exit_code == 0, result.output
    # tS = 4.491 ms, tL = 35.928 ms: S triggered (tL − tS)/2 = 15.7185 ms after B.
    assert "sharp timing        centre: S triggered 15.718500 ms after B" in result.output
    assert "channel B delay 0.01571850000 s beyond channel A" in result.output
    result = runner.invoke(app, ["plan", "--rig", "configs/rigs/twin.yaml", "--sharp-timing", "start"])
    assert result.exit_code == 0, result.output
    assert "sharp timing        start: S triggered 0.000000 ms after B" in result.output
    start_rig = write_rig_file(tmp_path, sharp_timing="start")
    result = runner.invoke(app, ["plan", "--rig", str(start_rig)])
    assert "sharp timing        start" in result.output
    result = runner.invoke(app, ["plan", "--rig", "configs/rigs/twin.yaml", "--sharp-timing", "middle"])
    assert result.exit_code == 2 and "--sharp-timing must be one of centre, start; got 'middle'" in result.output
    bad_rig = write_rig_file(tmp_path, sharp_timing="middle")
    result = runner.invoke(app, ["plan", "--rig", str(bad_rig)])
    assert result.exit_code == 2 and "sharp_timing: Input should be 'centre' or 'start'" in result.output


def test_rig_check_identifies_the_instruments(tmp_path):
    result = runner.invoke(app, ["rig", "check", "--rig", str(write_rig_file(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "BNC 575" in result.output or "BNC" in result.output
    assert "TWIN-B-0001" in result.output and "ExposureTime" in result.output


def test_bad_rig_files_are_named(tmp_path):
    bad = write_rig_file(tmp_path, colour="blue")
    result = runner.invoke(app, ["rig", "check", "--rig", str(bad)])
    assert result.exit_code == 2 and "colour: unknown key" in result.output
    missing_port = write_rig_file(tmp_path, synchronizer={"port": "/dev/ttyNOPE0"},
                                  cameras={"B": {"driver": "harvesters", "serial": "x", "cti": "/nope.cti"},
                                           "S": {"driver": "harvesters", "serial": "y", "cti": "/nope.cti"}},
                                  simulation=None)
    result = runner.invoke(app, ["rig", "check", "--rig", str(missing_port)])
    assert result.exit_code == 2 and "/dev/ttyNOPE0" in result.output


def test_capture_needs_an_upgraded_database(tmp_path, env):
    result = runner.invoke(app, ["capture", "--rig", str(write_rig_file(tmp_path)), "--scene", "s", "--pairs", "1"])
    assert result.exit_code == 2 and "reloblur db upgrade" in result.output


def test_capture_and_lightbox_commands(tmp_path, env):
    migrate.upgrade(env["db_url"])
    rig_file = str(write_rig_file(tmp_path))
    result = runner.invoke(app, ["capture", "--rig", rig_file, "--scene", "street", "--pairs", "2"])
    assert result.exit_code == 0, result.output
    assert complete_triggers(env["db_url"]) == [0, 1, 2, 3]
    engine = make_engine(env["db_url"])
    try:
        with session_factory(engine)() as session:  # the twin rig's centre: S delayed, recorded per frame
            delays = {(f.role, f.exposure_delay_s) for f in session.scalars(select(Frame))}
            run = session.scalars(select(CaptureRun)).one()
    finally:
        engine.dispose()
    assert run.config["plan"]["sharp_timing"] == "centre"
    assert delays == {("B", 0.0), ("S", run.config["plan"]["sharp_delay_s"])} and run.config["plan"]["sharp_delay_s"] > 0
    result = runner.invoke(app, ["capture", "--rig", rig_file, "--scene", "paper", "--pairs", "1",
                                 "--sharp-timing", "start"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["capture", "--rig", rig_file, "--scene", "street", "--pairs", "2"])
    assert result.exit_code == 2 and "--resume" in result.output
    result = runner.invoke(app, ["capture-lightbox", "--rig", rig_file, "--exposure-ms", "5", "--nd", "0.1"])
    assert result.exit_code == 0, result.output


def test_resume_after_the_capture_process_is_killed(tmp_path, env):
    """SIGKILL mid-session, then --resume: every trigger once, every file with its row."""
    migrate.upgrade(env["db_url"])
    rig_file = str(write_rig_file(tmp_path, width=640, height=428))
    n_pairs = 8
    args = [RELOBLUR, "capture", "--rig", rig_file, "--scene", "killed", "--pairs", str(n_pairs)]
    proc = subprocess.Popen(args, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(complete_triggers(env["db_url"])) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the capture finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = complete_triggers(env["db_url"])
    assert 3 <= len(before) < n_pairs + 2
    result = subprocess.run([*args, "--resume"], env=os.environ.copy(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert complete_triggers(env["db_url"]) == list(range(n_pairs + 2))
    engine = make_engine(env["db_url"])
    with session_factory(engine)() as session:
        paths = {f.path for f in session.scalars(select(Frame))}
        runs = session.scalars(select(CaptureRun).order_by(CaptureRun.id)).all()
    engine.dispose()
    data_dir = env["data_dir"]
    files = {str(p.relative_to(data_dir)) for p in data_dir.rglob("*.dng")}
    assert paths == files and len(files) == 2 * (n_pairs + 2)
    assert not [p for p in data_dir.rglob(".*") if p.is_file() and p.suffix != ".lock"]
    assert [r.status for r in runs] == [RunStatus.INTERRUPTED, RunStatus.COMPLETE]


def _viky_rig(tmp_path, serial_b: str, serial_s: str) -> Path:
    """Real harvesters cameras on the genicam wheel's viky.cti, with the emulated generator."""
    import genicam

    cti = str(Path(genicam.__file__).parent / "viky.cti")
    cameras = {"B": {"driver": "harvesters", "serial": serial_b, "cti": cti},
               "S": {"driver": "harvesters", "serial": serial_s, "cti": cti}}
    return write_rig_file(tmp_path, cameras=cameras, simulation=None)


def test_a_camera_serial_that_is_not_connected_is_named_before_any_trigger(tmp_path):
    from acquisition.cameras.harvesters_camera import shutdown_all

    try:
        result = runner.invoke(app, ["rig", "check", "--rig", str(_viky_rig(tmp_path, "0", "NOPE-42"))])
        assert result.exit_code == 2
        assert "NOPE-42" in result.output and "0, 1, 2" in result.output.replace("'", "")
        result = runner.invoke(app, ["rig", "check", "--rig", str(_viky_rig(tmp_path, "0", "1"))])
        assert result.exit_code == 0, result.output
        assert "cannot set ExposureTime" in result.output and "not in the node map" in result.output
    finally:
        shutdown_all()


def test_capture_refuses_cameras_that_cannot_deliver_bayer_raw_before_any_trigger(tmp_path, env):
    """viky.cti only does RGBa8/Mono8 and has no trigger: a named error, nothing captured."""
    from acquisition.cameras.harvesters_camera import shutdown_all

    migrate.upgrade(env["db_url"])
    try:
        result = runner.invoke(app, ["capture", "--rig", str(_viky_rig(tmp_path, "0", "1")), "--scene", "v",
                                     "--pairs", "1", "--distance", "10", "--speed", "2"])
    finally:
        shutdown_all()
    assert result.exit_code == 2
    assert "camera B (0)" in result.output and "PixelFormat" in result.output
    assert complete_triggers(env["db_url"]) == []
    assert not list(env["data_dir"].rglob("*.dng"))
