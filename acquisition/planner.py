"""Exposure planning for the beam-splitting rig (the paper's Eq. 2).

Given the scene (object distance d, speed v), the lens (focal length f, or the image distance
l' directly), the pixel pitch c and the blur tolerated in the sharp image n_S:

    tS = c · n_S · d / (l' · v)          (Eq. 2, camera S)
    tL = tS / τ                          (camera B behind the ND filter τ: same energy)
    blur in B = v · tL · l' / (c · d) = n_S / τ   (px)

τ is chosen among the rig's ND filters: the one whose blur in B lies inside ``blur_range_px``
(the paper's 15–70 px) closest to ``target_blur_px`` (default: the middle of the range).
Exposures are quantised to the pulse generator's resolution, because in trigger-width mode the
pulse width *is* the exposure; the plan refuses, naming the reason, when the blur is out of
range, an exposure is outside the camera's ExposureTime range, or the generator cannot
represent a width.

When camera S's exposure starts (``sharp_timing``, beyond the paper):

    centre   S is triggered (tL − tS)/2 after B (channel B's ``:PULSE2:DELAY``), so its exposure
             sits at the temporal centre of B's: the sharp object stands in the middle of its
             blur trail, which tells a deblurring model where the target is (the default);
    start    both exposures start together, as in the paper's Fig. 1a (delay 0): the sharp
             object sits at one end of its trail, as in the published ReLoBlur set.

The delay is quantised to the generator's 250 ps; a timing the rig cannot honour (tS > tL, or
a delay beyond the generator's range) is refused with ``SharpTimingError``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from acquisition.bnc575 import MAX_TIME_S, quantise, representable
from core import optics
from core.errors import UserError

# Transmittances of common ND filters: ND0.3, 0.6, 0.9, 1.0, 1.2, 1.3, 1.5, 2.0 (and none).
DEFAULT_ND_FILTERS = (1.0, 0.5, 0.25, 0.125, 0.1, 0.0625, 0.05, 0.03125, 0.01)

SharpTiming = Literal["centre", "start"]
SHARP_TIMINGS: tuple[str, ...] = ("centre", "start")
DEFAULT_SHARP_TIMING: SharpTiming = "centre"


class PlanError(UserError, ValueError):
    """An exposure plan the rig cannot carry out; the message says why and what to change."""

    http_status = 422


class BlurOutOfRangeError(PlanError):
    """No ND filter puts the blur in B inside the allowed range."""


class ExposureOutOfRangeError(PlanError):
    """An exposure lies outside the camera's ExposureTime range."""


class PulseWidthError(PlanError):
    """The pulse generator cannot represent a pulse width the plan needs."""


class SharpTimingError(PlanError):
    """A ``sharp_timing`` the rig cannot honour: an unknown timing, tS > tL (S's window cannot
    lie inside B's), or a delay of camera S's trigger beyond the pulse generator's range."""


def sharp_delay(long_exposure_s: float, short_exposure_s: float, sharp_timing: str = DEFAULT_SHARP_TIMING) -> float:
    """The delay (s) of camera S's trigger after camera B's for ``sharp_timing``.

    ``centre``: (tL − tS)/2 quantised to the pulse generator's 250 ps, so that S's exposure sits
    at the centre of B's; ``start``: 0. Raises ``SharpTimingError`` naming the reason for an
    unknown timing, tS > tL, or a delay the generator cannot make (0 to 999.99999999975 s).
    """
    if sharp_timing not in SHARP_TIMINGS:
        raise SharpTimingError(f"sharp_timing must be one of {', '.join(SHARP_TIMINGS)}; got {sharp_timing!r}")
    if short_exposure_s > long_exposure_s:
        raise SharpTimingError(
            f"sharp_timing {sharp_timing!r} cannot be honoured: camera S's exposure tS = {short_exposure_s:.6g} s "
            f"is longer than camera B's tL = {long_exposure_s:.6g} s, so S's window cannot lie inside B's; "
            "shorten tS or use a denser ND filter (a longer tL)"
        )
    if sharp_timing == "start":
        return 0.0
    delay = quantise((long_exposure_s - short_exposure_s) / 2.0)
    if not representable(delay, "delay"):
        raise SharpTimingError(
            f"sharp_timing 'centre' cannot be honoured: camera S's trigger delay (tL − tS)/2 = {delay:.12g} s "
            f"is beyond the pulse generator's delay range [0, {MAX_TIME_S!r}] s; shorten the exposures "
            "or use sharp_timing: start"
        )
    return delay


@dataclass(frozen=True)
class PlanRequest:
    """Inputs of the planner. Lengths in metres unless the name says otherwise."""

    object_distance_m: float
    speed_mps: float
    pixel_pitch_um: float
    focal_length_mm: float | None = None
    image_distance_mm: float | None = None
    sharp_blur_px: float = 6.0
    nd_filters: tuple[float, ...] = DEFAULT_ND_FILTERS
    blur_range_px: tuple[float, float] = (15.0, 70.0)
    target_blur_px: float | None = None
    exposure_range_s: tuple[float, float] = (2e-5, 10.0)
    sharp_timing: SharpTiming = DEFAULT_SHARP_TIMING


@dataclass(frozen=True)
class NdOption:
    """What one ND filter would give; ``problem`` is None when it is usable."""

    transmittance: float
    long_exposure_s: float
    blur_b_px: float
    problem: str | None


@dataclass(frozen=True)
class ExposurePlan:
    """The exposures, the filter, the expected blur and the pulse widths (seconds, pixels).

    ``sharp_delay_s``: how long after camera B's trigger camera S's comes (channel B's
    ``:PULSE2:DELAY`` beyond channel A's), for ``sharp_timing`` (see the module docstring). A plan
    built without them has both exposures start together (``start``, delay 0).
    """

    short_exposure_s: float
    long_exposure_s: float
    nd_transmittance: float
    blur_s_px: float
    blur_b_px: float
    pulse_width_b_s: float
    pulse_width_s_s: float
    image_distance_m: float
    pixels_per_metre: float
    options: tuple[NdOption, ...] = field(default=())
    sharp_timing: SharpTiming = "start"
    sharp_delay_s: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def _image_distance(req: PlanRequest) -> float:
    if (req.focal_length_mm is None) == (req.image_distance_mm is None):
        raise PlanError("give exactly one of the focal length (--focal-length) or the image distance l' (--image-distance)")
    if req.image_distance_mm is not None:
        if not req.image_distance_mm > 0:
            raise PlanError(f"image distance must be > 0 mm, got {req.image_distance_mm}")
        return req.image_distance_mm * 1e-3
    try:
        return optics.image_distance(req.focal_length_mm * 1e-3, req.object_distance_m)
    except optics.OpticsError as exc:
        raise PlanError(str(exc)) from None


def _check_inputs(req: PlanRequest) -> None:
    for name in ("object_distance_m", "speed_mps", "pixel_pitch_um", "sharp_blur_px"):
        value = getattr(req, name)
        if not value > 0:
            raise PlanError(f"{name} must be > 0, got {value}")
    lo, hi = req.blur_range_px
    if not 0 < lo < hi:
        raise PlanError(f"blur range must satisfy 0 < min < max, got {req.blur_range_px}")
    if not req.nd_filters or any(not 0 < t <= 1 for t in req.nd_filters):
        raise PlanError(f"ND filter transmittances must lie in (0, 1], got {req.nd_filters}")
    if req.sharp_timing not in SHARP_TIMINGS:
        raise SharpTimingError(f"sharp_timing must be one of {', '.join(SHARP_TIMINGS)}; got {req.sharp_timing!r}")


def _in_range(value: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] <= value <= bounds[1]


def plan_exposures(req: PlanRequest) -> ExposurePlan:
    """The exposure plan for a scene (see the module docstring); raises a PlanError subclass."""
    _check_inputs(req)
    l_img = _image_distance(req)
    ppm = l_img / (req.object_distance_m * req.pixel_pitch_um * 1e-6)
    t_short = quantise(req.sharp_blur_px / (req.speed_mps * ppm))  # Eq. 2
    lo_s, hi_s = req.exposure_range_s
    if not _in_range(t_short, req.exposure_range_s):
        raise ExposureOutOfRangeError(
            f"tS = {t_short:.6g} s (Eq. 2 for {req.sharp_blur_px:g} px of blur at {req.speed_mps:g} m/s) "
            f"is outside the camera's ExposureTime range [{lo_s:g}, {hi_s:g}] s; change the tolerated "
            "sharp blur, the speed or the distance"
        )
    if not representable(t_short):
        raise PulseWidthError(f"the pulse generator cannot make a {t_short:.12g} s pulse for tS")
    lo_b, hi_b = req.blur_range_px
    options = []
    for tau in sorted(set(req.nd_filters), reverse=True):
        t_long = quantise(t_short / tau)
        blur_b = req.speed_mps * t_long * ppm
        problem = None
        if not _in_range(blur_b, req.blur_range_px):
            problem = f"blur in B {blur_b:.1f} px outside [{lo_b:g}, {hi_b:g}] px"
        elif not _in_range(t_long, req.exposure_range_s):
            problem = f"tL {t_long:.6g} s outside the ExposureTime range [{lo_s:g}, {hi_s:g}] s"
        elif not representable(t_long):
            problem = f"pulse width {t_long:.12g} s not representable by the pulse generator"
        options.append(NdOption(tau, t_long, blur_b, problem))
    usable = [o for o in options if o.problem is None]
    if not usable:
        listing = "; ".join(f"τ={o.transmittance:g}: {o.problem}" for o in options)
        raise BlurOutOfRangeError(f"no ND filter gives a usable long exposure ({listing})")
    target = req.target_blur_px if req.target_blur_px is not None else 0.5 * (lo_b + hi_b)
    best = min(usable, key=lambda o: (abs(o.blur_b_px - target), -o.transmittance))
    delay = sharp_delay(best.long_exposure_s, t_short, req.sharp_timing)
    return ExposurePlan(
        short_exposure_s=t_short,
        long_exposure_s=best.long_exposure_s,
        nd_transmittance=best.transmittance,
        blur_s_px=req.speed_mps * t_short * ppm,
        blur_b_px=best.blur_b_px,
        pulse_width_b_s=best.long_exposure_s,
        pulse_width_s_s=t_short,
        image_distance_m=l_img,
        pixels_per_metre=ppm,
        options=tuple(options),
        sharp_timing=req.sharp_timing,
        sharp_delay_s=delay,
    )


def lightbox_plan(exposure_s: float, nd_transmittance: float, sharp_timing: SharpTiming = "start") -> ExposurePlan:
    """The plan of a lightbox flat field: camera S exposes ``exposure_s`` (s), camera B
    ``exposure_s / nd_transmittance`` behind its ND filter, both quantised to the pulse
    generator's resolution; nothing moves, so no blur, and by default both start together
    (``sharp_timing`` changes nothing in a flat field). Raises PlanError for values ≤ 0 or a
    transmittance above 1."""
    if not exposure_s > 0:
        raise PlanError(f"the lightbox exposure must be > 0 s, got {exposure_s}")
    if not 0 < nd_transmittance <= 1:
        raise PlanError(f"the ND transmittance must be in (0, 1], got {nd_transmittance}")
    t_short = quantise(exposure_s)
    t_long = quantise(t_short / nd_transmittance)
    delay = sharp_delay(t_long, t_short, sharp_timing)
    return ExposurePlan(t_short, t_long, nd_transmittance, 0.0, 0.0, t_long, t_short, 0.0, 0.0,
                        sharp_timing=sharp_timing, sharp_delay_s=delay)
