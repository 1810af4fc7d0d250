"""The manifest.yaml that ``simulate_scene`` writes for ``reloblur import``."""

from __future__ import annotations

import yaml

from acquisition.raw_import import load_manifest
from hardware_sim.scene_writer import simulate_scene

from .conftest import make_spec


def test_the_manifest_names_every_frame_and_the_twin_rig(tmp_out):
    spec = make_spec("ball", width=96, height=64)
    simulate_scene(spec, 3, tmp_out, seed=2)
    manifest = load_manifest(tmp_out / "manifest.yaml")
    assert manifest.scene == spec.name and manifest.rig.name == f"twin-{spec.name}"
    assert manifest.rig.pixel_pitch_um == spec.optics.pixel_pitch_um
    assert manifest.rig.focal_length_mm == spec.optics.focal_length_mm
    assert manifest.rig.nd_filters == [spec.exposure.nd_transmittance]
    assert manifest.object_distance_m == spec.optics.object_distance_m
    assert len(manifest.rig.color_matrix_1) == 3
    named = [getattr(files, role) for _, _, files in manifest.captures() for role in "BS"]
    on_disk = sorted(str(p.relative_to(tmp_out)) for p in (tmp_out / "raw").glob("*.dng"))
    assert sorted(named) == on_disk and len(named) == 2 * (3 + 3)
    assert manifest.pairs[2].S == "raw/pair_0002_S.dng"
    raw = yaml.safe_load((tmp_out / "manifest.yaml").read_text())
    assert list(raw)[:2] == ["scene", "rig"]
