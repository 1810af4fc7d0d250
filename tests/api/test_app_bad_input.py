"""Bad input: 4xx saying what was wrong; the server keeps serving; nothing is stored."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image


def _png(h: int = 32, w: int = 32) -> bytes:
    return cv2.imencode(".png", np.full((h, w, 3), 128, np.uint8))[1].tobytes()


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buf, format="GIF")
    return buf.getvalue()


def _noise_png(n: int) -> bytes:
    img = np.random.default_rng(1).integers(0, 255, (n, n, 3), dtype=np.uint8)
    return cv2.imencode(".png", img)[1].tobytes()


CASES = {
    "malformed json": (
        "post",
        "/api/v1/jobs/postprocess",
        {"content": b'{"scene": ', "headers": {"content-type": "application/json"}},
        422,
        "JSON",
    ),
    "wrong type": (
        "post",
        "/api/v1/captures",
        {"json": {"rig": "twin", "scene": "s", "pairs": "many"}},
        422,
        "pairs",
    ),
    "unknown field": ("post", "/api/v1/jobs/reprocess", {"json": {"scens": ["a"]}}, 422, "scens"),
    "bad pipeline params": (
        "post",
        "/api/v1/jobs/postprocess",
        {"json": {"scene": "s", "params": {"nope": 1}}},
        422,
        "nope",
    ),
    "unknown job": ("get", "/api/v1/jobs/424242", {}, 404, "no job with id 424242"),
    "unknown scene": ("get", "/api/v1/scenes/nope", {}, 404, "no scene named 'nope'"),
    "unknown product": ("get", "/api/v1/products/77/file", {}, 404, "no product with id 77"),
    "unknown rig": ("get", "/api/v1/rigs/none", {}, 404, "no rig named 'none'"),
    "id out of range": ("get", "/api/v1/captures/99999999999", {}, 422, "less than or equal"),
    "traversal": ("get", "/api/v1/files/../../etc/passwd", {}, 404, ""),
    "encoded traversal": (
        "get",
        "/api/v1/files/processed/%2e%2e/%2e%2e/%2e%2e/etc/passwd.png",
        {},
        404,
        "no file",
    ),
    "absolute": ("get", "/api/v1/files//etc/hostname.png", {}, 404, "no file"),
    "database file": ("get", "/api/v1/files/db/reloblur.db", {}, 404, "no file"),
    "oversize upload": (
        "post",
        "/api/v1/deblur/uploads",
        {"files": {"file": ("big.png", _noise_png(400), "image/png")}},
        413,
        "too large",
    ),
    "corrupt png": (
        "post",
        "/api/v1/deblur/uploads",
        {"files": {"file": ("c.png", _png()[:60], "image/png")}},
        422,
        "corrupt",
    ),
    "gif": (
        "post",
        "/api/v1/deblur/uploads",
        {"files": {"file": ("a.gif", _gif(), "image/gif")}},
        415,
        "GIF",
    ),
    "text as png": (
        "post",
        "/api/v1/deblur/uploads",
        {"files": {"file": ("a.png", b"hello world", "image/png")}},
        415,
        "not a PNG, TIFF or DNG",
    ),
    "empty file": (
        "post",
        "/api/v1/deblur/uploads",
        {"files": {"file": ("a.png", b"", "image/png")}},
        422,
        "empty",
    ),
    "tiny image": (
        "post",
        "/api/v1/deblur/uploads",
        {"files": {"file": ("a.png", _png(4, 4), "image/png")}},
        422,
        "4×4",
    ),
    "corrupt tiff": (
        "post",
        "/api/v1/deblur/uploads",
        {"files": {"file": ("a.tif", b"II*\x00" + b"\x07" * 64, "image/tiff")}},
        422,
        "corrupt",
    ),
    "no file": ("post", "/api/v1/deblur/uploads", {"data": {"tile": "64"}}, 422, "file"),
    "bad tile": (
        "post",
        "/api/v1/deblur/uploads",
        {"files": {"file": ("a.png", _png(), "image/png")}, "data": {"tile": "13"}},
        422,
        "tile",
    ),
    "bad enum": ("get", "/api/v1/jobs", {"params": {"status": "sleeping"}}, 422, "status"),
    "unloaded model": (
        "post",
        "/api/v1/deblur/preview",
        {"files": {"file": ("a.png", _png(), "image/png")}},
        503,
        "no deblurring model",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_and_nothing_is_stored(shared_live, case):
    method, path, kwargs, status, needle = CASES[case]
    with shared_live.client("admin") as c:
        r = c.request(method, path, **kwargs)
        assert r.status_code == status, r.text
        assert (
            needle in str(r.json()["detail"])
            if r.headers.get("content-type", "").startswith("application/json")
            else needle == ""
        )
        assert c.get("/api/v1/health").json()["status"] == "ok"
    assert shared_live.uploads() == []


def test_a_valid_tiff_and_dng_are_accepted(tmp_path, start_server):
    import tifffile

    from core.dng import RawMetadata, encode_dng

    live = start_server(f"sqlite:///{tmp_path / 'ok.db'}")
    tif = io.BytesIO()
    tifffile.imwrite(tif, np.full((24, 24, 3), 1000, np.uint16))
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
    dng = encode_dng(np.full((32, 32), 900, np.uint16), meta)
    with live.client("operator") as c:
        for name, data, ext in (("a.tif", tif.getvalue(), ".tif"), ("a.dng", dng, ".dng")):
            r = c.post(
                "/api/v1/deblur/uploads", files={"file": (name, data, "application/octet-stream")}
            )
            assert r.status_code == 202, r.text
            assert r.json()["upload"].endswith(ext)
    assert len(live.uploads()) == 2
