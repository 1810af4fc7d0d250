"""Stage 3, one unit per pair (the whiteboard pair and every data pair): the ISP, then alignment.

S goes through the ISP; B through the ISP with β (the scene's, or the pair's own with
``photometric.source: pair``), then is warped onto S by the scene's flow with
``alignment.warp_method``; both are sRGB-encoded to ``isp.output_bits`` PNGs (``sharp`` and
``blurred`` products, (H, W, 3) uint8 or uint16). A product already recorded is reused.
"""

from __future__ import annotations

from core.filestore import write_png
from core.models import Capture, Frame, Product, ProductKind
from postprocess.calibration import FrameSizeMismatchError
from postprocess.isp import encode_srgb, run_isp
from postprocess.params import PIPELINE_VERSION, PipelineParams, params_hash
from postprocess.stages.common import (
    PairResult,
    ProductStore,
    SceneContext,
    SceneOutcome,
    product_path,
    unit_label,
)
from postprocess.stages.frames import load_frame
from postprocess.stages.photometric import pair_beta
from postprocess.warp import warp


def pair_stage(store: ProductStore, params: PipelineParams, ctx: SceneContext, capture: Capture,
               reference_sharp: Frame, outcome: SceneOutcome) -> PairResult:
    """The pair's ``blurred`` and ``sharp`` products (made or reused, counted in ``outcome``);
    ``reference_sharp``: the scene's reference S frame (for a pair's own β)."""
    frames = {f.role.value: f for f in capture.frames}
    label = unit_label(capture.kind, capture.trigger_index)
    isp = params.section("isp")
    base = {"scene": ctx.colour_hash, "capture": capture.id, "isp": isp}
    sharp_hash = params_hash({"stage": "sharp", **base, "S": frames["S"].sha256})
    blurred_hash = params_hash({
        "stage": "blurred", **base, "B": frames["B"].sha256, "warp": params.alignment.warp_method,
        **({"S": frames["S"].sha256} if params.photometric.source == "pair" else {}),
    })
    with store.sessions() as session:
        found = {k: store.find(session, k, h) for k, h in
                 ((ProductKind.BLURRED, blurred_hash), (ProductKind.SHARP, sharp_hash))}
        ids = {k: (row.id if row is not None else None) for k, row in found.items()}
    missing = [k for k, v in ids.items() if v is None]
    for k in ids:
        if k not in missing:
            outcome.reused[k.value] += 1
    if missing:
        b = load_frame(store.data_dir, frames["B"])
        s = load_frame(store.data_dir, frames["S"])
        for role, (cfa, _) in (("B", b), ("S", s)):
            if cfa.shape != ctx.shape:
                raise FrameSizeMismatchError(
                    f"{label}: frame {role} is {cfa.shape[1]}×{cfa.shape[0]}, the scene's frames are "
                    f"{ctx.shape[1]}×{ctx.shape[0]}")
        bits = params.isp.output_bits
        rows, rels = [], {}
        with store.unit_files() as written:
            if ProductKind.SHARP in missing:
                rel = product_path(ctx.name, ProductKind.SHARP, label, sharp_hash, "png")
                linear = run_isp(*s, ctx.calibrations["S"], ctx.wb_gains, ctx.ccm)
                sha = write_png(store.data_dir / rel, encode_srgb(linear, bits))
                written.append(store.data_dir / rel)
                rows.append(Product(scene_id=ctx.scene_id, capture_id=capture.id, kind=ProductKind.SHARP,
                                    params_hash=sharp_hash, pipeline_version=PIPELINE_VERSION, path=rel,
                                    sha256=sha, params=base, info={"bits": bits}))
                rels[ProductKind.SHARP] = rel
            if ProductKind.BLURRED in missing:
                beta = ctx.beta
                if params.photometric.source == "pair":
                    beta = pair_beta(store.data_dir, params, ctx, b, s, reference_sharp)
                rel = product_path(ctx.name, ProductKind.BLURRED, label, blurred_hash, "png")
                linear = run_isp(*b, ctx.calibrations["B"], ctx.wb_gains, ctx.ccm, beta=beta)
                aligned = warp(linear, ctx.flow, params.alignment.warp_method)
                sha = write_png(store.data_dir / rel, encode_srgb(aligned, bits))
                written.append(store.data_dir / rel)
                rows.append(Product(scene_id=ctx.scene_id, capture_id=capture.id, kind=ProductKind.BLURRED,
                                    params_hash=blurred_hash, pipeline_version=PIPELINE_VERSION, path=rel,
                                    sha256=sha, params={**base, "warp": params.alignment.warp_method},
                                    info={"bits": bits, "beta": [float(v) for v in beta]}))
            made_ids = store.commit(rows)
        for row, pid in zip(rows, made_ids, strict=True):
            ids[row.kind] = pid
            outcome.made[row.kind.value] += 1
    return PairResult(capture.id, capture.kind.value, capture.trigger_index, ids[ProductKind.BLURRED],
                      ids[ProductKind.SHARP], blurred_hash, sharp_hash)
