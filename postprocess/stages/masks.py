"""Stage 4: the scene's LBFMG blur masks, MOG2 over its processed pairs, one per pair.

Each mask is an (H, W) 0/255 uint8 PNG (``mask`` product) of one pair's blurred image, with the
feeding order of :func:`postprocess.masks.feed_order`; its hash covers every pair's images,
so a new or changed pair makes every mask anew.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sqlalchemy import select

from core.filestore import read_png, write_mask_png
from core.models import Product, ProductKind
from postprocess.masks import feed_order, lbfmg_mask
from postprocess.params import PIPELINE_VERSION, PipelineParams, params_hash
from postprocess.stages.common import (
    PairResult,
    ProductStore,
    SceneContext,
    SceneOutcome,
    product_path,
    unit_label,
)


def as_uint8(image: np.ndarray) -> np.ndarray:
    """8-bit view of a product image (16-bit products are rounded to 8 bits for MOG2)."""
    if image.dtype == np.uint16:
        return ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    return image


def mask_stage(store: ProductStore, params: PipelineParams, ctx: SceneContext, pairs: list[PairResult],
               outcome: SceneOutcome, on_unit: Callable[[str], None]) -> None:
    """Sets ``mask`` of each of ``pairs`` (made or reused, counted in ``outcome``); calls
    ``on_unit`` after each mask made."""
    if not pairs:
        return
    images = [[p.capture_id, p.blurred_hash, p.sharp_hash] for p in pairs]
    section = params.section("masks")
    hashes = [params_hash({"stage": "mask", "target": p.capture_id, "images": images, "masks": section})
              for p in pairs]
    with store.sessions() as session:
        rows = [store.find(session, ProductKind.MASK, h) for h in hashes]
        for p, row in zip(pairs, rows, strict=True):
            if row is not None:
                p.mask = row.id
                outcome.reused[ProductKind.MASK.value] += 1
        todo = [i for i, row in enumerate(rows) if row is None]
        if not todo:
            return
        paths = {pid: store.data_dir / path for pid, path in session.execute(
            select(Product.id, Product.path).where(
                Product.id.in_([p.blurred for p in pairs] + [p.sharp for p in pairs])))}
    blurred = [as_uint8(read_png(paths[p.blurred])) for p in pairs]
    sharp = [as_uint8(read_png(paths[p.sharp])) for p in pairs]
    mask_params = params.masks
    for i in todo:
        p = pairs[i]
        mask = lbfmg_mask(blurred[i], feed_order(i, blurred, sharp), mask_params)
        rel = product_path(ctx.name, ProductKind.MASK, unit_label(p.kind, p.trigger_index), hashes[i], "png")
        with store.unit_files() as written:
            sha = write_mask_png(store.data_dir / rel, mask)
            written.append(store.data_dir / rel)
            (p.mask,) = store.commit([Product(
                scene_id=ctx.scene_id, capture_id=p.capture_id, kind=ProductKind.MASK,
                params_hash=hashes[i], pipeline_version=PIPELINE_VERSION, path=rel, sha256=sha,
                params={"images": images, "masks": section},
                info={"blurred_fraction": float(mask.mean())})])
        outcome.made[ProductKind.MASK.value] += 1
        on_unit(f"mask {p.trigger_index}")
