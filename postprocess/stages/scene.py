"""Stage 2, once per scene: white balance, camera → sRGB matrix, β₀, the flow S → B, then β.

Every frame is black/white-normalised and colour-corrected (α); the white balance comes from
the whiteboard pair's S frame, the camera → sRGB matrix from the DNG's ColorMatrix1 (identity
when absent or with ``isp.colour_matrix: identity``), a first β₀ from the reference pair's
whole-frame CFA means (Eq. 6); the flow S → B is computed on the reference pair (B scaled by β₀,
both white-balanced and sRGB-encoded) with ``alignment.flow_method``; β from the *aligned*
reference pair (:func:`postprocess.stages.photometric.aligned_beta`). Products: the flow
((H, W, 2) float32 px, ``.npy``) and the scene colour (JSON: wb_gains, ccm, β, …).
"""

from __future__ import annotations

import json

import numpy as np

from core.filestore import atomic_path, atomic_write_bytes, sha256_file
from core.models import Capture, Product, ProductKind, Scene
from postprocess.calibration import ColourCalibration, FrameSizeMismatchError, correct_colour
from postprocess.flow import compute_flow
from postprocess.isp import camera_to_srgb_matrix, normalise_raw, srgb_encode, white_balance_gains
from postprocess.params import PIPELINE_VERSION, PipelineParams, params_hash
from postprocess.photometric import estimate_beta
from postprocess.stages.common import ROLES, ProductStore, SceneContext, SceneOutcome, product_path
from postprocess.stages.frames import camera_rgb, load_frame, to_srgb_linear
from postprocess.stages.photometric import aligned_beta


def scene_stage(store: ProductStore, params: PipelineParams, scene: Scene, captures: dict[str, Capture],
                calibrations: dict[str, ColourCalibration], outcome: SceneOutcome) -> SceneContext:
    """The scene's context for its pairs, from recorded products or made anew (and recorded).

    captures: the scene's ``whiteboard`` and ``reference`` capture (frames loaded);
    calibrations: by role. Counts the flow and scene colour products as made or reused."""
    frames = {kind: {f.role.value: f for f in captures[kind].frames} for kind in ("whiteboard", "reference")}
    inputs = {
        "scene": scene.id,
        "whiteboard": [frames["whiteboard"][r].sha256 for r in ROLES],
        "reference": [frames["reference"][r].sha256 for r in ROLES],
        "calibrations": {r: calibrations[r].calibration_id for r in ROLES},
        "isp": params.section("isp")["colour_matrix"],
    }
    flow_hash = params_hash({"stage": "flow", **inputs, "flow_method": params.alignment.flow_method})
    colour_hash = params_hash({"stage": "scene_colour", "flow": flow_hash,
                               "photometric": params.section("photometric")})
    with store.sessions() as session:
        flow_row = store.find(session, ProductKind.FLOW, flow_hash)
        colour_row = store.find(session, ProductKind.SCENE_COLOUR, colour_hash)
        if flow_row is not None and colour_row is not None:
            flow = np.load(store.data_dir / flow_row.path)
            colour = json.loads((store.data_dir / colour_row.path).read_text())
            outcome.reused.update([ProductKind.FLOW.value, ProductKind.SCENE_COLOUR.value])
            outcome.info["scene_colour"] = colour
            return SceneContext(
                scene.id, scene.name, flow.shape[:2], calibrations, np.array(colour["wb_gains"]),
                np.array(colour["ccm"]), np.array(colour["beta"]), flow, colour_hash,
            )

    loaded = {kind: {r: load_frame(store.data_dir, frames[kind][r]) for r in ROLES} for kind in frames}
    shape = loaded["reference"]["S"][0].shape
    for kind in loaded:
        for r in ROLES:
            cfa, meta = loaded[kind][r]
            if cfa.shape != shape:
                raise FrameSizeMismatchError(
                    f"the {kind} frame {r} is {cfa.shape[1]}×{cfa.shape[0]}; the reference S frame is "
                    f"{shape[1]}×{shape[0]}: every frame of a scene must have the same size")
    rgb = {kind: {r: camera_rgb(*loaded[kind][r], calibrations[r]) for r in ROLES} for kind in loaded}
    wb = white_balance_gains(rgb["whiteboard"]["S"])
    matrix = loaded["reference"]["S"][1].color_matrix_1
    if params.isp.colour_matrix == "dng" and matrix is not None:
        ccm = camera_to_srgb_matrix(np.array(matrix))
    else:
        ccm = np.eye(3)
    pattern = loaded["reference"]["S"][1].cfa_pattern
    ref_cfa = {r: correct_colour(normalise_raw(loaded["reference"][r][0], loaded["reference"][r][1].black_level,
                                               loaded["reference"][r][1].white_level),
                                 calibrations[r], pattern) for r in ROLES}
    beta0 = estimate_beta(ref_cfa["S"], ref_cfa["B"], pattern)
    display_s = srgb_encode(to_srgb_linear(rgb["reference"]["S"], wb, ccm))
    display_b = srgb_encode(to_srgb_linear(rgb["reference"]["B"] * beta0.astype(np.float32), wb, ccm))
    flow = compute_flow(display_s, display_b, params.alignment.flow_method)
    beta = aligned_beta(rgb["reference"]["S"], rgb["reference"]["B"], flow)
    magnitude = np.hypot(flow[..., 0], flow[..., 1])
    colour = {
        "wb_gains": wb.tolist(), "ccm": ccm.tolist(), "beta": beta.tolist(), "beta_whole_frame": beta0.tolist(),
        "beta_source": params.photometric.source,
        "calibrations": inputs["calibrations"], "flow_hash": flow_hash,
        "flow_mean_px": float(magnitude.mean()), "flow_max_px": float(magnitude.max()),
    }
    label = scene.name
    flow_rel = product_path(scene.name, ProductKind.FLOW, label, flow_hash, "npy")
    colour_rel = product_path(scene.name, ProductKind.SCENE_COLOUR, label, colour_hash, "json")
    with store.unit_files() as written:
        with atomic_path(store.data_dir / flow_rel, keep_suffix=True) as tmp:
            np.save(tmp, flow)
        written.append(store.data_dir / flow_rel)
        colour_sha = atomic_write_bytes(store.data_dir / colour_rel, json.dumps(colour, indent=1).encode())
        written.append(store.data_dir / colour_rel)
        store.commit([
            Product(scene_id=scene.id, kind=ProductKind.FLOW, params_hash=flow_hash,
                    pipeline_version=PIPELINE_VERSION, path=flow_rel, sha256=sha256_file(store.data_dir / flow_rel),
                    params={**inputs, "flow_method": params.alignment.flow_method},
                    info={"mean_px": colour["flow_mean_px"], "max_px": colour["flow_max_px"]}),
            Product(scene_id=scene.id, kind=ProductKind.SCENE_COLOUR, params_hash=colour_hash,
                    pipeline_version=PIPELINE_VERSION, path=colour_rel, sha256=colour_sha,
                    params={"flow": flow_hash, "photometric": params.section("photometric")},
                    info={"beta": colour["beta"], "wb_gains": colour["wb_gains"]}),
        ])
    outcome.made.update([ProductKind.FLOW.value, ProductKind.SCENE_COLOUR.value])
    outcome.info["scene_colour"] = colour
    ctx = SceneContext(scene.id, scene.name, shape, calibrations, wb, ccm, beta, flow, colour_hash)
    ctx.reference_sharp = loaded["reference"]["S"]
    return ctx
