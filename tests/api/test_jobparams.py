"""What each job kind takes (api.jobs.params), validated with the given Settings; the capture
route checks the rig file in the app's own rigs_dir, not the process settings'."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from api.jobs.params import JOB_PARAMS, JobParamsError, validate_params
from core.models import JobKind
from core.settings import Settings

RIGS_DIR = Path(__file__).resolve().parents[2] / "configs" / "rigs"


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url="sqlite://", rigs_dir=RIGS_DIR)


def test_every_kind_has_a_params_model():
    assert set(JOB_PARAMS) == set(JobKind)


def test_pipeline_params_get_their_defaults(settings):
    kind, model = validate_params("reprocess", {"params": {"masks": {"var_threshold": 20}}}, settings)
    params = model.model_dump(mode="json")
    assert kind == JobKind.REPROCESS
    assert params["params"]["masks"]["var_threshold"] == 20.0
    assert params["params"]["isp"]["output_bits"] == 8  # defaults filled in
    assert params["scenes"] is None


@pytest.mark.parametrize(("kind", "params", "names"), [
    ("postprocess", {}, "scene"),
    ("postprocess", {"scene": "a", "colour": 1}, "colour: unknown field"),
    ("postprocess", {"scene": "a", "params": {"masks": {"var_threshold": "x"}}}, "masks.var_threshold"),
    ("postprocess", {"scene": "a", "params": {"alignment": {"flow_method": "magic"}}}, "flow_method"),
    ("postprocess", ["a"], "params: expected an object, got list"),
    ("export", {"out": "../escape", "test_scenes": ["a"]}, "out must be a path relative"),
    ("export", {"out": "/abs", "test_scenes": ["a"]}, "out must be a path relative"),
    ("deblur", {}, "nothing to deblur"),
    ("deblur", {"inputs": ["a.png"], "dtype": "fp16"}, "dtype"),
    ("capture", {"rig": "twin", "scene": "s", "pairs": 0}, "pairs"),
    ("capture", {"rig": "../twin", "scene": "s", "pairs": 1}, "rig"),
    ("capture", {"rig": "nope", "scene": "s", "pairs": 1}, "no rig file nope.yaml"),
    ("capture", {"rig": "twin", "scene": "s", "pairs": 1, "sharp_timing": "middle"},
     "sharp_timing: must be one of centre, start; got 'middle'"),
    ("capture", {"rig": "twin", "scene": "s", "pairs": 1, "distance_m": -1}, "distance_m"),
    ("reprocess", {"scenes": []}, "at least one scene"),
    ("train", {}, "unknown job kind 'train'"),
])
def test_bad_params_name_the_field(settings, kind, params, names):
    with pytest.raises(JobParamsError, match=names.replace(".", r"\.")):
        validate_params(kind, params, settings)


def test_capture_rig_file_is_looked_up_in_the_given_settings(settings, tmp_path):
    kind, model = validate_params("capture", {"rig": "twin", "scene": "s1", "pairs": 2}, settings)
    # the request of `reloblur capture` (acquisition.services.SceneCaptureRequest) plus the rig
    assert model.model_dump(mode="json") == {"rig": "twin", "scene": "s1", "pairs": 2,
                                             "sharp_blur": None, "resume": False, "distance_m": None,
                                             "speed_mps": None, "target_blur_px": None, "sharp_timing": None}
    elsewhere = settings.model_copy(update={"rigs_dir": tmp_path / "rigs"})
    with pytest.raises(JobParamsError, match="no rig file twin.yaml in the rigs folder"):
        validate_params("capture", {"rig": "twin", "scene": "s1", "pairs": 2}, elsewhere)


def test_capture_route_uses_the_apps_rigs_dir(tmp_path, start_server):
    rigs = tmp_path / "labrigs"
    rigs.mkdir()
    text = (RIGS_DIR / "twin.yaml").read_text()
    assert "\nname: twin\n" in text
    (rigs / "labrig.yaml").write_text(text.replace("\nname: twin\n", "\nname: labrig\n"))
    shutil.copy(RIGS_DIR / "twin.yaml", rigs / "misnamed.yaml")  # describes rig "twin"
    live = start_server(f"sqlite:///{tmp_path / 'rigs.db'}", rigs_dir=rigs, job_max_attempts=5)
    with live.client("operator") as c:
        r = c.post("/api/v1/captures", json={"rig": "labrig", "scene": "s1", "pairs": 1})
        assert r.status_code == 202, r.text
        job = c.get(r.headers["location"]).json()
        assert job["kind"] == "capture" and job["params"]["rig"] == "labrig"
        assert job["max_attempts"] == 5  # the app's settings, not the process'
        r = c.post("/api/v1/captures", json={"rig": "twin", "scene": "s2", "pairs": 1})
        assert r.status_code == 422, r.text
        assert "no rig file twin.yaml" in r.json()["detail"]
        assert str(rigs) not in r.json()["detail"]  # no server path in an answer
        r = c.post("/api/v1/captures", json={"rig": "misnamed", "scene": "s2", "pairs": 1})
        assert r.status_code == 422 and "describes rig 'twin'" in r.json()["detail"]
        assert [j["params"]["rig"] for j in c.get("/api/v1/jobs").json()] == ["labrig"]
