"""Engines, sessions and the schema's integrity rules, on SQLite and (when it answers) PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, insert, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from core import migrate
from core.db import dispose_engines, get_engine, make_engine, session_factory, session_scope
from core.models import (
    CameraRecord,
    CameraRole,
    Capture,
    CaptureKind,
    CaptureStatus,
    CFAPattern,
    Frame,
    RigRecord,
    Scene,
)
from core.settings import get_settings


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'reloblur.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a database migrated to head."""
    migrate.upgrade(db_url)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def settings_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings pointing at a fresh data directory with the default (SQLite) database."""
    data_dir = tmp_path / "data"
    monkeypatch.setenv("RELOBLUR_DATA_DIR", str(data_dir))
    monkeypatch.setenv("RELOBLUR_DATABASE_URL", "")
    get_settings.cache_clear()
    yield data_dir
    dispose_engines()
    get_settings.cache_clear()


def make_rig(name: str = "rig-1") -> RigRecord:
    """A rig with one camera on each side."""
    rig = RigRecord(
        name=name,
        pixel_pitch_um=4.5,
        focal_length_mm=50.0,
        nd_filters=[0.1, 0.25],
        cfa_pattern=CFAPattern.RGGB,
        bit_depth=12,
        sensor_width_px=2152,
        sensor_height_px=1436,
    )
    for role in CameraRole:
        rig.cameras.append(
            CameraRecord(
                role=role, vendor="Sim", model="SIM-1", serial=f"{role}-0001", driver="simulated"
            )
        )
    return rig


def frame_values(role: CameraRole, trigger_index: int, **overrides: Any) -> dict[str, Any]:
    """Column values of a valid frame; ``overrides`` replace some."""
    values: dict[str, Any] = {
        "role": role,
        "path": f"scenes/s1/pair/{trigger_index:04d}_{role}.tiff",
        "sha256": "ab" * 32,
        "exposure_s": 0.04 if role is CameraRole.B else 0.004,
        "gain_db": 0.0,
        "black_level": 64,
        "white_level": 4095,
        "width_px": 2152,
        "height_px": 1436,
        "trigger_index": trigger_index,
        "sensor_timestamp_ns": 1_700_000_000_123_456_789,
    }
    values.update(overrides)
    return values


def make_frame(capture: Capture, camera: CameraRecord, **overrides: Any) -> Frame:
    """A valid frame from ``camera``, attached to ``capture`` (so it joins the session with it)."""
    frame = Frame(**frame_values(camera.role, capture.trigger_index, **overrides))
    capture.frames.append(frame)
    frame.camera = camera
    return frame


def seed(session: Session) -> tuple[RigRecord, Scene, Capture]:
    """A rig, a scene and one pair capture without frames, flushed."""
    rig = make_rig()
    scene = Scene(name="street-01", rig=rig, object_distance_m=10.0)
    capture = Capture(rig=rig, scene=scene, kind=CaptureKind.PAIR, trigger_index=0)
    session.add_all([rig, scene, capture])
    session.flush()
    return rig, scene, capture


def count(engine: Engine, model: type[Any]) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_sqlite_engine_creates_directory_and_sets_pragmas_on_every_connection(
    tmp_path: Path,
) -> None:
    db_file = tmp_path / "a" / "b" / "reloblur.db"
    engine = make_engine(f"sqlite:///{db_file}")
    try:
        assert db_file.parent.is_dir()
        with engine.connect() as first, engine.connect() as second:
            for connection in (first, second):
                assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
                assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    finally:
        engine.dispose()


def test_make_engine_defaults_to_the_settings(settings_data_dir: Path) -> None:
    engine = make_engine()
    try:
        assert engine.url.database == str((settings_data_dir / "reloblur.db").resolve())
        assert settings_data_dir.is_dir()
    finally:
        engine.dispose()
    assert get_engine() is get_engine()


def test_session_scope_on_the_default_engine(settings_data_dir: Path) -> None:
    migrate.upgrade()  # the settings' database
    with session_scope() as session:
        session.add(make_rig())
    assert (settings_data_dir / "reloblur.db").is_file()
    assert count(get_engine(), RigRecord) == 1


def test_session_scope_commits_on_success_and_rolls_back_on_error(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.add(make_rig("kept"))
    with pytest.raises(RuntimeError, match="boom"), session_scope(engine) as session:
        session.add(make_rig("dropped"))
        session.flush()
        raise RuntimeError("boom")
    with Session(engine) as session:
        assert session.scalars(select(RigRecord.name)).all() == ["kept"]
    assert count(engine, CameraRecord) == 2


def test_objects_round_trip_with_enums_json_relationships_and_utc_timestamps(
    engine: Engine,
) -> None:
    before = datetime.now(UTC)
    with session_scope(engine) as session:
        rig, _, capture = seed(session)
        b, s = sorted(rig.cameras, key=lambda c: c.role)
        make_frame(capture, s)
        make_frame(capture, b)
        capture.status = CaptureStatus.COMPLETE
        capture.finished_at = datetime(2025, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
        capture_id = capture.id

    with session_factory(engine)() as session:
        capture = session.get(Capture, capture_id)
        assert capture is not None
        assert capture.kind is CaptureKind.PAIR and capture.status is CaptureStatus.COMPLETE
        assert [f.role for f in capture.frames] == [CameraRole.B, CameraRole.S]
        assert capture.rig.nd_filters == [0.1, 0.25]
        assert capture.rig.cfa_pattern is CFAPattern.RGGB
        assert capture.scene is not None and capture.scene.name == "street-01"
        assert capture.frames[0].camera.role is CameraRole.B
        assert capture.frames[0].sensor_timestamp_ns == 1_700_000_000_123_456_789
        # Stored in UTC, read back aware, on both backends.
        assert capture.finished_at == datetime(2025, 1, 1, 10, 0, tzinfo=UTC)
        assert capture.finished_at.utcoffset() == timedelta(0)
        for stamp in (capture.started_at, capture.rig.created_at, capture.frames[0].received_at):
            assert stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0)
            assert before - timedelta(seconds=5) <= stamp <= datetime.now(UTC)


def test_naive_timestamps_are_rejected(engine: Engine) -> None:
    with Session(engine) as session:
        _, _, capture = seed(session)
        capture.finished_at = datetime(2025, 1, 1, 12, 0)
        with pytest.raises(StatementError, match="naive datetime"):
            session.flush()


def test_frame_with_dangling_capture_id_is_rejected(engine: Engine) -> None:
    with Session(engine) as session:
        rig, _, capture = seed(session)
        camera = rig.cameras[0]
        values = frame_values(camera.role, 0, capture_id=capture.id + 1000, camera_id=camera.id)
        with pytest.raises(IntegrityError):
            session.execute(insert(Frame).values(**values))


@pytest.mark.parametrize("how", ["sql", "orm"])
def test_deleting_a_capture_deletes_its_frames(engine: Engine, how: str) -> None:
    with session_scope(engine) as session:
        rig, scene, capture = seed(session)
        for camera in rig.cameras:
            make_frame(capture, camera)
        other = Capture(rig=rig, scene=scene, kind=CaptureKind.PAIR, trigger_index=1)
        make_frame(other, rig.cameras[0])
        session.add(other)
        capture_id = capture.id
    assert count(engine, Frame) == 3

    with session_scope(engine) as session:
        if how == "sql":  # the database's ON DELETE CASCADE alone
            session.execute(delete(Capture).where(Capture.id == capture_id))
        else:
            session.delete(session.get(Capture, capture_id))
    assert count(engine, Capture) == 1
    assert count(engine, Frame) == 1


def test_deleting_a_rig_deletes_its_cameras(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.add(make_rig())
    with session_scope(engine) as session:
        session.execute(delete(RigRecord))
    assert count(engine, CameraRecord) == 0


@pytest.mark.parametrize(
    "overrides",
    [
        {"exposure_s": 0.0},
        {"exposure_s": -0.001},
        {"white_level": 64},  # equal to the black level
        {"black_level": 4095, "white_level": 1023},
    ],
    ids=["zero-exposure", "negative-exposure", "white-equals-black", "white-below-black"],
)
def test_frame_check_constraints(engine: Engine, overrides: dict[str, Any]) -> None:
    with Session(engine) as session:
        rig, _, capture = seed(session)
        make_frame(capture, rig.cameras[0], **overrides)
        with pytest.raises(IntegrityError, match="ck_frames_"):
            session.flush()


def test_one_frame_per_role_in_a_capture(engine: Engine) -> None:
    with Session(engine) as session:
        rig, _, capture = seed(session)
        b = next(c for c in rig.cameras if c.role is CameraRole.B)
        make_frame(capture, b)
        session.flush()
        make_frame(capture, b, path="scenes/s1/pair/dup.tiff")
        with pytest.raises(IntegrityError):
            session.flush()


def test_capture_trigger_index_must_be_non_negative(engine: Engine) -> None:
    with Session(engine) as session:
        rig, scene, _ = seed(session)
        session.add(Capture(rig=rig, scene=scene, kind=CaptureKind.PAIR, trigger_index=-1))
        with pytest.raises(IntegrityError, match="ck_captures_trigger_index_non_negative"):
            session.flush()


def test_capture_trigger_is_unique_per_scene_and_kind(engine: Engine) -> None:
    with Session(engine) as session:
        rig, scene, _ = seed(session)
        # Same trigger index, other kind: fine.
        session.add(Capture(rig=rig, scene=scene, kind=CaptureKind.REFERENCE, trigger_index=0))
        session.flush()
        session.add(Capture(rig=rig, scene=scene, kind=CaptureKind.PAIR, trigger_index=0))
        with pytest.raises(IntegrityError):
            session.flush()


def test_lightbox_captures_belong_to_the_rig(engine: Engine) -> None:
    with session_scope(engine) as session:
        rig = make_rig()
        session.add(Capture(rig=rig, kind=CaptureKind.LIGHTBOX, trigger_index=0))
    with Session(engine) as session:
        capture = session.scalars(select(Capture)).one()
        assert capture.scene is None and capture.rig.name == "rig-1"
        assert capture.status is CaptureStatus.PENDING


def test_camera_serial_is_unique_per_rig_and_role(engine: Engine) -> None:
    with Session(engine) as session:
        rig = make_rig()
        rig.cameras.append(
            CameraRecord(role=CameraRole.B, vendor="X", model="Y", serial="B-0001", driver="harvesters")
        )
        session.add(rig)
        with pytest.raises(IntegrityError):
            session.flush()


def test_enum_columns_reject_unknown_values_in_the_database(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.add(make_rig())
    with Session(engine) as session:
        rig_id = session.scalars(select(RigRecord.id)).one()
        with pytest.raises(IntegrityError, match="ck_cameras_camera_role"):
            session.execute(
                text(
                    "INSERT INTO cameras (rig_id, role, vendor, model, serial, driver, created_at)"
                    " VALUES (:rig_id, 'X', 'v', 'm', 's', 'd', :now)"
                ),
                {"rig_id": rig_id, "now": datetime.now(UTC)},
            )


@pytest.mark.parametrize("filters", [[0.0], [0.5, 1.5], [-0.1]])
def test_nd_filter_transmittances_must_lie_in_zero_one(filters: list[float]) -> None:
    with pytest.raises(ValueError, match="nd_filters"):
        RigRecord(name="r", nd_filters=filters)
    assert RigRecord(name="r", nd_filters=[1, 0.5]).nd_filters == [1.0, 0.5]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sha256", "ab" * 31),
        ("sha256", "AB" * 32),
        ("sha256", "zz" * 32),
        ("path", "/abs/frame.tiff"),
        ("path", "../outside.tiff"),
        ("path", "a\\b.tiff"),
        ("path", ""),
    ],
)
def test_frame_sha256_and_path_are_validated(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field):
        Frame(**{field: value})
