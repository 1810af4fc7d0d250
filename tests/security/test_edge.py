"""Holes found by probing the running service (issue #13 items 5–8 and 10), each reproduced
against a real server on loopback, on SQLite and PostgreSQL.

- control characters (NUL, newline) in path and query parameters and in JSON names: 422,
  never a 500 from the database;
- the audit log cannot be forged by an encoded newline in a path;
- symlinks inside the data directory are resolved before any rule is applied;
- job parameters are range- and type-checked at the edge;
- GET on a POST-only path is 405; errors do not show the server's filesystem layout.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from api.http.server import EscapingFormatter
from core.text import has_control_characters, printable

CONTROL_NAMES = ["a%00b", "a%0ab", "a%0db", "%7f", "x%1b[31m"]


@pytest.mark.parametrize("name", CONTROL_NAMES)
def test_control_characters_in_path_and_query_are_422(shared_live, name):
    with shared_live.client("viewer") as c:
        for url in (f"/api/v1/scenes/{name}", f"/api/v1/captures?scene={name}",
                    f"/api/v1/products?scene={name}", f"/api/v1/scenes/{name}/flow.png",
                    f"/api/v1/rigs/{name}", f"/api/v1/files/{name}.png"):
            r = c.get(url)
            assert r.status_code == 422, (url, r.status_code, r.text)
            detail = r.json()["detail"]
            assert isinstance(detail, list) and "control character" in detail[0]["msg"], detail
        assert c.get("/api/v1/health").json()["status"] == "ok"


@pytest.mark.parametrize("bad", ["a\x00b", "a\nb", "\x7f"])
def test_control_characters_in_job_names_are_422(shared_live, bad):
    with shared_live.client("operator") as c:
        bodies = {
            "/api/v1/jobs/postprocess": {"scene": bad},
            "/api/v1/jobs/reprocess": {"scenes": [bad]},
            "/api/v1/jobs/deblur": {"inputs": [f"uploads/{bad}.png"]},
        }
        for url, body in bodies.items():
            r = c.post(url, json=body)
            assert r.status_code == 422, (url, r.status_code, r.text)
            assert "control characters" in r.text
    with shared_live.client("admin") as c:
        r = c.post("/api/v1/tokens", json={"name": bad, "role": "viewer"})
        assert r.status_code == 422, r.text
    with shared_live.client("viewer") as c:  # nothing was recorded
        assert all(j["kind"] not in ("postprocess", "reprocess") or bad not in str(j["params"])
                   for j in c.get("/api/v1/jobs").json())


def test_an_encoded_newline_cannot_forge_an_audit_line(shared_live, caplog):
    forged = ("/api/v1/x%0a2026-12-02 10:00:00,000 INFO reloblur.audit: "
              "DELETE /api/v1/tokens/1 -> 200 by admin")
    with caplog.at_level(logging.INFO, logger="reloblur.audit"), shared_live.client(None) as c:
        assert c.post(forged).status_code == 422
        assert c.post("/api/v1/x%5c%6e").status_code in (401, 404, 405)
    formatter = EscapingFormatter("%(name)s: %(message)s")
    for record in caplog.records:
        line = formatter.format(record)
        assert "\n" not in line and "\r" not in line, line
        assert "DELETE /api/v1/tokens/1" not in record.getMessage()


def test_the_log_formatter_escapes_every_field():
    record = logging.LogRecord("reloblur.audit", logging.INFO, __file__, 1,
                               "%s %s by %s", ("POST", "/a\nb\r\x00", "tok\x1b[2J"), None)
    line = EscapingFormatter("%(name)s: %(message)s").format(record)
    assert line == r"reloblur.audit: POST /a\x0ab\x0d\x00 by tok\x1b[2J"
    assert printable("back\\x0a") == "back\\\\x0a"  # an escape cannot be forged either
    assert not has_control_characters(line)


@pytest.fixture
def links(live):
    """Links inside the data directory: to the database, a hidden file, outside, and a fine one."""
    data = Path(live.settings.data_dir)
    (data / "secret.db").write_bytes(b"SQLite format 3\x00")
    (data / ".hidden.png").write_bytes(b"\x89PNG hidden")
    real = next(p for p in data.rglob("*.png") if not p.name.startswith("."))
    made = {
        "db.png": "secret.db",
        "up.png": "../" + data.name + "/secret.db",
        "hidden.png": ".hidden.png",
        "outside.png": "/etc/hostname",
        "fine.png": os.path.relpath(real, data),
    }
    for name, target in made.items():
        (data / name).symlink_to(target)
    return live, real


def test_symlinks_are_resolved_before_the_rules(links):
    live, real = links
    with live.client("viewer") as c:
        for name in ("db.png", "up.png", "hidden.png", "outside.png"):
            r = c.get(f"/api/v1/files/{name}")
            assert r.status_code == 404, (name, r.status_code, r.text)
        r = c.get("/api/v1/files/fine.png")
        assert r.status_code == 200 and r.content == real.read_bytes()
        assert c.get("/api/v1/files/secret.db").status_code == 404
        assert c.get("/api/v1/files/.hidden.png").status_code == 404


@pytest.mark.parametrize("ids", [[-1], [0], [False], [True], [99999999999999999999], ["1"],
                                 [2**31], [1.5]])
def test_product_ids_are_checked_at_the_edge(shared_live, ids):
    with shared_live.client("operator") as c:
        r = c.post("/api/v1/jobs/deblur", json={"product_ids": ids})
        assert r.status_code == 422, (ids, r.status_code, r.text)
        assert "product_ids" in r.text


@pytest.mark.parametrize("expires", [0, "1970-01-01T00:00:00Z", "2000-01-01T00:00:00"])
def test_a_token_cannot_be_created_already_expired(shared_live, expires):
    with shared_live.client("admin") as c:
        r = c.post("/api/v1/tokens", json={"name": "old", "role": "viewer", "expires_at": expires})
        assert r.status_code == 422, r.text
        assert "expires_at must lie in the future" in r.text
        r = c.post("/api/v1/tokens", json={"name": "new", "role": "viewer",
                                           "expires_at": "2999-01-01T00:00:00Z"})
        assert r.status_code == 201, r.text


@pytest.mark.parametrize("path", ["/jobs/export", "/jobs/deblur", "/jobs/postprocess",
                                  "/jobs/reprocess", "/captures/lightbox", "/plans/preview",
                                  "/deblur/uploads", "/deblur/preview", "/jobs/1/cancel"])
def test_get_on_a_post_only_path_is_405(shared_live, path):
    with shared_live.client("viewer") as c:
        r = c.get(f"/api/v1{path}")
        assert r.status_code == 405, (path, r.status_code, r.text)
        assert "POST" in r.headers.get("allow", "")


def test_errors_do_not_show_server_paths(shared_live):
    settings = shared_live.settings
    roots = {str(Path(settings.rigs_dir).resolve()), str(Path(settings.data_dir).resolve())}
    with shared_live.client("operator") as c:
        answers = [
            c.post("/api/v1/captures", json={"rig": "no-such-rig", "scene": "s", "pairs": 1}),
            c.post("/api/v1/captures/lightbox", json={"rig": "no-such-rig"}),
            c.get("/api/v1/rigs/no-such-rig"),
            c.post("/api/v1/plans/preview", json={"rig": "no-such-rig", "distance_m": 10,
                                                   "speed_mps": 2}),
            c.post("/api/v1/jobs/deblur", json={"inputs": ["../../etc/passwd"]}),
        ]
    for r in answers:
        assert 400 <= r.status_code < 500, (r.status_code, r.text)
        assert not any(root in r.text for root in roots), r.text
