"""The shipped model on the three real ReLoBlur photographs: before/after and mask pictures, and
where the predicted blur mask lies.

The photographs (``../shared/data/reloblur-samples``, 2152×1436, blurred only: no sharp ground
truth and no masks) cannot be scored; what can be shown is what the model does to them. For
each photograph this writes, under ``--out``:

- ``<name>_before_after.png``: the blurred input | the model's output, side by side, at the
  processing size, with a zoomed crop of the region the mask covers most below;
- ``<name>_mask.png``: the predicted mask (the LBAG gate, ``round(255·gate)``);
- ``<name>_overlay.png``: the input with the binarised mask (gate ≥ 0.5) tinted red;

and prints a table: the share of the image the binarised mask covers, its bounding box and
centroid in relative coordinates (0..1, x to the right, y down), and the mean absolute change
the model made inside and outside the mask (8-bit levels), so that "restoration" is claimed
only where the output differs from the input.

``--scale`` (default 0.5): the shipped model was trained at the twin rig's half resolution
(1076×718, blur 10–35 px), so the photographs (15–70 px of blur at full size) are deblurred at
half size by default; ``--scale 1`` runs them at full size (tiled).

    .venv/bin/python benchmarks/real_photos.py [--checkpoint deblur/weights/lbag_twin_cpu.pt]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from core.filestore import write_png
from deblur.data import read_image, to_float01
from deblur.infer import deblur_image, describe_checkpoint, load_checkpoint
from deblur.metrics import format_table

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT.parent / "shared" / "data" / "reloblur-samples"
SHIPPED = ROOT / "deblur" / "weights" / "lbag_twin_cpu.pt"


def mask_geometry(binary: np.ndarray) -> dict[str, float | str]:
    """Share (%), bounding box and centroid (relative 0..1 coordinates) of an ``H×W`` bool mask."""
    h, w = binary.shape
    share = 100.0 * float(binary.mean())
    if not binary.any():
        return {"mask %": share, "bbox (x0,y0,x1,y1)": "-", "centroid (x,y)": "-"}
    ys, xs = np.nonzero(binary)
    bbox = f"{xs.min() / w:.2f},{ys.min() / h:.2f},{(xs.max() + 1) / w:.2f},{(ys.max() + 1) / h:.2f}"
    return {"mask %": share, "bbox (x0,y0,x1,y1)": bbox,
            "centroid (x,y)": f"{xs.mean() / w:.2f},{ys.mean() / h:.2f}"}


def _zoom_box(binary: np.ndarray, side: int) -> tuple[int, int, int, int]:
    """A ``side``² box (clipped to the image) around the densest part of the mask."""
    h, w = binary.shape
    density = cv2.blur(binary.astype(np.float32), (side, side))
    y, x = np.unravel_index(int(np.argmax(density)), density.shape)
    x0 = int(np.clip(x - side // 2, 0, max(0, w - side)))
    y0 = int(np.clip(y - side // 2, 0, max(0, h - side)))
    return x0, y0, min(w, x0 + side), min(h, y0 + side)


def before_after(blur: np.ndarray, out: np.ndarray, binary: np.ndarray) -> np.ndarray:
    """``uint8`` picture: input | output on top; the zoomed densest-mask crop of each below."""
    top = np.hstack([blur, out])
    side = max(64, min(blur.shape[:2]) // 3)
    x0, y0, x1, y1 = _zoom_box(binary, side)
    zw = top.shape[1] // 2
    crops = [cv2.resize(img[y0:y1, x0:x1], (zw, zw * (y1 - y0) // max(1, x1 - x0)),
                        interpolation=cv2.INTER_NEAREST) for img in (blur, out)]
    return np.vstack([top, np.hstack(crops)])


def overlay(blur: np.ndarray, binary: np.ndarray) -> np.ndarray:
    """The input with the mask tinted red (``uint8``)."""
    tinted = blur.astype(np.float32).copy()
    tinted[binary] = 0.55 * tinted[binary] + 0.45 * np.array([255.0, 0.0, 0.0])
    return np.clip(tinted, 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=SHIPPED)
    p.add_argument("--samples", type=Path, default=SAMPLES)
    p.add_argument("--scale", type=float, default=0.5, help="processing size / photo size")
    p.add_argument("--tile", type=int, default=None, help="tile size (px, multiple of 4)")
    p.add_argument("--out", type=Path, default=ROOT / "var" / "real_photos")
    args = p.parse_args(argv)
    photos = sorted(args.samples.glob("*.png"))
    if not photos:
        print(f"no photographs in {args.samples}", file=sys.stderr)
        return 2
    model, meta = load_checkpoint(args.checkpoint, "cpu")
    if not meta["gated"]:
        print("the model predicts no mask: use an LBAG checkpoint", file=sys.stderr)
        return 2
    print(describe_checkpoint(meta))
    rows = []
    for path in photos:
        full = read_image(path)
        h, w = full.shape[:2]
        size = (int(round(w * args.scale / 4) * 4), int(round(h * args.scale / 4) * 4))
        image = full if size == (w, h) else cv2.resize(full, size, interpolation=cv2.INTER_AREA)
        t0 = time.perf_counter()
        out, gate = deblur_image(model, image, "cpu", tile=args.tile)
        seconds = time.perf_counter() - t0
        blur8 = image if image.dtype == np.uint8 else np.rint(to_float01(image) * 255).astype(np.uint8)
        out8 = np.rint(out * 255.0).astype(np.uint8)
        binary = gate >= 0.5
        change = np.abs(out8.astype(np.int16) - blur8.astype(np.int16)).mean(axis=2)
        inside = float(change[binary].mean()) if binary.any() else 0.0
        outside = float(change[~binary].mean()) if (~binary).any() else 0.0
        stem = path.stem
        write_png(args.out / f"{stem}_before_after.png", before_after(blur8, out8, binary))
        write_png(args.out / f"{stem}_mask.png", np.rint(gate * 255.0).astype(np.uint8))
        write_png(args.out / f"{stem}_overlay.png", overlay(blur8, binary))
        rows.append({"name": stem, "size": f"{size[0]}×{size[1]}", **mask_geometry(binary),
                     "change in mask": inside, "change outside": outside, "s": seconds})
    print(f"machine: {platform.processor() or platform.machine()}, CPU, scale {args.scale}")
    print(format_table(rows, list(rows[0])))
    print(f"pictures in {args.out}/ (<name>_before_after.png, _overlay.png, _mask.png)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
