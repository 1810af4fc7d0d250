"""The twin's scene specification: a validated, YAML-friendly description of one scene.

Units: metres, seconds, degrees, sensor pixels. Positions of moving objects are fractions of
the frame (0..1 from the top-left corner) so a scene stays valid at any sensor size; object
sizes are physical (metres on the object plane) and become pixels through the thin lens.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import ConfigDict, Field, model_validator

from core import optics
from core.config import StrictModel, read_yaml, validate_model
from hardware_sim.assets import BACKGROUND_NAMES, CUTOUT_NAMES


class SceneSpecError(ValueError):
    """A scene specification that the twin cannot simulate; the message names field and range."""


class UnknownPresetError(SceneSpecError):
    """A preset name that does not exist; the message lists the known presets."""


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OpticsSpec(_Strict):
    """Lens and object plane shared by both cameras (the beam splitter gives them one view)."""

    focal_length_mm: float = Field(50.0, gt=0, le=2000)
    pixel_pitch_um: float = Field(
        4.5, gt=0, le=1000, description="Pixel pitch (µm); large values stand for small test sensors "
        "that keep a full sensor's field of view (see with_sensor_size)."
    )
    object_distance_m: float = Field(10.0, gt=0, le=10000)
    lens_psf_sigma_px: float = Field(0.5, ge=0, le=5, description="Gaussian optical blur (px).")

    @property
    def pixels_per_metre(self) -> float:
        return optics.pixels_per_metre(
            self.focal_length_mm * 1e-3, self.object_distance_m, self.pixel_pitch_um * 1e-6
        )


class SensorSpec(_Strict):
    """One camera model (both cameras are identical): size, ADC and noise."""

    width: int = Field(2152, ge=16, le=16384, multiple_of=2)
    height: int = Field(1436, ge=16, le=16384, multiple_of=2)
    bits: int = Field(12, ge=8, le=16)
    black_level: int = Field(64, ge=0)
    full_well_e: float = Field(10500.0, gt=0, description="Full-well capacity (electrons).")
    read_noise_e: float = Field(2.5, ge=0, description="Gaussian read noise (electrons RMS).")
    gain_db: float = Field(0.0, ge=0, le=48)
    cfa_pattern: Literal["RGGB", "BGGR", "GRBG", "GBRG"] = "RGGB"
    exposure_range_s: tuple[float, float] = Field(
        (2e-5, 10.0), description="The camera's ExposureTime limits (s)."
    )
    camera_matrix: tuple[tuple[float, float, float], ...] = Field(
        (
            (0.52, 0.06, 0.02),
            (0.08, 0.84, 0.10),
            (0.01, 0.13, 0.56),
        ),
        description="Linear sRGB → camera RGB response (3×3); rows: camera R, G, B.",
    )

    @model_validator(mode="after")
    def _check(self) -> SensorSpec:
        if self.black_level >= 2**self.bits - 1:
            raise ValueError(f"black_level {self.black_level} must be below 2**bits - 1 = {2**self.bits - 1}")
        lo, hi = self.exposure_range_s
        if not 0 < lo < hi:
            raise ValueError(f"exposure_range_s must satisfy 0 < min < max, got {self.exposure_range_s}")
        if len(self.camera_matrix) != 3 or any(len(r) != 3 for r in self.camera_matrix):
            raise ValueError("camera_matrix must be 3×3")
        return self


class MisalignmentSpec(_Strict):
    """Camera B's pose error relative to camera S (S defines the scene grid)."""

    rotation_deg: float = Field(0.2, ge=-1.0, le=1.0)
    translation_px: tuple[float, float] = Field((3.0, -2.0))
    scale: float = Field(1.002, ge=0.98, le=1.02)
    nonrigid_px: float = Field(0.0, ge=0, le=3.0, description="Amplitude of a smooth warp (px).")
    nonrigid_period_frac: float = Field(0.5, gt=0.05, le=2.0, description="Its wavelength / frame width.")

    @model_validator(mode="after")
    def _check(self) -> MisalignmentSpec:
        if any(abs(t) > 20 for t in self.translation_px):
            raise ValueError(f"translation_px must lie within ±20 px, got {self.translation_px}")
        return self


class CameraSpec(_Strict):
    """Per-camera optical imperfections behind the beam splitter."""

    serial: str
    cast_strength: tuple[float, float, float] = Field(
        (0.06, 0.03, 0.08),
        description="Peak |α − 1| of the colour-cast polynomial per channel (R, G, B).",
    )
    cast_coefficients: tuple[tuple[float, ...], ...] | None = Field(
        None, description="Explicit α coefficients (3×10, Eq. 4–5 order); drawn from the seed if absent."
    )
    brightness: tuple[float, float, float] = Field((1.0, 1.0, 1.0), description="Per-channel gain (≈1).")

    @model_validator(mode="after")
    def _check(self) -> CameraSpec:
        if any(not 0 <= s < 0.5 for s in self.cast_strength):
            raise ValueError(f"cast_strength entries must lie in [0, 0.5), got {self.cast_strength}")
        if any(not 0.8 <= b <= 1.2 for b in self.brightness):
            raise ValueError(f"brightness entries must lie in [0.8, 1.2], got {self.brightness}")
        if self.cast_coefficients is not None and (
            len(self.cast_coefficients) != 3 or any(len(c) != 10 for c in self.cast_coefficients)
        ):
            raise ValueError("cast_coefficients must be 3 rows of 10 coefficients")
        return self


class TrajectorySpec(_Strict):
    """A path across the frame at constant speed; pairs are triggered spread along it."""

    start: tuple[Fraction, Fraction] = Field(description="Object centre at the path's start (frame fractions x, y).")
    end: tuple[Fraction, Fraction] = Field(description="Object centre at the path's end (frame fractions x, y).")
    bow: float = Field(0.0, ge=-0.5, le=0.5, description="Arc sagitta / chord length; 0 = straight line.")
    speed_mps: float = Field(gt=0, le=100, description="Speed along the path on the object plane (m/s).")
    spin_dps: float = Field(0.0, ge=-3600, le=3600, description="Rotation about the object centre (deg/s).")

    @model_validator(mode="after")
    def _check(self) -> TrajectorySpec:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self


class MovingObjectSpec(_Strict):
    asset: str
    height_m: float = Field(gt=0, le=100, description="Object height on the object plane (m).")
    trajectory: TrajectorySpec

    @model_validator(mode="after")
    def _check(self) -> MovingObjectSpec:
        if self.asset not in CUTOUT_NAMES:
            raise ValueError(f"asset {self.asset!r} unknown; known: {', '.join(CUTOUT_NAMES)}")
        return self


class PropSpec(_Strict):
    """A static object pasted into the background."""

    asset: str
    centre: tuple[Fraction, Fraction]
    height_frac: float = Field(gt=0, le=1, description="Height as a fraction of the frame height.")

    @model_validator(mode="after")
    def _check(self) -> PropSpec:
        if self.asset not in CUTOUT_NAMES:
            raise ValueError(f"asset {self.asset!r} unknown; known: {', '.join(CUTOUT_NAMES)}")
        return self


SHARP_TIMINGS = ("centre", "start")


class ExposureSpec(_Strict):
    """The pair's exposures: tS given directly or through Eq. 2 from the sharp image's blur, and
    when S's exposure starts: at the centre of B's (``centre``: (tL − tS)/2 after B's) or
    together with it (``start``, the paper's timing)."""

    short_s: float | None = Field(None, gt=0, description="tS, camera S's exposure (s).")
    sharp_blur_px: float | None = Field(
        None, gt=0, le=6, description="Blur tolerated in S (px): tS from Eq. 2 for the fastest object."
    )
    nd_transmittance: float = Field(0.1, description="τ = tS / tL, the ND filter in front of camera B.")
    sharp_timing: Literal["centre", "start"] = Field(
        "centre", description="When S's exposure starts: centre of B's ((tL − tS)/2 after it) or start (with it)."
    )

    @model_validator(mode="after")
    def _check(self) -> ExposureSpec:
        if (self.short_s is None) == (self.sharp_blur_px is None):
            raise ValueError("give exactly one of short_s or sharp_blur_px")
        if not 0 < self.nd_transmittance <= 1:
            raise ValueError(f"nd_transmittance τ must lie in (0, 1], got {self.nd_transmittance}")
        return self


class SceneSpec(_Strict):
    """Everything the twin needs to simulate one scene session."""

    name: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    optics: OpticsSpec = OpticsSpec()
    sensor: SensorSpec = SensorSpec()
    background: str = "street"
    props: tuple[PropSpec, ...] = ()
    objects: tuple[MovingObjectSpec, ...] = Field(min_length=1)
    exposure: ExposureSpec
    white_fill: float = Field(
        0.7, gt=0, le=4, description="Fraction of full well a white static surface reaches in S's green."
    )
    lightbox_fill: float = Field(0.5, gt=0, le=1, description="Lightbox level as a fraction of full well.")
    whiteboard_reflectance: float = Field(0.85, gt=0, le=1)
    camera_b: CameraSpec = CameraSpec(serial="TWIN-B-0001", brightness=(1.02, 1.01, 0.985))
    camera_s: CameraSpec = CameraSpec(serial="TWIN-S-0001", cast_strength=(0.05, 0.025, 0.07))
    misalignment: MisalignmentSpec = MisalignmentSpec()
    trigger_jitter_frac: float = Field(
        0.25, ge=0, le=0.45, description="Random shift of each pair's trigger, in pair spacings."
    )

    @model_validator(mode="after")
    def _check(self) -> SceneSpec:
        if self.background not in BACKGROUND_NAMES:
            raise ValueError(f"background {self.background!r} unknown; known: {', '.join(BACKGROUND_NAMES)}")
        return self

    # ---- derived quantities -------------------------------------------------------------
    @property
    def fastest_speed_mps(self) -> float:
        return max(o.trajectory.speed_mps for o in self.objects)

    @property
    def short_exposure_s(self) -> float:
        """tS (s): given, or Eq. 2 for the fastest object and ``sharp_blur_px``."""
        if self.exposure.short_s is not None:
            return self.exposure.short_s
        o = self.optics
        return optics.exposure_for_blur(
            self.exposure.sharp_blur_px,
            self.fastest_speed_mps,
            o.focal_length_mm * 1e-3,
            o.object_distance_m,
            o.pixel_pitch_um * 1e-6,
        )

    @property
    def long_exposure_s(self) -> float:
        """tL = tS / τ (s)."""
        return self.short_exposure_s / self.exposure.nd_transmittance

    @property
    def sharp_delay_s(self) -> float:
        """When S's exposure starts after B's (s): (tL − tS)/2 for ``centre``, 0 for ``start``."""
        if self.exposure.sharp_timing == "start":
            return 0.0
        return (self.long_exposure_s - self.short_exposure_s) / 2.0

    def blur_px(self, exposure_s: float, speed_mps: float | None = None) -> float:
        """Eq. 2's blur length (px) for an exposure; default speed: the fastest object's."""
        return exposure_s * (speed_mps or self.fastest_speed_mps) * self.optics.pixels_per_metre


def check_physics(spec: SceneSpec) -> None:
    """Checks that need several fields at once; raises SceneSpecError naming the field."""
    lo, hi = spec.sensor.exposure_range_s
    for field, value in (
        ("exposure.short_s (tS)", spec.short_exposure_s),
        ("exposure long (tL = tS/τ)", spec.long_exposure_s),
    ):
        if not lo <= value <= hi:
            raise SceneSpecError(
                f"{field} = {value:.6g} s is outside the camera's ExposureTime range [{lo:g}, {hi:g}] s"
            )
    try:
        spec.optics.pixels_per_metre  # noqa: B018 - raises for d <= f
    except optics.OpticsError as exc:
        raise SceneSpecError(f"optics: {exc}") from None
    for i, obj in enumerate(spec.objects):
        for end in ("start", "end"):
            x, y = getattr(obj.trajectory, end)
            if not (0.0 < x < 1.0 and 0.0 < y < 1.0):
                raise SceneSpecError(
                    f"objects.{i}.trajectory.{end} = ({x}, {y}) puts the object's centre outside the frame; "
                    "both coordinates must lie strictly inside (0, 1)"
                )
        size_px = obj.height_m * spec.optics.pixels_per_metre
        if not 4 <= size_px <= 2 * spec.sensor.height:
            raise SceneSpecError(
                f"objects.{i}.height_m = {obj.height_m} m images to {size_px:.1f} px; "
                f"it must image to between 4 px and twice the frame height ({2 * spec.sensor.height} px)"
            )
        if not math.isfinite(size_px):
            raise SceneSpecError(f"objects.{i}.height_m gives a non-finite size")


def parse_scene(data: dict) -> SceneSpec:
    """Validate a scene dictionary (e.g. loaded YAML) fully; raise SceneSpecError otherwise."""
    if not isinstance(data, dict):
        raise SceneSpecError(f"a scene must be a mapping of fields, got {type(data).__name__}")
    spec = validate_model(SceneSpec, data, SceneSpecError, "invalid scene", root="scene")
    check_physics(spec)
    return spec


def load_scene_file(path: Path) -> SceneSpec:
    """Read and validate a scene YAML file."""
    return parse_scene(read_yaml(path, SceneSpecError, "scene"))


def preset_names() -> list[str]:
    """Names of the bundled scene presets."""
    folder = resources.files("hardware_sim") / "presets"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> SceneSpec:
    """A bundled preset by name; UnknownPresetError lists the valid names."""
    names = preset_names()
    if name not in names:
        raise UnknownPresetError(f"unknown preset {name!r}; available presets: {', '.join(names)}")
    text = (resources.files("hardware_sim") / "presets" / f"{name}.yaml").read_text()
    return parse_scene(yaml.safe_load(text))


def with_sharp_timing(spec: SceneSpec, sharp_timing: str | None) -> SceneSpec:
    """The same scene with camera S's exposure at the ``centre`` of B's or at its ``start``
    (``None``: unchanged); SceneSpecError names the allowed values."""
    if sharp_timing is None or sharp_timing == spec.exposure.sharp_timing:
        return spec
    if sharp_timing not in SHARP_TIMINGS:
        raise SceneSpecError(f"exposure.sharp_timing must be one of {', '.join(SHARP_TIMINGS)}, got {sharp_timing!r}")
    data = spec.model_dump(mode="json")
    data["exposure"]["sharp_timing"] = sharp_timing
    return parse_scene(data)


def with_sensor_size(spec: SceneSpec, width: int | None, height: int | None) -> SceneSpec:
    """The same scene on a sensor of another size, keeping the horizontal field of view.

    The pixel pitch scales by old width / new width and the exposures stay as they are, so
    objects keep their place and size in the frame and blur lengths in pixels scale with the width (a 256-px-wide test sensor sees
    a 70 px blur of the full 2152-px sensor as 8.3 px). The result is validated again.
    """
    if width is None and height is None:
        return spec
    data = spec.model_dump(mode="json")
    # The exposures are the physical set-up: pin tS so that Eq. 2 is not re-solved for new pixels.
    data["exposure"] = {"short_s": spec.short_exposure_s, "nd_transmittance": spec.exposure.nd_transmittance,
                        "sharp_timing": spec.exposure.sharp_timing}
    new_width = spec.sensor.width if width is None else width
    data["sensor"]["width"] = new_width
    if height is not None:
        data["sensor"]["height"] = height
    data["optics"]["pixel_pitch_um"] = spec.optics.pixel_pitch_um * spec.sensor.width / new_width
    return parse_scene(data)
