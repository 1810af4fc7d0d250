"""The API against a real uvicorn server on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import cv2
import httpx
import numpy as np

from core.models import JobStatus


def png(h: int = 32, w: int = 32, seed: int = 0) -> bytes:
    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return cv2.imencode(".png", img)[1].tobytes()


def test_health_and_docs_need_no_token(live):
    with live.client(None) as c:
        h = c.get("/api/v1/health").json()
        assert h["status"] == "ok" and h["database"] == "ok"
        assert h["model_loaded"] is False and h["runner"] is False
        schema = c.get("/api/v1/openapi.json").json()
        assert "/api/v1/jobs/{job_id}" in schema["paths"]
        assert "HTTPBearer" in schema["components"]["securitySchemes"]
        assert c.get("/api/v1/docs").status_code == 200
        r = c.get("/api/v1/scenes")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in r.json()["detail"]


def test_tokens_lifecycle(live):
    with live.client("admin") as admin:
        r = admin.post("/api/v1/tokens", json={"name": "robot", "role": "operator"})
        assert r.status_code == 201, r.text
        created = r.json()
        secret = created["secret"]
        assert created["prefix"] == secret[:8] and created["role"] == "operator"
        listed = admin.get("/api/v1/tokens").json()
        assert all("secret" not in t and "token_hash" not in t for t in listed)
        assert "robot" in {t["name"] for t in listed}
        with httpx.Client(
            base_url=live.url, headers={"Authorization": f"Bearer {secret}"}
        ) as robot:
            me = robot.get("/api/v1/me").json()
            assert me["name"] == "robot" and me["role"] == "operator"
            assert robot.get("/api/v1/tokens").status_code == 403
            r = admin.delete(f"/api/v1/tokens/{created['id']}")
            assert r.status_code == 200 and r.json()["revoked_at"]
            r = robot.get("/api/v1/me")
            assert r.status_code == 401 and "revoked" in r.json()["detail"]
        assert admin.delete("/api/v1/tokens/999999").status_code == 404
        r = admin.post("/api/v1/tokens", json={"name": "x", "role": "superuser"})
        assert r.status_code == 422


def test_rigs_identity_and_plan(live):
    with live.client("viewer") as c:
        rigs = {r["name"]: r for r in c.get("/api/v1/rigs").json()}
        twin = rigs["twin"]
        assert twin["simulated"] and not twin["busy"] and twin["registered_id"] == live.ids["rig"]
        assert {cam["role"] for cam in twin["cameras"]} == {"B", "S"}
        assert c.get("/api/v1/rigs/twin").json()["optics"]["sensor_width_px"] == 1076
        assert c.get("/api/v1/rigs/nope").status_code == 404
        ident = c.get("/api/v1/rigs/twin/identity")
        assert ident.status_code == 200, ident.text
        body = ident.json()
        assert body["synchronizer"]["model"]
        assert body["cameras"][0]["features"]["PixelFormat"].startswith("Bayer")
        plan = c.post("/api/v1/plans/preview", json={"rig": "twin"})
        assert plan.status_code == 200, plan.text
        p = plan.json()
        assert p["long_exposure_s"] > p["short_exposure_s"] > 0 and p["options"]
        bad = c.post("/api/v1/plans/preview", json={"speed_mps": 1.0})
        assert bad.status_code == 422 and "distance_m" in bad.json()["detail"]


def test_scenes_captures_products_and_downloads(live):
    ids = live.ids
    with live.client("viewer") as c:
        scenes = c.get("/api/v1/scenes").json()
        assert [(s["name"], s["n_captures"], s["n_pairs"]) for s in scenes] == [("scene1", 1, 1)]
        detail = c.get("/api/v1/scenes/scene1").json()
        assert len(detail["captures"]) == 1 and len(detail["products"]) == 3
        caps = c.get("/api/v1/captures", params={"scene": "scene1", "kind": "pair"}).json()
        assert [x["id"] for x in caps] == [ids["capture"]]
        cap = c.get(f"/api/v1/captures/{ids['capture']}").json()
        assert {f["role"] for f in cap["frames"]} == {"B", "S"}
        assert c.get("/api/v1/calibrations").json() == []
        assert c.get("/api/v1/calibrations/5").status_code == 404
        prods = c.get("/api/v1/products", params={"kind": "mask"}).json()
        assert [p["id"] for p in prods] == [ids["product_mask"]]

        r = c.get(f"/api/v1/products/{ids['product_blurred']}/file")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED).shape == (
            32,
            48,
            3,
        )
        r = c.get(f"/api/v1/captures/{ids['capture']}/mask")
        mask = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (32, 48) and set(np.unique(mask)) <= {0, 255}
        r = c.get(f"/api/v1/frames/{ids['frame']}/file")
        assert r.status_code == 200 and r.content.startswith(b"II*\x00")
        r = c.get("/api/v1/scenes/scene1/flow.png")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        flow_png = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        assert flow_png.shape == (32, 48, 3) and flow_png[..., 2].min() == 255  # +x: red (BGR)
        r = c.get("/api/v1/files/processed/scene1/blurred/pair_0002_abc.png")
        assert r.status_code == 200
        assert c.get("/api/v1/files/reloblur.db").status_code == 404
        ckpts = c.get("/api/v1/checkpoints").json()
        assert ckpts == {"loaded": None, "checkpoints": []}


def test_job_submission_listing_and_cancel(live):
    with live.client("operator") as c:
        r = c.post("/api/v1/jobs/postprocess", json={"scene": "scene1"})
        assert r.status_code == 202, r.text
        body = r.json()
        assert r.headers["location"] == body["url"] and body["url"].endswith(
            f"/api/v1/jobs/{body['id']}"
        )
        job = c.get(body["url"]).json()
        assert job["kind"] == "postprocess" and job["status"] == "queued"
        assert job["params"]["scene"] == "scene1" and job["created_by"] is not None
        for path, payload in [
            ("/api/v1/jobs/reprocess", {"scenes": ["scene1"]}),
            ("/api/v1/jobs/export", {"out": "one", "test_scenes": ["scene1"]}),
            ("/api/v1/jobs/deblur", {"product_ids": [live.ids["product_blurred"]]}),
        ]:
            r = c.post(path, json=payload)
            assert r.status_code == 202, (path, r.text)
        assert len(c.get("/api/v1/jobs").json()) == 4
        assert [j["kind"] for j in c.get("/api/v1/jobs", params={"kind": "export"}).json()] == [
            "export"
        ]
        r = c.post(f"/api/v1/jobs/{body['id']}/cancel")
        assert r.status_code == 200 and r.json()["status"] == JobStatus.CANCELLED
        r = c.post(f"/api/v1/jobs/{body['id']}/cancel")
        assert r.status_code == 409 and "already ended" in r.json()["detail"]
        r = c.post("/api/v1/jobs/export", json={"out": "../outside", "test_scenes": []})
        assert r.status_code == 422 and "relative" in str(r.json()["detail"])


def test_capture_is_one_at_a_time_per_rig(live):
    with live.client("operator") as c:
        r = c.post("/api/v1/captures", json={"rig": "twin", "scene": "s2", "pairs": 2})
        assert r.status_code == 202, r.text
        assert c.get(r.headers["location"]).json()["kind"] == "capture"
        assert c.get("/api/v1/rigs/twin").json()["busy"] is True
        again = c.post("/api/v1/captures", json={"rig": "twin", "scene": "s3", "pairs": 1})
        assert again.status_code == 409 and "busy" in again.json()["detail"]
        lightbox = c.post("/api/v1/captures/lightbox", json={"rig": "twin"})
        assert lightbox.status_code == 409 and "busy" in lightbox.json()["detail"]
        assert c.get("/api/v1/rigs/twin/identity").status_code == 200  # no lock is held
        c.post(f"/api/v1/jobs/{r.json()['id']}/cancel")
        assert c.get("/api/v1/rigs/twin").json()["busy"] is False
        lightbox = c.post("/api/v1/captures/lightbox", json={"rig": "twin", "nd": 0.5})
        assert lightbox.status_code == 202, lightbox.text
        job = c.get(lightbox.headers["location"]).json()
        assert job["kind"] == "lightbox" and job["params"] == {"rig": "twin", "exposure_ms": 10.0,
                                                               "nd": 0.5}
        assert c.get("/api/v1/rigs/twin").json()["busy"] is True
        c.post(f"/api/v1/jobs/{job['id']}/cancel")
        bad = c.post("/api/v1/captures/lightbox", json={"rig": "twin", "nd": 2})
        assert bad.status_code == 422 and "nd" in str(bad.json()["detail"])
        r = c.post("/api/v1/captures", json={"rig": "nope", "scene": "s", "pairs": 1})
        assert r.status_code == 422 and "no rig file nope.yaml" in r.json()["detail"]


def test_capture_lock_held_elsewhere_gives_409(live):
    from acquisition.capture import rig_lock

    with rig_lock(live.settings.data_dir, "twin"), live.client("operator") as c:
        r = c.post("/api/v1/captures", json={"rig": "twin", "scene": "s2", "pairs": 1})
        assert r.status_code == 409
        assert c.get("/api/v1/rigs/twin/identity").status_code == 409


def test_deblur_upload_makes_a_job(live):
    with live.client("operator") as c:
        r = c.post(
            "/api/v1/deblur/uploads",
            files={"file": ("a.png", png(), "image/png")},
            data={"tile": "64"},
        )
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["upload"].startswith("uploads/") and body["upload"].endswith(".png")
        assert (live.settings.data_dir / body["upload"]).read_bytes() == png()
        job = c.get(r.headers["location"]).json()
        assert job["kind"] == "deblur" and job["params"]["inputs"] == [body["upload"]]
        assert job["params"]["tile"] == 64
        r = c.post("/api/v1/deblur/preview", files={"file": ("a.png", png(), "image/png")})
        assert r.status_code == 503 and "RELOBLUR_CHECKPOINT" in r.json()["detail"]


def test_deblur_preview_with_a_model(tmp_path, start_server):
    from deblur.infer import random_init_checkpoint

    ckpt = random_init_checkpoint("lbag", tmp_path / "lbag.pt", seed=0, num_res=1)
    live = start_server(f"sqlite:///{tmp_path / 'p.db'}", checkpoint=ckpt)
    with live.client("operator") as c:
        health = c.get("/api/v1/health").json()
        assert health["model_loaded"] and health["device"] == "cpu"
        assert c.get("/api/v1/checkpoints").json()["loaded"]["model_name"] == "lbag"
        r = c.post("/api/v1/deblur/preview", files={"file": ("a.png", png(40, 36), "image/png")})
        assert r.status_code == 200, r.text
        out = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED)
        assert out.shape == (40, 36, 3) and out.dtype == np.uint8
        r = c.post(
            "/api/v1/deblur/preview",
            params={"output": "mask"},
            files={"file": ("a.png", png(40, 36), "image/png")},
        )
        assert r.status_code == 200
        assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED).shape == (
            40,
            36,
        )
        r = c.post("/api/v1/deblur/preview", files={"file": ("big.png", png(80, 80), "image/png")})
        assert r.status_code == 413 and "/api/v1/deblur/uploads" in r.json()["detail"]
        assert c.get("/api/v1/health").json()["status"] == "ok"
    assert live.uploads() == []


def test_token_cli_and_cors_closed(tmp_path, start_server, monkeypatch):
    from typer.testing import CliRunner

    from api.cli import app as cli

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    live = start_server(url)
    monkeypatch.setenv("RELOBLUR_DATABASE_URL", url)
    from core.settings import get_settings

    get_settings.cache_clear()
    try:
        runner = CliRunner()
        out = runner.invoke(cli, ["token", "create", "--name", "ops", "--role", "operator"])
        assert out.exit_code == 0, out.output
        secret = out.stdout.strip().splitlines()[-1]
        listed = runner.invoke(cli, ["token", "list"])
        assert "ops" in listed.stdout and secret[:8] in listed.stdout
        bad = runner.invoke(cli, ["token", "create", "--name", "x", "--role", "root"])
        assert bad.exit_code == 2
    finally:
        get_settings.cache_clear()
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {secret}"}) as c:
        assert c.get("/api/v1/me").json()["role"] == "operator"
        r = c.get("/api/v1/scenes", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        r = c.options(
            "/api/v1/scenes",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in r.headers
    tid = next(
        t["id"] for t in live.client("admin").get("/api/v1/tokens").json() if t["name"] == "ops"
    )
    get_settings.cache_clear()
    try:
        assert CliRunner().invoke(cli, ["token", "revoke", str(tid)]).exit_code == 0
    finally:
        get_settings.cache_clear()
    # Revoked by another process: refused within token_cache_s (the server's token cache).
    revoked_at = time.monotonic()
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {secret}"}) as c:
        while c.get("/api/v1/me").status_code == 200:
            assert time.monotonic() - revoked_at <= live.settings.token_cache_s + 0.5
            time.sleep(0.05)
        assert c.get("/api/v1/me").status_code == 401
        assert c.get("/api/v1/scenes").status_code == 401


def test_uploaded_image_is_deblurred_by_the_runner(tmp_path, start_server):
    """End to end: upload → 202 → the job runs (threads) → its output downloads from the store."""
    from api.jobs.runner import JobRunner
    from deblur.infer import random_init_checkpoint

    ckpt = random_init_checkpoint("lbag", tmp_path / "lbag.pt", seed=0, num_res=1)
    url = f"sqlite:///{tmp_path / 'run.db'}"
    data_dir = tmp_path / "data0"  # start_server's first data directory
    from core import migrate
    from core.settings import Settings

    migrate.upgrade(url)
    settings = Settings(data_dir=data_dir, database_url=url, checkpoint=ckpt, device="cpu")
    with JobRunner(settings, n_workers=1, processes=False) as runner:
        live = start_server(url, runner=runner, checkpoint=ckpt)
        assert live.settings.data_dir == data_dir
        with live.client("operator") as c:
            r = c.post(
                "/api/v1/deblur/uploads", files={"file": ("a.png", png(40, 40), "image/png")}
            )
            assert r.status_code == 202, r.text
            job = runner.wait(r.json()["id"], 120)
            assert job.status == JobStatus.SUCCEEDED, job.error
            body = c.get(r.headers["location"]).json()
            assert body["status"] == "succeeded" and body["progress"] == 1.0
            out = body["result"]["images"][0]["deblurred"]
            img = c.get(f"/api/v1/files/{out}")
            assert img.status_code == 200
            assert cv2.imdecode(
                np.frombuffer(img.content, np.uint8), cv2.IMREAD_UNCHANGED
            ).shape == (40, 40, 3)


def dng(h: int = 40, w: int = 40, seed: int = 0) -> bytes:
    """A small 12-bit RGGB DNG (core.dng), as the rig writes them."""
    from core.dng import RawMetadata, encode_dng

    meta = RawMetadata(
        cfa_pattern="RGGB",
        bits=12,
        black_level=64,
        as_shot_neutral=(0.5, 1.0, 0.7),
        camera_make="ReLoBlur",
        camera_model="Twin",
        camera_serial="1",
        exposure_time_s=0.01,
    )
    cfa = np.random.default_rng(seed).integers(200, 3500, (h, w), dtype=np.uint16)
    return encode_dng(cfa, meta)


def test_uploaded_dng_is_developed_and_deblurred_by_the_runner(tmp_path, start_server):
    """A DNG upload: the job develops it (the preview's plain ISP) before inference, leaves no
    temporary file, and the deblurred PNG downloads."""
    from api.http.uploads import develop_dng
    from api.jobs.runner import JobRunner
    from core import migrate
    from core.settings import Settings
    from deblur.infer import random_init_checkpoint

    ckpt = random_init_checkpoint("lbag", tmp_path / "lbag.pt", seed=0, num_res=1)
    url = f"sqlite:///{tmp_path / 'dng.db'}"
    data_dir = tmp_path / "data0"  # start_server's first data directory
    migrate.upgrade(url)
    settings = Settings(data_dir=data_dir, database_url=url, checkpoint=ckpt, device="cpu")
    with JobRunner(settings, n_workers=1, processes=False) as runner:
        live = start_server(url, runner=runner, checkpoint=ckpt)
        assert live.settings.data_dir == data_dir
        with live.client("operator") as c:
            r = c.post(
                "/api/v1/deblur/uploads",
                files={"file": ("raw.dng", dng(40, 48), "application/octet-stream")},
            )
            assert r.status_code == 202, r.text
            upload = r.json()["upload"]
            assert upload.endswith(".dng")
            job = runner.wait(r.json()["id"], 120)
            assert job.status == JobStatus.SUCCEEDED, job.error
            image = job.result["images"][0]
            assert image["input"] == upload and image["developed"].startswith("dng")
            assert (image["width"], image["height"]) == (48, 40)
            out = image["deblurred"]
            assert out.startswith(f"deblur/job-{job.id}/") and out.endswith("_deblurred.png")
            got = c.get(f"/api/v1/files/{out}")
            assert got.status_code == 200 and got.headers["content-type"] == "image/png"
            img = cv2.imdecode(np.frombuffer(got.content, np.uint8), cv2.IMREAD_UNCHANGED)
            assert img.shape == (40, 48, 3) and img.dtype == np.uint8
            assert c.get(f"/api/v1/files/{image['mask']}").status_code == 200
    job_dir = data_dir / "deblur" / f"job-{job.id}"
    leftovers = sorted(p.name for p in job_dir.iterdir())
    assert not [n for n in leftovers if n.startswith(".")], leftovers  # the developed PNG is gone
    assert (data_dir / upload).is_file()  # the upload itself is kept
    developed = develop_dng(data_dir / upload)
    assert developed.shape == (40, 48, 3) and developed.dtype == np.float32
    assert developed.min() >= 0.0 and developed.max() <= 1.0 and developed.std() > 0


def test_deblur_preview_of_a_dng(tmp_path, start_server):
    from deblur.infer import random_init_checkpoint

    ckpt = random_init_checkpoint("lbag", tmp_path / "lbag.pt", seed=0, num_res=1)
    live = start_server(f"sqlite:///{tmp_path / 'pd.db'}", checkpoint=ckpt)
    with live.client("operator") as c:
        for output, shape in (("image", (40, 36, 3)), ("mask", (40, 36))):
            r = c.post(
                "/api/v1/deblur/preview",
                params={"output": output},
                files={"file": ("raw.dng", dng(40, 36, seed=1), "application/octet-stream")},
            )
            assert r.status_code == 200, r.text
            assert r.headers["content-type"] == "image/png"
            out = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED)
            assert out.shape == shape and out.dtype == np.uint8
        r = c.post(
            "/api/v1/deblur/preview",
            files={"file": ("big.dng", dng(80, 80), "application/octet-stream")},
        )
        assert r.status_code == 413 and "/api/v1/deblur/uploads" in r.json()["detail"]
    assert live.uploads() == []


def test_requests_that_may_write_are_audited(live, caplog):
    """One ``reloblur.audit`` line per non-GET request: method, path, status and the caller's
    token, refused requests included; reads are not logged."""
    import logging

    caplog.set_level(logging.INFO, logger="reloblur.audit")
    with live.client("operator") as c:
        assert c.post("/api/v1/jobs/reprocess", json={}).status_code == 202
        assert c.get("/api/v1/jobs").status_code == 200
    assert httpx.post(f"{live.url}/api/v1/jobs/reprocess", json={}).status_code == 401
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [r.getMessage() for r in caplog.records if r.name == "reloblur.audit"]
        if len(lines) >= 2:
            break
        time.sleep(0.02)
    assert len(lines) == 2, lines
    assert lines[0].startswith("POST /api/v1/jobs/reprocess -> 202 by token ")
    assert "'test-operator' (operator)" in lines[0]
    assert lines[1].startswith("POST /api/v1/jobs/reprocess -> 401 by no valid token")
