"""Backups (``core.backup``, ``reloblur backup`` / ``reloblur restore``), on SQLite and PostgreSQL:
round trips into an empty data directory and an empty schema, a backup taken while a writer
keeps adding rows and files, damaged and hostile archives, and targets that are not empty."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Text,
    cast,
    create_engine,
    insert,
    inspect,
    make_url,
    null,
    select,
    text,
)
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from api.cli import app
from core import __version__, migrate
from core.backup import FORMAT_VERSION, BackupError, create_backup, restore_backup
from core.db import make_engine, session_factory
from core.filestore import atomic_write_bytes
from core.models import (
    Base,
    CameraRecord,
    Capture,
    CaptureKind,
    CaptureRun,
    CaptureStatus,
    Frame,
    Job,
    JobKind,
    Product,
    ProductKind,
    RigRecord,
    Scene,
)
from core.settings import get_settings

_spec = importlib.util.spec_from_file_location(
    "_backup_api_fixtures", Path(__file__).resolve().parents[1] / "api" / "conftest.py"
)
_api_fixtures = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _api_fixtures  # dataclasses look their module up while it loads
_spec.loader.exec_module(_api_fixtures)
seed = _api_fixtures.seed
add_tokens = _api_fixtures.add_tokens

KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


# --------------------------------------------------------------------------- fixtures


@contextmanager
def fresh_schema() -> Iterator[str]:
    """Another empty PostgreSQL schema (the restore target), as a search_path-scoped URL."""
    base = os.environ.get("RELOBLUR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    admin = create_engine(base, poolclass=NullPool)
    schema = f"test_{uuid.uuid4().hex[:16]}"
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield (make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
               .render_as_string(hide_password=False))
    finally:
        with admin.begin() as c:
            c.execute(text("SET LOCAL lock_timeout = '10s'"))
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@dataclass
class Lab:
    kind: str
    data_dir: Path
    url: str
    engine: object


def _extra_rows(engine) -> None:
    """Rows seed() does not make: a job whose parent comes later in id order (self-reference),
    capture runs with SQL NULL and JSON null outcomes, unicode text."""
    with session_factory(engine)() as s:
        rig = s.scalar(select(RigRecord))
        scene = s.scalar(select(Scene))
        child = Job(kind=JobKind.POSTPROCESS, params={"scene": "scene1", "ü": [1, 2.5, None]})
        parent = Job(kind=JobKind.REPROCESS, params={}, result={"children": 1}, progress=0.5,
                     cancel_requested=True, message="naïve — ✓")
        s.add_all([child, parent])
        s.flush()
        child.parent_id = parent.id  # the child (lower id) points to a later row
        s.commit()
        rig_id, scene_id = rig.id, scene.id
    with engine.begin() as c:
        c.execute(insert(CaptureRun.__table__).values(rig_id=rig_id, scene_id=scene_id,
                                                      status="complete", config={}, outcome=null()))
        c.execute(insert(CaptureRun.__table__).values(rig_id=rig_id, scene_id=None,
                                                      status="failed", config={"a": {"b": []}},
                                                      outcome=JSON.NULL, error="boom"))


@pytest.fixture(params=KINDS)
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    """A populated lab: seed() rows and files, tokens, extra rows, an unreferenced file, a
    symlink leading out, temporary and staging files that must not be archived."""
    data_dir = tmp_path / "lab"
    data_dir.mkdir()
    if request.param == "sqlite":
        url = f"sqlite:///{data_dir / 'reloblur.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    migrate.upgrade(url)
    engine = make_engine(url)
    add_tokens(engine)
    seed(engine, data_dir)
    _extra_rows(engine)
    (data_dir / "exports" / "run1").mkdir(parents=True)
    (data_dir / "exports" / "run1" / "README.txt").write_text("exported ✓\n", encoding="utf-8")
    (data_dir / "checkpoints").mkdir()
    (data_dir / "checkpoints" / "empty.bin").write_bytes(b"")
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    (data_dir / "raw" / "leak").symlink_to(outside)
    (data_dir / "raw" / "etc").symlink_to("/etc")
    (data_dir / "uploads").mkdir()
    (data_dir / "uploads" / ".upload-abc.tmp").write_bytes(b"partial")
    (data_dir / "exports" / ".run2.export-1234").mkdir()
    (data_dir / "exports" / ".run2.export-1234" / "x.png").write_bytes(b"staging")
    yield Lab(request.param, data_dir, url, engine)
    engine.dispose()


@pytest.fixture
def target(lab: Lab, tmp_path: Path) -> Iterator[tuple[Path, str | None]]:
    """Where to restore: a new data directory, and (PostgreSQL) an empty schema."""
    if lab.kind == "sqlite":
        yield tmp_path / "restored", None
    else:
        with fresh_schema() as url:
            yield tmp_path / "restored", url


# --------------------------------------------------------------------------- helpers


def table_rows(url: str) -> dict[str, list[tuple]]:
    """Every table of the models, ordered by primary key, with JSON columns also as raw text."""
    engine = make_engine(url)
    try:
        out = {}
        with engine.connect() as c:
            for table in Base.metadata.sorted_tables:
                raw = [cast(col, Text) for col in table.columns if isinstance(col.type, JSON)]
                rows = c.execute(select(*table.columns, *raw).order_by(*table.primary_key.columns))
                out[table.name] = [tuple(r) for r in rows]
        return out
    finally:
        engine.dispose()


def store_files(root: Path) -> dict[str, bytes]:
    """Regular files under ``root`` (no links, no dot names, no SQLite database files)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink() or not p.is_file() or any(part.startswith(".") for part in rel.split("/")):
            continue
        if p.name.startswith("reloblur.db"):
            continue
        out[rel] = p.read_bytes()
    return out


def everything(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


def read_manifest(archive: Path) -> dict:
    with tarfile.open(archive) as tar:
        return json.load(tar.extractfile("manifest.json"))


def rewrite(archive: Path, out: Path, *, manifest=None, corrupt: str | None = None,
            extra: dict[str, bytes] | None = None) -> Path:
    """A copy of ``archive`` with its manifest edited, one member's bytes flipped, or members added."""
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz" if out.name.endswith("gz") else "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name == "manifest.json":
                for name, blob in (extra or {}).items():
                    info = tarfile.TarInfo(name)
                    info.size = len(blob)
                    dst.addfile(info, io.BytesIO(blob))
                if manifest is not None:
                    m = json.loads(data)
                    manifest(m)
                    data = json.dumps(m).encode()
            if member.name == corrupt:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    return out


def assert_target_untouched(data_dir: Path, before: list[str], url: str | None) -> None:
    assert everything(data_dir) == before, everything(data_dir)
    if url is not None:
        engine = make_engine(url)
        try:
            assert inspect(engine).get_table_names() == []
        finally:
            engine.dispose()


# --------------------------------------------------------------------------- round trip


def test_round_trip_into_an_empty_data_dir_and_database(lab: Lab, target, tmp_path: Path):
    archive = tmp_path / "lab.tar.gz"
    progress = []
    summary = create_backup(archive, data_dir=lab.data_dir, database_url=lab.url,
                            progress=lambda done, total: progress.append((done, total)))
    assert summary.database_kind == lab.kind and summary.revision == migrate.head()
    assert summary.problems == [] and summary.skipped == []
    assert sorted(link["path"] for link in summary.links) == ["raw/etc", "raw/leak"]
    assert progress[-1] == (summary.files, summary.files)

    manifest = read_manifest(archive)
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["reloblur_version"] == __version__
    assert manifest["created_at"].endswith("Z")
    assert manifest["database"]["kind"] == lab.kind
    assert manifest["database"]["revision"] == migrate.head()
    listed = {f["path"]: f for f in manifest["files"]}
    source_files = store_files(lab.data_dir)
    assert set(listed) == set(source_files)  # no temp/staging files, no database, no links
    for rel, data in source_files.items():
        assert listed[rel]["sha256"] == hashlib.sha256(data).hexdigest()
        assert listed[rel]["size"] == len(data)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert names[-1] == "manifest.json"
    assert not any("secret" in n or "leak" in n or ".tmp" in n or "export-" in n for n in names)
    assert not any(n.startswith("files/reloblur.db") for n in names)

    data_dir, url = target
    restored = restore_backup(archive, data_dir=data_dir, database_url=url)
    url = url or f"sqlite:///{data_dir / 'reloblur.db'}"
    assert restored.files == summary.files and restored.schema_revision == migrate.head()
    assert store_files(data_dir) == source_files
    assert not (data_dir / "raw" / "leak").exists() and not (data_dir / "raw" / "etc").exists()
    assert not any(p.name.startswith(".") for p in data_dir.rglob("*"))  # no staging left
    assert migrate.current(url) == (migrate.head(),)

    before, after = table_rows(lab.url), table_rows(url)
    assert after == before
    assert sum(len(rows) for rows in after.values()) > 15
    runs = {r[0]: r for r in after["capture_runs"]}
    assert runs[1][-2:] == ("{}", None) and runs[2][-1] == "null"  # SQL NULL vs JSON null kept

    # the sequences follow the restored ids: new rows get fresh ids
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            job = Job(kind=JobKind.EXPORT, params={})
            s.add(job)
            s.commit()
            assert job.id == max(r[0] for r in before["jobs"]) + 1
    finally:
        engine.dispose()


def test_restore_runs_the_migrations_of_an_older_archive(db_url: str, tmp_path: Path):
    """An archive one revision behind head (here a SQLite file outside the data directory, or a
    PostgreSQL schema) is restored at its revision, then migrated to head."""
    script = ScriptDirectory.from_config(migrate.alembic_config())
    previous = script.get_revision(migrate.head()).down_revision
    source = tmp_path / "old"
    source.mkdir()
    migrate.upgrade(db_url, previous)
    engine = make_engine(db_url)
    with engine.begin() as c:
        c.execute(insert(RigRecord.__table__).values(
            name="old", description="", pixel_pitch_um=9.0, focal_length_mm=50.0,
            nd_filters=[1.0], cfa_pattern="RGGB", bit_depth=12, sensor_width_px=4,
            sensor_height_px=4, created_at=datetime.now(UTC)))
    engine.dispose()
    archive = tmp_path / "old.tar"
    assert create_backup(archive, data_dir=source, database_url=db_url).revision == previous
    postgres = make_url(db_url).get_backend_name() == "postgresql"
    with fresh_schema() if postgres else nullcontext() as dest_url:
        summary = restore_backup(archive, data_dir=tmp_path / "new", database_url=dest_url)
        assert (summary.revision, summary.schema_revision) == (previous, migrate.head())
        dest_url = dest_url or f"sqlite:///{tmp_path / 'new' / 'reloblur.db'}"
        assert migrate.current(dest_url) == (migrate.head(),)
        assert [r[1] for r in table_rows(dest_url)["rigs"]] == ["old"]


# --------------------------------------------------------------------------- consistency


def _writer(url: str, data_dir: Path, stop: threading.Event, made: list[int]) -> None:
    """What the service does: write the files atomically, then commit the rows naming them."""
    engine = make_engine(url)
    try:
        k = 0
        while not stop.is_set():
            k += 1
            with session_factory(engine)() as s:
                rig = s.scalar(select(RigRecord).where(RigRecord.name == "twin"))
                cams = {c.role.value: c for c in s.scalars(select(CameraRecord).where(CameraRecord.rig_id == rig.id))}
                scene = Scene(name=f"w{k}", rig=rig)
                cap = Capture(rig=rig, scene=scene, kind=CaptureKind.PAIR, trigger_index=0,
                              status=CaptureStatus.COMPLETE)
                rows = []
                for role in "BS":
                    rel = f"raw/w{k}/pair_0000_{role}.dng"
                    sha = atomic_write_bytes(data_dir / rel, os.urandom(2000) + rel.encode())
                    rows.append(Frame(capture=cap, camera=cams[role], role=role, path=rel, sha256=sha,
                                      exposure_s=0.01, gain_db=0, black_level=64, white_level=4095,
                                      width_px=4, height_px=4, trigger_index=0))
                rel = f"processed/w{k}/blurred.png"
                sha = atomic_write_bytes(data_dir / rel, os.urandom(3000))
                rows.append(Product(scene=scene, capture=cap, kind=ProductKind.BLURRED,
                                    params_hash=hashlib.sha256(rel.encode()).hexdigest(),
                                    pipeline_version="t", path=rel, sha256=sha))
                s.add_all([scene, cap, *rows])
                s.commit()
            made.append(k)
            time.sleep(0.002)
    finally:
        engine.dispose()


def test_backup_while_a_writer_adds_rows_and_files(lab: Lab, target, tmp_path: Path):
    stop = threading.Event()
    made: list[int] = []
    thread = threading.Thread(target=_writer, args=(lab.url, lab.data_dir, stop, made), daemon=True)
    thread.start()
    try:
        while len(made) < 5:
            time.sleep(0.01)
        started = len(made)
        summary = create_backup(tmp_path / "live.tar", data_dir=lab.data_dir, database_url=lab.url,
                                progress=lambda done, total: time.sleep(0.01))
        during = len(made) - started
    finally:
        stop.set()
        thread.join(30)
    assert during > 0, "the writer made nothing while the backup ran"
    assert summary.problems == []

    data_dir, url = target
    restore_backup(tmp_path / "live.tar", data_dir=data_dir, database_url=url)
    url = url or f"sqlite:///{data_dir / 'reloblur.db'}"
    rows = table_rows(url)
    scenes = [r for r in rows["scenes"] if r[1].startswith("w")]
    assert started <= len(scenes) <= len(made)
    # a valid snapshot: every writer transaction is there whole (2 frames, 1 product) or not at all
    frames_per_capture: dict[int, int] = {}
    for frame in rows["frames"]:
        frames_per_capture[frame[1]] = frames_per_capture.get(frame[1], 0) + 1
    assert set(frames_per_capture.values()) == {2}
    assert len(rows["captures"]) == len(scenes) + 1 == len(frames_per_capture)
    assert len(rows["products"]) == len(scenes) + 3
    # every file a restored row points to is there, with its sha256
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            pointed = [(f.path, f.sha256) for f in s.scalars(select(Frame))]
            pointed += [(p.path, p.sha256) for p in s.scalars(select(Product))]
    finally:
        engine.dispose()
    assert len(pointed) == 2 * len(frames_per_capture) + len(rows["products"])
    for rel, sha in pointed:
        assert hashlib.sha256((data_dir / rel).read_bytes()).hexdigest() == sha, rel


def test_a_file_that_vanishes_during_the_backup_is_skipped_and_noted(tmp_path: Path):
    data_dir = tmp_path / "lab"
    url = f"sqlite:///{data_dir / 'reloblur.db'}"
    migrate.upgrade(url)
    for i in range(4):
        (data_dir / "scratch" / f"f{i}.bin").parent.mkdir(exist_ok=True)
        (data_dir / "scratch" / f"f{i}.bin").write_bytes(b"x" * i)

    def progress(done: int, total: int) -> None:
        if done == 1:
            (data_dir / "scratch" / "f3.bin").unlink()

    summary = create_backup(tmp_path / "b.tgz", data_dir=data_dir, database_url=url, progress=progress)
    assert summary.files == 3
    assert summary.skipped == [{"path": "scratch/f3.bin", "archived": False,
                                "reason": "vanished before it was read"}]
    restored = restore_backup(tmp_path / "b.tgz", data_dir=tmp_path / "r")
    assert sorted(p.name for p in (tmp_path / "r" / "scratch").iterdir()) == ["f0.bin", "f1.bin", "f2.bin"]
    assert restored.skipped == summary.skipped


def test_rows_whose_file_is_missing_or_a_link_are_reported(tmp_path: Path):
    data_dir = tmp_path / "lab"
    url = f"sqlite:///{data_dir / 'reloblur.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    seed(engine, data_dir)
    engine.dispose()
    (data_dir / "raw/scene1/pair_0002_S.dng").unlink()
    original = tmp_path / "B.dng"
    (data_dir / "raw/scene1/pair_0002_B.dng").rename(original)
    (data_dir / "raw/scene1/pair_0002_B.dng").symlink_to(original)  # an import --reference
    summary = create_backup(tmp_path / "b.tar", data_dir=data_dir, database_url=url)
    assert sorted(summary.problems) == [
        "frames: raw/scene1/pair_0002_B.dng is a symlink (its target is not archived)",
        "frames: raw/scene1/pair_0002_S.dng is missing from the data directory",
    ]
    assert read_manifest(tmp_path / "b.tar")["problems"] == summary.problems


def test_the_backup_refuses_an_existing_file_and_unknown_names_and_skips_itself(tmp_path: Path):
    data_dir = tmp_path / "lab"
    url = f"sqlite:///{data_dir / 'reloblur.db'}"
    migrate.upgrade(url)
    (data_dir / "notes.txt").write_text("n")
    with pytest.raises(BackupError, match=r"\.tar\.gz"):
        create_backup(tmp_path / "b.zip", data_dir=data_dir, database_url=url)
    inside = data_dir / "backups" / "b1.tar"
    create_backup(inside, data_dir=data_dir, database_url=url)
    assert [f["path"] for f in read_manifest(inside)["files"]] == ["notes.txt"]
    before = inside.read_bytes()
    with pytest.raises(BackupError, match="already exists"):
        create_backup(inside, data_dir=data_dir, database_url=url)
    assert inside.read_bytes() == before
    assert sorted(p.name for p in (data_dir / "backups").iterdir()) == ["b1.tar"]  # no temp left
    with pytest.raises(BackupError, match="no SQLite database"):
        create_backup(tmp_path / "c.tar", data_dir=data_dir, database_url=f"sqlite:///{tmp_path / 'none.db'}")
    assert not (tmp_path / "c.tar").exists() and not (tmp_path / "none.db").exists()


# --------------------------------------------------------------------------- refused archives


@pytest.fixture
def small_archive(tmp_path: Path) -> Path:
    """An uncompressed SQLite backup of seed()."""
    data_dir = tmp_path / "small"
    url = f"sqlite:///{data_dir / 'reloblur.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    seed(engine, data_dir)
    engine.dispose()
    archive = tmp_path / "small.tar"
    create_backup(archive, data_dir=data_dir, database_url=url)
    return archive


@pytest.mark.parametrize("existing", [False, True])
def test_a_corrupted_member_is_named_and_nothing_is_left(small_archive: Path, tmp_path: Path, existing):
    bad = rewrite(small_archive, tmp_path / "bad.tar", corrupt="files/raw/scene1/pair_0002_S.dng")
    target = tmp_path / "target"
    if existing:
        target.mkdir()
    with pytest.raises(BackupError, match=r"checksum mismatch.*files/raw/scene1/pair_0002_S\.dng"):
        restore_backup(bad, data_dir=target)
    assert target.exists() == existing and everything(target) == []


def test_a_damaged_gzip_archive_is_refused(tmp_path: Path):
    data_dir = tmp_path / "lab"
    url = f"sqlite:///{data_dir / 'reloblur.db'}"
    migrate.upgrade(url)
    (data_dir / "big.bin").write_bytes(os.urandom(200_000))
    archive = tmp_path / "b.tar.gz"
    create_backup(archive, data_dir=data_dir, database_url=url)
    blob = bytearray(archive.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    damaged = tmp_path / "damaged.tar.gz"
    damaged.write_bytes(bytes(blob))
    with pytest.raises(BackupError, match="damaged|checksum mismatch|not a complete"):
        restore_backup(damaged, data_dir=tmp_path / "t")
    assert not (tmp_path / "t").exists()


def _hostile(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.tar"
    with tarfile.open(path, "w") as tar:
        ok = tarfile.TarInfo("files/fine.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        info = tarfile.TarInfo({"dotdot": "../evil", "nested": "files/../../evil", "absolute": "/tmp/evil",
                                "symlink": "files/link", "hardlink": "files/hard", "device": "files/dev",
                                "fifo": "files/fifo", "folder": "files/dir",
                                "stranger": "elsewhere/evil"}[kind])
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            info.type, info.linkname = tarfile.LNKTYPE, "files/fine.txt"
        elif kind == "device":
            info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        elif kind == "fifo":
            info.type = tarfile.FIFOTYPE
        elif kind == "folder":
            info.type = tarfile.DIRTYPE
        if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
        else:
            tar.addfile(info)
    return path


@pytest.mark.parametrize("kind", ["dotdot", "nested", "absolute", "symlink", "hardlink", "device",
                                  "fifo", "folder", "stranger"])
def test_unsafe_members_are_refused(tmp_path: Path, kind: str):
    target = tmp_path / "deep" / "target"
    with pytest.raises(BackupError, match="unsafe archive member|unexpected archive member"):
        restore_backup(_hostile(tmp_path, kind), data_dir=target)
    assert not (tmp_path / "deep").exists()
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil").exists()


def test_an_unknown_format_version_is_refused(small_archive: Path, tmp_path: Path):
    future = rewrite(small_archive, tmp_path / "future.tar",
                     manifest=lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(BackupError, match=f"unknown backup format version {FORMAT_VERSION + 1}"):
        restore_backup(future, data_dir=tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_an_unknown_schema_revision_is_refused(small_archive: Path, tmp_path: Path):
    newer = rewrite(small_archive, tmp_path / "newer.tar",
                    manifest=lambda m: m["database"].update(revision="9999"))
    with pytest.raises(BackupError, match="revision '9999' is unknown"):
        restore_backup(newer, data_dir=tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_members_outside_the_manifest_are_refused(small_archive: Path, tmp_path: Path):
    extra = rewrite(small_archive, tmp_path / "extra.tar", extra={"files/planted.sh": b"#!/bin/sh\n"})
    with pytest.raises(BackupError, match="'files/planted.sh' is not in the manifest"):
        restore_backup(extra, data_dir=tmp_path / "t")
    assert not (tmp_path / "t").exists()


@pytest.mark.postgres
def test_a_sqlite_archive_is_not_restored_into_postgresql(small_archive: Path, tmp_path: Path, postgres_url):
    with pytest.raises(BackupError, match="holds a sqlite database but the target database is postgresql"):
        restore_backup(small_archive, data_dir=tmp_path / "t", database_url=postgres_url)
    assert_target_untouched(tmp_path / "t", [], postgres_url)


# --------------------------------------------------------------------------- refused targets


def test_a_non_empty_data_dir_is_refused_and_force_never_overwrites(small_archive: Path, tmp_path: Path):
    target = tmp_path / "t"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(BackupError, match="is not empty"):
        restore_backup(small_archive, data_dir=target)
    assert everything(target) == ["keep.txt"]

    (target / "raw" / "scene1").mkdir(parents=True)
    (target / "raw" / "scene1" / "pair_0002_S.dng").write_bytes(b"mine too")
    before = everything(target)
    with pytest.raises(BackupError, match="pair_0002_S.dng already exists"):
        restore_backup(small_archive, data_dir=target, force=True)
    assert everything(target) == before
    assert (target / "raw" / "scene1" / "pair_0002_S.dng").read_bytes() == b"mine too"

    (target / "raw" / "scene1" / "pair_0002_S.dng").unlink()
    summary = restore_backup(small_archive, data_dir=target, force=True)
    assert (target / "keep.txt").read_text() == "mine"
    assert summary.files == 5 and (target / "reloblur.db").is_file()


def test_force_never_writes_through_a_symlinked_folder(small_archive: Path, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "t"
    target.mkdir()
    (target / "processed").symlink_to(outside)
    with pytest.raises(BackupError, match="is a symlink"):
        restore_backup(small_archive, data_dir=target, force=True)
    assert everything(outside) == [] and everything(target) == ["processed"]


def test_odd_names_and_file_types_are_skipped_not_fatal(tmp_path: Path):
    data_dir = tmp_path / "lab"
    url = f"sqlite:///{data_dir / 'reloblur.db'}"
    migrate.upgrade(url)
    os.mkfifo(data_dir / "pipe")
    (data_dir / "back\\slash.txt").write_text("x")
    os.symlink(b"/nowhere/\xff", os.fsencode(data_dir) + b"/bad-\xfe")
    summary = create_backup(tmp_path / "b.tar", data_dir=data_dir, database_url=url)
    assert summary.files == 0
    assert {s["path"] for s in summary.skipped} == {"pipe", "back\\slash.txt"}
    assert summary.links == [{"path": "bad-\\udcfe", "target": "/nowhere/\\udcff"}]
    restore_backup(tmp_path / "b.tar", data_dir=tmp_path / "r")
    assert everything(tmp_path / "r") == ["reloblur.db"]


def test_an_existing_sqlite_database_is_refused_even_with_force(small_archive: Path, tmp_path: Path):
    target = tmp_path / "t"
    migrate.upgrade(f"sqlite:///{target / 'reloblur.db'}")  # empty, but a file: never replaced
    before = everything(target)
    for force in (False, True):
        with pytest.raises(BackupError, match="not empty|already exists"):
            restore_backup(small_archive, data_dir=target, force=force)
    assert everything(target) == before


@pytest.mark.postgres
def test_a_postgresql_schema_with_data_is_refused(tmp_path: Path, postgres_url: str):
    source = tmp_path / "src"
    migrate.upgrade(postgres_url)
    engine = make_engine(postgres_url)
    seed(engine, source)
    engine.dispose()
    archive = tmp_path / "pg.tar.gz"
    create_backup(archive, data_dir=source, database_url=postgres_url)
    before = table_rows(postgres_url)
    for force in (False, True):
        with pytest.raises(BackupError, match="already holds data"):
            restore_backup(archive, data_dir=tmp_path / f"t{force}", database_url=postgres_url, force=force)
        assert not (tmp_path / f"t{force}").exists()
    assert table_rows(postgres_url) == before

    with fresh_schema() as url:  # migrated but empty (a fresh `reloblur db upgrade`): --force
        migrate.upgrade(url)
        with pytest.raises(BackupError, match="already has our tables"):
            restore_backup(archive, data_dir=tmp_path / "t", database_url=url)
        restore_backup(archive, data_dir=tmp_path / "t", database_url=url, force=True)
        assert table_rows(url) == before


def test_a_restore_that_fails_midway_leaves_nothing(lab: Lab, target, tmp_path: Path, monkeypatch):
    """Files already placed, folders made and (PostgreSQL) the tables the restore created are
    all taken back when a later step fails."""
    import core.backup_restore as backup

    archive = tmp_path / "lab.tar"
    create_backup(archive, data_dir=lab.data_dir, database_url=lab.url)
    place = backup._place
    calls = []

    def failing(src, dest, undo):
        calls.append(dest)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        place(src, dest, undo)

    monkeypatch.setattr(backup, "_place", failing)
    data_dir, url = target
    with pytest.raises(OSError, match="No space left"):
        restore_backup(archive, data_dir=data_dir, database_url=url)
    assert len(calls) == 3
    assert not data_dir.exists()
    assert_target_untouched(data_dir, [], url)


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli_env(monkeypatch):
    def set_env(data_dir: Path, url: str | None) -> None:
        monkeypatch.setenv("RELOBLUR_DATA_DIR", str(data_dir))
        if url is None:
            monkeypatch.delenv("RELOBLUR_DATABASE_URL", raising=False)
        else:
            monkeypatch.setenv("RELOBLUR_DATABASE_URL", url)
        get_settings.cache_clear()

    yield set_env
    get_settings.cache_clear()


def test_cli_backup_and_restore(lab: Lab, target, tmp_path: Path, cli_env):
    runner = CliRunner()
    cli_env(lab.data_dir, None if lab.kind == "sqlite" else lab.url)
    archive = tmp_path / "cli.tar.gz"
    r = runner.invoke(app, ["backup", "--out", str(archive)])
    assert r.exit_code == 0, r.output
    assert f"backup written to {archive}" in r.stdout
    assert f"database   {lab.kind} at revision {migrate.head()}" in r.stdout
    assert "files      7 (" in r.stdout and "2 symlink(s) recorded, not archived" in r.stdout

    r = runner.invoke(app, ["backup", "--out", str(archive)])
    assert r.exit_code == 2 and "already exists" in r.stderr

    data_dir, url = target
    cli_env(tmp_path / "elsewhere", url)
    r = runner.invoke(app, ["restore", str(archive), "--data-dir", str(data_dir)])
    assert r.exit_code == 0, r.output
    assert f"into {data_dir}" in r.stdout and "files      7 (" in r.stdout
    assert "sha256 verified" in r.stdout and "not restored (symlink): raw/leak" in r.stdout
    assert store_files(data_dir) == store_files(lab.data_dir)
    assert table_rows(url or f"sqlite:///{data_dir / 'reloblur.db'}") == table_rows(lab.url)
    assert not (tmp_path / "elsewhere").exists()

    r = runner.invoke(app, ["restore", str(archive), "--data-dir", str(data_dir)])
    assert r.exit_code == 2 and "error:" in r.stderr and "not empty" in r.stderr


def test_cli_subprocess_round_trip(tmp_path: Path):
    """The installed entry point, with nothing but RELOBLUR_DATA_DIR set."""
    import subprocess

    exe = Path(sys.executable).with_name("reloblur")
    if not exe.exists():
        pytest.skip(f"no reloblur entry point next to {sys.executable}")
    data_dir = tmp_path / "lab"
    migrate.upgrade(f"sqlite:///{data_dir / 'reloblur.db'}")
    (data_dir / "raw").mkdir()
    (data_dir / "raw" / "a.dng").write_bytes(b"raw bytes")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELOBLUR_")}
    env["RELOBLUR_DATA_DIR"] = str(data_dir)
    run = lambda *args: subprocess.run([str(exe), *args], env=env, cwd=tmp_path, capture_output=True,  # noqa: E731
                                       text=True, timeout=120)
    r = run("backup", "--out", str(tmp_path / "b.tar.gz"))
    assert r.returncode == 0, r.stderr
    r = run("restore", str(tmp_path / "b.tar.gz"), "--data-dir", str(tmp_path / "new"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "new" / "raw" / "a.dng").read_bytes() == b"raw bytes"
    assert migrate.current(f"sqlite:///{tmp_path / 'new' / 'reloblur.db'}") == (migrate.head(),)
