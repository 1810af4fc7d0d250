"""Per-scene post-processing: calibration → colour → β → ISP → alignment → masks.

A scene in the database (captured by :mod:`acquisition.capture` or registered by
:mod:`acquisition.raw_import`) holds a whiteboard pair, a static reference pair and N blurred /
sharp pairs; its rig holds lightbox captures. :func:`process_scene` turns them into aligned
8-bit (or 16-bit) sRGB images and LBFMG blur masks, in the stages of
:mod:`postprocess.stages` (one module each), which :class:`ScenePipeline` runs in order:

1. **calibration** per camera (:mod:`~postprocess.stages.calibrate`): Eq. 3–5 fitted on the rig's newest lightbox frame of that camera
   (:mod:`postprocess.calibration`); a newer lightbox supersedes, older fits stay in the
   ``calibrations`` table.
2. **scene stage** (once per scene, :mod:`~postprocess.stages.scene`): every frame black/white-normalised and colour-corrected
   (α); white balance from the whiteboard pair's S frame (central half of the frame); the
   camera → sRGB matrix from the DNG's ColorMatrix1 (identity when absent); a first β₀ from the
   reference pair's whole-frame CFA means (Eq. 6); the flow S → B on the reference pair (B
   scaled by β₀, both white-balanced and sRGB-encoded) with ``alignment.flow_method``; then
   β from the *aligned* reference pair: B warped onto S, channel means over the pixels whose
   flow stays inside the frame and that are not clipped. The reference pair is static, so
   these are static-region means; whole-frame means on unaligned frames are biased by the
   content that B's pose error moves in and out at the borders (0.2–0.7 % on the twin).
3. **pairs** (the whiteboard pair and every data pair, one unit each;
   :mod:`~postprocess.stages.pairs`): S through the ISP; B
   through the ISP with β, then warped onto S by the scene's flow (``alignment.warp_method``,
   CMTF by default); both sRGB-encoded to ``isp.output_bits`` PNGs.
4. **masks** (:mod:`~postprocess.stages.masks`): MOG2 over the scene's processed pairs (:func:`postprocess.masks.scene_masks`'s
   feeding order), one 0/255 PNG per pair.

Products. Every file is a row of ``products`` with its ``params_hash``
(:func:`postprocess.params.params_hash` of the stage's parameters and its inputs' identities)
and the pipeline version; a product whose hash is already recorded (and whose file exists) is
reused, never recomputed. Files are written atomically before their rows are committed.

Failures. A unit that fails with a named error (a missing or changed RAW, a size mismatch, a
saturated whiteboard…) leaves nothing of itself behind and is recorded in the run's outcome;
the scene's other units still complete. A scene-level failure (no whiteboard or reference
pair, no lightbox, a bad whiteboard) fails the whole scene: no pair can be processed without it.
Each call records a ``processing_runs`` row: parameters at start, outcome at stop.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.db import session_factory
from core.models import (
    CameraRecord,
    Capture,
    CaptureKind,
    CaptureStatus,
    ProcessingRun,
    RunStatus,
    Scene,
    utcnow,
)
from postprocess.calibration import ColourCalibration
from postprocess.params import PIPELINE_VERSION, PipelineParams, canonical_json
from postprocess.stages.calibrate import calibration_for
from postprocess.stages.common import (
    ROLES,
    UNIT_ERRORS,
    CorruptFrameError,
    MissingCalibrationError,
    MissingCaptureError,
    PairResult,
    PipelineError,
    ProductStore,
    SceneNotFoundError,
    SceneOutcome,
    failure,
    unit_label,
)
from postprocess.stages.frames import load_frame
from postprocess.stages.masks import mask_stage
from postprocess.stages.pairs import pair_stage
from postprocess.stages.photometric import BETA_BORDER_PX, CLIP_LEVEL, aligned_beta
from postprocess.stages.scene import scene_stage

__all__ = [
    "BETA_BORDER_PX",
    "CLIP_LEVEL",
    "ROLES",
    "UNIT_ERRORS",
    "CorruptFrameError",
    "MissingCalibrationError",
    "MissingCaptureError",
    "PairResult",
    "PipelineError",
    "SceneNotFoundError",
    "SceneOutcome",
    "ScenePipeline",
    "aligned_beta",
    "latest_complete_run",
    "load_frame",
    "process_scene",
    "scene_names_to_process",
]


class ScenePipeline:
    """Runs the stages on one scene at a time (see the module docstring).

    engine: the database; data_dir: where frame and product paths are relative to; params:
    every stage's parameters; on_unit(label): called after each unit (for a progress bar).
    """

    def __init__(self, engine: Engine, data_dir: Path | str, params: PipelineParams | None = None,
                 on_unit: Callable[[str], None] | None = None) -> None:
        self.engine = engine
        self.sessions = session_factory(engine)
        self.data_dir = Path(data_dir)
        self.params = params or PipelineParams()
        self.on_unit = on_unit or (lambda label: None)

    @property
    def products(self) -> ProductStore:
        """The product rows and files of this pipeline's database and data directory."""
        return ProductStore(self.sessions, self.data_dir)

    def calibration_for(self, camera: CameraRecord) -> tuple[ColourCalibration, bool]:
        """The camera's calibration from its rig's newest lightbox frame: (calibration, made)."""
        return calibration_for(self.products, self.params, camera)

    # ---- a scene ------------------------------------------------------------------------
    def process(self, scene_name: str) -> SceneOutcome:
        """Run every stage on the scene; see the module docstring for what is recorded."""
        with self.sessions() as session:
            scene = session.scalar(select(Scene).where(Scene.name == scene_name))
            if scene is None:
                raise SceneNotFoundError(f"no scene named {scene_name!r} in the database")
            run = ProcessingRun(scene_id=scene.id, params_hash=self.params.hash(),
                                pipeline_version=PIPELINE_VERSION,
                                params={"params": self.params.model_dump(mode="json"),
                                        "pipeline_version": PIPELINE_VERSION})
            session.add(run)
            session.commit()
            outcome = SceneOutcome(scene_name, run.id)
        try:
            self._process(scene_name, outcome)
            outcome.status = RunStatus.COMPLETE
        except UNIT_ERRORS as exc:
            outcome.status = RunStatus.FAILED
            outcome.failures.append(failure("scene", exc))
        except KeyboardInterrupt:
            outcome.status = RunStatus.INTERRUPTED
            raise
        except BaseException as exc:
            outcome.status = RunStatus.FAILED
            outcome.failures.append(failure("scene", exc))
            raise
        finally:
            with self.sessions() as session:
                run = session.get(ProcessingRun, outcome.run_id)
                run.status = outcome.status
                run.outcome = json.loads(canonical_json(outcome.to_json()))
                run.error = "; ".join(f"{f['unit']}: {f['error']}: {f['message']}" for f in outcome.failures) or None
                run.finished_at = utcnow()
                session.commit()
        return outcome

    def _process(self, scene_name: str, outcome: SceneOutcome) -> None:
        with self.sessions() as session:
            scene = session.scalar(select(Scene).where(Scene.name == scene_name))
            cameras = {c.role.value: c for c in scene.rig.cameras}
            captures = session.scalars(
                select(Capture).where(Capture.scene_id == scene.id, Capture.status == CaptureStatus.COMPLETE)
                .order_by(Capture.kind, Capture.trigger_index)).all()
            for capture in captures:
                _ = capture.frames  # load while the session is open
            session.expunge_all()
        by_kind: dict[str, list[Capture]] = {}
        for capture in captures:
            if {f.role.value for f in capture.frames} == set(ROLES):
                by_kind.setdefault(capture.kind.value, []).append(capture)
        missing = [k for k in ("whiteboard", "reference") if k not in by_kind]
        if missing:
            raise MissingCaptureError(
                f"scene {scene_name!r} has no complete {' or '.join(missing)} pair: capture it "
                "(`reloblur capture --resume`) or add it to the import manifest")
        if set(cameras) != set(ROLES):
            raise MissingCalibrationError(f"the rig of scene {scene_name!r} lacks a camera B or S")
        calibrations = {}
        for role in ROLES:
            calibrations[role], made = self.calibration_for(cameras[role])
            (outcome.made if made else outcome.reused)["calibration"] += 1
        outcome.info["calibrations"] = {r: calibrations[r].calibration_id for r in ROLES}
        products = self.products
        ctx = scene_stage(products, self.params, scene,
                          {k: by_kind[k][-1] for k in ("whiteboard", "reference")}, calibrations, outcome)
        self.on_unit("scene")
        reference_sharp = next(f for f in by_kind["reference"][-1].frames if f.role.value == "S")
        done: list[PairResult] = []
        for capture in by_kind["whiteboard"][-1:] + by_kind.get("pair", []):
            label = unit_label(capture.kind, capture.trigger_index)
            try:
                result = pair_stage(products, self.params, ctx, capture, reference_sharp, outcome)
                if capture.kind == CaptureKind.PAIR:
                    outcome.pairs[capture.trigger_index] = result
                    done.append(result)
            except UNIT_ERRORS as exc:
                outcome.failures.append(failure(label, exc))
            self.on_unit(label)
        try:
            mask_stage(products, self.params, ctx, done, outcome, self.on_unit)
        except UNIT_ERRORS as exc:
            for p in done:
                p.mask = None
            outcome.failures.append(failure("masks", exc))


def scene_names_to_process(engine: Engine) -> list[str]:
    """Every scene with at least one complete pair capture, by name."""
    with session_factory(engine)() as session:
        return list(session.scalars(
            select(Scene.name).join(Capture).where(Capture.kind == CaptureKind.PAIR,
                                                   Capture.status == CaptureStatus.COMPLETE)
            .distinct().order_by(Scene.name)).all())


def latest_complete_run(session: Session, scene_id: int, params: PipelineParams) -> ProcessingRun | None:
    """The scene's newest complete processing run with these parameters and pipeline version."""
    return session.scalar(
        select(ProcessingRun).where(ProcessingRun.scene_id == scene_id,
                                    ProcessingRun.status == RunStatus.COMPLETE,
                                    ProcessingRun.params_hash == params.hash(),
                                    ProcessingRun.pipeline_version == PIPELINE_VERSION)
        .order_by(ProcessingRun.id.desc()).limit(1))


def process_scene(engine: Engine, data_dir: Path | str, scene_name: str,
                  params: PipelineParams | None = None,
                  on_unit: Callable[[str], None] | None = None) -> SceneOutcome:
    """Process one scene (see :class:`ScenePipeline`)."""
    return ScenePipeline(engine, data_dir, params, on_unit).process(scene_name)
