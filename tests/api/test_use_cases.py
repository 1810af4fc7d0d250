"""One request model per operation: the job parameters extend the packages' request models, and
the CLI and the job handlers run the same service functions (acquisition.services,
postprocess.services, deblur.services)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from acquisition.requests import LightboxRequest, SceneCaptureRequest
from api.cli import app
from api.jobs.params import (
    CaptureParams,
    DeblurParams,
    ExportParams,
    LightboxParams,
    PostprocessParams,
)
from core.filestore import write_png
from deblur.requests import DeblurRequest
from deblur.services import deblur
from postprocess.requests import ExportRequest, ProcessRequest

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "deblur" / "weights" / "lbag_twin_cpu.pt"
runner = CliRunner()


@pytest.mark.parametrize(("job_model", "request_model", "api_only"), [
    (CaptureParams, SceneCaptureRequest, {"rig"}),
    (LightboxParams, LightboxRequest, {"rig"}),
    (PostprocessParams, ProcessRequest, set()),
    (ExportParams, ExportRequest, set()),
    (DeblurParams, DeblurRequest, {"product_ids"}),
])
def test_each_job_kind_takes_its_operations_request(job_model, request_model, api_only):
    assert issubclass(job_model, request_model)
    assert set(job_model.model_fields) - set(request_model.model_fields) == api_only


def test_pipeline_parameters_are_checked_and_filled_in_by_the_request():
    request = ProcessRequest(scene="s", params={"masks": {"var_threshold": 20}})
    assert request.params["masks"]["var_threshold"] == 20.0 and "isp" in request.params
    with pytest.raises(ValueError, match="flow_method"):
        ExportRequest(out="x", test_scenes=[], params={"alignment": {"flow_method": "magic"}})


def test_the_cli_refuses_a_bad_request_naming_its_option(tmp_path):
    image = tmp_path / "a.png"
    write_png(image, np.zeros((32, 32, 3), np.uint8))
    result = runner.invoke(app, ["deblur", str(image), "--checkpoint", str(SHIPPED), "--out", str(tmp_path / "o"),
                                 "--dtype", "fp16"])
    assert result.exit_code == 2 and "--dtype: " in result.output and "fp32" in result.output
    result = runner.invoke(app, ["deblur", str(image), "--checkpoint", str(SHIPPED), "--out", str(tmp_path / "o"),
                                 "--overlap", "-1"])
    assert result.exit_code == 2 and "--overlap: " in result.output
    assert not (tmp_path / "o").exists()


def test_the_deblur_service_resolves_paths_against_its_root_and_reports_each_image(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        write_png(tmp_path / "in" / f"{name}.png", rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    seen, written = [], []
    rows = deblur(DeblurRequest(inputs=["in"], out="out"), root=tmp_path, checkpoint=SHIPPED, device="cpu",
                  before_image=lambda i, n, src, stem: seen.append((i, n, src.name, stem.as_posix())),
                  after_image=lambda row: written.append(row["deblurred"]))
    assert seen == [(0, 2, "a.png", "a"), (1, 2, "b.png", "b")]
    assert written == [tmp_path / "out" / "a_deblurred.png", tmp_path / "out" / "b_deblurred.png"]
    assert all(p.is_file() for p in written) and [r["deblurred"] for r in rows] == written
    with pytest.raises(Exception, match="checkpoint: none given"):
        deblur(DeblurRequest(inputs=["in"], out="out"), root=tmp_path)
