"""Downscaled previews of the data store's images, cached on disk, with an ETag.

``preview(data_dir, path, sha256, max_side)`` → ``(bytes, media type)`` of the image at
``path`` (inside the data directory) with its longer side at most ``max_side`` px
(area-averaged; never enlarged), 8 bit per channel (a 16-bit product is scaled to 8 bit).
Colour images become JPEG (quality 90, 4:4:4 chroma: a 256-px thumbnail of a textured
1076×718 scene is about 20 KB against 80 KB as PNG); single-channel images (masks) and images with alpha stay
PNG, exact. Previews are kept under ``<data_dir>/.cache/previews/<sha256>_<max_side>.jpg`` or
``.png`` (written atomically; a hidden folder the file routes never serve), so a gallery of
fifty pairs decodes each image once; post-processing makes the gallery's size as it stores its
products (:func:`warm`). The ETag is ``"<sha256[:32]>-<max_side>"``: a file never changes
under its hash. The full file is always one request away (the route without ``max_side``).

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
GALLERY_SIDE = 256
"""The console gallery's thumbnail size (px): post-processing makes these previews as it stores
its image products (:func:`warm`), so that a gallery opens without decoding any full image."""
PREVIEWABLE = (".png", ".tif", ".tiff", ".dng")


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


FORMATS = {".jpg": "image/jpeg", ".png": "image/png"}
JPEG_QUALITY = 90


def _render(source: Path, max_side: int) -> tuple[bytes, str]:
    """(encoded bytes, suffix) of the preview of ``source``."""
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
    colour = image.ndim == 3 and image.shape[2] == 3
    suffix = ".jpg" if colour else ".png"
    params = ([cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY,  # full-resolution chroma: casts stay visible
               cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
              if colour else [cv2.IMWRITE_PNG_COMPRESSION, 3])
    ok, data = cv2.imencode(suffix, image, params)
    if not ok:  # pragma: no cover - encoding a uint8 array does not fail
        raise PreviewError("preview encoding failed")
    return data.tobytes(), suffix


def _cache_paths(data_dir: Path, sha256: str, max_side: int) -> list[Path]:
    stem = Path(data_dir) / CACHE_DIR / f"{sha256}_{int(max_side)}"
    return [stem.with_suffix(suffix) for suffix in FORMATS]


def cached(data_dir: Path, sha256: str, max_side: int) -> tuple[bytes, str] | None:
    """The cached preview as (bytes, media type), or None when it has not been made."""
    for path in _cache_paths(data_dir, sha256, max_side):
        try:
            return path.read_bytes(), FORMATS[path.suffix]
        except FileNotFoundError:
            continue
    return None


def preview(data_dir: Path, source: Path, sha256: str, max_side: int) -> tuple[bytes, str]:
    """The cached or freshly made preview as (bytes, media type) (module docstring);
    PreviewError for a non-image or a ``max_side`` out of range."""
    if not MIN_SIDE <= max_side <= MAX_SIDE:
        raise PreviewError(f"max_side must be {MIN_SIDE}–{MAX_SIDE} px, got {max_side}")
    hit = cached(data_dir, sha256, max_side)
    if hit is not None:
        return hit
    data, suffix = _render(source, max_side)
    path = _cache_paths(data_dir, sha256, max_side)[list(FORMATS).index(suffix)]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    return data, FORMATS[suffix]


def warm(data_dir: Path, items: list[tuple[str, str]], max_side: int = GALLERY_SIDE) -> int:
    """Make the previews of ``items`` ((path inside ``data_dir``, sha256) of stored images) at
    ``max_side`` unless cached; return how many were made. A file that cannot be previewed is
    skipped (the preview is a cache: the route makes it, or names the problem, when asked)."""
    made = 0
    for rel, sha256 in items:
        if Path(rel).suffix.lower() not in PREVIEWABLE or any(p.is_file() for p in _cache_paths(data_dir, sha256, max_side)):
            continue
        try:
            preview(data_dir, Path(data_dir) / rel, sha256, max_side)
            made += 1
        except (PreviewError, OSError):
            continue
    return made
