"""The console over plain HTTP: sign-in and its cookie, pages by role, the CSRF and origin
checks on cookie-authenticated writes, the security headers, the job event stream."""

from __future__ import annotations

import re
import time
from contextlib import closing
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from api.console.session import COOKIE_NAME, csrf_token
from api.http.security_headers import CONTENT_SECURITY_POLICY
from core import jobs
from core.db import session_factory


def _signed_in(live, role: str) -> tuple[httpx.Client, str]:
    """A client holding a console session of ``role`` and the CSRF token its pages carry."""
    client = httpx.Client(base_url=live.url, timeout=30)
    answer = client.post("/signin", data={"token": live.tokens[role]})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    page = client.get("/jobs").text
    return client, re.search(r'name="csrf-token" content="([0-9a-f]{64})"', page).group(1)


def test_pages_need_a_session_and_sign_in_sets_a_strict_httponly_cookie(live):
    with httpx.Client(base_url=live.url, timeout=30) as anon:
        for path in ("/", "/rigs", "/jobs", "/tokens"):
            answer = anon.get(path)
            assert answer.status_code == 303 and answer.headers["location"] == "/signin", path
        assert anon.get("/signin").status_code == 200
        refused = anon.post("/signin", data={"token": live.tokens["revoked"]})
        assert refused.status_code == 401 and "revoked" in refused.text
        assert anon.post("/signin", data={"token": ""}).status_code == 422
        ok = anon.post("/signin", data={"token": live.tokens["viewer"]})
        cookie = ok.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE_NAME}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert live.tokens["viewer"] not in ok.headers.get("location", "")
        page = anon.get("/")
        assert page.status_code == 200 and "viewer" in page.text
        assert live.tokens["viewer"] not in page.text  # the secret never reaches the page
        assert 'href="/tokens"' not in page.text  # an admin link is not shown to a viewer
        assert anon.get("/tokens").status_code == 403


def test_the_admin_sees_every_page(live):
    client, _ = _signed_in(live, "admin")
    with closing(client):
        page = client.get("/")
        assert 'href="/tokens"' in page.text and "admin" in page.text
        assert client.get("/tokens").status_code == 200


def test_cookie_writes_need_the_csrf_token_and_this_origin(live):
    client, csrf = _signed_in(live, "operator")
    with closing(client):
        assert csrf == csrf_token(live.tokens["operator"])
        body = {"rig": "twin"}
        missing = client.post("/api/v1/plans/preview", json=body)
        assert missing.status_code == 403 and "CSRF" in missing.json()["detail"]
        wrong = client.post("/api/v1/plans/preview", json=body, headers={"X-CSRF-Token": "0" * 64})
        assert wrong.status_code == 403
        foreign = client.post("/api/v1/plans/preview", json=body,
                              headers={"X-CSRF-Token": csrf, "Origin": "https://attacker.example"})
        assert foreign.status_code == 403 and "cross-site" in foreign.json()["detail"]
        ok = client.post("/api/v1/plans/preview", json=body, headers={"X-CSRF-Token": csrf, "Origin": live.url})
        assert ok.status_code == 200 and ok.json()["blur_b_px"] > 0
        assert client.get("/api/v1/jobs").status_code == 200  # reads need no CSRF token
        # another user's CSRF token does not fit this session
        other = csrf_token(live.tokens["admin"])
        assert client.post("/api/v1/plans/preview", json=body, headers={"X-CSRF-Token": other}).status_code == 403
        # a cross-site sign-in (login CSRF) is refused
        assert client.post("/signin", data={"token": live.tokens["admin"]},
                           headers={"Origin": "https://attacker.example"}).status_code == 403
        # the session cookie does not lift the role: a viewer's session cannot cancel
    viewer, viewer_csrf = _signed_in(live, "viewer")
    with closing(viewer):
        with session_factory(live.engine)() as s:
            job = jobs.create_job(s, "deblur", {"inputs": ["x"]}, max_attempts=1)
            s.commit()
            job_id = job.id
        answer = viewer.post(f"/api/v1/jobs/{job_id}/cancel", headers={"X-CSRF-Token": viewer_csrf})
        assert answer.status_code == 403 and "operator" in answer.json()["detail"]


def test_sign_out_needs_the_csrf_token_and_ends_the_session(live):
    client, csrf = _signed_in(live, "viewer")
    with closing(client):
        assert client.post("/signout", data={"csrf_token": "bad"}).status_code == 403
        assert client.get("/").status_code == 200
        out = client.post("/signout", data={"csrf_token": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/signin"
        assert client.get("/").status_code == 303


def test_revoking_the_token_ends_its_sessions_at_once(live):
    client, csrf = _signed_in(live, "operator")
    with closing(client), live.client("admin") as admin:
        tokens = {t["name"]: t["id"] for t in admin.get("/api/v1/tokens").json()}
        assert admin.delete(f"/api/v1/tokens/{tokens['test-operator']}").status_code == 200
        assert client.get("/").status_code == 303
        answer = client.post("/api/v1/plans/preview", json={"rig": "twin"}, headers={"X-CSRF-Token": csrf})
        assert answer.status_code == 401 and "revoked" in answer.json()["detail"]


def test_every_answer_carries_the_security_headers(live):
    with httpx.Client(base_url=live.url, timeout=30) as anon:
        for path in ("/signin", "/static/console.js", "/api/v1/health", "/api/v1/jobs"):
            headers = anon.get(path).headers
            assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["x-frame-options"] == "DENY"
        assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
        static = anon.get("/static/console.js")
        assert static.headers["etag"]
        again = anon.get("/static/console.js", headers={"If-None-Match": static.headers["etag"]})
        assert again.status_code == 304


def test_the_job_event_stream_resumes_from_last_event_id(live):
    """Changes stream as `job` events whose ids let a reconnecting client resume: after a drop,
    the changes made meanwhile arrive, and nothing before the last id is sent again."""
    with session_factory(live.engine)() as s:
        first = jobs.create_job(s, "deblur", {"inputs": ["a"]}, max_attempts=1)
        s.commit()
        first_id = first.id

    def read_events(client, headers, want):
        events = []
        with client.stream("GET", "/api/v1/jobs/events", params={"since": "2000-01-01T00:00:00Z"},
                           headers=headers) as stream:
            event = {}
            for line in stream.iter_lines():
                if not line:
                    if "data" in event:
                        events.append(event)
                        if len(events) >= want:
                            return events
                    event = {}
                    continue
                key, _, value = line.partition(": ")
                event[key] = value
        return events

    with live.client("viewer") as client:
        events = read_events(client, {}, 1)
        assert events[0]["event"] == "job" and f'"id":{first_id}' in events[0]["data"]
        last = events[0]["id"]
        time.sleep(0.01)
        jobs.claim(live.engine, first_id, "test-worker")  # made while "disconnected"
        jobs.report_progress(live.engine, first_id, 0.5, "half way")
        resumed = read_events(client, {"Last-Event-ID": last}, 1)
        assert int(resumed[0]["id"]) > int(last) and '"progress":0.5' in resumed[0]["data"]
        assert all(f'"id":{first_id}' in e["data"] for e in resumed)
        bad = client.get("/api/v1/jobs/events", headers={"Last-Event-ID": "yesterday"})
        assert bad.status_code == 422


@pytest.mark.parametrize("path", ["/api/v1/jobs/events"])
def test_the_event_stream_needs_a_token(live, path):
    with httpx.Client(base_url=live.url, timeout=10) as anon:
        assert anon.get(path).status_code == 401


def test_product_previews_are_downscaled_cached_and_revalidated(live):
    with live.client("viewer") as client:
        pid = live.ids["product_blurred"]
        full = client.get(f"/api/v1/products/{pid}/file")
        assert full.status_code == 200
        preview = client.get(f"/api/v1/products/{pid}/file", params={"max_side": 24})
        assert preview.status_code == 200 and preview.headers["content-type"] == "image/jpeg"  # colour
        image = cv2.imdecode(np.frombuffer(preview.content, np.uint8), cv2.IMREAD_UNCHANGED)
        assert image.shape[:2] == (16, 24)  # 48×32 → longer side 24
        source = cv2.imread(str(Path(live.settings.data_dir) / "processed/scene1/blurred/pair_0002_abc.png"))
        reference = cv2.resize(source, (24, 16), interpolation=cv2.INTER_AREA).astype(float)
        assert np.abs(image.astype(float) - reference).mean() < 12  # JPEG q90 of random noise
        mask = client.get(f"/api/v1/products/{live.ids['product_mask']}/file", params={"max_side": 4096})
        assert mask.headers["content-type"] == "image/png"  # masks stay exact
        assert np.array_equal(cv2.imdecode(np.frombuffer(mask.content, np.uint8), cv2.IMREAD_UNCHANGED),
                              cv2.imread(str(Path(live.settings.data_dir) / "processed/scene1/mask/pair_0002_abc.png"),
                                         cv2.IMREAD_UNCHANGED))
        tag = preview.headers["etag"]
        assert "max-age" in preview.headers["cache-control"]
        again = client.get(f"/api/v1/products/{pid}/file", params={"max_side": 24}, headers={"If-None-Match": tag})
        assert again.status_code == 304 and again.headers["etag"] == tag
        cached = sorted((Path(live.settings.data_dir) / ".cache" / "previews").glob("*"))
        assert [p.suffix for p in cached] == [".png", ".jpg"] or [p.suffix for p in cached] == [".jpg", ".png"]
        larger = client.get(f"/api/v1/products/{pid}/file", params={"max_side": 4096})
        assert cv2.imdecode(np.frombuffer(larger.content, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2] == (32, 48)
        flow = client.get(f"/api/v1/products/{live.ids['product_flow']}/file", params={"max_side": 64})
        assert flow.status_code == 422 and "not an image" in flow.json()["detail"]
        assert client.get(f"/api/v1/products/{pid}/file", params={"max_side": 8}).status_code == 422
        # the cache folder is hidden: the file routes never serve it
        assert client.get(f"/api/v1/files/.cache/previews/{cached[0].name}").status_code == 404


def test_scene_pages_render_for_a_viewer(live):
    client, _ = _signed_in(live, "viewer")
    with closing(client):
        assert client.get("/scenes").status_code == 200
        gallery = client.get("/scenes/scene1")
        assert gallery.status_code == 200 and 'data-scene="scene1"' in gallery.text
        pair = client.get(f"/scenes/scene1/pairs/{live.ids['capture']}")
        assert pair.status_code == 200 and f'data-capture="{live.ids["capture"]}"' in pair.text
        hostile = client.get("/scenes/%3Cscript%3E")
        assert "<script>" not in hostile.text and "&lt;script&gt;" in hostile.text


def _store_dng(live, rel: str, mosaic: np.ndarray, **meta_fields) -> str:
    """Write a real DNG into the live server's data store; return its sha256."""
    from core.dng_encode import write_dng
    from core.dng_metadata import RawMetadata

    fields = {"cfa_pattern": "RGGB", "bits": 12, "black_level": 64, "white_level": 4095,
              "as_shot_neutral": (0.5, 1.0, 0.8), "camera_make": "ReLoBlur", "camera_model": "Twin",
              "camera_serial": "S-B", "exposure_time_s": 0.01, **meta_fields}
    path = Path(live.settings.data_dir) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_dng(path, mosaic, RawMetadata(**fields))


def test_raw_frames_preview_as_plainly_developed_png(live):
    from core.dng_cfa import cfa_color_map
    from core.models import Frame

    # a grey card under the camera's white balance: R, G, B sites at 0.5, 1, 0.8 of the green signal
    level = np.array([64 + 0.5 * 2000, 64 + 2000, 64 + 0.8 * 2000])
    mosaic = np.rint(level[cfa_color_map("RGGB", 32, 48)]).astype(np.uint16)
    sha = _store_dng(live, "raw/scene1/grey_B.dng", mosaic)
    with session_factory(live.engine)() as s:
        frame = s.get(Frame, live.ids["frame"])
        frame.path, frame.sha256 = "raw/scene1/grey_B.dng", sha
        s.commit()
    with live.client("viewer") as client:
        url = f"/api/v1/frames/{live.ids['frame']}/file"
        assert client.get(url).content == (Path(live.settings.data_dir) / "raw/scene1/grey_B.dng").read_bytes()
        preview = client.get(url, params={"max_side": 256})
        assert preview.status_code == 200 and preview.headers["content-type"] == "image/jpeg"
        image = cv2.imdecode(np.frombuffer(preview.content, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (16, 24, 3)  # one pixel per 2×2 tile, never enlarged
        # white-balanced to neutral grey: sRGB(2000 / 4031) for every channel
        from core import srgb
        expected = int(srgb.encode_uint8(np.array([2000 / 4031]))[0])
        assert np.abs(image.astype(int) - expected).max() <= 1
        tag = preview.headers["etag"]
        assert client.get(url, params={"max_side": 256}, headers={"If-None-Match": tag}).status_code == 304
        small = client.get(url, params={"max_side": 16})
        assert cv2.imdecode(np.frombuffer(small.content, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (11, 16)
        with session_factory(live.engine)() as s:
            other = s.scalars(__import__("sqlalchemy").select(Frame).where(Frame.id != live.ids["frame"])).first()
        broken = client.get(f"/api/v1/frames/{other.id}/file", params={"max_side": 64})
        assert broken.status_code == 422 and "cannot be shown" in broken.json()["detail"]
        assert client.get("/api/v1/frames/999999/file", params={"max_side": 64}).status_code == 404


def test_a_calibrations_residual_cast_is_a_heat_map_of_its_corrected_lightbox(live):
    from core.dng_cfa import cfa_color_map
    from core.models import Calibration, Frame
    from postprocess.calibration import cast_spread, correct_colour, fit_colour_calibration
    from postprocess.isp import normalise_raw

    h, w = 180, 260
    y, x = np.mgrid[0:h, 0:w]
    r2 = ((x - w / 2) / (w / 2)) ** 2 + ((y - h / 2) / (h / 2)) ** 2
    gains = np.stack([1 - 0.05 * r2, 1 - 0.03 * r2, 1 - 0.08 * r2 + 0.02 * x / w])  # vignetting with a tint
    colour = cfa_color_map("RGGB", h, w)
    signal = 2400 * np.take_along_axis(gains, colour[None], axis=0)[0]
    mosaic = np.rint(64 + signal + np.random.default_rng(1).normal(0, 4, (h, w))).astype(np.uint16)
    sha = _store_dng(live, "raw/lightbox/lightbox_B.dng", mosaic)
    calibration = fit_colour_calibration(mosaic, "RGGB", 64, 4095)
    expected = cast_spread(correct_colour(normalise_raw(mosaic, 64, 4095), calibration, "RGGB"), "RGGB",
                           calibration.patches, calibration.central)
    with session_factory(live.engine)() as s:
        frame = s.get(Frame, live.ids["frame"])
        frame.path, frame.sha256, frame.width_px, frame.height_px = "raw/lightbox/lightbox_B.dng", sha, w, h
        row = Calibration(camera_id=frame.camera_id, lightbox_frame_id=frame.id,
                          calibration_id=calibration.calibration_id, params_hash="d" * 64,
                          pipeline_version="t", content=calibration.to_dict(), cast_spread=expected,
                          residual_rms_max=float(np.max(calibration.residual_rms)))
        s.add(row)
        s.commit()
        cid = row.id
    with live.client("viewer") as client:
        answer = client.get(f"/api/v1/calibrations/{cid}/residual.png", params={"range_pct": 0.5})
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
        assert float(answer.headers["x-residual-max-pct"]) == pytest.approx(100 * expected, abs=1e-4)
        assert expected < 0.005  # the fit removes the cast to below 0.5 %
        image = cv2.imdecode(np.frombuffer(answer.content, np.uint8), cv2.IMREAD_COLOR)
        rows, cols = calibration.patches
        from api.http.calibration_images import CELL_PX, GAP_PX
        assert image.shape == (rows * CELL_PX, 3 * cols * CELL_PX + 2 * GAP_PX, 3)
        # the central patch is the reference: white in every panel
        cr, cc = calibration.central
        for panel in range(3):
            x0 = panel * (cols * CELL_PX + GAP_PX) + cc * CELL_PX + CELL_PX // 2
            assert image[cr * CELL_PX + CELL_PX // 2, x0].tolist() == [255, 255, 255]
        assert client.get(f"/api/v1/calibrations/{cid}/residual.png", params={"range_pct": 0}).status_code == 422
        assert client.get("/api/v1/calibrations/999999/residual.png").status_code == 404


def test_a_file_route_reuses_a_products_facts_only_while_the_database_is_unchanged(live):
    """The preview route keeps a product's path and hash while the change version holds: a row
    removed meanwhile answers 404 at once, not the remembered file."""
    from core.models import Product

    pid = live.ids["product_mask"]
    with live.client("viewer") as client:
        url = f"/api/v1/products/{pid}/file"
        assert client.get(url, params={"max_side": 32}).status_code == 200
        assert client.get(url, params={"max_side": 32}).status_code == 200  # from the facts
        with session_factory(live.engine)() as s:
            s.delete(s.get(Product, pid))
            s.commit()
        deadline = time.monotonic() + 5
        while client.get(url, params={"max_side": 32}).status_code != 404:
            assert time.monotonic() < deadline, "a removed product is still served"
            time.sleep(0.05)
        assert client.get(url).status_code == 404
