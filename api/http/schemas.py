"""Request and response models of the HTTP API (pydantic)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.models import JobKind, JobStatus, Role
from core.text import refuse_control_characters


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorOut(BaseModel):
    """Every 4xx/5xx body: what was wrong and what to do."""

    detail: Any = Field(description="A message, or for body validation a list of problems.")


class HealthOut(BaseModel):
    status: str
    version: str
    database: str
    device: str | None = Field(description="Inference device of the loaded model.")
    model_loaded: bool
    runner: bool = Field(
        description="Whether jobs are executed by this server (by its own runner, or by the "
        "runner of `reloblur serve --workers N` that this HTTP worker belongs to)."
    )


# ---- tokens ----
class TokenCreate(BaseModel):
    """A new token: ``name`` (1–64 characters, no control characters), ``role``, and an optional
    ``expires_at`` that must lie in the future (a time without a zone is taken as UTC)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    role: Role = Role.VIEWER
    expires_at: datetime | None = None

    @field_validator("name")
    @classmethod
    def _printable_name(cls, value: str) -> str:
        return refuse_control_characters(value, "name")

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if value <= datetime.now(UTC):
            raise ValueError(f"expires_at must lie in the future, got {value.isoformat()}")
        return value


class TokenOut(_Out):
    id: int
    name: str
    role: Role
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenCreated(TokenOut):
    secret: str = Field(description="The token; shown once, never stored.")


# ---- rigs and plans ----
class RigCameraOut(BaseModel):
    role: str
    driver: str
    serial: str


class RigOut(BaseModel):
    name: str
    description: str
    file: str
    simulated: bool
    busy: bool = Field(description="A capture is running or queued on this rig.")
    optics: dict[str, Any]
    cameras: list[RigCameraOut]
    registered_id: int | None = Field(description="The rig's database id once it has captured.")


class SynchronizerIdentity(BaseModel):
    make: str
    model: str
    serial: str
    firmware: str


class CameraIdentity(BaseModel):
    role: str
    vendor: str
    model: str
    serial: str
    features: dict[str, Any]


class RigIdentityOut(BaseModel):
    name: str
    synchronizer: SynchronizerIdentity
    cameras: list[CameraIdentity]


class PlanIn(BaseModel):
    """Eq. 2 inputs; ``rig`` supplies optics, ND filters (and for the twin, distance and speed)."""

    model_config = ConfigDict(extra="forbid")
    rig: str | None = Field(None, description="Name of a rig file whose optics to use.")
    distance_m: float | None = Field(None, gt=0, le=1e4)
    speed_mps: float | None = Field(None, gt=0, le=1e4)
    focal_length_mm: float | None = Field(None, gt=0, le=2000)
    image_distance_mm: float | None = Field(None, gt=0, le=1e5)
    pixel_pitch_um: float | None = Field(None, gt=0, le=1000)
    sharp_blur_px: float = Field(6.0, gt=0, le=1000)
    nd_filters: list[float] | None = Field(None, min_length=1, max_length=64)
    blur_min_px: float = Field(15.0, gt=0, le=1e4)
    blur_max_px: float = Field(70.0, gt=0, le=1e4)
    target_blur_px: float | None = Field(None, gt=0, le=1e4)
    sharp_timing: str | None = Field(
        None, pattern="^(centre|start)$",
        description="When camera S's exposure starts: `centre` of B's (S triggered (tL − tS)/2 after B) or "
        "`start`, together with B's (the paper's timing). Default: the rig's `sharp_timing`, else centre.",
    )


class NdOptionOut(BaseModel):
    transmittance: float
    long_exposure_s: float
    blur_b_px: float
    problem: str | None


class PlanOut(BaseModel):
    short_exposure_s: float
    long_exposure_s: float
    nd_transmittance: float
    blur_s_px: float
    blur_b_px: float
    pulse_width_b_s: float
    pulse_width_s_s: float
    image_distance_m: float
    pixels_per_metre: float
    options: list[NdOptionOut]
    sharp_timing: str = Field(description="`centre` or `start`: when camera S's exposure starts.")
    sharp_delay_s: float = Field(
        description="Delay of camera S's trigger after camera B's (channel B's :PULSE2:DELAY), on the 250 ps grid."
    )


# ---- scenes, captures, frames, products, calibrations ----
class SceneOut(_Out):
    id: int
    name: str
    rig_id: int
    description: str
    object_distance_m: float | None
    notes: str
    created_at: datetime
    n_captures: int = 0
    n_pairs: int = 0


class FrameOut(_Out):
    id: int
    role: str
    path: str
    sha256: str
    exposure_s: float
    gain_db: float
    black_level: int
    white_level: int
    width_px: int
    height_px: int
    trigger_index: int
    received_at: datetime
    exposure_delay_s: float | None = Field(
        None, description="When this frame's exposure started after camera B's (s); null for frames stored before "
        "it was recorded."
    )


class CaptureOut(_Out):
    id: int
    rig_id: int
    scene_id: int | None
    kind: str
    trigger_index: int
    status: str
    started_at: datetime
    finished_at: datetime | None


class CaptureDetail(CaptureOut):
    frames: list[FrameOut]


class ProductOut(_Out):
    id: int
    scene_id: int
    capture_id: int | None
    kind: str
    params_hash: str
    pipeline_version: str
    path: str
    sha256: str
    info: dict[str, Any]
    created_at: datetime


class ProcessingRunOut(_Out):
    id: int
    status: str
    params_hash: str
    pipeline_version: str
    outcome: dict[str, Any] | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None


class SceneDetail(SceneOut):
    captures: list[CaptureOut]
    products: list[ProductOut]
    processing_runs: list[ProcessingRunOut]


class CalibrationOut(_Out):
    id: int
    camera_id: int
    lightbox_frame_id: int
    calibration_id: str
    params_hash: str
    pipeline_version: str
    cast_spread: float
    residual_rms_max: float
    created_at: datetime


class CalibrationDetail(CalibrationOut):
    content: dict[str, Any]


# ---- jobs ----
class JobOut(_Out):
    id: int
    kind: JobKind
    status: JobStatus
    params: dict[str, Any]
    result: dict[str, Any] | None
    progress: float
    message: str | None
    attempts: int
    max_attempts: int
    error: str | None
    cancel_requested: bool
    parent_id: int | None
    created_by: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class JobAccepted(BaseModel):
    """A job was recorded; follow ``url`` for its status and progress."""

    id: int
    kind: JobKind
    status: JobStatus
    url: str
    upload: str | None = Field(
        None, description="Where an uploaded image was stored (data-relative)."
    )


# ---- checkpoints ----
class CheckpointOut(BaseModel):
    path: str = Field(description="Relative to the data directory.")
    size_bytes: int
    modified_at: datetime


class LoadedCheckpointOut(BaseModel):
    path: str
    model_name: str
    gated: bool
    step: int | None
    device: str


class CheckpointList(BaseModel):
    loaded: LoadedCheckpointOut | None
    checkpoints: list[CheckpointOut]
