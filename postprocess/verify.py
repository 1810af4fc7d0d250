"""``reloblur verify-pipeline``: a twin scene through the whole pipeline, each stage against the truth.

The digital twin (:mod:`hardware_sim`) knows what every stage should find: the cameras' colour
casts, β, the inter-camera flow, the blur masks. :func:`verify_pipeline` simulates a scene
(:func:`hardware_sim.scene_writer.simulate_scene`), imports it into a fresh SQLite database
(:func:`acquisition.raw_import.import_scene`), processes it (:func:`postprocess.pipeline.process_scene`)
and measures, per stage, the error against the truth with the issue's targets:

| stage | measure | target |
| --- | --- | --- |
| calibration | colour-cast spread of each corrected lightbox | ≤ 0.5 % |
| calibration | fitted α against the true α (both scaled to 1 at the centre), max over the frame | (reported) |
| photometric | β against the true β, worst channel | ≤ 0.3 % |
| ISP | Menon on the reference S frame against colour-demosaicing, max abs | ≤ 1e-6 |
| alignment | flow end-point error against the true flow (16 px border left out) | ≤ 0.1 px |
| alignment | aligned reference B against S, PSNR (16 px border left out) | ≥ 40 dB noise-free |
| masks | LBFMG mask IoU against the true mask, worst pair | ≥ 0.8 |

The cast spread is measured on the lightbox's patch means, so it includes their shot noise:
below about 640×428 px (patches under 50×50 px) the noise alone approaches 0.5 %.

``noise_free`` renders with a 10⁹ e⁻ full well, no read noise and 16-bit samples, so the
alignment PSNR measures the alignment and not the sensor noise (with noise the PSNR is
bounded by the noise and is reported without a target).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import select

from core import migrate, polynomial
from core.db import make_engine, session_factory
from core.filestore import read_mask_png
from core.models import Calibration, CameraRecord, Capture, CaptureKind, Product, Scene
from postprocess.flow import end_point_error
from postprocess.isp import demosaic_menon, normalise_raw, run_isp
from postprocess.masks import iou
from postprocess.params import PipelineParams
from postprocess.pipeline import ROLES, load_frame, process_scene
from postprocess.warp import warp

BORDER_PX = 16


@dataclass
class Check:
    """One measured error: ``passed`` is None when there is no target."""

    stage: str
    measure: str
    value: float
    unit: str
    target: str
    passed: bool | None


@dataclass
class VerifyReport:
    scene: str
    checks: list[Check] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures and all(c.passed is not False for c in self.checks)

    def add(self, stage: str, measure: str, value: float, unit: str, target: str = "",
            ok: bool | None = None) -> None:
        self.checks.append(Check(stage, measure, float(value), unit, target, ok))

    def table(self) -> str:
        """A plain-text table of the checks."""
        lines = [f"{'stage':<12} {'measure':<52} {'value':>12}  {'target':<10} result"]
        for c in self.checks:
            result = {True: "ok", False: "FAIL", None: "-"}[c.passed]
            lines.append(f"{c.stage:<12} {c.measure:<52} {c.value:>10.4g} {c.unit:<2}"
                         f" {c.target:<10} {result}")
        for f in self.failures:
            lines.append(f"FAILED UNIT {f['unit']}: {f['error']}: {f['message']}")
        return "\n".join(lines)


def _interior(a: np.ndarray) -> np.ndarray:
    return a[BORDER_PX:-BORDER_PX, BORDER_PX:-BORDER_PX]


def _psnr(image: np.ndarray, reference: np.ndarray) -> float:
    err = np.clip(_interior(image), 0, 1) - np.clip(_interior(reference), 0, 1)
    return float(10 * np.log10(1.0 / max(float(np.mean(err**2)), 1e-20)))


def _relative_alpha_error(fitted: np.ndarray, truth: np.ndarray, height: int, width: int) -> float:
    a = polynomial.evaluate_grid(fitted, height, width).astype(np.float64)
    t = polynomial.evaluate_grid(truth, height, width).astype(np.float64)
    cy, cx = height // 2, width // 2
    a /= a[:, cy, cx][:, None, None]
    t /= t[:, cy, cx][:, None, None]
    return float(np.max(np.abs(a / t - 1.0)))


def verify_pipeline(
    preset: str = "car",
    width: int = 640,
    height: int = 428,
    pairs: int = 4,
    seed: int = 0,
    noise_free: bool = False,
    params: PipelineParams | None = None,
    workdir: Path | str | None = None,
    on_step: Callable[[str], None] | None = None,
) -> VerifyReport:
    """Simulate, import and process one twin scene; return each stage's error (see module doc).

    workdir: where the simulated scene, the database and the products go (default a temporary
    folder, removed afterwards). on_step(label): called after each phase (4 in all).
    """
    from acquisition.raw_import import import_scene
    from hardware_sim.scene_writer import simulate_scene
    from hardware_sim.spec import load_preset, parse_scene, with_sensor_size

    step = on_step or (lambda label: None)
    spec = with_sensor_size(load_preset(preset), width, height)
    if noise_free:
        data = spec.model_dump(mode="json")
        data["sensor"].update(full_well_e=1e9, read_noise_e=0.0, bits=16)
        spec = parse_scene(data)
    with tempfile.TemporaryDirectory(prefix="reloblur-verify-") as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        sim_dir = root / "simulated"
        simulate_scene(spec, pairs, sim_dir, seed=seed, overwrite=True)
        step("simulate")
        url = f"sqlite:///{root / 'verify.sqlite'}"
        migrate.upgrade(url)
        engine = make_engine(url)
        try:
            data_dir = root / "data"
            summary = import_scene(sim_dir, None, engine, data_dir)
            step("import")
            params = params or PipelineParams()
            outcome = process_scene(engine, data_dir, summary.scene, params)
            step("process")
            report = VerifyReport(summary.scene, failures=outcome.failures)
            _compare(report, engine, data_dir, sim_dir, outcome, params, noise_free)
            step("compare")
        finally:
            engine.dispose()
    return report


def _compare(report: VerifyReport, engine, data_dir: Path, sim_dir: Path, outcome, params, noise_free) -> None:
    truth = json.loads((sim_dir / "truth" / "truth.json").read_text())
    sessions = session_factory(engine)
    with sessions() as session:
        scene = session.scalar(select(Scene).where(Scene.name == report.scene))
        cameras = {c.role.value: c for c in scene.rig.cameras}
        for role in ROLES:
            row = session.scalar(select(Calibration).where(Calibration.camera_id == cameras[role].id)
                                 .order_by(Calibration.id.desc()).limit(1))
            if row is None:
                continue
            report.add("calibration", f"camera {role}: corrected lightbox cast spread", 100 * row.cast_spread, "%",
                       "≤ 0.5 %", row.cast_spread <= 0.005)
            content = row.content
            report.add("calibration", f"camera {role}: fitted α vs true α, max relative",
                       100 * _relative_alpha_error(np.array(content["coefficients"]),
                                                   np.array(truth["cameras"][role]["alpha_coefficients"]),
                                                   content["height"], content["width"]), "%")
        if "scene_colour" not in outcome.info:
            return
        colour = outcome.info["scene_colour"]
        beta_error = np.max(np.abs(np.array(colour["beta"]) / np.array(truth["beta"]) - 1.0))
        report.add("photometric", "β vs true β, worst channel", 100 * beta_error, "%", "≤ 0.3 %", beta_error <= 0.003)
        flow_row = session.scalar(select(Product).where(Product.params_hash == colour["flow_hash"]))
        flow = np.load(data_dir / flow_row.path)
        true_flow = np.load(sim_dir / "truth" / "flow_b_from_s.npy")
        epe = end_point_error(_interior(flow), _interior(true_flow))
        report.add("alignment", f"flow ({params.alignment.flow_method}) end-point error", epe, "px", "≤ 0.1 px",
                   epe <= 0.1)
        reference = session.scalar(select(Capture).where(Capture.scene_id == scene.id,
                                                         Capture.kind == CaptureKind.REFERENCE))
        frames = {f.role.value: f for f in reference.frames}
        session.expunge_all()
    loaded = {r: load_frame(data_dir, frames[r]) for r in ROLES}
    cfa, meta = loaded["S"]
    with warnings.catch_warnings():  # colour-science warns that matplotlib is absent
        warnings.simplefilter("ignore")
        from colour_demosaicing import demosaicing_CFA_Bayer_Menon2007
    normalised = normalise_raw(cfa, meta.black_level, meta.white_level).astype(np.float64)
    menon_diff = float(np.max(np.abs(demosaic_menon(normalised, meta.cfa_pattern)
                                      - demosaicing_CFA_Bayer_Menon2007(normalised, meta.cfa_pattern))))
    report.add("isp", "Menon vs colour-demosaicing, max abs", menon_diff, "", "≤ 1e-6", menon_diff <= 1e-6)
    calibrations = _calibrations(engine, outcome)
    wb, ccm, beta = (np.array(colour[k]) for k in ("wb_gains", "ccm", "beta"))
    s_lin = run_isp(*loaded["S"], calibrations["S"], wb, ccm)
    b_lin = warp(run_isp(*loaded["B"], calibrations["B"], wb, ccm, beta=beta), flow, params.alignment.warp_method)
    psnr = _psnr(b_lin, s_lin)
    if noise_free:
        report.add("alignment", "aligned reference B vs S, PSNR (noise-free)", psnr, "dB", "≥ 40 dB", psnr >= 40)
    else:
        report.add("alignment", "aligned reference B vs S, PSNR (with sensor noise)", psnr, "dB")
    ious = []
    with sessions() as session:
        for index, pair in sorted(outcome.pairs.items()):
            if pair.mask is None:
                continue
            mask = read_mask_png(data_dir / session.get(Product, pair.mask).path)
            true_mask = read_mask_png(sim_dir / "truth" / f"pair_{index:04d}_mask.png")
            ious.append(iou(mask, true_mask))
    if ious:
        report.add("masks", f"LBFMG mask IoU vs true mask, worst of {len(ious)}", min(ious), "", "≥ 0.8",
                   min(ious) >= 0.8)
        report.add("masks", "LBFMG mask IoU, mean", float(np.mean(ious)), "")


def _calibrations(engine, outcome):
    from postprocess.calibration import ColourCalibration

    with session_factory(engine)() as session:
        out = {}
        for role, cid in outcome.info["calibrations"].items():
            row = session.scalar(select(Calibration).join(CameraRecord).where(Calibration.calibration_id == cid,
                                                                        CameraRecord.role == role).limit(1))
            out[role] = ColourCalibration.from_dict(row.content)
        return out
