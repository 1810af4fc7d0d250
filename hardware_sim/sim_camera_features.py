"""The GenICam features of the twin's simulated camera: their specs, defaults and value checks.

Features (GenICam SFNC names and units): ExposureTime (µs, 20..10 000 000), ExposureMode
(Timed | TriggerWidth), Gain (dB, 0..24), TriggerSelector (FrameStart), TriggerMode (Off | On),
TriggerSource (Line0 | Software), TriggerActivation (RisingEdge), AcquisitionMode (Continuous),
PixelFormat (one entry: BayerRG<bits> unless another CFA is given), and read-only Width, Height
(the sensor), DeviceSerialNumber, DeviceModelName, DeviceVendorName. Locked while acquiring:
Width, Height, PixelFormat, TriggerMode, TriggerSource, ExposureMode; ExposureTime and Gain stay
writable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from acquisition.cameras.base import FeatureValueError

__all__ = [
    "DEFAULT_EXPOSURE_TIME_US",
    "EXPOSURE_TIME_RANGE_US",
    "GAIN_RANGE_DB",
    "PIXEL_FORMAT_PREFIXES",
    "SUPPORTED_BITS",
    "FeatureSpec",
    "coerce",
    "feature_specs",
    "initial_values",
    "pixel_format_for",
]

EXPOSURE_TIME_RANGE_US = (20.0, 10_000_000.0)
GAIN_RANGE_DB = (0.0, 24.0)
DEFAULT_EXPOSURE_TIME_US = 10_000.0
SUPPORTED_BITS = (8, 10, 12, 16)
PIXEL_FORMAT_PREFIXES = ("BayerRG", "BayerBG", "BayerGR", "BayerGB", "Mono")


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: its kind (``"enum"``, ``"float"``, ``"int"``, ``"str"``), whether it is
    writable and locked while acquiring, its entries (enums) or range and unit (floats)."""

    kind: str  # "enum", "float", "int", "str"
    writable: bool
    locked_while_acquiring: bool = False
    entries: tuple[str, ...] = ()
    low: float = 0.0
    high: float = 0.0
    unit: str = ""


def pixel_format_for(bits: int, pixel_format: str | None = None) -> str:
    """The sensor's one PixelFormat: ``pixel_format`` or ``BayerRG<bits>``; ValueError for a
    format that is not a Bayer/Mono format of ``bits`` bits."""
    pixel_format = pixel_format or f"BayerRG{bits}"
    allowed = [f"{prefix}{bits}" for prefix in PIXEL_FORMAT_PREFIXES]
    if pixel_format not in allowed:
        raise ValueError(
            f"pixel_format for {bits} bits must be one of {allowed}, got {pixel_format!r}"
        )
    return pixel_format


def feature_specs(pixel_format: str) -> dict[str, FeatureSpec]:
    """Every feature's spec, by SFNC name (see the module docstring)."""
    return {
        "DeviceVendorName": FeatureSpec("str", writable=False),
        "DeviceModelName": FeatureSpec("str", writable=False),
        "DeviceSerialNumber": FeatureSpec("str", writable=False),
        "Width": FeatureSpec("int", writable=False, locked_while_acquiring=True),
        "Height": FeatureSpec("int", writable=False, locked_while_acquiring=True),
        "PixelFormat": FeatureSpec("enum", True, True, entries=(pixel_format,)),
        "AcquisitionMode": FeatureSpec("enum", True, entries=("Continuous",)),
        "ExposureMode": FeatureSpec("enum", True, True, entries=("Timed", "TriggerWidth")),
        "ExposureTime": FeatureSpec(
            "float",
            True,
            low=EXPOSURE_TIME_RANGE_US[0],
            high=EXPOSURE_TIME_RANGE_US[1],
            unit="us",
        ),
        "Gain": FeatureSpec("float", True, low=GAIN_RANGE_DB[0], high=GAIN_RANGE_DB[1], unit="dB"),
        "TriggerSelector": FeatureSpec("enum", True, entries=("FrameStart",)),
        "TriggerMode": FeatureSpec("enum", True, True, entries=("Off", "On")),
        "TriggerSource": FeatureSpec("enum", True, True, entries=("Line0", "Software")),
        "TriggerActivation": FeatureSpec("enum", True, entries=("RisingEdge",)),
    }


def initial_values(
    *, vendor: str, model: str, serial: str, width: int, height: int, pixel_format: str
) -> dict[str, object]:
    """Every feature's value when the camera is made (ExposureTime 10 000 µs, Gain 0 dB,
    TriggerMode Off, TriggerSource Line0, ExposureMode Timed)."""
    return {
        "DeviceVendorName": vendor,
        "DeviceModelName": model,
        "DeviceSerialNumber": serial,
        "Width": width,
        "Height": height,
        "PixelFormat": pixel_format,
        "AcquisitionMode": "Continuous",
        "ExposureMode": "Timed",
        "ExposureTime": DEFAULT_EXPOSURE_TIME_US,
        "Gain": 0.0,
        "TriggerSelector": "FrameStart",
        "TriggerMode": "Off",
        "TriggerSource": "Line0",
        "TriggerActivation": "RisingEdge",
    }


def coerce(name: str, spec: FeatureSpec, value: object) -> object:
    """``value`` as the feature takes it; FeatureValueError naming the entries or the range."""
    if spec.kind == "enum":
        if not isinstance(value, str) or value not in spec.entries:
            raise FeatureValueError(
                f"{name} must be one of {', '.join(spec.entries)}; got {value!r}"
            )
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise FeatureValueError(f"{name} takes a number in {spec.unit}; got {value!r}")
    number = float(value)
    if not spec.low <= number <= spec.high:
        raise FeatureValueError(
            f"{name}={number:g} {spec.unit} outside [{spec.low:g}, {spec.high:g}] {spec.unit}"
        )
    return number
