"""The rig's digital twin: both cameras behind the beam splitter, one trigger, known truth.

``RigTwin(spec, seed)`` renders the shots of a scene session:

* ``lightbox(role)``  uniform 6500 K (D65 = linear sRGB white) field for colour calibration;
* ``whiteboard()``    a pair of a uniform white board filling the view;
* ``reference()``     a static pair: every object frozen where the first pair will see it;
* ``pair(i, n)``      the i-th of n blurred/sharp pairs; pairs are triggered spread along the
                      first object's path (with seeded jitter). B's exposure starts at the
                      trigger; S's starts ``sharp_delay_s`` later: (tL − tS)/2 with the scene's
                      ``exposure.sharp_timing: centre`` (S's window is the middle of B's), 0 with
                      ``start`` (both start together, the paper's timing).

Randomness is keyed by the seed and the shot's name, so a shot's bytes do not depend on which
shots were rendered before it (a resumed capture reproduces the same frames).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import cv2
import numpy as np

from hardware_sim import render
from hardware_sim.beam_splitter import CameraGeometry, ColourResponse
from hardware_sim.scene import Scene
from hardware_sim.sensor import SensorModel
from hardware_sim.spec import SceneSpec

ROLES = ("B", "S")
MASK_ALPHA_THRESHOLD = 0.5


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(key.encode())]))


VIEW_KINDS = ("lightbox", "whiteboard", "reference", "pair")


@dataclass(frozen=True)
class View:
    """What stands in front of the rig for one trigger.

    kind: lightbox | whiteboard | reference | pair; index, n_pairs: which pair of how many
    (the reference pair freezes the objects where pair 0 of n_pairs will find them).
    """

    kind: str
    index: int = 0
    n_pairs: int = 1

    def __post_init__(self) -> None:
        if self.kind not in VIEW_KINDS:
            raise ValueError(f"view kind must be one of {', '.join(VIEW_KINDS)}, got {self.kind!r}")
        if not 0 <= self.index < max(self.n_pairs, 1):
            raise ValueError(f"pair index {self.index} outside 0..{self.n_pairs - 1}")

    @property
    def name(self) -> str:
        return f"pair_{self.index:04d}" if self.kind == "pair" else self.kind


@dataclass(frozen=True)
class Frame:
    """One camera's RAW frame: CFA (H, W) uint16 and how it was exposed."""

    role: str
    cfa: np.ndarray
    exposure_s: float


@dataclass
class Shot:
    """The frames of one trigger and, for scene shots, the ground truth in camera S's grid.

    trigger_time_s: when B's exposure starts (S's starts ``info["sharp_delay_s"]`` later).
    sharp_linear / blurred_linear: (H, W, 3) float32 noise-free linear sRGB that S and B see
    (B's view brought onto S's grid), after the lens, before cast, sensor and noise.
    mask: (H, W) bool, the true blur mask: where a moving object covered the pixel
    (coverage ≥ 0.5) at any time in B's exposure window, from geometry, not image differences.
    """

    name: str
    kind: str
    trigger_index: int
    trigger_time_s: float
    frames: dict[str, Frame]
    sharp_linear: np.ndarray | None = None
    blurred_linear: np.ndarray | None = None
    mask: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def blurred_area_fraction(self) -> float | None:
        return None if self.mask is None else float(self.mask.mean())


class RigTwin:
    """Renders every shot of one scene; see the module docstring."""

    def __init__(self, spec: SceneSpec, seed: int = 0, scene_factory=None):
        """``scene_factory(spec, margin) -> Scene`` replaces the spec's scene (e.g. a test chart)."""
        self.spec = spec
        self.seed = int(seed)
        h, w = spec.sensor.height, spec.sensor.width
        self.sensor = SensorModel(spec.sensor)
        self.colour = {
            "B": ColourResponse.from_spec(spec.camera_b, _rng(seed, "camera/B")),
            "S": ColourResponse.from_spec(spec.camera_s, _rng(seed, "camera/S")),
        }
        self.geometry_b = CameraGeometry.from_spec(spec.misalignment, h, w, _rng(seed, "geometry/B"))
        bx, by = self.geometry_b.pixel_map()
        self._map_b = (bx, by)
        excursion = max(-bx.min(), bx.max() - (w - 1), -by.min(), by.max() - (h - 1), 0.0)
        self.margin = int(math.ceil(excursion)) + 8
        self.scene = (scene_factory or Scene.from_spec)(spec, self.margin)
        self._transmission = {r: self.colour[r].transmission(h, w) for r in ROLES}
        self._static_cache: dict[str, np.ndarray] = {}
        self.t_short = spec.short_exposure_s
        self.t_long = spec.long_exposure_s
        self.nd = {"B": spec.exposure.nd_transmittance, "S": 1.0}
        self.exposure = {"B": self.t_long, "S": self.t_short}
        self.sharp_timing = spec.exposure.sharp_timing
        self.sharp_delay_s = spec.sharp_delay_s  # S's exposure start after B's (the trigger)
        self.delay = {"B": 0.0, "S": self.sharp_delay_s}
        # Illumination K (e⁻/s per unit radiance): white fills `white_fill` of the well in S's green.
        self.k_e_per_s = spec.white_fill * spec.sensor.full_well_e / (self.t_short * self.sensor.white_response.max())

    # ---- ground truth that does not depend on the shot ------------------------------------
    @property
    def true_beta(self) -> np.ndarray:
        """β (3,) per camera channel: mean(S)/mean(B) after cast correction on static content."""
        return self.colour["S"].brightness / self.colour["B"].brightness

    def flow_b_from_s(self) -> np.ndarray:
        """(H, W, 2) float32; see hardware_sim.beam_splitter for the convention."""
        return self.geometry_b.flow_b_from_s()

    # ---- image formation helpers ------------------------------------------------------------
    def _lens(self, image: np.ndarray) -> np.ndarray:
        sigma = self.spec.optics.lens_psf_sigma_px
        if sigma <= 0:
            return image
        return cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)

    def expected_electrons(self, role: str, radiance: np.ndarray, exposure_s: float | None = None) -> np.ndarray:
        """Noise-free photoelectrons (H, W) that ``role`` collects from a frame radiance in
        ``exposure_s`` (default: the scene's planned exposure for that camera)."""
        exposure_s = self.exposure[role] if exposure_s is None else exposure_s
        scale = self.k_e_per_s * exposure_s * self.nd[role]
        return self.sensor.expected_electrons(radiance, self._transmission[role], scale)

    def _window(
        self, view: View, exposure_s: float, track_coverage: bool = True, delay_s: float = 0.0
    ) -> render.Exposure:
        """The scene's canvas integrated over one exposure window for a scene view: from
        ``delay_s`` after the trigger (B's exposure start) for ``exposure_s``."""
        if view.kind == "reference":
            t_pair0 = self.trigger_time(0, view.n_pairs) + self.t_long / 2.0
            return render.integrate(self.scene.still(t_pair0), 0.0, exposure_s, track_coverage)
        t0 = self.trigger_time(view.index, view.n_pairs) + delay_s
        return render.integrate(self.scene, t0, exposure_s, track_coverage)

    def _camera_radiance(self, role: str, canvas: np.ndarray) -> np.ndarray:
        """What camera ``role`` sees of a canvas radiance: lens blur, then S's crop or B's view."""
        lensed = self._lens(canvas)
        if role == "S":
            return np.ascontiguousarray(render.crop_frame(self.scene, lensed))
        return render.view_through(self.scene, lensed, *self._map_b)

    def _uniform(self, view: View) -> np.ndarray:
        h, w = self.spec.sensor.height, self.spec.sensor.width
        level = (
            self.spec.lightbox_fill / self.spec.white_fill if view.kind == "lightbox"
            else self.spec.whiteboard_reflectance
        )
        return np.full((h, w, 3), level, np.float32)

    def _static_response(self, role: str) -> np.ndarray:
        """Noise-free response (H, W) float64 of camera ``role`` to the static canvas, per unit
        of K·t·τ: what every frame of a scene shares outside the moving objects (cached)."""
        if role not in self._static_cache:
            radiance = self._camera_radiance(role, self.scene.static)
            self._static_cache[role] = self.sensor.expected_electrons(radiance, self._transmission[role], 1.0)
        return self._static_cache[role]

    def warm_up(self) -> None:
        """Compute the per-camera static responses now (a camera's start-up), not at the first trigger."""
        for role in ROLES:
            self._static_response(role)

    def _frame_response(self, role: str, window: render.Exposure) -> np.ndarray:
        """Noise-free response (H, W) float64 of ``role`` to an integrated canvas.

        Equal, pixel for pixel, to the full computation (lens → S crop or B view → mosaic),
        but only the region the objects touched is recomputed: the lens PSF's and the bicubic
        kernel's reach around the canvas box, mapped into the camera's grid.
        """
        static = self._static_response(role)
        if window.box is None:
            return static
        h, w = self.spec.sensor.height, self.spec.sensor.width
        m = self.scene.margin
        reach = int(math.ceil(4 * self.spec.optics.lens_psf_sigma_px)) + 1  # Gaussian kernel radius
        y0, y1, x0, x1 = window.box  # canvas coordinates
        # Scene box whose lensed radiance can differ from the static one.
        sy0, sy1, sx0, sx1 = y0 - m - reach, y1 - m + reach, x0 - m - reach, x1 - m + reach
        if role == "S":
            fy0, fy1 = max(sy0 - sy0 % 2, 0), min(sy1 + sy1 % 2, h)  # even start keeps the CFA phase
            fx0, fx1 = max(sx0 - sx0 % 2, 0), min(sx1 + sx1 % 2, w)
            if fy1 <= fy0 or fx1 <= fx0:
                return static
            cy0, cx0 = fy0 + m, fx0 + m
            radiance = self._lens_region(window.radiance, cy0, fy1 + m, cx0, fx1 + m, reach)
        else:
            xb, yb = self.geometry_b.from_scene(np.array([sx0, sx1, sx0, sx1]), np.array([sy0, sy0, sy1, sy1]))
            pad = 4 + int(math.ceil(self.spec.misalignment.nonrigid_px))
            fy0 = max(int(math.floor(yb.min())) - pad, 0)
            fx0 = max(int(math.floor(xb.min())) - pad, 0)
            fy0, fx0 = fy0 - fy0 % 2, fx0 - fx0 % 2
            fy1 = min(int(math.ceil(yb.max())) + pad, h)
            fx1 = min(int(math.ceil(xb.max())) + pad, w)
            if fy1 <= fy0 or fx1 <= fx0:
                return static
            map_x, map_y = self._map_b[0][fy0:fy1, fx0:fx1], self._map_b[1][fy0:fy1, fx0:fx1]
            # Canvas source window covering the bicubic support of those scene points.
            ry0 = max(int(math.floor(map_y.min())) + m - 3, 0)
            rx0 = max(int(math.floor(map_x.min())) + m - 3, 0)
            ry1 = min(int(math.ceil(map_y.max())) + m + 4, window.radiance.shape[0])
            rx1 = min(int(math.ceil(map_x.max())) + m + 4, window.radiance.shape[1])
            source = self._lens_region(window.radiance, ry0, ry1, rx0, rx1, reach)
            # (map + m) − origin: the same float coordinates as the whole-frame view (integer
            # subtraction is exact), so remap's 1/32-px quantisation picks the same weights.
            radiance = cv2.remap(source, (map_x + np.float32(m)) - np.float32(rx0),
                                 (map_y + np.float32(m)) - np.float32(ry0), cv2.INTER_CUBIC,
                                 borderMode=cv2.BORDER_REFLECT)
            np.maximum(radiance, 0.0, out=radiance)
        response = static.copy()
        response[fy0:fy1, fx0:fx1] = self.sensor.expected_electrons(
            radiance, self._transmission[role][fy0:fy1, fx0:fx1], 1.0)
        return response

    def _lens_region(self, canvas: np.ndarray, y0: int, y1: int, x0: int, x1: int, reach: int) -> np.ndarray:
        """The lensed canvas over [y0:y1, x0:x1], blurring with enough context around it that it
        equals the same crop of the whole lensed canvas."""
        hc, wc = canvas.shape[:2]
        py0, px0 = max(y0 - reach, 0), max(x0 - reach, 0)
        py1, px1 = min(y1 + reach, hc), min(x1 + reach, wc)
        lensed = self._lens(np.ascontiguousarray(canvas[py0:py1, px0:px1]))
        return lensed[y0 - py0 : y1 - py0, x0 - px0 : x1 - px0]

    def render_frame(
        self, role: str, view: View, exposure_s: float | None = None, gain_db: float | None = None,
        delay_s: float | None = None,
    ) -> Frame:
        """One camera's RAW of a view, exposed for ``exposure_s`` (default: the scene's plan)
        at ``gain_db`` (default: the sensor spec's gain), its exposure starting ``delay_s`` after
        the trigger, i.e. after camera B's exposure start (default: the scene's plan, 0 for B and
        ``sharp_delay_s`` for S).

        This is what a simulated camera delivers when the pulse generator fires: the view says
        what stands in front of the rig, the exposure comes from the camera's own settings and
        the delay from its trigger pulse. Noise is keyed by the view and the role, so a frame
        does not depend on what was rendered before it.
        """
        if role not in ROLES:
            raise ValueError(f"role must be 'B' or 'S', got {role!r}")
        exposure_s = self.exposure[role] if exposure_s is None else exposure_s
        delay_s = self.delay[role] if delay_s is None else delay_s
        rng = _rng(self.seed, f"shot/{view.name}/{role}")
        scale = self.k_e_per_s * exposure_s * self.nd[role]
        if view.kind in ("lightbox", "whiteboard"):
            electrons = self.expected_electrons(role, self._uniform(view), exposure_s)
        else:
            window = self._window(view, exposure_s, track_coverage=False, delay_s=delay_s)
            electrons = self._frame_response(role, window) * scale
        return Frame(role, self.sensor.digitise(electrons, rng, gain_db), exposure_s)

    def _scene_shot(self, view: View, trigger_index: int) -> Shot:
        """Both frames of a scene view and its ground truth (at the scene's planned exposures and
        S's planned delay)."""
        short = self._window(view, self.t_short, delay_s=self.sharp_delay_s)
        long = self._window(view, self.t_long)
        sharp = self._camera_radiance("S", short.radiance)
        frames = {}
        for role, window, t in (("S", short, self.t_short), ("B", long, self.t_long)):
            electrons = self._frame_response(role, window) * (self.k_e_per_s * t * self.nd[role])
            frames[role] = Frame(role, self.sensor.digitise(electrons, _rng(self.seed, f"shot/{view.name}/{role}")), t)
        t0 = 0.0 if view.kind == "reference" else self.trigger_time(view.index, view.n_pairs)
        return Shot(
            view.name, view.kind, trigger_index, t0, frames,
            sharp_linear=sharp,
            blurred_linear=np.ascontiguousarray(render.crop_frame(self.scene, self._lens(long.radiance))),
            mask=render.crop_frame(self.scene, long.max_alpha) >= MASK_ALPHA_THRESHOLD,
            info={"samples_B": long.samples, "samples_S": short.samples,
                  "sharp_timing": self.sharp_timing, "sharp_delay_s": self.sharp_delay_s},
        )

    # ---- shots --------------------------------------------------------------------------------
    def lightbox(self, role: str) -> Frame:
        """One camera's flat-field RAW of the 6500 K lightbox at ``lightbox_fill`` of the well."""
        return self.render_frame(role, View("lightbox"))

    def whiteboard(self, trigger_index: int = 0) -> Shot:
        """A uniform white board (reflectance ``whiteboard_reflectance``) filling both views."""
        view = View("whiteboard")
        board = self._uniform(view)
        frames = {r: self.render_frame(r, view) for r in ("S", "B")}
        h, w = board.shape[:2]
        return Shot("whiteboard", "whiteboard", trigger_index, 0.0, frames, sharp_linear=board,
                    blurred_linear=board, mask=np.zeros((h, w), bool))

    def trigger_time(self, index: int, n_pairs: int) -> float:
        """When pair ``index`` of ``n_pairs`` is triggered (s): B's exposure is centred on the
        point (index + ½ + jitter)/n_pairs along the first object's path."""
        if not 0 <= index < n_pairs:
            raise ValueError(f"pair index {index} outside 0..{n_pairs - 1}")
        lead = self.scene.objects[0]
        jitter = _rng(self.seed, f"trigger/{index}").uniform(-1, 1) * self.spec.trigger_jitter_frac
        s_mid = lead.path.length * (index + 0.5 + jitter) / n_pairs
        return s_mid / lead.speed_px_s - self.t_long / 2.0

    def reference(self, n_pairs: int, trigger_index: int = 1) -> Shot:
        """The static reference pair: objects stand still where pair 0 will find them."""
        return self._scene_shot(View("reference", 0, n_pairs), trigger_index)

    def pair(self, index: int, n_pairs: int, trigger_index: int | None = None) -> Shot:
        """The blurred (B) / sharp (S) pair ``index`` of ``n_pairs``."""
        shot = self._scene_shot(View("pair", index, n_pairs), index + 2 if trigger_index is None else trigger_index)
        shot.info["blur_px_B"] = [self.spec.blur_px(self.t_long, o.trajectory.speed_mps) for o in self.spec.objects]
        shot.info["blur_px_S"] = [self.spec.blur_px(self.t_short, o.trajectory.speed_mps) for o in self.spec.objects]
        return shot
