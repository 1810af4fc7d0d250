"""Security: an export job (API) or ``reloblur export`` (CLI) must never replace, contain or write
into the data directory (the reported hole: ``POST /jobs/export {"out": ".", "overwrite": true}``
replaced the whole data store with an export).

Every variant is tried through :func:`postprocess.export.export_dataset` (which every caller goes
through), the CLI, the job parameters, and the live API with a job runner: ``.``, ``..``,
``../x``, absolute paths, the data directory, a parent of it, symbolic links (inside the exports
root) to it or to a parent, control characters, a foreign non-empty folder with and without
overwrite, and a previous export replaced with overwrite. After every refusal the data store is
intact (``reloblur.db``, ``raw/``, ``processed/``, ``uploads/``, ``checkpoints/``, byte for byte)
and nothing half-written is left (no staging folder anywhere).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from api.jobs.params import JobParamsError, validate_params
from core import migrate
from core.db import dispose_engines, make_engine, session_factory
from core.models import ProcessingRun, Product, ProductKind, RigRecord, RunStatus, Scene
from core.settings import Settings, get_settings
from postprocess import export as export_module
from postprocess.export import STAGING_MARK, ExportError, check_export_destination, export_dataset
from postprocess.params import PIPELINE_VERSION, PipelineParams

REPO = Path(__file__).resolve().parents[2]
SCENE = "scene1"
OWN = ("raw", "processed", "uploads", "checkpoints", "reloblur.db")


# --------------------------------------------------------------------------- the data store


def _png(path: Path, image: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A data directory as the service keeps it: ``reloblur.db`` (migrated, one scene with one
    complete processing run of one pair), ``raw/``, ``processed/``, ``uploads/``,
    ``checkpoints/``."""
    data = tmp_path_factory.mktemp("template") / "data"
    url = f"sqlite:///{data / 'reloblur.db'}"
    data.mkdir(parents=True)
    migrate.upgrade(url)
    engine = make_engine(url)
    rng = np.random.default_rng(0)
    (data / "raw/twin/scene1").mkdir(parents=True)
    (data / "raw/twin/scene1/pair_0000_B.dng").write_bytes(b"II*\x00raw-bytes-B")
    (data / "raw/twin/scene1/pair_0000_S.dng").write_bytes(b"II*\x00raw-bytes-S")
    (data / "uploads").mkdir()
    (data / "uploads/upload.png").write_bytes(b"\x89PNG-upload")
    (data / "checkpoints").mkdir()
    (data / "checkpoints/lbag.pt").write_bytes(b"checkpoint")
    params = PipelineParams()
    images = {
        ProductKind.BLURRED: rng.integers(0, 255, (32, 48, 3), dtype=np.uint8),
        ProductKind.SHARP: rng.integers(0, 255, (32, 48, 3), dtype=np.uint8),
        ProductKind.MASK: ((rng.random((32, 48)) > 0.5) * 255).astype(np.uint8),
    }
    with session_factory(engine)() as s:
        rig = RigRecord(name="twin", pixel_pitch_um=9.0, focal_length_mm=50, nd_filters=[1.0],
                  cfa_pattern="RGGB", bit_depth=12, sensor_width_px=48, sensor_height_px=32)
        scene = Scene(name=SCENE, rig=rig)
        s.add_all([rig, scene])
        s.flush()
        ids = {}
        for kind, image in images.items():
            rel = f"processed/{SCENE}/{kind.value}/pair_0000.png"
            prod = Product(scene=scene, kind=kind, params_hash=params.hash(), pipeline_version=PIPELINE_VERSION,
                           path=rel, sha256=_png(data / rel, image))
            s.add(prod)
            s.flush()
            ids[kind.value] = prod.id
        s.add(ProcessingRun(scene=scene, status=RunStatus.COMPLETE, params_hash=params.hash(),
                            pipeline_version=PIPELINE_VERSION, params=params.model_dump(mode="json"),
                            outcome={"pairs": {"0": ids}, "failures": []}))
        s.commit()
    engine.dispose()
    return data


class Store:
    """One test's copy of the data store: ``data`` (the data dir, in ``lab/``), ``root`` (the
    exports root, ``<data>/exports``), ``engine``, and what the data dir held at the start."""

    def __init__(self, lab: Path, template: Path) -> None:
        self.lab = lab
        self.data = lab / "data"
        shutil.copytree(template, self.data)
        self.root = self.data / "exports"
        self.root.mkdir()
        self.url = f"sqlite:///{self.data / 'reloblur.db'}"
        self.engine = make_engine(self.url)
        self.before = self.snapshot()
        assert {"raw", "processed", "uploads", "checkpoints", "reloblur.db"} <= set(self.before_top())

    def before_top(self) -> set[str]:
        return {rel.split("/")[0] for rel in self.before}

    def snapshot(self) -> dict[str, str]:
        """sha256 of every file of the data dir outside the exports root (the database by its
        rows, as SQLite may rewrite the file)."""
        out = {}
        for p in sorted(self.data.rglob("*")):
            rel = p.relative_to(self.data).as_posix()
            if rel == "exports" or rel.startswith("exports/") or rel.startswith("reloblur.db"):
                continue
            if p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        out["reloblur.db"] = "present" if (self.data / "reloblur.db").is_file() else "missing"
        return out

    def assert_intact(self) -> None:
        """The data store is as it was, and no staging folder is left anywhere in the lab."""
        assert self.snapshot() == self.before
        with session_factory(self.engine)() as s:
            assert s.scalar(select(func.count(Scene.id))) == 1
            assert s.scalar(select(func.count(Product.id))) == 3
        leftovers = [p for p in self.lab.rglob("*") if STAGING_MARK in p.name]
        assert not leftovers, leftovers

    def export(self, out, *, overwrite=False, confine=True, test_scenes=(SCENE,), root="default"):
        return export_dataset(self.engine, self.data, out, list(test_scenes), [SCENE],
                              overwrite=overwrite, root=self.root if root == "default" else root,
                              confine=confine)


@pytest.fixture
def store(tmp_path, template) -> Store:
    s = Store(tmp_path / "lab", template)
    yield s
    s.engine.dispose()


# --------------------------------------------------------------------------- the variants

def _dest(store: Store, variant: str) -> Path:
    """The ``out`` of each refused variant (symbolic links made inside the exports root)."""
    r, d = store.root, store.data
    if variant == "dot":
        return r / "."
    if variant == "dotdot":
        return r / ".."
    if variant == "dotdot_x":
        return r / "../x"
    if variant == "dotdot_dotdot":
        return r / "../.."
    if variant == "data_dir":
        return d
    if variant == "data_dir_dot":
        return Path(f"{d}/.")
    if variant == "parent":
        return d.parent
    if variant == "fs_root":
        return Path("/")
    if variant == "raw":
        return d / "raw"
    if variant == "in_data_outside_root":
        return d / "somewhere"
    if variant == "link_to_data":
        (r / "link").symlink_to(d, target_is_directory=True)
        return r / "link"
    if variant == "link_to_parent":
        (r / "up").symlink_to(d.parent, target_is_directory=True)
        return r / "up"
    if variant == "link_to_raw":
        (r / "rawlink").symlink_to(d / "raw", target_is_directory=True)
        return r / "rawlink"
    if variant == "through_link":
        (r / "via").symlink_to(d, target_is_directory=True)
        return r / "via" / "new"
    if variant == "ctrl_newline":
        return r / "a\nb"
    if variant == "ctrl_nul":
        return r / "a\x00b"
    if variant == "ctrl_del":
        return r / "a\x7fb"
    if variant == "file":
        (r / "afile").write_text("not a folder")
        return r / "afile"
    raise AssertionError(variant)


REFUSED = ["dot", "dotdot", "dotdot_x", "dotdot_dotdot", "data_dir", "data_dir_dot", "parent", "fs_root", "raw",
           "in_data_outside_root", "link_to_data", "link_to_parent", "link_to_raw", "through_link",
           "ctrl_newline", "ctrl_nul", "ctrl_del", "file"]


@pytest.mark.parametrize("overwrite", [False, True], ids=["keep", "overwrite"])
@pytest.mark.parametrize("confine", [True, False], ids=["api", "cli"])
@pytest.mark.parametrize("variant", REFUSED)
def test_export_dataset_refuses_the_data_dir_and_its_neighbours(store, variant, confine, overwrite):
    out = _dest(store, variant)
    with pytest.raises(ExportError) as err:
        store.export(out, overwrite=overwrite, confine=confine)
    message = str(err.value)
    assert str(store.lab) not in message and "/tmp" not in message  # no server path shown
    store.assert_intact()
    assert not (store.data / "x").exists() and not (store.data / "somewhere").exists()
    assert not (store.data / "new").exists()
    assert not (store.root / "a\nb").exists()
    assert not (store.root / "dataset").exists() and not (store.root / "export.json").exists()
    assert not (store.data / "dataset").exists() and not (store.data / "export.json").exists()
    assert not (store.data.parent / "dataset").exists()


def test_the_reported_payload_is_refused(store):
    """The report: out ".", overwrite — once relative to the data dir, now never accepted."""
    for out in (store.data / ".", store.root / "."):
        with pytest.raises(ExportError):
            store.export(out, overwrite=True)
    store.assert_intact()


def test_an_absolute_path_elsewhere_is_api_refused_but_cli_allowed(store):
    elsewhere = store.lab.parent / "scratch" / "ds"
    with pytest.raises(ExportError, match="outside the exports root"):
        store.export(elsewhere, confine=True)
    assert not elsewhere.exists()
    store.assert_intact()
    summary = store.export(elsewhere, confine=False)  # a researcher's /scratch
    assert summary.out == elsewhere.resolve()
    assert json.loads((elsewhere / "export.json").read_text())["layout"] == "ReLoBlur"
    store.assert_intact()


def test_a_symlink_in_the_root_to_a_folder_outside_it_is_api_refused(store):
    target = store.lab.parent / "outside"
    target.mkdir()
    (store.root / "out-link").symlink_to(target, target_is_directory=True)
    with pytest.raises(ExportError, match="outside the exports root"):
        store.export(store.root / "out-link", confine=True, overwrite=True)
    assert not any(target.iterdir())
    store.assert_intact()


@pytest.mark.parametrize("overwrite", [False, True], ids=["keep", "overwrite"])
@pytest.mark.parametrize("content", ["notes", "bad_manifest", "other_layout", "export_plus_extra", "data_copy"])
def test_a_foreign_folder_is_never_replaced(store, content, overwrite):
    foreign = store.root / "foreign"
    foreign.mkdir()
    files = {}
    if content == "notes":
        files = {"notes.txt": "mine"}
    elif content == "bad_manifest":
        files = {"export.json": "{not json", "dataset/x.png": "x"}
    elif content == "other_layout":
        files = {"export.json": json.dumps({"layout": "GoPro"}), "dataset/x.png": "x"}
    elif content == "export_plus_extra":
        files = {"export.json": json.dumps({"layout": "ReLoBlur"}), "dataset/x.png": "x", "thesis.tex": "!"}
    elif content == "data_copy":  # another data directory, even one that claims to be an export
        files = {"export.json": json.dumps({"layout": "ReLoBlur"}), "reloblur.db": "db", "raw/a.dng": "r"}
    for rel, text in files.items():
        (foreign / rel).parent.mkdir(parents=True, exist_ok=True)
        (foreign / rel).write_text(text)
    with pytest.raises(ExportError, match="not empty|data directory's own"):
        store.export(foreign, overwrite=overwrite)
    assert {p.relative_to(foreign).as_posix(): p.read_text() for p in foreign.rglob("*") if p.is_file()} == files
    store.assert_intact()


def test_a_previous_export_is_replaced_only_with_overwrite(store):
    first = store.export(store.root / "one", test_scenes=[SCENE])
    out = store.root / "one"
    assert first.out == out.resolve() and first.splits == {"train": [], "test": [SCENE]}
    assert (out / "dataset/test" / SCENE / "00/00000_blur.png").is_file()
    with pytest.raises(ExportError, match="exists and is not empty"):
        store.export(out, test_scenes=[])
    assert (out / "dataset/test").is_dir()
    second = store.export(out, test_scenes=[], overwrite=True)
    assert second.splits == {"train": [SCENE], "test": []}
    assert (out / "dataset/train" / SCENE / "00/00000_sharp.png").is_file()
    assert not (out / "dataset/test").exists()  # the new content, not a merge
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["splits"] == {"train": [SCENE], "test": []}
    assert sorted(p.name for p in out.iterdir()) == ["dataset", "export.json", "masks", "preview"]
    store.assert_intact()


def test_an_empty_folder_and_a_symlink_within_the_root_are_fine(store):
    (store.root / "empty").mkdir()
    store.export(store.root / "empty")
    assert (store.root / "empty/export.json").is_file()
    (store.root / "real").mkdir()
    (store.root / "alias").symlink_to(store.root / "real", target_is_directory=True)
    summary = store.export(store.root / "alias")
    assert summary.out == (store.root / "real").resolve() and (store.root / "real/export.json").is_file()
    store.assert_intact()


def test_the_staging_folder_is_a_hidden_sibling_in_the_root_and_is_removed_on_failure(store, monkeypatch):
    seen: list[Path] = []
    real = export_module._place

    def spy(src, dst, link):
        seen.append(dst)
        real(src, dst, link)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(export_module, "_place", spy)
    monkeypatch.setattr(export_module, "write_png", boom)
    with pytest.raises(OSError, match="disk full"):
        store.export(store.root / "sub" / "two")
    parent = (store.root / "sub").resolve()  # the destination's own folder, under the exports root
    staging = {p.resolve().relative_to(parent).parts[0] for p in seen}
    assert len(staging) == 1 and next(iter(staging)).startswith(f".two{STAGING_MARK}")
    assert not (store.root / "sub" / "two").exists()
    store.assert_intact()


def test_a_misconfigured_exports_root_is_refused(store):
    for root in (store.data, store.data.parent, store.data / "raw"):
        with pytest.raises(ExportError, match="exports root"):
            store.export(root / "x", root=root, confine=True)
    with pytest.raises(ExportError, match="outside the exports root"):  # no root: nothing in the data dir
        store.export(store.data / "exports" / "x", root=None, confine=False)
    store.assert_intact()


def test_check_export_destination_returns_the_resolved_folder(store):
    (store.root / "real").mkdir()
    (store.root / "alias").symlink_to(store.root / "real", target_is_directory=True)
    got = check_export_destination(store.root / "alias" / "new", store.data, store.root, confine=True)
    assert got == (store.root / "real" / "new").resolve()


# --------------------------------------------------------------------------- job parameters

BAD_OUTS = [".", "..", "../x", "a/../b", "a/..", "/abs", "/", "", "a\nb", "a\x00b", "a\x7fb", "a\tb", "a\\b",
            "..\\x", "x" * 256, "a/b/c/d/e", ".hidden", f".x{STAGING_MARK}1234", "a//b", "./a", "a/.", " a",
            "a/", "\u202egnp.exe", "a\u2028b"]


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=None, rigs_dir=REPO / "configs" / "rigs")


@pytest.mark.parametrize("out", BAD_OUTS, ids=[repr(o)[:24] for o in BAD_OUTS])
def test_job_params_refuse_anything_but_a_plain_relative_path(settings, out):
    # (a control character may be refused by the parameters' general string check first)
    with pytest.raises(JobParamsError, match="^out: out must (be a path relative to the exports root|not contain)") as err:
        validate_params("export", {"out": out, "test_scenes": ["a"], "overwrite": True}, settings)
    assert "\n" not in str(err.value) and "\x00" not in str(err.value)


@pytest.mark.parametrize("out", ["one", "relo-2024/v1", "a b", "a/b/c/d", "x" * 255, "données"])
def test_job_params_take_a_plain_relative_path(settings, out):
    _, model = validate_params("export", {"out": out, "test_scenes": ["a"]}, settings)
    assert model.out == out


def test_the_exports_root_defaults_under_the_data_dir(settings, tmp_path):
    assert settings.resolved_exports_dir == tmp_path / "data" / "exports"


# --------------------------------------------------------------------------- the CLI

@pytest.fixture
def cli(store, monkeypatch):
    monkeypatch.setenv("RELOBLUR_DATA_DIR", str(store.data))
    monkeypatch.setenv("RELOBLUR_DATABASE_URL", store.url)
    monkeypatch.delenv("RELOBLUR_EXPORTS_DIR", raising=False)
    get_settings.cache_clear()
    dispose_engines()
    runner = CliRunner()
    from api.cli import app

    def invoke(out: str | Path, *extra: str):
        return runner.invoke(app, ["export", "--out", str(out), "--test-scenes", SCENE, "--scenes", SCENE, *extra])

    yield invoke
    get_settings.cache_clear()
    dispose_engines()


CLI_REFUSED = ["dot", "dotdot", "dotdot_x", "data_dir", "parent", "fs_root", "raw", "in_data_outside_root",
               "link_to_data", "link_to_parent", "link_to_raw", "through_link", "ctrl_newline", "ctrl_nul", "file"]


@pytest.mark.parametrize("overwrite", [False, True], ids=["keep", "overwrite"])
@pytest.mark.parametrize("variant", CLI_REFUSED)
def test_cli_refuses_the_data_dir_and_its_neighbours(store, cli, monkeypatch, variant, overwrite):
    if variant == "dot":  # relative to the working directory, as a shell user types it
        monkeypatch.chdir(store.data)
        out = "."
    elif variant == "dotdot":
        monkeypatch.chdir(store.root)
        out = ".."
    elif variant == "dotdot_x":
        monkeypatch.chdir(store.root)
        out = "../x"
    else:
        out = _dest(store, variant)
    result = cli(out, *(["--overwrite"] if overwrite else []))
    assert result.exit_code == 2, result.output
    if variant == "ctrl_nul":  # click refuses it before the command runs (and no shell can pass a NUL)
        assert "error: --out: the export folder" in result.output or "null byte" in result.output
    else:
        assert "error: --out: the export folder" in result.output
    assert "Traceback" not in result.output
    store.assert_intact()
    assert not (store.data / "x").exists() and not (store.data / "export.json").exists()


def test_cli_foreign_folder_previous_export_and_elsewhere(store, cli, tmp_path):
    foreign = tmp_path / "scratch" / "mine"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("keep me")
    for extra in ((), ("--overwrite",)):
        result = cli(foreign, *extra)
        assert result.exit_code == 2 and "is not a previous export" in result.output, result.output
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    ds = tmp_path / "scratch" / "ds"  # outside the data dir: the CLI may write there
    result = cli(ds)
    assert result.exit_code == 0, result.output
    assert (ds / "dataset/test" / SCENE / "00/00000_blur.png").is_file()
    result = cli(ds)
    assert result.exit_code == 2 and "pass overwrite (--overwrite)" in result.output
    result = cli(ds, "--overwrite")
    assert result.exit_code == 0, result.output
    result = cli(store.root / "in-root")  # inside the data dir, under the exports root: fine
    assert result.exit_code == 0, result.output
    assert (store.root / "in-root/export.json").is_file()
    store.assert_intact()


# --------------------------------------------------------------------------- the live API

@pytest.fixture
def api(store):
    """The service on ``store`` with a job runner (threads) and an operator token."""
    from api.http import auth
    from api.http.app import create_app
    from api.http.server import ServerThread
    from api.jobs.runner import JobRunner

    settings = Settings(data_dir=store.data, database_url=store.url, rigs_dir=REPO / "configs" / "rigs",
                        device="cpu", dask_workers=1, job_max_attempts=1)
    with session_factory(store.engine)() as s:
        _, secret = auth.create_token(s, "security-test", "operator")
        s.commit()
    runner = JobRunner(settings, n_workers=1, processes=False)
    runner.start()
    try:
        with ServerThread(create_app(settings, runner=runner)) as base, httpx.Client(
                base_url=f"{base}/api/v1", timeout=60, headers={"Authorization": f"Bearer {secret}"}) as http:
            yield http
    finally:
        runner.close()


def _wait(http: httpx.Client, url: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(url).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {url} did not end")


def test_live_api_refuses_every_variant_and_exports_under_the_root(store, api):
    payload = {"scenes": [SCENE], "test_scenes": [SCENE], "overwrite": True}
    for out in [".", "..", "../x", "/abs", str(store.data), str(store.data.parent), "a\nb", "a\x00b", "a\\b"]:
        r = api.post("/jobs/export", json={**payload, "out": out})  # the reported request, and its kin
        assert r.status_code == 422, (out, r.text)
        assert r.json()["detail"] and "out must" in r.text
        store.assert_intact()
    # links and foreign folders are refused when the job is submitted (and again when it runs)
    (store.root / "link").symlink_to(store.data, target_is_directory=True)
    (store.root / "up").symlink_to(store.data.parent, target_is_directory=True)
    (store.root / "foreign").mkdir()
    (store.root / "foreign/notes.txt").write_text("keep me")
    for out in ("link", "up", "link/raw", "foreign"):
        r = api.post("/jobs/export", json={**payload, "out": out})
        assert r.status_code == 422, (out, r.text)
        assert r.json()["detail"].startswith("out: ")
        assert str(store.lab) not in r.text  # no server path in what the client sees
        store.assert_intact()
    assert (store.root / "foreign/notes.txt").read_text() == "keep me"
    r = api.post("/jobs/export", json={**payload, "out": "good"})
    job = _wait(api, r.headers["Location"])
    assert job["status"] == "succeeded", job
    assert job["result"]["out"] == "exports/good" and job["result"]["exports_path"] == "good"
    assert str(store.lab) not in json.dumps(job["result"])
    r = api.post("/jobs/export", json={**payload, "out": "good", "test_scenes": []})  # overwrite: a previous export
    job = _wait(api, r.headers["Location"])
    assert job["status"] == "succeeded", job
    assert json.loads((store.root / "good/export.json").read_text())["splits"]["train"] == [SCENE]
    store.assert_intact()
