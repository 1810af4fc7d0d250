"""The exposure-plan preview shows camera S's trigger delay (``sharp_timing``); frames show
when their exposure started."""

from __future__ import annotations

from pathlib import Path

import yaml

from acquisition.synchronizer import TICKS_PER_S

from .conftest import RIGS_DIR


def centred(p: dict) -> float:
    return round((p["long_exposure_s"] - p["short_exposure_s"]) / 2 * TICKS_PER_S) / TICKS_PER_S


def test_plan_preview_shows_the_sharp_delay(shared_live):
    with shared_live.client("viewer") as c:
        r = c.post("/api/v1/plans/preview", json={"rig": "twin"})  # the twin rig says centre
        assert r.status_code == 200, r.text
        p = r.json()
        assert p["sharp_timing"] == "centre" and p["sharp_delay_s"] == centred(p) > 0
        # S's window sits at the centre of B's, to the generator's 250 ps.
        assert abs(p["sharp_delay_s"] + p["short_exposure_s"] / 2 - p["long_exposure_s"] / 2) <= 125e-12

        start = c.post("/api/v1/plans/preview", json={"rig": "twin", "sharp_timing": "start"}).json()
        assert (start["sharp_timing"], start["sharp_delay_s"]) == ("start", 0.0)
        assert start["long_exposure_s"] == p["long_exposure_s"]

        bare = c.post("/api/v1/plans/preview", json={"distance_m": 10, "speed_mps": 2, "pixel_pitch_um": 4.5,
                                                     "focal_length_mm": 50}).json()
        assert bare["sharp_timing"] == "centre"  # no rig: the default
        assert bare["sharp_delay_s"] == centred(bare) == 9.40275e-3

        bad = c.post("/api/v1/plans/preview", json={"rig": "twin", "sharp_timing": "middle"})
        assert bad.status_code == 422 and "sharp_timing" in bad.text


def test_frames_show_their_exposure_delay(shared_live):
    with shared_live.client("viewer") as c:
        cap = c.get(f"/api/v1/captures/{shared_live.ids['capture']}").json()
    # Seeded rows predate the column: null, and the key is there.
    assert all("exposure_delay_s" in f and f["exposure_delay_s"] is None for f in cap["frames"])


def test_plan_preview_takes_the_rigs_sharp_timing(start_server, tmp_path: Path):
    rigs = tmp_path / "rigs"
    rigs.mkdir()
    data = yaml.safe_load((RIGS_DIR / "twin.yaml").read_text())
    data["sharp_timing"] = "start"
    (rigs / "twin.yaml").write_text(yaml.safe_dump(data))
    live = start_server(f"sqlite:///{tmp_path / 'db.sqlite'}", rigs_dir=rigs)
    with live.client("viewer") as c:
        p = c.post("/api/v1/plans/preview", json={"rig": "twin"}).json()
        assert (p["sharp_timing"], p["sharp_delay_s"]) == ("start", 0.0)
        p = c.post("/api/v1/plans/preview", json={"rig": "twin", "sharp_timing": "centre"}).json()
        assert p["sharp_timing"] == "centre" and p["sharp_delay_s"] == centred(p) > 0
