"""Importing RAW pairs as a scene: rows and files, reference mode, CSV, refusals, all or nothing."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlalchemy import func, select
from typer.testing import CliRunner

from acquisition import raw_import
from acquisition.raw_import import (
    FrameSizeMismatchError,
    ManifestError,
    RigNotFoundError,
    SceneExistsError,
    SourceFileMissingError,
    import_scene,
    load_manifest,
)
from api.cli import app
from core import migrate
from core.db import session_factory
from core.dng import read_dng, write_dng
from core.filestore import sha256_file
from core.models import CameraRecord, Capture, CaptureRun, Frame, RigRecord, RunStatus, Scene
from core.rawio import RawReadError
from core.settings import get_settings
from hardware_sim.scene_writer import simulate_scene
from hardware_sim.spec import load_preset, with_sensor_size

WIDTH, HEIGHT, PAIRS = 96, 64, 2
TABLES = (RigRecord, CameraRecord, Scene, Capture, Frame, CaptureRun)
runner = CliRunner()


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    """A tiny simulated scene ('car', 96×64, 2 pairs) with its manifest.yaml; do not modify."""
    out = tmp_path_factory.mktemp("sim") / "car"
    simulate_scene(with_sensor_size(load_preset("car"), WIDTH, HEIGHT), PAIRS, out, seed=3)
    return out


@pytest.fixture
def source(simulated, tmp_path) -> Path:
    """A private copy of the simulated scene, free to be changed by a test."""
    return Path(shutil.copytree(simulated, tmp_path / "source"))



@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


def counts(engine) -> dict[str, int]:
    with session_factory(engine)() as session:
        return {t.__tablename__: session.scalar(select(func.count()).select_from(t)) for t in TABLES}


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()) if root.exists() else []


def tree_state(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(root)): (sha256_file(p), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def write_manifest(folder: Path, **changes) -> Path:
    data = yaml.safe_load((folder / "manifest.yaml").read_text())
    data.update(changes)
    path = folder / "custom.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_simulated_scene_imports_with_its_own_manifest(simulated, engine, data_dir):
    manifest = load_manifest(simulated / "manifest.yaml")
    steps: list[str] = []
    summary = import_scene(simulated, None, engine, data_dir, on_step=steps.append)

    assert len(steps) == raw_import.count_steps(manifest) == 20
    assert (summary.scene, summary.rig, summary.rig_created, summary.frames) == ("car", "twin-car", True, 10)
    assert summary.captures == [("lightbox", 0), ("whiteboard", 0), ("reference", 0), ("pair", 0), ("pair", 1)]
    assert counts(engine) == {"rigs": 1, "cameras": 2, "scenes": 1, "captures": 5, "frames": 10,
                              "capture_runs": 1}
    with session_factory(engine)() as session:
        rig = session.scalar(select(RigRecord))
        spec = manifest.rig
        assert (rig.pixel_pitch_um, rig.focal_length_mm, rig.nd_filters) == (
            spec.pixel_pitch_um, spec.focal_length_mm, [0.1])
        assert (rig.cfa_pattern, rig.bit_depth, rig.sensor_width_px, rig.sensor_height_px) == (
            read_dng(simulated / "raw/pair_0000_B.dng")[1].cfa_pattern, 12, WIDTH, HEIGHT)
        cameras = {c.role: c for c in session.scalars(select(CameraRecord))}
        assert {c.driver for c in cameras.values()} == {"imported"}
        scene = session.scalar(select(Scene))
        assert scene.object_distance_m == 25.0
        for capture in session.scalars(select(Capture)):
            assert capture.status == "complete"
            assert capture.scene_id == (None if capture.kind == "lightbox" else scene.id)
            for frame in capture.frames:
                folder = "lightbox" if capture.kind == "lightbox" else "car"
                name = f"{capture.kind}_{capture.trigger_index:04d}_{frame.role}.dng"
                assert frame.path == f"raw/twin-car/{folder}/{name}"
                stored = data_dir / frame.path
                assert stored.is_file() and not stored.is_symlink()
                src_name = (f"{capture.kind}_{frame.role}.dng" if capture.kind != "pair"
                            else f"pair_{capture.trigger_index:04d}_{frame.role}.dng")
                _, meta = read_dng(simulated / "raw" / src_name)
                assert frame.sha256 == sha256_file(stored) == sha256_file(simulated / "raw" / src_name)
                assert frame.camera_id == cameras[frame.role].id
                assert cameras[frame.role].serial == meta.camera_serial
                assert (frame.exposure_s, frame.black_level, frame.white_level) == (
                    meta.exposure_time_s, meta.black_level, meta.white_level)
                assert (frame.width_px, frame.height_px, frame.trigger_index) == (
                    WIDTH, HEIGHT, capture.trigger_index)
                # When the exposure started after B's, from the twin's DNG description (car: centre).
                assert frame.exposure_delay_s == json.loads(meta.description)["exposure_delay_s"]
                assert (frame.exposure_delay_s > 0) == (frame.role == "S" and capture.kind != "lightbox")
        run = session.scalar(select(CaptureRun))
        assert run.status == RunStatus.COMPLETE and run.scene_id == scene.id
        assert run.config["mode"] == "copy" and run.config["import"] == str(simulated.resolve())
        assert run.config["manifest"]["scene"] == "car"
        assert run.outcome["captures"] == 5 and run.outcome["frames"] == 10
    assert summary.bytes_copied == sum(p.stat().st_size for p in files_under(data_dir)) > 0


def test_reference_mode_links_the_originals_and_takes_the_next_lightbox_index(
        simulated, engine, data_dir):
    before = tree_state(simulated)
    import_scene(simulated, None, engine, data_dir)
    summary = import_scene(simulated, None, engine, data_dir, mode="reference", scene="car_linked")
    assert summary.bytes_copied == 0 and not summary.rig_created and not summary.cameras_created
    assert ("lightbox", 1) in summary.captures
    for rel in summary.files:
        link = data_dir / rel
        assert link.is_symlink() and Path(os.readlink(link)).is_absolute()
        assert Path(os.readlink(link)).parent == (simulated / "raw").resolve()
    assert (data_dir / "raw/twin-car/lightbox/lightbox_0001_B.dng").is_symlink()
    assert tree_state(simulated) == before  # sources untouched (content and mtime)
    with session_factory(engine)() as session:
        frames = session.scalars(select(Frame).join(Capture).join(Scene).where(
            Scene.name == "car_linked")).all()
        assert all(f.sha256 == sha256_file(data_dir / f.path) for f in frames)
    assert counts(engine)["captures"] == 10 and counts(engine)["cameras"] == 2


def test_the_same_scene_name_twice_is_refused(simulated, engine, data_dir):
    import_scene(simulated, None, engine, data_dir)
    rows, files = counts(engine), files_under(data_dir)
    with pytest.raises(SceneExistsError, match="'car' already exists"):
        import_scene(simulated, None, engine, data_dir)
    assert counts(engine) == rows and files_under(data_dir) == files


def _break(source: Path, case: str) -> Path:
    """Make the source folder's manifest (or a file it names) bad in one way; return the manifest."""
    if case == "missing":
        return write_manifest(source, pairs=[{"B": "raw/pair_0000_B.dng", "S": "raw/nope.dng"}])
    if case == "size":
        cfa, meta = read_dng(source / "raw/pair_0001_S.dng")
        write_dng(source / "raw/pair_0001_S.dng", np.ascontiguousarray(cfa[:, : WIDTH - 2]), meta)
    elif case == "unreadable":
        (source / "raw/pair_0001_B.dng").write_bytes(np.random.default_rng(0).bytes(5000))
    return source / "manifest.yaml"


@pytest.mark.parametrize(("case", "error", "message"), [
    ("missing", SourceFileMissingError, "raw/nope.dng"),
    ("size", FrameSizeMismatchError, "pair 1: B .* is 96×64 px but S .* is 94×64 px"),
    ("unreadable", RawReadError, "pair_0001_B.dng"),
])
def test_a_bad_file_fails_before_anything_is_written(source, engine, data_dir, case, error, message):
    manifest = _break(source, case)
    with pytest.raises(error, match=message):
        import_scene(source, manifest, engine, data_dir)
    assert set(counts(engine).values()) == {0}
    assert files_under(data_dir) == []


@pytest.mark.parametrize("stage", ["placing", "commit"])
def test_a_late_failure_removes_the_files_already_placed(simulated, engine, data_dir, monkeypatch, stage):
    if stage == "placing":
        real_place, placed = raw_import._place, []

        def place(src, dest, mode):
            if len(placed) == 7:
                raise OSError(28, "No space left on device")
            placed.append(dest)
            return real_place(src, dest, mode)

        monkeypatch.setattr(raw_import, "_place", place)
    else:
        real_rows = raw_import._write_rows

        def rows(session, *args):
            real_rows(session, *args)
            session.flush()
            raise RuntimeError("database went away")

        monkeypatch.setattr(raw_import, "_write_rows", rows)
    with pytest.raises((OSError, RuntimeError)):
        import_scene(simulated, None, engine, data_dir)
    assert set(counts(engine).values()) == {0}
    assert files_under(data_dir) == []
    assert not (data_dir / "raw" / "twin-car").exists()


def test_a_csv_manifest_imports_into_an_existing_rig(simulated, engine, data_dir, tmp_path):
    import_scene(simulated, None, engine, data_dir)
    lines = ["kind,index,role,path"]
    for shot in ("whiteboard", "reference", "pair_0000"):
        kind, index = (shot, 0) if shot != "pair_0000" else ("pair", 0)
        lines += [f"{kind},{index},{role},raw/{shot}_{role}.dng" for role in "SB"]
    csv_path = tmp_path / "frames.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    summary = import_scene(simulated, csv_path, engine, data_dir, scene="car_csv", rig="twin-car")
    assert summary.captures == [("whiteboard", 0), ("reference", 0), ("pair", 0)]
    assert (data_dir / "raw/twin-car/car_csv/pair_0000_S.dng").is_file()
    with pytest.raises(RigNotFoundError, match="rig 'other' does not exist"):
        import_scene(simulated, csv_path, engine, data_dir, scene="car_csv2", rig="other")
    csv_path.write_text("\n".join([*lines, "pair,x,B,raw/pair_0001_B.dng"]) + "\n")
    with pytest.raises(ManifestError, match="line 8: index 'x'"):
        import_scene(simulated, csv_path, engine, data_dir, scene="car_csv3", rig="twin-car")
    with pytest.raises(ManifestError, match="needs --scene and --rig"):
        load_manifest(csv_path)


@pytest.mark.parametrize(("text", "message"), [
    ("scene: s\nrig: r\nwhiteboard: {B: a, S: b}\nreference: {B: c, S: d}\n", "pairs: Field required"),
    ("scene: s\nrig: r\nwhiteboard: {B: a}\nreference: {B: c, S: d}\npairs: [{B: e, S: f}]\n",
     "whiteboard.S: Field required"),
    ("scene: s\nrig: {name: r, pixel_pitch_um: -1, focal_length_mm: 50}\n",
     r"rig\.pixel_pitch_um: Input should be greater than 0; whiteboard"),
    ("scene: 'a/b'\n", "scene: String should match pattern"),
    ("scene: s\ncolour: blue\n", "colour: unknown key"),
    ("scene: s\n  rig: [\n", "line 2"),
    ("- just\n- a list\n", "expected a mapping"),
])
def test_bad_manifests_name_the_field_or_line(tmp_path, text, message):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(ManifestError, match=message):
        load_manifest(path)


@pytest.fixture
def env(tmp_path, db_url, monkeypatch):
    data_dir = tmp_path / "data"
    monkeypatch.setenv("RELOBLUR_DATA_DIR", str(data_dir))
    monkeypatch.setenv("RELOBLUR_DATABASE_URL", db_url)
    get_settings.cache_clear()
    migrate.upgrade(db_url)
    yield data_dir
    get_settings.cache_clear()


def test_the_import_command_end_to_end(simulated, env):
    result = runner.invoke(app, ["import", str(simulated)])
    assert result.exit_code == 0, result.output
    assert "scene 'car' imported on rig 'twin-car'" in result.output
    assert "5 (lightbox 1, whiteboard 1, reference 1, pair 2), 10 frames" in result.output
    assert len(files_under(env / "raw")) == 10

    result = runner.invoke(app, ["import", str(simulated), "--reference", "--scene", "car_ref"])
    assert result.exit_code == 0, result.output
    assert (env / "raw/twin-car/car_ref/pair_0001_S.dng").is_symlink()

    result = runner.invoke(app, ["import", str(simulated)])
    assert result.exit_code == 2
    assert "error: scene 'car' already exists" in result.output

    result = runner.invoke(app, ["import", str(simulated), "--manifest", str(simulated / "nope.yaml")])
    assert result.exit_code == 2 and "nope.yaml does not exist" in result.output


def test_the_import_command_takes_a_csv_and_warns_about_a_rig_without_lightbox(source, env):
    data = yaml.safe_load((source / "manifest.yaml").read_text())
    data.pop("lightbox")
    data["rig"]["name"] = "bare"
    (source / "manifest.yaml").write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["import", str(source), "--copy"])
    assert result.exit_code == 0, result.output
    assert "rig 'bare' has no lightbox capture yet" in result.output

    (source / "frames.csv").write_text(
        "kind,index,role,path\nwhiteboard,0,B,raw/whiteboard_B.dng\nwhiteboard,0,S,raw/whiteboard_S.dng\n"
        "reference,0,B,raw/reference_B.dng\nreference,0,S,raw/reference_S.dng\n"
        "pair,0,B,raw/pair_0001_B.dng\npair,0,S,raw/pair_0001_S.dng\n")
    args = ["import", str(source), "--manifest", str(source / "frames.csv")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "needs --scene and --rig" in result.output
    result = runner.invoke(app, [*args, "--scene", "from_csv", "--rig", "bare"])
    assert result.exit_code == 0, result.output
    assert (env / "raw/bare/from_csv/pair_0000_B.dng").read_bytes() == (
        source / "raw/pair_0001_B.dng").read_bytes()
