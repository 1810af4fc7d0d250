"""The post-processing pipeline's parameters, their YAML file, and the hashes that name products.

One :class:`PipelineParams` holds every stage's parameters (defaults = ``configs/pipeline.yaml``).
Each product's ``params_hash`` (:func:`params_hash`) is the sha256 of the canonical JSON of the
stage's own parameters, :data:`PIPELINE_VERSION` and the identities of its inputs, so changing
the mask parameters makes new masks but reuses the images, the flow and the calibrations.

Bump :data:`PIPELINE_VERSION` whenever a stage's output changes for unchanged parameters (a bug
fix, a new algorithm): every product is then made anew, the old ones stay.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from core.config import StrictModel, read_yaml, validate_model
from core.errors import UserError
from postprocess.flow import DEFAULT_METHOD as DEFAULT_FLOW_METHOD
from postprocess.flow import METHODS as FLOW_METHODS
from postprocess.masks import MaskParams
from postprocess.warp import METHODS as WARP_METHODS

PIPELINE_VERSION = "postprocess-1"


class PipelineParamsError(UserError, ValueError):
    """A pipeline parameter file or value is invalid; the message names the field."""


class _Section(StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CalibrationParams(_Section):
    """Eq. 3–5 fit: patch grid (rows, cols) over the lightbox and refinement passes."""

    patches: tuple[int, int] = (9, 13)
    refinements: int = Field(2, ge=0, le=10)


class PhotometricParams(_Section):
    """Eq. 6–7. ``source``: ``reference`` takes β once per scene from the static reference pair
    (aligned B against S: static content by construction); ``pair`` takes each pair's own means
    (the paper's literal Eq. 6), over static regions only when ``static_only`` (pixels where
    the pair's sharp frame differs from the reference's sharp frame by more than
    ``change_threshold`` (relative) are left out)."""

    source: Literal["reference", "pair"] = "reference"
    static_only: bool = True
    change_threshold: float = Field(0.05, gt=0, le=1)


class IspParams(_Section):
    """ISP: ``output_bits`` of the PNG products (8 = ReLoBlur's export; 16 for research);
    ``colour_matrix``: ``dng`` (from ColorMatrix1, identity when the DNG has none) or
    ``identity`` (white-balanced camera RGB taken as linear sRGB)."""

    output_bits: Literal[8, 16] = 8
    colour_matrix: Literal["dng", "identity"] = "dng"


class AlignmentParams(_Section):
    """Geometric alignment: the flow method on the reference pair, the warp's interpolator."""

    flow_method: str = DEFAULT_FLOW_METHOD
    warp_method: str = "cmtf"

    @field_validator("flow_method", "warp_method")
    @classmethod
    def _known_method(cls, value: str, info: ValidationInfo) -> str:
        known = FLOW_METHODS if info.field_name == "flow_method" else WARP_METHODS
        if value not in known:
            raise ValueError(f"must be one of {', '.join(known)}, got {value!r}")
        return value


class PipelineParams(_Section):
    """Every stage's parameters; sections default to the values documented on each class."""

    calibration: CalibrationParams = CalibrationParams()
    photometric: PhotometricParams = PhotometricParams()
    isp: IspParams = IspParams()
    alignment: AlignmentParams = AlignmentParams()
    masks: MaskParams = MaskParams()

    def section(self, name: str) -> dict[str, Any]:
        """One section as plain JSON-safe data."""
        return getattr(self, name).model_dump(mode="json")

    def hash(self) -> str:
        """sha256 of all parameters and the pipeline version (names a processing run)."""
        return params_hash({"params": self.model_dump(mode="json")})


def load_params(path: Path | str | None) -> PipelineParams:
    """Parameters from a YAML file (missing sections and fields take their defaults)."""
    if path is None:
        return PipelineParams()
    path = Path(path)
    data = read_yaml(path, PipelineParamsError, "pipeline parameters") or {}
    if not isinstance(data, dict):
        raise PipelineParamsError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return validate_model(PipelineParams, data, PipelineParamsError, str(path), root="params")


def canonical_json(content: Any) -> str:
    """Sorted-key, compact, NaN-free JSON: equal content gives equal text."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)


def params_hash(content: dict[str, Any]) -> str:
    """sha256 (hex) of ``content`` plus :data:`PIPELINE_VERSION`, canonically serialised."""
    payload = canonical_json({"pipeline_version": PIPELINE_VERSION, **content})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
