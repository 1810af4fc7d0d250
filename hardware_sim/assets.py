"""Real photographs for the twin's scenes: backgrounds, static props and moving cut-outs.

All images come from scikit-image's bundled data (no download), converted from 8-bit sRGB
to linear RGB float32 in [0, 1]. Cut-outs carry an alpha mask (float32 in [0, 1]) with a
one-texel anti-aliased edge, drawn at 4× supersampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
import skimage.data

from core import srgb

SUPERSAMPLE = 4


def srgb_to_linear(image_u8: np.ndarray) -> np.ndarray:
    """8-bit sRGB (any shape) → linear float32 in [0, 1] (:func:`core.srgb.decode`)."""
    return srgb.decode(np.asarray(image_u8, np.uint8))


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]


@dataclass(frozen=True)
class Cutout:
    """A moving object or prop: linear RGB (h, w, 3) and alpha (h, w), both float32 in [0, 1]."""

    name: str
    rgb: np.ndarray
    alpha: np.ndarray

    @property
    def height_px(self) -> int:
        return int(self.rgb.shape[0])


def _polygon_alpha(shape: tuple[int, int], points: list[tuple[float, float]]) -> np.ndarray:
    """Anti-aliased alpha (float32) of a polygon given in texel coordinates (x, y)."""
    h, w = shape
    big = np.zeros((h * SUPERSAMPLE, w * SUPERSAMPLE), np.uint8)
    pts = np.round((np.asarray(points) + 0.5) * SUPERSAMPLE - 0.5).astype(np.int32)
    cv2.fillPoly(big, [pts], 255)
    return cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _ellipse_alpha(shape: tuple[int, int], centre: tuple[float, float], axes: tuple[float, float]) -> np.ndarray:
    """Anti-aliased alpha of an ellipse (centre and semi-axes in texels)."""
    h, w = shape
    big = np.zeros((h * SUPERSAMPLE, w * SUPERSAMPLE), np.uint8)
    c = tuple(int(round((v + 0.5) * SUPERSAMPLE - 0.5)) for v in centre)
    a = tuple(int(round(v * SUPERSAMPLE)) for v in axes)
    cv2.ellipse(big, c, a, 0, 0, 360, 255, thickness=-1)
    return cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _crop_to_alpha(name: str, rgb: np.ndarray, alpha: np.ndarray, pad: int = 2) -> Cutout:
    ys, xs = np.nonzero(alpha > 0)
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, alpha.shape[0])
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, alpha.shape[1])
    return Cutout(name, np.ascontiguousarray(rgb[y0:y1, x0:x1]), np.ascontiguousarray(alpha[y0:y1, x0:x1]))


# Outline of the motorcycle in skimage's stereo_motorcycle left view (741×500), traced by hand.
_MOTORCYCLE_OUTLINE = [
    (92, 195), (140, 150), (260, 160), (350, 185), (420, 150), (470, 128), (498, 88),
    (545, 92), (585, 122), (600, 188), (640, 268), (686, 330), (682, 410), (640, 452),
    (575, 452), (520, 402), (500, 352), (470, 342), (420, 382), (340, 382), (280, 396),
    (230, 404), (170, 398), (128, 362), (116, 300), (108, 240),
]


def _motorcycle() -> Cutout:
    left, _, _ = skimage.data.stereo_motorcycle()
    rgb = srgb_to_linear(left)
    return _crop_to_alpha("motorcycle", rgb, _polygon_alpha(rgb.shape[:2], _MOTORCYCLE_OUTLINE))


def _pedestrian() -> Cutout:
    rgb = srgb_to_linear(skimage.data.astronaut())
    # Head and suited torso of the astronaut, as an upright figure.
    head = _ellipse_alpha(rgb.shape[:2], (265, 145), (85, 105))
    torso = _ellipse_alpha(rgb.shape[:2], (265, 400), (190, 200))
    return _crop_to_alpha("pedestrian", rgb, np.maximum(head, torso))


def _ball() -> Cutout:
    rgb = srgb_to_linear(skimage.data.coffee())
    return _crop_to_alpha("ball", rgb, _ellipse_alpha(rgb.shape[:2], (290, 152), (118, 118)))


def _horse() -> Cutout:
    silhouette = skimage.data.horse()  # True = background
    fur = cv2.resize(skimage.data.chelsea(), silhouette.shape[::-1], interpolation=cv2.INTER_AREA)
    alpha = cv2.GaussianBlur((~silhouette).astype(np.float32), (3, 3), 0.6)
    return _crop_to_alpha("horse", srgb_to_linear(fur), alpha)


# Outline of the cameraman's coat in skimage's camera (512×512), traced by hand; his head is an
# ellipse. A person-shaped mover whose photograph is not the pedestrian's.
_CAMERAMAN_COAT = [
    (0, 250), (60, 150), (150, 110), (200, 170), (260, 185), (330, 195), (330, 240), (285, 320),
    (262, 420), (262, 511), (0, 511),
]


def _cameraman() -> Cutout:
    rgb = srgb_to_linear(_rgb(skimage.data.camera()))
    head = _ellipse_alpha(rgb.shape[:2], (215, 128), (56, 68))
    coat = _polygon_alpha(rgb.shape[:2], _CAMERAMAN_COAT)
    return _crop_to_alpha("cameraman", rgb, np.maximum(head, coat))


def _cat() -> Cutout:
    rgb = srgb_to_linear(skimage.data.chelsea())
    return _crop_to_alpha("cat", rgb, _ellipse_alpha(rgb.shape[:2], (200, 160), (150, 135)))


def _disc() -> Cutout:
    """The scikit-image logo as a thrown disc."""
    rgb = srgb_to_linear(skimage.data.logo()[..., :3])
    return _crop_to_alpha("disc", rgb, _ellipse_alpha(rgb.shape[:2], (249.5, 249.5), (244, 244)))


def _specimen() -> Cutout:
    rgb = srgb_to_linear(skimage.data.immunohistochemistry())
    return _crop_to_alpha("specimen", rgb, _ellipse_alpha(rgb.shape[:2], (256, 256), (210, 150)))


def _placard() -> Cutout:
    """A carried placard printed with the Hubble deep field (fine, high-contrast detail)."""
    rgb = srgb_to_linear(skimage.data.hubble_deep_field())[100:500, 200:800]
    alpha = _polygon_alpha(rgb.shape[:2], [(4, 4), (595, 4), (595, 395), (4, 395)])
    return _crop_to_alpha("placard", np.ascontiguousarray(rgb), alpha)


def _board() -> Cutout:
    """A rectangular poster of the rocket photograph (used as a static prop)."""
    rgb = srgb_to_linear(skimage.data.rocket())
    return Cutout("poster", rgb, np.ones(rgb.shape[:2], np.float32))


def _newspaper() -> Cutout:
    """A carried newspaper sheet: scikit-image's scanned book page (fine dark print on paper)."""
    rgb = srgb_to_linear(_rgb(skimage.data.page()))
    h, w = rgb.shape[:2]
    return _crop_to_alpha("newspaper", rgb, _polygon_alpha((h, w), [(2, 2), (w - 3, 2), (w - 3, h - 3), (2, h - 3)]))


def _planet() -> Cutout:
    """A rolling sphere textured with scikit-image's retina photograph (red, veined)."""
    rgb = srgb_to_linear(skimage.data.retina())
    return _crop_to_alpha("planet", rgb, _ellipse_alpha(rgb.shape[:2], (705, 705), (650, 650)))


def _tray() -> Cutout:
    """A carried tray of coins: scikit-image's coins photograph, tinted brass."""
    grey = srgb_to_linear(skimage.data.coins())
    rgb = grey[..., None] * np.asarray([1.0, 0.78, 0.45], np.float32)
    h, w = grey.shape
    return _crop_to_alpha("tray", np.ascontiguousarray(rgb),
                          _polygon_alpha((h, w), [(2, 2), (w - 3, 2), (w - 3, h - 3), (2, h - 3)]))


def _wheel() -> Cutout:
    """A spinning colour wheel: scikit-image's colorwheel (saturated hues around a white centre)."""
    rgb = srgb_to_linear(skimage.data.colorwheel())
    return _crop_to_alpha("wheel", rgb, _ellipse_alpha(rgb.shape[:2], (185, 185), (178, 178)))


_CUTOUTS = {
    "motorcycle": _motorcycle,
    "pedestrian": _pedestrian,
    "ball": _ball,
    "horse": _horse,
    "cameraman": _cameraman,
    "cat": _cat,
    "disc": _disc,
    "specimen": _specimen,
    "placard": _placard,
    "poster": _board,
    # Movers added for the second CPU recipe (not in the sampler's default movers):
    "newspaper": _newspaper,
    "planet": _planet,
    "tray": _tray,
    "wheel": _wheel,
}
CUTOUT_NAMES = tuple(sorted(_CUTOUTS))


@cache
def cutout(name: str) -> Cutout:
    """The named cut-out; ``KeyError`` lists the known names."""
    try:
        factory = _CUTOUTS[name]
    except KeyError:
        raise KeyError(f"unknown cut-out {name!r}; known: {', '.join(CUTOUT_NAMES)}") from None
    return factory()


def _tile(texture: np.ndarray, height: int, width: int, tint: tuple[float, float, float]) -> np.ndarray:
    """Tile a grey texture (linear float) at native scale over (height, width), tinted.

    Alternate tiles are mirrored so that no seam shows.
    """
    block = np.block([[texture, texture[:, ::-1]], [texture[::-1], texture[::-1, ::-1]]])
    reps = (-(-height // block.shape[0]), -(-width // block.shape[1]))
    tiled = np.tile(block, reps)[:height, :width]
    return tiled[..., None] * np.asarray(tint, np.float32)


def _cover(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (Lanczos, keeping aspect) and centre-crop an image to cover (height, width)."""
    scale = max(height / image.shape[0], width / image.shape[1])
    size = (max(width, round(image.shape[1] * scale)), max(height, round(image.shape[0] * scale)))
    big = cv2.resize(image, size, interpolation=cv2.INTER_LANCZOS4)
    y0 = (big.shape[0] - height) // 2
    x0 = (big.shape[1] - width) // 2
    return np.clip(big[y0 : y0 + height, x0 : x0 + width], 0.0, None)


def _street(height: int, width: int) -> np.ndarray:
    """A street-like backdrop: a brick wall above a gravel pavement, real textures at native scale."""
    wall_h = int(round(height * 0.62))
    wall = _tile(srgb_to_linear(skimage.data.brick()), wall_h, width, (0.95, 0.55, 0.40))
    ground = _tile(srgb_to_linear(skimage.data.gravel()), height - wall_h, width, (0.70, 0.70, 0.68))
    return np.concatenate([wall, ground], axis=0)


def _photo(loader) -> callable:
    return lambda h, w: _cover(srgb_to_linear(_rgb(loader())), h, w)


_BACKGROUNDS = {
    "street": _street,
    "garage": _photo(lambda: skimage.data.stereo_motorcycle()[1]),
    "cafe": _photo(skimage.data.coffee),
    "launchpad": _photo(skimage.data.rocket),
}
BACKGROUND_NAMES = tuple(sorted(_BACKGROUNDS))


def background(name: str, height: int, width: int) -> np.ndarray:
    """Linear RGB float32 (height, width, 3) backdrop made from real photographs."""
    try:
        factory = _BACKGROUNDS[name]
    except KeyError:
        raise KeyError(f"unknown background {name!r}; known: {', '.join(BACKGROUND_NAMES)}") from None
    return np.ascontiguousarray(factory(height, width), dtype=np.float32)
