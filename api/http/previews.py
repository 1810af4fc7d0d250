"""Downscaled previews of the data store's images, cached on disk, with an ETag.

``preview_png(data_dir, path, sha256, max_side)`` → PNG bytes of the image at ``path`` (inside
the data directory) with its longer side at most ``max_side`` px (area-averaged; never
enlarged), 8 bit per channel (a 16-bit product is scaled to 8 bit). Previews are kept under
``<data_dir>/.cache/previews/<sha256>_<max_side>.png`` (written atomically; a hidden folder the
file routes never serve), so a gallery of fifty pairs decodes each image once. The ETag is
``"<sha256[:32]>-<max_side>"``: a product's file never changes under its hash.

A raw frame (DNG) is previewed developed the plain way: each 2×2 CFA tile binned to one RGB
pixel (half size; the two greens averaged), black-subtracted, white-balanced by the DNG's
as-shot neutral, sRGB-encoded. Enough for a thumbnail; the pipeline's ISP (Menon demosaic,
colour calibration) is what the products show.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from core.filestore import atomic_write_bytes

CACHE_DIR = Path(".cache") / "previews"
MIN_SIDE, MAX_SIDE = 16, 4096


class PreviewError(ValueError):
    """The file is not an image a preview can be made of."""


def etag(sha256: str, max_side: int) -> str:
    return f'"{sha256[:32]}-{int(max_side)}"'


def develop_dng_preview(source: Path) -> np.ndarray:
    """A DNG as (H/2, W/2, 3) uint8 **BGR** (OpenCV order), developed as the module says."""
    from core import srgb
    from core.dng_cfa import cfa_index_map
    from core.dng_decode import read_dng

    try:
        mosaic, meta = read_dng(source)
    except Exception as exc:  # CorruptDngError / UnsupportedDngError name the file
        raise PreviewError(f"{source.name} cannot be shown as a picture: {exc}") from None
    h, w = (mosaic.shape[0] // 2) * 2, (mosaic.shape[1] // 2) * 2
    cfa = (mosaic[:h, :w].astype(np.float32) - meta.black_level) / float(meta.white_level - meta.black_level)
    tile = cfa_index_map(meta.cfa_pattern)
    rgb = np.zeros((h // 2, w // 2, 3), np.float32)
    count = np.zeros(3, np.float32)
    for dy in (0, 1):
        for dx in (0, 1):
            c = int(tile[dy, dx])
            rgb[..., c] += cfa[dy::2, dx::2]
            count[c] += 1
    rgb /= count
    rgb /= np.asarray(meta.as_shot_neutral, np.float32)
    return np.ascontiguousarray(srgb.encode_uint8(np.clip(rgb, 0.0, 1.0))[..., ::-1])


def _render(source: Path, max_side: int) -> bytes:
    if source.suffix.lower() == ".dng":
        image = develop_dng_preview(source)
    else:
        image = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise PreviewError(f"{source.name} cannot be shown as a picture")
    if image.dtype == np.uint16:
        image = np.rint(image / 257.0).astype(np.uint8)
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, png = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - encoding a uint8 array does not fail
        raise PreviewError("PNG encoding failed")
    return png.tobytes()


def preview_png(data_dir: Path, source: Path, sha256: str, max_side: int) -> bytes:
    """The cached or freshly made preview (module docstring); PreviewError for a non-image."""
    if not MIN_SIDE <= max_side <= MAX_SIDE:
        raise PreviewError(f"max_side must be {MIN_SIDE}–{MAX_SIDE} px, got {max_side}")
    cached = Path(data_dir) / CACHE_DIR / f"{sha256}_{int(max_side)}.png"
    if cached.is_file():
        return cached.read_bytes()
    data = _render(source, max_side)
    cached.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(cached, data)
    return data
