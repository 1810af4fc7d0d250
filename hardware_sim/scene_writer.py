"""Write one simulated scene session to disk: DNG frames, ground truth, previews.

Layout of ``out_dir`` (all or nothing: rendered into a hidden sibling folder and renamed into
place only when every file is written):

    scene.yaml                    the resolved scene spec, seed and number of pairs
    manifest.yaml                 the twin rig and the frame pairs, for ``reloblur import``
    raw/lightbox_{B,S}.dng        flat fields for colour calibration (one per camera)
    raw/whiteboard_{B,S}.dng      white-board pair
    raw/reference_{B,S}.dng       static reference pair (objects standing still)
    raw/pair_NNNN_{B,S}.dng       blurred (B, long exposure) / sharp (S, short exposure) pairs
    truth/truth.json              scalars: cast coefficients, β, misalignment, exposures and S's
                                  delay (``sharp_timing``, ``sharp_delay_s``), blur lengths,
                                  blurred-area fractions, and every frame with its sha256 and
                                  ``exposure_delay_s`` (when its exposure started after B's)
    truth/flow_b_from_s.npy       (H, W, 2) float32 true inter-camera flow
    truth/<shot>.npz              sharp_linear, blurred_linear (H, W, 3) float32; mask (H, W) bool
    truth/<shot>_mask.png         the true blur mask, 0/255
    preview/<shot>.png            half-size sRGB quick look: blurred | sharp | mask
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from core import __version__
from core.dng import RawMetadata, write_dng
from core.filestore import atomic_path, atomic_write_bytes, write_mask_png, write_png
from hardware_sim.spec import SceneSpec
from hardware_sim.twin import Frame, RigTwin, Shot

CAMERA_MAKE = "ReLoBlur Lab"
CAMERA_MODEL = "TwinCam (simulated)"


class OutputExistsError(FileExistsError):
    """The output folder exists and overwriting was not asked for."""


@dataclass(frozen=True)
class SimulationSummary:
    """What ``simulate_scene`` produced; ``rows`` is one dict per pair for a table."""

    out_dir: Path
    scene: str
    seed: int
    short_exposure_s: float
    long_exposure_s: float
    nd_transmittance: float
    blur_px_b: float
    blur_px_s: float
    rows: list[dict]
    sharp_timing: str = "centre"
    sharp_delay_s: float = 0.0

    @property
    def mean_blurred_area_fraction(self) -> float:
        return float(np.mean([r["blurred_area_fraction"] for r in self.rows]))


def _srgb8(linear: np.ndarray) -> np.ndarray:
    """Linear [0, 1] → sRGB-encoded [0, 1] (float32), for previews."""
    v = np.clip(linear, 0.0, 1.0).astype(np.float32)
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** np.float32(1 / 2.4) - 0.055).astype(np.float32)


class _SceneWriter:
    def __init__(self, twin: RigTwin, root: Path, n_pairs: int):
        self.twin = twin
        self.root = root
        self.n_pairs = n_pairs
        self.frames: list[dict] = []
        for sub in ("raw", "truth", "preview"):
            (root / sub).mkdir(parents=True)

    def metadata(self, frame: Frame, description: dict) -> RawMetadata:
        spec = self.twin.spec
        sensor = self.twin.sensor
        camera = spec.camera_b if frame.role == "B" else spec.camera_s
        return RawMetadata(
            cfa_pattern=spec.sensor.cfa_pattern,
            bits=spec.sensor.bits,
            black_level=spec.sensor.black_level,
            white_level=sensor.white_level,
            as_shot_neutral=sensor.as_shot_neutral,
            camera_make=CAMERA_MAKE,
            camera_model=CAMERA_MODEL,
            camera_serial=camera.serial,
            exposure_time_s=frame.exposure_s,
            gain_db=spec.sensor.gain_db,
            color_matrix_1=sensor.color_matrix_1,
            description=json.dumps(description, sort_keys=True),
        )

    def write_frame(self, frame: Frame, name: str, kind: str, trigger_index: int | None, t0: float | None) -> None:
        rel = f"raw/{name}_{frame.role}.dng"
        delay = 0.0 if kind == "lightbox" else self.twin.delay[frame.role]
        description = {
            "software": f"reloblur-lab {__version__} hardware_sim",
            "scene": self.twin.spec.name,
            "seed": self.twin.seed,
            "kind": kind,
            "role": frame.role,
            "trigger_index": trigger_index,
            "trigger_time_s": t0,
            "exposure_delay_s": delay,
        }
        sha = write_dng(self.root / rel, frame.cfa, self.metadata(frame, description))
        self.frames.append(
            {"path": rel, "sha256": sha, "kind": kind, "role": frame.role, "shot": name,
             "trigger_index": trigger_index, "exposure_s": frame.exposure_s, "exposure_delay_s": delay}
        )

    def write_shot(self, shot: Shot) -> dict:
        for role in ("B", "S"):
            self.write_frame(shot.frames[role], shot.name, shot.kind, shot.trigger_index, shot.trigger_time_s)
        with atomic_path(self.root / "truth" / f"{shot.name}.npz", keep_suffix=True) as tmp:
            np.savez(tmp, sharp_linear=shot.sharp_linear, blurred_linear=shot.blurred_linear, mask=shot.mask)
        write_mask_png(self.root / "truth" / f"{shot.name}_mask.png", shot.mask)
        mask_rgb = np.repeat(shot.mask[..., None], 3, 2).astype(np.float32)
        preview = np.hstack([shot.blurred_linear, shot.sharp_linear, mask_rgb])  # float32, linear
        half = cv2.resize(preview, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        write_png(self.root / "preview" / f"{shot.name}.png", _srgb8(half))
        return {
            "shot": shot.name,
            "kind": shot.kind,
            "trigger_index": shot.trigger_index,
            "trigger_time_s": shot.trigger_time_s,
            "blurred_area_fraction": shot.blurred_area_fraction,
            **shot.info,
        }

    def write_truth(self, shots: list[dict], seed: int) -> None:
        twin = self.twin
        spec = twin.spec
        with atomic_path(self.root / "truth" / "flow_b_from_s.npy", keep_suffix=True) as tmp:
            np.save(tmp, twin.flow_b_from_s())
        truth = {
            "scene": spec.name,
            "seed": seed,
            "software": f"reloblur-lab {__version__}",
            "n_pairs": self.n_pairs,
            "sensor": {
                "width": spec.sensor.width, "height": spec.sensor.height, "bits": spec.sensor.bits,
                "cfa_pattern": spec.sensor.cfa_pattern, "black_level": spec.sensor.black_level,
                "white_level": twin.sensor.white_level, "full_well_e": spec.sensor.full_well_e,
                "read_noise_e": spec.sensor.read_noise_e, "conversion_gain_dn_per_e": twin.sensor.conversion_gain,
                "camera_matrix_srgb_to_camera": twin.sensor.camera_matrix.tolist(),
            },
            "exposure": {
                "short_s": twin.t_short, "long_s": twin.t_long,
                "nd_transmittance": spec.exposure.nd_transmittance,
                "sharp_timing": twin.sharp_timing, "sharp_delay_s": twin.sharp_delay_s,
                "illumination_e_per_s": twin.k_e_per_s,
            },
            "cameras": {
                role: {
                    "alpha_coefficients": twin.colour[role].alpha_coefficients.tolist(),
                    "alpha_monomials": ["x^3", "x^2y", "xy^2", "y^3", "x^2", "xy", "y^2", "x", "y", "1"],
                    "brightness": twin.colour[role].brightness.tolist(),
                }
                for role in ("B", "S")
            },
            "beta": twin.true_beta.tolist(),
            "misalignment_b": {
                "rotation_deg": spec.misalignment.rotation_deg,
                "translation_px": list(spec.misalignment.translation_px),
                "scale": spec.misalignment.scale,
                "nonrigid_px": spec.misalignment.nonrigid_px,
                "flow_convention": "S(x, y) and B(x + flow[y, x, 0], y + flow[y, x, 1]) see the same point",
            },
            "blur_px": {
                "B": [spec.blur_px(twin.t_long, o.trajectory.speed_mps) for o in spec.objects],
                "S": [spec.blur_px(twin.t_short, o.trajectory.speed_mps) for o in spec.objects],
            },
            "shots": shots,
            "frames": self.frames,
        }
        atomic_write_bytes(self.root / "truth" / "truth.json", json.dumps(truth, indent=1).encode())
        scene = {"seed": seed, "pairs": self.n_pairs, "scene": spec.model_dump(mode="json")}
        atomic_write_bytes(self.root / "scene.yaml", yaml.safe_dump(scene, sort_keys=False).encode())

    def write_manifest(self, seed: int) -> None:
        """``manifest.yaml`` for ``reloblur import``: the twin rig's optics and every frame pair."""
        spec = self.twin.spec
        files: dict[str, dict[str, str]] = {}  # shot → role → path, in the order written
        kinds: dict[str, str] = {}
        for f in self.frames:
            files.setdefault(f["shot"], {})[f["role"]] = f["path"]
            kinds[f["shot"]] = f["kind"]
        manifest = {
            "scene": spec.name,
            "rig": {
                "name": f"twin-{spec.name}",
                "description": "simulated two-camera rig (hardware_sim twin)",
                "pixel_pitch_um": spec.optics.pixel_pitch_um,
                "focal_length_mm": spec.optics.focal_length_mm,
                "nd_filters": [spec.exposure.nd_transmittance],
                "color_matrix_1": [list(row) for row in self.twin.sensor.color_matrix_1],
            },
            "object_distance_m": spec.optics.object_distance_m,
            "description": f"simulated by reloblur-lab {__version__} (seed {seed})",
            "lightbox": files["lightbox"],
            "whiteboard": files["whiteboard"],
            "reference": files["reference"],
            "pairs": [files[shot] for shot, kind in kinds.items() if kind == "pair"],
        }
        atomic_write_bytes(self.root / "manifest.yaml", yaml.safe_dump(manifest, sort_keys=False).encode())


def simulate_scene(
    spec: SceneSpec,
    n_pairs: int,
    out_dir: Path,
    seed: int = 0,
    overwrite: bool = False,
    on_step: Callable[[str], None] | None = None,
) -> SimulationSummary:
    """Render and write a whole scene session (see the module docstring for the layout).

    ``on_step(label)`` is called after each written shot (for a progress bar); there are
    ``n_pairs + 4`` steps. Nothing is left behind if anything fails.
    """
    if n_pairs < 1:
        raise ValueError(f"--pairs must be at least 1, got {n_pairs}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise OutputExistsError(f"output folder {out_dir} already exists; pass --overwrite to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    step = on_step or (lambda label: None)
    try:
        twin = RigTwin(spec, seed)
        writer = _SceneWriter(twin, staging, n_pairs)
        for role in ("B", "S"):
            writer.write_frame(twin.lightbox(role), "lightbox", "lightbox", None, None)
            step(f"lightbox {role}")
        shots = [writer.write_shot(twin.whiteboard())]
        step("whiteboard")
        shots.append(writer.write_shot(twin.reference(n_pairs)))
        step("reference")
        for i in range(n_pairs):
            shots.append(writer.write_shot(twin.pair(i, n_pairs)))
            step(f"pair {i}")
        writer.write_truth(shots, seed)
        writer.write_manifest(seed)
        if out_dir.exists():
            trash = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
            out_dir.rename(trash)
            staging.rename(out_dir)
            shutil.rmtree(trash)
        else:
            staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    pairs = [s for s in shots if s["kind"] == "pair"]
    return SimulationSummary(
        out_dir=out_dir,
        scene=spec.name,
        seed=seed,
        short_exposure_s=twin.t_short,
        long_exposure_s=twin.t_long,
        nd_transmittance=spec.exposure.nd_transmittance,
        blur_px_b=spec.blur_px(twin.t_long),
        blur_px_s=spec.blur_px(twin.t_short),
        rows=pairs,
        sharp_timing=twin.sharp_timing,
        sharp_delay_s=twin.sharp_delay_s,
    )
