"""Per-scene post-processing: calibration → colour → β → ISP → alignment → masks.

A scene in the database (captured by :mod:`acquisition.capture` or registered by
:mod:`postprocess.importer`) holds a whiteboard pair, a static reference pair and N blurred /
sharp pairs; its rig holds lightbox captures. :func:`process_scene` turns them into aligned
8-bit (or 16-bit) sRGB images and LBFMG blur masks:

1. **calibration** per camera: Eq. 3–5 fitted on the rig's newest lightbox frame of that camera
   (:mod:`postprocess.calibration`); a newer lightbox supersedes, older fits stay in the
   ``calibrations`` table.
2. **scene stage** (once per scene): every frame black/white-normalised and colour-corrected
   (α); white balance from the whiteboard pair's S frame (central half of the frame); the
   camera → sRGB matrix from the DNG's ColorMatrix1 (identity when absent); a first β₀ from the
   reference pair's whole-frame CFA means (Eq. 6); the flow S → B on the reference pair (B
   scaled by β₀, both white-balanced and sRGB-encoded) with ``alignment.flow_method``; then
   β from the *aligned* reference pair: B warped onto S, channel means over the pixels whose
   flow stays inside the frame and that are not clipped. The reference pair is static, so
   these are static-region means; whole-frame means on unaligned frames are biased by the
   content that B's pose error moves in and out at the borders (0.2–0.7 % on the twin).
3. **pairs** (the whiteboard pair and every data pair, one unit each): S through the ISP; B
   through the ISP with β, then warped onto S by the scene's flow (``alignment.warp_method``,
   CMTF by default); both sRGB-encoded to ``isp.output_bits`` PNGs.
4. **masks**: MOG2 over the scene's processed pairs (:func:`postprocess.masks.scene_masks`'s
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
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import session_factory
from core.dng import RawMetadata
from core.filestore import (
    FileStoreError,
    atomic_path,
    atomic_write_bytes,
    read_png,
    sha256_file,
    write_mask_png,
    write_png,
)
from core.models import (
    Calibration,
    Camera,
    Capture,
    CaptureKind,
    CaptureStatus,
    Frame,
    ProcessingRun,
    Product,
    ProductKind,
    RunStatus,
    Scene,
    utcnow,
)
from core.rawio import read_raw
from postprocess.calibration import (
    CalibrationError,
    ColourCalibration,
    FrameSizeMismatchError,
    cast_spread,
    correct_colour,
    fit_colour_calibration,
)
from postprocess.flow import FlowInputError, compute_flow
from postprocess.isp import (
    camera_to_srgb_matrix,
    demosaic_menon,
    encode_srgb,
    normalise_raw,
    run_isp,
    srgb_encode,
    white_balance_gains,
)
from postprocess.masks import MaskInputError, feed_order, lbfmg_mask
from postprocess.params import PIPELINE_VERSION, PipelineParams, canonical_json, params_hash
from postprocess.photometric import estimate_beta
from postprocess.warp import WarpInputError, warp

ROLES = ("B", "S")
BETA_BORDER_PX = 8  # pixels at the frame edge left out of the aligned β means
CLIP_LEVEL = 0.98  # a pixel this close to the white level is left out of the β means


class PipelineError(ValueError):
    """Base of the pipeline's own named errors."""


class SceneNotFoundError(PipelineError):
    """No scene of that name in the database."""


class MissingCaptureError(PipelineError):
    """The scene lacks a capture the pipeline needs (whiteboard or reference pair)."""


class MissingCalibrationError(PipelineError):
    """A camera has no lightbox frame to calibrate from."""


class CorruptFrameError(PipelineError):
    """A RAW file is missing or differs from the sha256 recorded when it was stored."""


# What a unit may fail with and still let the scene's other units run: every named error of
# the stages. Anything else (a bug, a full disk) stops the run and is recorded as its error.
UNIT_ERRORS: tuple[type[BaseException], ...] = (
    PipelineError, CalibrationError, FileStoreError, FlowInputError, WarpInputError, MaskInputError,
)


@dataclass
class PairResult:
    """The products of one pair (ids of ``products`` rows)."""

    capture_id: int
    kind: str
    trigger_index: int
    blurred: int
    sharp: int
    blurred_hash: str
    sharp_hash: str
    mask: int | None = None


@dataclass
class SceneOutcome:
    """What :func:`process_scene` did: products made and reused per kind, failed units."""

    scene: str
    run_id: int
    status: RunStatus = RunStatus.RUNNING
    made: Counter = field(default_factory=Counter)
    reused: Counter = field(default_factory=Counter)
    failures: list[dict[str, str]] = field(default_factory=list)
    pairs: dict[int, PairResult] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "made": dict(self.made),
            "reused": dict(self.reused),
            "failures": self.failures,
            "pairs": {str(i): vars(p) for i, p in sorted(self.pairs.items())},
            "info": self.info,
        }


@dataclass
class _SceneContext:
    """What every pair of a scene needs from the scene stage."""

    scene_id: int
    name: str
    shape: tuple[int, int]
    calibrations: dict[str, ColourCalibration]
    wb_gains: np.ndarray
    ccm: np.ndarray
    beta: np.ndarray
    flow: np.ndarray
    colour_hash: str
    reference_sharp: tuple[np.ndarray, RawMetadata] | None = None


# --------------------------------------------------------------------------- small helpers


def _unit_label(kind: CaptureKind | str, trigger_index: int) -> str:
    return f"{CaptureKind(kind).value}_{trigger_index:04d}"


def _product_path(scene: str, kind: ProductKind, label: str, h: str, ext: str) -> str:
    return f"processed/{scene}/{kind.value}/{label}_{h[:16]}.{ext}"


def load_frame(data_dir: Path, frame: Frame) -> tuple[np.ndarray, RawMetadata]:
    """A stored RAW frame as (H, W) uint16 CFA and metadata, after checking its sha256."""
    path = data_dir / frame.path
    if not path.is_file():
        raise CorruptFrameError(f"RAW frame {frame.path} is missing from the data directory {data_dir}")
    digest = sha256_file(path)
    if digest != frame.sha256:
        raise CorruptFrameError(
            f"RAW frame {frame.path} has changed since it was stored (sha256 {digest[:12]}…, "
            f"recorded {frame.sha256[:12]}…): restore the original file"
        )
    return read_raw(path, default_exposure_s=frame.exposure_s)


def _camera_rgb(cfa: np.ndarray, meta: RawMetadata, calibration: ColourCalibration) -> np.ndarray:
    """Normalised, colour-corrected, demosaiced camera RGB (H, W, 3) float32."""
    corrected = correct_colour(normalise_raw(cfa, meta.black_level, meta.white_level), calibration,
                               meta.cfa_pattern)
    return demosaic_menon(corrected, meta.cfa_pattern, dtype=np.float32)


def _to_srgb_linear(camera_rgb: np.ndarray, wb: np.ndarray, ccm: np.ndarray) -> np.ndarray:
    combined = (ccm @ np.diag(wb)).astype(np.float32)
    h, w = camera_rgb.shape[:2]
    return (camera_rgb.reshape(-1, 3) @ combined.T).reshape(h, w, 3)


def _valid_flow_mask(flow: np.ndarray, border: int = BETA_BORDER_PX) -> np.ndarray:
    """(H, W) bool: pixels whose flow target lies at least ``border`` px inside the frame."""
    h, w = flow.shape[:2]
    xs = np.arange(w, dtype=np.float32)[None, :] + flow[..., 0]
    ys = np.arange(h, dtype=np.float32)[:, None] + flow[..., 1]
    valid = (xs >= border) & (xs <= w - 1 - border) & (ys >= border) & (ys <= h - 1 - border)
    valid[:border] = valid[-border:] = False
    valid[:, :border] = valid[:, -border:] = False
    return valid


def aligned_beta(sharp_rgb: np.ndarray, blurred_rgb: np.ndarray, flow: np.ndarray,
                 exclude: np.ndarray | None = None) -> np.ndarray:
    """β (3,) from camera-RGB frames after warping B onto S (bilinear: means need no CMTF).

    sharp_rgb, blurred_rgb: (H, W, 3) colour-corrected camera RGB on the white range; flow:
    the S → B flow. Means over pixels whose flow stays inside the frame, not clipped in either
    frame, and not in ``exclude`` ((H, W) bool, True = leave out).
    """
    aligned = warp(blurred_rgb, flow, "linear")
    keep = _valid_flow_mask(flow)
    keep &= np.all(sharp_rgb < CLIP_LEVEL, axis=2) & np.all(aligned < CLIP_LEVEL, axis=2)
    if exclude is not None:
        keep &= ~exclude
    if np.count_nonzero(keep) < 64:
        raise PipelineError("fewer than 64 usable pixels for β: the pair is clipped or the flow leaves the frame")
    s = sharp_rgb[keep].mean(axis=0, dtype=np.float64)
    b = aligned[keep].mean(axis=0, dtype=np.float64)
    if np.any(b <= 0) or np.any(s <= 0):
        raise PipelineError(f"channel means must be positive for β; sharp {s}, blurred {b}")
    return s / b


# --------------------------------------------------------------------------- the pipeline


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

    # ---- products --------------------------------------------------------------------
    def _find(self, session: Session, kind: ProductKind, h: str) -> Product | None:
        """The recorded product of that hash whose file is in place (a row whose file is gone
        is removed, so the product is made anew)."""
        row = session.scalar(select(Product).where(Product.kind == kind, Product.params_hash == h))
        if row is not None and not (self.data_dir / row.path).is_file():
            session.delete(row)
            session.commit()
            return None
        return row

    @contextmanager
    def _unit_files(self) -> Iterator[list[Path]]:
        """Collects the files a unit writes; removes them all if the unit fails."""
        written: list[Path] = []
        try:
            yield written
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise

    def _commit_products(self, rows: list[Product]) -> list[int]:
        """Insert product rows in one transaction; a row another process inserted meanwhile
        (same kind and hash, hence the same file) is taken as it is."""
        with self.sessions() as session:
            session.add_all(rows)
            try:
                session.commit()
                return [r.id for r in rows]
            except IntegrityError:
                session.rollback()
        with self.sessions() as session:
            return [session.scalar(select(Product.id).where(Product.kind == r.kind,
                                                             Product.params_hash == r.params_hash))
                    for r in rows]

    # ---- calibration ----------------------------------------------------------------
    def calibration_for(self, camera: Camera) -> tuple[ColourCalibration, bool]:
        """The camera's calibration from its rig's newest lightbox frame: (calibration, made)."""
        p = self.params.calibration
        with self.sessions() as session:
            frame = session.scalar(
                select(Frame).join(Capture)
                .where(Frame.camera_id == camera.id, Capture.kind == CaptureKind.LIGHTBOX,
                       Capture.status == CaptureStatus.COMPLETE)
                .order_by(Capture.started_at.desc(), Capture.id.desc()).limit(1)
            )
            if frame is None:
                raise MissingCalibrationError(
                    f"camera {camera.role} ({camera.serial}) has no lightbox frame to calibrate from: "
                    "capture one (`reloblur capture-lightbox`) or import one (`reloblur import`)"
                )
            h = params_hash({"stage": "calibration", "camera": camera.id, "lightbox": frame.sha256,
                             "calibration": self.params.section("calibration")})
            row = session.scalar(select(Calibration).where(Calibration.camera_id == camera.id,
                                                           Calibration.params_hash == h))
            if row is not None:
                return ColourCalibration.from_dict(row.content), False
            cfa, meta = load_frame(self.data_dir, frame)
            calibration = fit_colour_calibration(cfa, meta.cfa_pattern, meta.black_level, meta.white_level,
                                                 patches=p.patches, refinements=p.refinements)
            corrected = correct_colour(normalise_raw(cfa, meta.black_level, meta.white_level),
                                       calibration, meta.cfa_pattern)
            spread = cast_spread(corrected, meta.cfa_pattern, calibration.patches, calibration.central)
            session.add(Calibration(
                camera_id=camera.id, lightbox_frame_id=frame.id, calibration_id=calibration.calibration_id,
                params_hash=h, pipeline_version=PIPELINE_VERSION, content=calibration.to_dict(),
                cast_spread=spread, residual_rms_max=float(np.max(calibration.residual_rms)),
            ))
            try:
                session.commit()
            except IntegrityError:  # fitted by another process meanwhile: the same result
                session.rollback()
            return calibration, True

    # ---- scene stage ----------------------------------------------------------------
    def _scene_stage(self, scene: Scene, captures: dict[str, Capture],
                     calibrations: dict[str, ColourCalibration], outcome: SceneOutcome) -> _SceneContext:
        frames = {kind: {f.role.value: f for f in captures[kind].frames} for kind in ("whiteboard", "reference")}
        inputs = {
            "scene": scene.id,
            "whiteboard": [frames["whiteboard"][r].sha256 for r in ROLES],
            "reference": [frames["reference"][r].sha256 for r in ROLES],
            "calibrations": {r: calibrations[r].calibration_id for r in ROLES},
            "isp": self.params.section("isp")["colour_matrix"],
        }
        flow_hash = params_hash({"stage": "flow", **inputs, "flow_method": self.params.alignment.flow_method})
        colour_hash = params_hash({"stage": "scene_colour", "flow": flow_hash,
                                   "photometric": self.params.section("photometric")})
        with self.sessions() as session:
            flow_row = self._find(session, ProductKind.FLOW, flow_hash)
            colour_row = self._find(session, ProductKind.SCENE_COLOUR, colour_hash)
            if flow_row is not None and colour_row is not None:
                flow = np.load(self.data_dir / flow_row.path)
                colour = json.loads((self.data_dir / colour_row.path).read_text())
                outcome.reused.update([ProductKind.FLOW.value, ProductKind.SCENE_COLOUR.value])
                outcome.info["scene_colour"] = colour
                return _SceneContext(
                    scene.id, scene.name, flow.shape[:2], calibrations, np.array(colour["wb_gains"]),
                    np.array(colour["ccm"]), np.array(colour["beta"]), flow, colour_hash,
                )

        loaded = {kind: {r: load_frame(self.data_dir, frames[kind][r]) for r in ROLES} for kind in frames}
        shape = loaded["reference"]["S"][0].shape
        for kind in loaded:
            for r in ROLES:
                cfa, meta = loaded[kind][r]
                if cfa.shape != shape:
                    raise FrameSizeMismatchError(
                        f"the {kind} frame {r} is {cfa.shape[1]}×{cfa.shape[0]}; the reference S frame is "
                        f"{shape[1]}×{shape[0]}: every frame of a scene must have the same size")
        rgb = {kind: {r: _camera_rgb(*loaded[kind][r], calibrations[r]) for r in ROLES} for kind in loaded}
        wb = white_balance_gains(rgb["whiteboard"]["S"])
        matrix = loaded["reference"]["S"][1].color_matrix_1
        if self.params.isp.colour_matrix == "dng" and matrix is not None:
            ccm = camera_to_srgb_matrix(np.array(matrix))
        else:
            ccm = np.eye(3)
        pattern = loaded["reference"]["S"][1].cfa_pattern
        ref_cfa = {r: correct_colour(normalise_raw(loaded["reference"][r][0], loaded["reference"][r][1].black_level,
                                                   loaded["reference"][r][1].white_level),
                                     calibrations[r], pattern) for r in ROLES}
        beta0 = estimate_beta(ref_cfa["S"], ref_cfa["B"], pattern)
        display_s = srgb_encode(_to_srgb_linear(rgb["reference"]["S"], wb, ccm))
        display_b = srgb_encode(_to_srgb_linear(rgb["reference"]["B"] * beta0.astype(np.float32), wb, ccm))
        flow = compute_flow(display_s, display_b, self.params.alignment.flow_method)
        beta = aligned_beta(rgb["reference"]["S"], rgb["reference"]["B"], flow)
        magnitude = np.hypot(flow[..., 0], flow[..., 1])
        colour = {
            "wb_gains": wb.tolist(), "ccm": ccm.tolist(), "beta": beta.tolist(), "beta_whole_frame": beta0.tolist(),
            "beta_source": self.params.photometric.source,
            "calibrations": inputs["calibrations"], "flow_hash": flow_hash,
            "flow_mean_px": float(magnitude.mean()), "flow_max_px": float(magnitude.max()),
        }
        label = scene.name
        flow_rel = _product_path(scene.name, ProductKind.FLOW, label, flow_hash, "npy")
        colour_rel = _product_path(scene.name, ProductKind.SCENE_COLOUR, label, colour_hash, "json")
        with self._unit_files() as written:
            with atomic_path(self.data_dir / flow_rel, keep_suffix=True) as tmp:
                np.save(tmp, flow)
            written.append(self.data_dir / flow_rel)
            colour_sha = atomic_write_bytes(self.data_dir / colour_rel, json.dumps(colour, indent=1).encode())
            written.append(self.data_dir / colour_rel)
            self._commit_products([
                Product(scene_id=scene.id, kind=ProductKind.FLOW, params_hash=flow_hash,
                        pipeline_version=PIPELINE_VERSION, path=flow_rel, sha256=sha256_file(self.data_dir / flow_rel),
                        params={**inputs, "flow_method": self.params.alignment.flow_method},
                        info={"mean_px": colour["flow_mean_px"], "max_px": colour["flow_max_px"]}),
                Product(scene_id=scene.id, kind=ProductKind.SCENE_COLOUR, params_hash=colour_hash,
                        pipeline_version=PIPELINE_VERSION, path=colour_rel, sha256=colour_sha,
                        params={"flow": flow_hash, "photometric": self.params.section("photometric")},
                        info={"beta": colour["beta"], "wb_gains": colour["wb_gains"]}),
            ])
        outcome.made.update([ProductKind.FLOW.value, ProductKind.SCENE_COLOUR.value])
        outcome.info["scene_colour"] = colour
        ctx = _SceneContext(scene.id, scene.name, shape, calibrations, wb, ccm, beta, flow, colour_hash)
        ctx.reference_sharp = loaded["reference"]["S"]
        return ctx

    # ---- pairs ------------------------------------------------------------------------
    def _pair_beta(self, ctx: _SceneContext, b: tuple[np.ndarray, RawMetadata],
                   s: tuple[np.ndarray, RawMetadata], reference_sharp: Frame) -> np.ndarray:
        """β of one pair from its own aligned means (``photometric.source == "pair"``)."""
        sharp = _camera_rgb(*s, ctx.calibrations["S"])
        exclude = None
        if self.params.photometric.static_only:
            if ctx.reference_sharp is None:
                ctx.reference_sharp = load_frame(self.data_dir, reference_sharp)
            ref = _camera_rgb(*ctx.reference_sharp, ctx.calibrations["S"])
            change = np.abs(sharp - ref).max(axis=2) > self.params.photometric.change_threshold * (
                ref.mean(axis=2) + 1e-3)
            exclude = cv2.dilate(change.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
        return aligned_beta(sharp, _camera_rgb(*b, ctx.calibrations["B"]), ctx.flow, exclude)

    def _pair_stage(self, ctx: _SceneContext, capture: Capture, reference_sharp: Frame,
                    outcome: SceneOutcome) -> PairResult:
        frames = {f.role.value: f for f in capture.frames}
        label = _unit_label(capture.kind, capture.trigger_index)
        isp = self.params.section("isp")
        base = {"scene": ctx.colour_hash, "capture": capture.id, "isp": isp}
        sharp_hash = params_hash({"stage": "sharp", **base, "S": frames["S"].sha256})
        blurred_hash = params_hash({
            "stage": "blurred", **base, "B": frames["B"].sha256, "warp": self.params.alignment.warp_method,
            **({"S": frames["S"].sha256} if self.params.photometric.source == "pair" else {}),
        })
        with self.sessions() as session:
            found = {k: self._find(session, k, h) for k, h in
                     ((ProductKind.BLURRED, blurred_hash), (ProductKind.SHARP, sharp_hash))}
            ids = {k: (row.id if row is not None else None) for k, row in found.items()}
        missing = [k for k, v in ids.items() if v is None]
        for k in ids:
            if k not in missing:
                outcome.reused[k.value] += 1
        if missing:
            b = load_frame(self.data_dir, frames["B"])
            s = load_frame(self.data_dir, frames["S"])
            for role, (cfa, _) in (("B", b), ("S", s)):
                if cfa.shape != ctx.shape:
                    raise FrameSizeMismatchError(
                        f"{label}: frame {role} is {cfa.shape[1]}×{cfa.shape[0]}, the scene's frames are "
                        f"{ctx.shape[1]}×{ctx.shape[0]}")
            bits = self.params.isp.output_bits
            rows, rels = [], {}
            with self._unit_files() as written:
                if ProductKind.SHARP in missing:
                    rel = _product_path(ctx.name, ProductKind.SHARP, label, sharp_hash, "png")
                    linear = run_isp(*s, ctx.calibrations["S"], ctx.wb_gains, ctx.ccm)
                    sha = write_png(self.data_dir / rel, encode_srgb(linear, bits))
                    written.append(self.data_dir / rel)
                    rows.append(Product(scene_id=ctx.scene_id, capture_id=capture.id, kind=ProductKind.SHARP,
                                        params_hash=sharp_hash, pipeline_version=PIPELINE_VERSION, path=rel,
                                        sha256=sha, params=base, info={"bits": bits}))
                    rels[ProductKind.SHARP] = rel
                if ProductKind.BLURRED in missing:
                    beta = ctx.beta
                    if self.params.photometric.source == "pair":
                        beta = self._pair_beta(ctx, b, s, reference_sharp)
                    rel = _product_path(ctx.name, ProductKind.BLURRED, label, blurred_hash, "png")
                    linear = run_isp(*b, ctx.calibrations["B"], ctx.wb_gains, ctx.ccm, beta=beta)
                    aligned = warp(linear, ctx.flow, self.params.alignment.warp_method)
                    sha = write_png(self.data_dir / rel, encode_srgb(aligned, bits))
                    written.append(self.data_dir / rel)
                    rows.append(Product(scene_id=ctx.scene_id, capture_id=capture.id, kind=ProductKind.BLURRED,
                                        params_hash=blurred_hash, pipeline_version=PIPELINE_VERSION, path=rel,
                                        sha256=sha, params={**base, "warp": self.params.alignment.warp_method},
                                        info={"bits": bits, "beta": [float(v) for v in beta]}))
                made_ids = self._commit_products(rows)
            for row, pid in zip(rows, made_ids, strict=True):
                ids[row.kind] = pid
                outcome.made[row.kind.value] += 1
        return PairResult(capture.id, capture.kind.value, capture.trigger_index, ids[ProductKind.BLURRED],
                          ids[ProductKind.SHARP], blurred_hash, sharp_hash)

    # ---- masks -------------------------------------------------------------------------
    def _mask_stage(self, ctx: _SceneContext, pairs: list[PairResult], outcome: SceneOutcome) -> None:
        if not pairs:
            return
        images = [[p.capture_id, p.blurred_hash, p.sharp_hash] for p in pairs]
        section = self.params.section("masks")
        hashes = [params_hash({"stage": "mask", "target": p.capture_id, "images": images, "masks": section})
                  for p in pairs]
        with self.sessions() as session:
            rows = [self._find(session, ProductKind.MASK, h) for h in hashes]
            for p, row in zip(pairs, rows, strict=True):
                if row is not None:
                    p.mask = row.id
                    outcome.reused[ProductKind.MASK.value] += 1
            todo = [i for i, row in enumerate(rows) if row is None]
            if not todo:
                return
            paths = {pid: self.data_dir / path for pid, path in session.execute(
                select(Product.id, Product.path).where(
                    Product.id.in_([p.blurred for p in pairs] + [p.sharp for p in pairs])))}
        blurred = [_as_uint8(read_png(paths[p.blurred])) for p in pairs]
        sharp = [_as_uint8(read_png(paths[p.sharp])) for p in pairs]
        mask_params = self.params.masks.to_mask_params()
        for i in todo:
            p = pairs[i]
            mask = lbfmg_mask(blurred[i], feed_order(i, blurred, sharp), mask_params)
            rel = _product_path(ctx.name, ProductKind.MASK, _unit_label(p.kind, p.trigger_index), hashes[i], "png")
            with self._unit_files() as written:
                sha = write_mask_png(self.data_dir / rel, mask)
                written.append(self.data_dir / rel)
                (p.mask,) = self._commit_products([Product(
                    scene_id=ctx.scene_id, capture_id=p.capture_id, kind=ProductKind.MASK,
                    params_hash=hashes[i], pipeline_version=PIPELINE_VERSION, path=rel, sha256=sha,
                    params={"images": images, "masks": section},
                    info={"blurred_fraction": float(mask.mean())})])
            outcome.made[ProductKind.MASK.value] += 1
            self.on_unit(f"mask {p.trigger_index}")

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
            outcome.failures.append(_failure("scene", exc))
        except KeyboardInterrupt:
            outcome.status = RunStatus.INTERRUPTED
            raise
        except BaseException as exc:
            outcome.status = RunStatus.FAILED
            outcome.failures.append(_failure("scene", exc))
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
        ctx = self._scene_stage(scene, {k: by_kind[k][-1] for k in ("whiteboard", "reference")},
                                calibrations, outcome)
        self.on_unit("scene")
        reference_sharp = next(f for f in by_kind["reference"][-1].frames if f.role.value == "S")
        done: list[PairResult] = []
        for capture in by_kind["whiteboard"][-1:] + by_kind.get("pair", []):
            label = _unit_label(capture.kind, capture.trigger_index)
            try:
                result = self._pair_stage(ctx, capture, reference_sharp, outcome)
                if capture.kind == CaptureKind.PAIR:
                    outcome.pairs[capture.trigger_index] = result
                    done.append(result)
            except UNIT_ERRORS as exc:
                outcome.failures.append(_failure(label, exc))
            self.on_unit(label)
        try:
            self._mask_stage(ctx, done, outcome)
        except UNIT_ERRORS as exc:
            for p in done:
                p.mask = None
            outcome.failures.append(_failure("masks", exc))


def _as_uint8(image: np.ndarray) -> np.ndarray:
    """8-bit view of a product image (16-bit products are rounded to 8 bits for MOG2)."""
    if image.dtype == np.uint16:
        return ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    return image


def _failure(unit: str, exc: BaseException) -> dict[str, str]:
    return {"unit": unit, "error": type(exc).__name__, "message": str(exc)}


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
