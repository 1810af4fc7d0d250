"""The auth matrix: every mutating endpoint × (no token, viewer, operator, admin, revoked)."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

PNG = cv2.imencode(".png", np.full((32, 32, 3), 90, np.uint8))[1].tobytes()
RANK = {"viewer": 0, "operator": 1, "admin": 2}

# (method, path, request kwargs, role needed)
MUTATING = [
    ("post", "/api/v1/tokens", {"json": {"name": "m", "role": "viewer"}}, "admin"),
    ("delete", "/api/v1/tokens/999999", {}, "admin"),
    (
        "post",
        "/api/v1/captures",
        {"json": {"rig": "twin", "scene": "auth", "pairs": 1}},
        "operator",
    ),
    ("post", "/api/v1/captures/lightbox", {"json": {"rig": "twin", "nd": 0.5}}, "operator"),
    ("post", "/api/v1/jobs/postprocess", {"json": {"scene": "scene1"}}, "operator"),
    ("post", "/api/v1/jobs/reprocess", {"json": {}}, "operator"),
    (
        "post",
        "/api/v1/jobs/export",
        {"json": {"out": "exp", "test_scenes": ["scene1"]}},
        "operator",
    ),
    ("post", "/api/v1/jobs/deblur", {"json": {"product_ids": [1]}}, "operator"),
    ("post", "/api/v1/jobs/999999/cancel", {}, "operator"),
    (
        "post",
        "/api/v1/deblur/uploads",
        {"files": {"file": ("a.png", PNG, "image/png")}},
        "operator",
    ),
    (
        "post",
        "/api/v1/deblur/preview",
        {"files": {"file": ("a.png", PNG, "image/png")}},
        "operator",
    ),
    (
        "post",
        "/api/v1/plans/preview",
        {"json": {"rig": "twin"}},
        "viewer",
    ),  # computes, stores nothing
]
CALLERS = [None, "viewer", "operator", "admin", "revoked"]


@pytest.mark.parametrize("caller", CALLERS, ids=lambda c: c or "anonymous")
@pytest.mark.parametrize(
    "method,path,kwargs,needed", MUTATING, ids=[f"{m} {p}" for m, p, _, _ in MUTATING]
)
def test_auth_matrix(shared_live, method, path, kwargs, needed, caller):
    with shared_live.client(caller) as c:
        r = c.request(method, path, **kwargs)
    if caller in (None, "revoked"):
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"] == "Bearer"
    elif RANK[caller] < RANK[needed]:
        assert r.status_code == 403, r.text
        assert needed in r.json()["detail"]
    else:
        assert r.status_code not in (401, 403, 500), r.text
        assert r.status_code < 500 or r.status_code == 503


def test_every_read_needs_a_viewer_token(shared_live):
    with shared_live.client(None) as anon:
        paths = anon.get("/api/v1/openapi.json").json()["paths"]
    gets = [p for p, ops in paths.items() if "get" in ops]
    filled = [
        re.sub(r"\{\w+_id\}", "1", p.replace("{path}", "x.png").replace("{name}", "twin"))
        for p in gets
    ]
    assert len(filled) > 15
    with shared_live.client(None) as anon, shared_live.client("viewer") as viewer:
        for path in filled:
            expected = 200 if path == "/api/v1/health" else 401
            assert anon.get(path).status_code == expected, path
            with viewer.stream("GET", path) as answer:  # the event stream never ends by itself
                assert answer.status_code not in (401, 500), path
        assert viewer.get("/api/v1/tokens").status_code == 403
