"""Writing a scene: determinism, ground-truth consistency, bad input, nothing half-written."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from api.cli import app
from core.dng import read_dng
from core.filestore import read_mask_png
from hardware_sim import scene_writer
from hardware_sim.scene_writer import OutputExistsError, simulate_scene
from hardware_sim.spec import SceneSpecError, UnknownPresetError, load_preset, parse_scene
from hardware_sim.twin import RigTwin, View

from .conftest import make_spec, scene_dict

runner = CliRunner()


def tree_digest(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path):
    spec = make_spec("pedestrian", width=160, height=108)
    simulate_scene(spec, 2, tmp_path / "a", seed=4)
    simulate_scene(spec, 2, tmp_path / "b", seed=4)
    simulate_scene(spec, 2, tmp_path / "c", seed=5)
    a, b, c = (tree_digest(tmp_path / n) for n in "abc")
    assert a == b
    # DNGs: 2 lightbox + 2 whiteboard + 2 reference + 2×2 pairs; truth npz+mask for 4 shots;
    # truth.json + flow; scene.yaml; 4 previews
    assert len(a) == 10 + 8 + 2 + 1 + 1 + 4
    dngs = [k for k in a if k.endswith(".dng")]
    assert all(a[k] != c[k] for k in dngs)


def test_a_shot_does_not_depend_on_the_shots_rendered_before_it():
    spec = make_spec(width=128, height=86)
    in_order = RigTwin(spec, seed=9)
    in_order.pair(0, 3)
    later = in_order.pair(2, 3).frames["B"].cfa
    alone = RigTwin(spec, seed=9).pair(2, 3).frames["B"].cfa
    np.testing.assert_array_equal(later, alone)


def test_truth_files_agree_with_the_frames_and_the_reported_fractions(tmp_path):
    spec = make_spec("ball", width=192, height=128)
    summary = simulate_scene(spec, 2, tmp_path / "s", seed=1)
    root = summary.out_dir
    truth = json.loads((root / "truth" / "truth.json").read_text())
    for row in summary.rows:
        npz = np.load(root / "truth" / f"{row['shot']}.npz")
        mask_png = read_mask_png(root / "truth" / f"{row['shot']}_mask.png")
        np.testing.assert_array_equal(mask_png, npz["mask"])
        assert row["blurred_area_fraction"] == pytest.approx(npz["mask"].mean(), abs=0)
        assert 0.0 < row["blurred_area_fraction"] < 0.5
        assert npz["sharp_linear"].shape == (128, 192, 3) and npz["sharp_linear"].dtype == np.float32
    assert summary.mean_blurred_area_fraction == pytest.approx(np.mean([r["blurred_area_fraction"] for r in summary.rows]))
    # every frame is listed with the sha256 of its file, and its DNG says what the truth says
    assert len(truth["frames"]) == 2 * (1 + 1 + 1 + 2)
    for frame in truth["frames"]:
        data = (root / frame["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == frame["sha256"]
        _, meta = read_dng(root / frame["path"])
        assert meta.exposure_time_s == pytest.approx(frame["exposure_s"], rel=1e-9)
        assert json.loads(meta.description)["role"] == frame["role"]
    twin = RigTwin(spec, seed=1)
    np.testing.assert_allclose(truth["cameras"]["B"]["alpha_coefficients"], twin.colour["B"].alpha_coefficients)
    np.testing.assert_allclose(truth["beta"], twin.true_beta)
    flow = np.load(root / "truth" / "flow_b_from_s.npy")
    np.testing.assert_array_equal(flow, twin.flow_b_from_s())
    assert truth["exposure"]["long_s"] == pytest.approx(truth["exposure"]["short_s"] / spec.exposure.nd_transmittance)
    assert yaml.safe_load((root / "scene.yaml").read_text())["scene"]["name"] == "ball"


@pytest.mark.parametrize(
    "change, field, allowed",
    [
        ({"objects": [{"asset": "ball", "height_m": 0.2,
                       "trajectory": {"start": [0.2, 0.5], "end": [0.8, 0.5], "speed_mps": -3}}]},
         "speed_mps", "greater than 0"),
        ({"exposure": {"short_s": 30.0, "nd_transmittance": 0.1}}, "tS", "ExposureTime range"),
        ({"exposure": {"short_s": 1e-3, "nd_transmittance": 1e-5}}, "tL", "ExposureTime range"),
        ({"objects": [{"asset": "ball", "height_m": 0.2,
                       "trajectory": {"start": [1.3, 0.5], "end": [0.8, 0.5], "speed_mps": 3}}]},
         "start", "less than or equal to 1"),
        ({"objects": [{"asset": "ball", "height_m": 0.2,
                       "trajectory": {"start": [0.0, 0.5], "end": [0.8, 0.5], "speed_mps": 3}}]},
         "start", "strictly inside (0, 1)"),
        ({"exposure": {"short_s": 1e-3, "nd_transmittance": 1.5}}, "nd_transmittance", "(0, 1]"),
        ({"exposure": {"short_s": 1e-3, "nd_transmittance": 0.0}}, "nd_transmittance", "(0, 1]"),
        ({"background": "moon"}, "background", "known: cafe, garage, launchpad, street"),
        ({"objects": [{"asset": "ghost", "height_m": 0.2,
                       "trajectory": {"start": [0.2, 0.5], "end": [0.8, 0.5], "speed_mps": 3}}]},
         "asset", "known:"),
        ({"colour": "blue"}, "colour", "unknown key"),
    ],
)
def test_invalid_scenes_name_the_field_and_the_allowed_range(change, field, allowed):
    data = scene_dict("car", width=128, height=86)
    data.update(change)
    with pytest.raises(SceneSpecError) as err:
        parse_scene(data)
    assert field in str(err.value) and allowed in str(err.value)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(UnknownPresetError, match="available presets: ball, car, pedestrian"):
        load_preset("tram")


def test_cli_bad_scene_exits_2_and_writes_nothing(tmp_path):
    spec_file = tmp_path / "bad.yaml"
    data = scene_dict("car", width=128, height=86)
    data["exposure"] = {"short_s": 1e-3, "nd_transmittance": 2.0}
    spec_file.write_text(yaml.safe_dump(data))
    out = tmp_path / "out" / "scene"
    result = runner.invoke(app, ["simulate", "--scene", str(spec_file), "--out", str(out)])
    assert result.exit_code == 2
    assert "nd_transmittance" in result.output and "(0, 1]" in result.output
    assert not out.exists() and not (tmp_path / "out").exists()
    result = runner.invoke(app, ["simulate", "--preset", "tram", "--out", str(out)])
    assert result.exit_code == 2 and "available presets" in result.output
    assert not (tmp_path / "out").exists()


def test_failure_mid_scene_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_write = scene_writer.write_dng

    def failing_write(path, cfa, meta):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full (simulated)")
        return real_write(path, cfa, meta)

    monkeypatch.setattr(scene_writer, "write_dng", failing_write)
    with pytest.raises(OSError, match="disk full"):
        simulate_scene(make_spec(width=128, height=86), 2, tmp_path / "scene")
    assert list(tmp_path.iterdir()) == []  # no output folder, no staging folder, no temp files


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    spec = make_spec(width=128, height=86)
    out = tmp_path / "scene"
    simulate_scene(spec, 1, out, seed=1)
    before = tree_digest(out)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        simulate_scene(spec, 1, out, seed=2)
    assert tree_digest(out) == before
    simulate_scene(spec, 1, out, seed=2, overwrite=True)
    assert tree_digest(out) != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene"]


def test_cli_simulate_preset_prints_the_summary(tmp_path):
    out = tmp_path / "car"
    result = runner.invoke(app, ["simulate", "--preset", "car", "--pairs", "2", "--out", str(out),
                                 "--width", "256", "--height", "172", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "tS = " in result.output and "blur length" in result.output and "pair_0001" in result.output
    truth = json.loads((out / "truth" / "truth.json").read_text())
    fraction = np.mean([s["blurred_area_fraction"] for s in truth["shots"] if s["kind"] == "pair"])
    assert f"{100 * fraction:.2f} %" in result.output
    assert len(list((out / "raw").glob("*.dng"))) == 2 * (1 + 1 + 1 + 2)


def test_a_camera_rendering_on_its_own_matches_the_pair():
    """The simulated cameras render one frame each; the bytes equal the pair's frames."""
    from hardware_sim.twin import View

    twin = RigTwin(make_spec(width=128, height=86), seed=8)
    for view, shot in ((View("pair", 1, 3), twin.pair(1, 3)), (View("reference", 0, 3), twin.reference(3))):
        for role in ("B", "S"):
            np.testing.assert_array_equal(twin.render_frame(role, view).cfa, shot.frames[role].cfa)


@pytest.mark.parametrize("preset", ["car", "ball"])
def test_incremental_frame_response_equals_the_full_computation(preset):
    """Frames recompute only where objects passed; the result equals lensing, viewing and
    mosaicking the whole integrated canvas (B with a non-rigid warp, a spinning ball)."""
    spec = make_spec(preset, width=320, height=214, misalignment={"nonrigid_px": 1.5})
    twin = RigTwin(spec, seed=2)
    view = View("pair", 1, 3)
    for role, t in (("B", twin.t_long), ("S", twin.t_short)):
        window = twin._window(view, t, track_coverage=False)
        assert window.box is not None
        full = twin.sensor.expected_electrons(twin._camera_radiance(role, window.radiance), twin._transmission[role], 1.0)
        np.testing.assert_array_equal(twin._frame_response(role, window), full)


@pytest.mark.parametrize("timing", ["centre", "start"])
def test_cli_simulate_honours_and_records_the_sharp_timing(tmp_path, timing):
    """``--sharp-timing`` reaches the twin, and truth.json, the shot rows and every DNG's
    description record when S's exposure started after B's."""
    out = tmp_path / timing
    result = runner.invoke(app, ["simulate", "--preset", "car", "--pairs", "1", "--out", str(out),
                                 "--width", "192", "--height", "128", "--sharp-timing", timing])
    assert result.exit_code == 0, result.output
    spec = load_preset("car")
    delay = (spec.long_exposure_s - spec.short_exposure_s) / 2 if timing == "centre" else 0.0
    assert f"sharp timing    {timing}: S starts {delay * 1e3:.3f} ms after B" in result.output
    truth = json.loads((out / "truth" / "truth.json").read_text())
    assert truth["exposure"]["sharp_timing"] == timing
    assert truth["exposure"]["sharp_delay_s"] == pytest.approx(delay, rel=1e-12, abs=0)
    pair = next(s for s in truth["shots"] if s["kind"] == "pair")
    assert pair["sharp_timing"] == timing and pair["sharp_delay_s"] == truth["exposure"]["sharp_delay_s"]
    scene = yaml.safe_load((out / "scene.yaml").read_text())
    assert scene["scene"]["exposure"]["sharp_timing"] == timing
    for f in truth["frames"]:
        _, meta = read_dng(out / f["path"])
        expected = 0.0 if f["kind"] == "lightbox" or f["role"] == "B" else truth["exposure"]["sharp_delay_s"]
        assert f["exposure_delay_s"] == expected
        assert json.loads(meta.description)["exposure_delay_s"] == expected


def test_cli_simulate_refuses_an_unknown_sharp_timing(tmp_path):
    result = runner.invoke(app, ["simulate", "--preset", "car", "--pairs", "1", "--out", str(tmp_path / "x"),
                                 "--width", "192", "--height", "128", "--sharp-timing", "middle"])
    assert result.exit_code != 0
    assert "sharp_timing must be one of centre, start" in result.output
    assert not (tmp_path / "x").exists()


def test_the_simulated_world_starts_each_camera_at_its_own_pulse():
    """The twin's world renders a camera's frame from when its trigger pulse arrived: a pulse
    on channel B delayed d beyond channel A's renders S's window from d after B's."""
    from hardware_sim.signals import Pulse, PulseBus
    from hardware_sim.world import SimulatedWorld

    twin = RigTwin(make_spec(width=128, height=86), seed=8)
    bus = PulseBus()
    world = SimulatedWorld(twin, bus, listen_channel=1)
    view = View("pair", 1, 3)
    world.set_view(view)
    common, sharp = 1e-6, 0.004
    b = Pulse(1, 0, 0, common, twin.t_long)
    s = Pulse(2, 0, 0, common + sharp, twin.t_short)
    bus.emit(b)
    bus.emit(s)
    got_s = world.render(role="S", pulse=s, exposure_s=twin.t_short, gain_db=0.0)
    got_b = world.render(role="B", pulse=b, exposure_s=twin.t_long, gain_db=0.0)
    np.testing.assert_array_equal(got_s, twin.render_frame("S", view, twin.t_short, 0.0, delay_s=sharp).cfa)
    np.testing.assert_array_equal(got_b, twin.render_frame("B", view, twin.t_long, 0.0, delay_s=0.0).cfa)
    assert not np.array_equal(got_s, twin.render_frame("S", view, twin.t_short, 0.0, delay_s=0.0).cfa)
