"""API test fixtures: a real uvicorn server on loopback (SQLite and PostgreSQL), tokens per role,
and a small seeded data store (a rig, a scene, a pair with frames and products)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from api.http import auth
from api.http.app import create_app
from api.http.server import ServerThread
from core import migrate
from core.db import make_engine, session_factory
from core.models import (
    CameraRecord,
    Capture,
    CaptureKind,
    CaptureStatus,
    Frame,
    Product,
    ProductKind,
    RigRecord,
    Scene,
)
from core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
RIGS_DIR = REPO / "configs" / "rigs"
ROLES = ("viewer", "operator", "admin")


@dataclass
class Live:
    """A running server: its base URL, settings, engine, tokens by role, seeded ids."""

    url: str
    settings: Settings
    engine: object
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    def client(self, role: str | None = "admin", **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kw)

    def uploads(self) -> list[Path]:
        folder = Path(self.settings.data_dir) / "uploads"
        return sorted(folder.rglob("*")) if folder.exists() else []


def make_settings(data_dir: Path, url: str, **overrides) -> Settings:
    """Settings for one test server (never from the environment's data dir)."""
    values = dict(
        data_dir=data_dir,
        database_url=url,
        rigs_dir=RIGS_DIR,
        max_upload_mb=0.25,
        preview_max_pixels=64 * 64,
        device="cpu",
    )
    values.update(overrides)
    return Settings(**values)


def add_tokens(engine) -> dict[str, str]:
    """One token per role, plus a revoked one (key ``revoked``)."""
    secrets: dict[str, str] = {}
    with session_factory(engine)() as session:
        for role in ROLES:
            _, secrets[role] = auth.create_token(session, f"test-{role}", role)
        row, secrets["revoked"] = auth.create_token(session, "test-revoked", "admin")
        auth.revoke_token(session, row.id)
        session.commit()
    return secrets


def _png_bytes(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def seed(engine, data_dir: Path) -> dict[str, int]:
    """A rig, a scene with one pair (two frames), a blurred image, a mask and a flow product."""
    rng = np.random.default_rng(0)
    files = {
        "raw/scene1/pair_0002_B.dng": b"II*\x00not-really-a-dng",
        "raw/scene1/pair_0002_S.dng": b"II*\x00not-really-a-dng-either",
        "processed/scene1/blurred/pair_0002_abc.png": _png_bytes(
            rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
        ),
        "processed/scene1/mask/pair_0002_abc.png": _png_bytes(
            (rng.random((32, 48)) > 0.5).astype(np.uint8) * 255
        ),
    }
    flow = np.zeros((32, 48, 2), np.float32)
    flow[..., 0] = 3.0
    flow_path = data_dir / "processed/scene1/flow/scene_abc.npy"
    flow_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(flow_path, flow)
    files_sha = {}
    for rel, data in files.items():
        p = data_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        files_sha[rel] = hashlib.sha256(data).hexdigest()
    flow_sha = hashlib.sha256(flow_path.read_bytes()).hexdigest()
    with session_factory(engine)() as s:
        rig = RigRecord(
            name="twin",
            pixel_pitch_um=9.0,
            focal_length_mm=50,
            nd_filters=[1.0, 0.5],
            cfa_pattern="RGGB",
            bit_depth=12,
            sensor_width_px=48,
            sensor_height_px=32,
        )
        cams = {
            r: CameraRecord(
                rig=rig,
                role=r,
                vendor="ReLoBlur",
                model="Twin",
                serial=f"S-{r}",
                driver="simulated",
            )
            for r in "BS"
        }
        scene = Scene(name="scene1", rig=rig)
        cap = Capture(
            rig=rig,
            scene=scene,
            kind=CaptureKind.PAIR,
            trigger_index=2,
            status=CaptureStatus.COMPLETE,
        )
        s.add_all([rig, *cams.values(), scene, cap])
        s.flush()
        frames = [
            Frame(
                capture=cap,
                camera=cams[r],
                role=r,
                path=f"raw/scene1/pair_0002_{r}.dng",
                sha256=files_sha[f"raw/scene1/pair_0002_{r}.dng"],
                exposure_s=0.01,
                gain_db=0,
                black_level=64,
                white_level=4095,
                width_px=48,
                height_px=32,
                trigger_index=2,
            )
            for r in "BS"
        ]
        prods = {
            "blurred": Product(
                scene=scene,
                capture=cap,
                kind=ProductKind.BLURRED,
                params_hash="a" * 64,
                pipeline_version="t",
                path="processed/scene1/blurred/pair_0002_abc.png",
                sha256=files_sha["processed/scene1/blurred/pair_0002_abc.png"],
            ),
            "mask": Product(
                scene=scene,
                capture=cap,
                kind=ProductKind.MASK,
                params_hash="b" * 64,
                pipeline_version="t",
                path="processed/scene1/mask/pair_0002_abc.png",
                sha256=files_sha["processed/scene1/mask/pair_0002_abc.png"],
            ),
            "flow": Product(
                scene=scene,
                kind=ProductKind.FLOW,
                params_hash="c" * 64,
                pipeline_version="t",
                path="processed/scene1/flow/scene_abc.npy",
                sha256=flow_sha,
            ),
        }
        s.add_all([*frames, *prods.values()])
        s.commit()
        return {
            "rig": rig.id,
            "scene": scene.id,
            "capture": cap.id,
            "frame": frames[0].id,
            **{f"product_{k}": p.id for k, p in prods.items()},
        }


def start_live(data_dir: Path, url: str, *, runner=None, **settings_overrides):
    """Migrate ``url``, add tokens and seed data, build the app; → (Live, ServerThread)."""
    migrate.upgrade(url)
    engine = make_engine(url)
    settings = make_settings(data_dir, url, **settings_overrides)
    app = create_app(settings, runner=runner, start_runner=False)
    live = Live("", settings, engine, add_tokens(engine), seed(engine, data_dir))
    return live, ServerThread(app)


@pytest.fixture
def live(db_url: str, tmp_path: Path) -> Iterator[Live]:
    """A seeded server on a fresh database (SQLite and PostgreSQL), without a job runner."""
    data_dir = tmp_path / "data"
    live, server = start_live(data_dir, db_url)
    with server as base:
        live.url = base
        yield live
    live.engine.dispose()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def shared_live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """One seeded server per module and database (for the parametrised matrices)."""
    tmp = tmp_path_factory.mktemp("shared")
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'db' / 'reloblur.db'}"
    else:
        base_url = os.environ.get(
            "RELOBLUR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        )
        admin = create_engine(base_url, poolclass=NullPool)
        schema = f"test_{uuid.uuid4().hex[:16]}"
        try:
            with admin.begin() as c:
                c.execute(text(f'CREATE SCHEMA "{schema}"'))
        except OperationalError as exc:
            pytest.skip(f"no PostgreSQL server: {exc}")
        url = (
            make_url(base_url)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    live, server = start_live(tmp / "data", url)
    try:
        with server as base:
            live.url = base
            yield live
    finally:
        live.engine.dispose()
        if schema is not None:
            with admin.begin() as c:
                c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


@pytest.fixture
def start_server(tmp_path: Path):
    """``start_server(url, runner=None, **settings)`` → a seeded Live server (stopped after)."""
    from contextlib import ExitStack

    stack = ExitStack()

    def start(url: str, *, runner=None, **overrides) -> Live:
        data_dir = tmp_path / f"data{len(stack._exit_callbacks)}"
        live, server = start_live(data_dir, url, runner=runner, **overrides)
        stack.callback(live.engine.dispose)
        live.url = stack.enter_context(server)
        return live

    with stack:
        yield start
