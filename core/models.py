"""The database schema: rigs, cameras, scenes, captures, frames, post-processing products, API tokens and jobs.

Units are in the column names: ``_um`` micrometres, ``_mm`` millimetres, ``_m`` metres,
``_s`` seconds, ``_ns`` nanoseconds, ``_db`` decibels, ``_px`` sensor pixels; levels are raw
digital numbers (DN). Every timestamp is timezone-aware and stored in UTC.

Enums are stored as short strings with a CHECK constraint (``native_enum=False``) so SQLite and
PostgreSQL hold the same values. Constraint names follow ``NAMING_CONVENTION`` so that Alembic
(batch mode on SQLite included) can address them by a stable name.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_SHA256 = re.compile(r"[0-9a-f]{64}")


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that stores UTC, rejects naive values and always reads back aware.

    SQLite keeps no offset, so values are converted to UTC before they are written and tagged
    as UTC when they are read; PostgreSQL (``timestamptz``) gets the same values.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: timestamps must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _checked_sha256(value: str) -> str:
    if not _SHA256.fullmatch(value):
        raise ValueError(f"sha256 must be 64 lowercase hex characters, got {value!r}")
    return value


def _checked_relative_path(value: str) -> str:
    p = PurePosixPath(value)
    if p.is_absolute() or ".." in p.parts or "\\" in value or not value:
        raise ValueError(f"path must be relative to the data directory, got {value!r}")
    return value


class CameraRole(enum.StrEnum):
    """Which side of the beam splitter a camera (and its frames) sits on."""

    B = "B"  # reflection side, behind the ND filter, long exposure (the blurred image)
    S = "S"  # transmission side, short exposure (the sharp image)


class CFAPattern(enum.StrEnum):
    """Bayer colour-filter-array layout, read from the top-left 2x2 block."""

    RGGB = "RGGB"
    BGGR = "BGGR"
    GRBG = "GRBG"
    GBRG = "GBRG"


class CaptureKind(enum.StrEnum):
    """What a capture is for: calibration (lightbox, whiteboard, reference) or a data pair."""

    LIGHTBOX = "lightbox"
    WHITEBOARD = "whiteboard"
    REFERENCE = "reference"
    PAIR = "pair"


class CaptureStatus(enum.StrEnum):
    """Life cycle of a capture: pending until every frame is stored, then complete or failed."""

    PENDING = "pending"
    COMPLETE = "complete"
    FAILED = "failed"


def _str_enum(cls: type[enum.StrEnum], name: str, length: int) -> Enum:
    """A VARCHAR(length) column type with a CHECK named ``ck_<table>_<name>``, storing values."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        length=length,
        create_constraint=True,
        validate_strings=True,
        values_callable=lambda members: [m.value for m in members],
    )


class Base(DeclarativeBase):
    """Declarative base; its MetaData carries the constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RigRecord(Base):
    """A two-camera beam-splitting rig: the shared lens and sensor geometry, and the ND filters.

    ``pixel_pitch_um`` in micrometres, ``focal_length_mm`` in millimetres, ``nd_filters`` a list
    of transmittances in (0, 1] (the filters available in front of camera B), ``bit_depth`` in
    bits per raw sample, sensor size in pixels.
    """

    __tablename__ = "rigs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    pixel_pitch_um: Mapped[float] = mapped_column(Float)
    focal_length_mm: Mapped[float] = mapped_column(Float)
    nd_filters: Mapped[list[float]] = mapped_column(JSON, default=list)
    cfa_pattern: Mapped[CFAPattern] = mapped_column(_str_enum(CFAPattern, "cfa_pattern", 4))
    bit_depth: Mapped[int] = mapped_column(Integer)
    sensor_width_px: Mapped[int] = mapped_column(Integer)
    sensor_height_px: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    cameras: Mapped[list[CameraRecord]] = relationship(
        back_populates="rig", cascade="all, delete-orphan", passive_deletes=True
    )
    scenes: Mapped[list[Scene]] = relationship(back_populates="rig")
    captures: Mapped[list[Capture]] = relationship(back_populates="rig")

    @validates("nd_filters")
    def _check_nd_filters(self, key: str, value: list[Any]) -> list[float]:
        filters = [float(t) for t in value]
        bad = [t for t in filters if not 0.0 < t <= 1.0]
        if bad:
            raise ValueError(f"nd_filters transmittances must lie in (0, 1], got {bad}")
        return filters


class CameraRecord(Base):
    """One camera of a rig, on side ``role`` (B: reflection/long exposure/ND; S: transmission/short).

    ``driver`` names the acquisition backend, e.g. ``harvesters`` or ``simulated``.
    """

    __tablename__ = "cameras"
    __table_args__ = (UniqueConstraint("rig_id", "role", "serial"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rig_id: Mapped[int] = mapped_column(ForeignKey("rigs.id", ondelete="CASCADE"))
    role: Mapped[CameraRole] = mapped_column(_str_enum(CameraRole, "camera_role", 1))
    vendor: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(64))
    serial: Mapped[str] = mapped_column(String(64))
    driver: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    rig: Mapped[RigRecord] = relationship(back_populates="cameras")
    frames: Mapped[list[Frame]] = relationship(back_populates="camera")


class Scene(Base):
    """A place shot with one rig; ``object_distance_m`` (metres) is the focused object plane."""

    __tablename__ = "scenes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    rig_id: Mapped[int] = mapped_column(ForeignKey("rigs.id"), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    object_distance_m: Mapped[float | None] = mapped_column(Float)
    notes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    rig: Mapped[RigRecord] = relationship(back_populates="scenes")
    captures: Mapped[list[Capture]] = relationship(back_populates="scene")


class Capture(Base):
    """One trigger of the rig: both cameras exposed once. Lightbox captures have no scene.

    ``trigger_index`` (>= 0) counts triggers within a scene and kind. ``(scene_id, kind,
    trigger_index)`` is unique; since NULLs are distinct, rig-level (scene-less) captures are not
    covered by that constraint.
    """

    __tablename__ = "captures"
    __table_args__ = (
        UniqueConstraint("scene_id", "kind", "trigger_index"),
        CheckConstraint("trigger_index >= 0", name="trigger_index_non_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rig_id: Mapped[int] = mapped_column(ForeignKey("rigs.id"), index=True)
    scene_id: Mapped[int | None] = mapped_column(ForeignKey("scenes.id"))
    kind: Mapped[CaptureKind] = mapped_column(_str_enum(CaptureKind, "capture_kind", 16))
    trigger_index: Mapped[int] = mapped_column(Integer)
    status: Mapped[CaptureStatus] = mapped_column(
        _str_enum(CaptureStatus, "capture_status", 16), default=CaptureStatus.PENDING
    )
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    rig: Mapped[RigRecord] = relationship(back_populates="captures")
    scene: Mapped[Scene | None] = relationship(back_populates="captures")
    frames: Mapped[list[Frame]] = relationship(
        back_populates="capture",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Frame.role",
    )


class Frame(Base):
    """One raw image of a capture, from the camera on side ``role``.

    ``path`` is relative to the data directory (POSIX separators); ``sha256`` is the lowercase
    hex digest of the file. ``exposure_s`` in seconds (> 0), ``gain_db`` in decibels,
    ``black_level`` < ``white_level`` in DN, size in pixels. ``sensor_timestamp_ns`` is the
    camera's own clock in nanoseconds (not comparable across cameras); ``received_at`` is the
    host's UTC time when the frame arrived. ``exposure_delay_s``: seconds after camera B's
    exposure start (the trigger) at which this frame's exposure started, as the pulse generator
    held it (or as an imported DNG's description says): 0 for B; for S (tL − tS)/2 with
    ``sharp_timing: centre``, 0 with ``start``; NULL where unknown (frames stored before
    migration 0006, whose captures started both exposures together, or imported without it).
    """

    __tablename__ = "frames"
    __table_args__ = (
        UniqueConstraint("capture_id", "role"),
        CheckConstraint("exposure_s > 0", name="exposure_s_positive"),
        CheckConstraint("white_level > black_level", name="white_above_black"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    capture_id: Mapped[int] = mapped_column(ForeignKey("captures.id", ondelete="CASCADE"))
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id"), index=True)
    role: Mapped[CameraRole] = mapped_column(_str_enum(CameraRole, "camera_role", 1))
    path: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64))
    exposure_s: Mapped[float] = mapped_column(Float)
    gain_db: Mapped[float] = mapped_column(Float)
    black_level: Mapped[int] = mapped_column(Integer)
    white_level: Mapped[int] = mapped_column(Integer)
    width_px: Mapped[int] = mapped_column(Integer)
    height_px: Mapped[int] = mapped_column(Integer)
    trigger_index: Mapped[int] = mapped_column(Integer)
    sensor_timestamp_ns: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    exposure_delay_s: Mapped[float | None] = mapped_column(Float)

    capture: Mapped[Capture] = relationship(back_populates="frames")
    camera: Mapped[CameraRecord] = relationship(back_populates="frames")

    @validates("sha256")
    def _check_sha256(self, key: str, value: str) -> str:
        return _checked_sha256(value)

    @validates("path")
    def _check_path(self, key: str, value: str) -> str:
        return _checked_relative_path(value)


class RunStatus(enum.StrEnum):
    """Outcome of a capture run: running until it stops, then how it stopped."""

    RUNNING = "running"
    COMPLETE = "complete"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


class CaptureRun(Base):
    """One run of the capture protocol on a rig: what it was asked to do and how it ended.

    ``config`` (recorded at start) holds the rig, optics, exposure plan, requested pairs and
    software version; ``outcome`` (recorded at stop) the captures stored and the error, if any.
    Lightbox runs have no scene.
    """

    __tablename__ = "capture_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rig_id: Mapped[int] = mapped_column(ForeignKey("rigs.id"), index=True)
    scene_id: Mapped[int | None] = mapped_column(ForeignKey("scenes.id"), index=True)
    status: Mapped[RunStatus] = mapped_column(
        _str_enum(RunStatus, "run_status", 16), default=RunStatus.RUNNING
    )
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    rig: Mapped[RigRecord] = relationship()
    scene: Mapped[Scene | None] = relationship()


class ProductKind(enum.StrEnum):
    """What a post-processing product is.

    ``flow``: the scene's B→S flow (.npy, (H, W, 2) float32 px); ``scene_colour``: the scene's
    white balance, colour matrix and β (.json); ``blurred`` / ``sharp``: a pair's aligned
    images (PNG, 8 or 16 bit sRGB); ``mask``: a pair's LBFMG blur mask (PNG, 0 / 255).
    """

    FLOW = "flow"
    SCENE_COLOUR = "scene_colour"
    BLURRED = "blurred"
    SHARP = "sharp"
    MASK = "mask"


class Calibration(Base):
    """One camera's colour calibration (Eq. 3–5), fitted from one lightbox frame.

    ``content`` is ``postprocess.calibration.ColourCalibration.to_dict()``; ``calibration_id``
    its sha256. ``params_hash`` hashes the fit's parameters and its input (the lightbox frame's
    sha256); the same frame and parameters are never fitted twice. A later calibration of a
    camera supersedes the earlier ones (the newest row is the camera's current calibration);
    rows are never updated. ``cast_spread`` is the corrected lightbox's colour-cast spread
    (fraction: (max − min) / mean of the patch means, worst channel).
    """

    __tablename__ = "calibrations"
    __table_args__ = (UniqueConstraint("camera_id", "params_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id"), index=True)
    lightbox_frame_id: Mapped[int] = mapped_column(ForeignKey("frames.id"))
    calibration_id: Mapped[str] = mapped_column(String(64))
    params_hash: Mapped[str] = mapped_column(String(64))
    pipeline_version: Mapped[str] = mapped_column(String(32))
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    cast_spread: Mapped[float] = mapped_column(Float)
    residual_rms_max: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    camera: Mapped[CameraRecord] = relationship()
    lightbox_frame: Mapped[Frame] = relationship()


class Product(Base):
    """One file made by the post-processing pipeline, and what made it.

    ``params_hash`` is the sha256 of the canonical JSON of everything the product depends on:
    the stage's parameters, the pipeline version, the scene and capture, and the hashes of its
    inputs (frame sha256s, calibration ids, upstream products' hashes). ``(kind, params_hash)``
    is unique: the same inputs and parameters never compute twice, new parameters make new
    products, old ones stay. ``path`` is relative to the data directory (written atomically
    before the row is committed); ``info`` holds what the stage measured (β, flow statistics…).
    ``capture_id`` is empty for scene-level products (flow, scene_colour).
    """

    __tablename__ = "products"
    __table_args__ = (UniqueConstraint("kind", "params_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scene_id: Mapped[int] = mapped_column(ForeignKey("scenes.id"), index=True)
    capture_id: Mapped[int | None] = mapped_column(ForeignKey("captures.id"), index=True)
    kind: Mapped[ProductKind] = mapped_column(_str_enum(ProductKind, "product_kind", 16))
    params_hash: Mapped[str] = mapped_column(String(64))
    pipeline_version: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    scene: Mapped[Scene] = relationship()
    capture: Mapped[Capture | None] = relationship()

    @validates("sha256")
    def _check_sha256(self, key: str, value: str) -> str:
        return _checked_sha256(value)

    @validates("path")
    def _check_path(self, key: str, value: str) -> str:
        return _checked_relative_path(value)


class ProcessingRun(Base):
    """One run of the post-processing pipeline on a scene: parameters at start, outcome at stop.

    ``params`` holds the pipeline parameters and version; ``outcome`` the products made and
    reused and ``failures``: one ``{"unit", "error", "message"}`` per unit that failed (a pair,
    or the whole scene when a scene-level stage failed).
    """

    __tablename__ = "processing_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scene_id: Mapped[int] = mapped_column(ForeignKey("scenes.id"), index=True)
    status: Mapped[RunStatus] = mapped_column(
        _str_enum(RunStatus, "run_status", 16), default=RunStatus.RUNNING
    )
    params_hash: Mapped[str] = mapped_column(String(64))
    pipeline_version: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    scene: Mapped[Scene] = relationship()


class Role(enum.StrEnum):
    """What an API token may do: ``viewer`` reads; ``operator`` also captures and runs jobs;
    ``admin`` also manages tokens. Each role includes the ones before it."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


class ApiToken(Base):
    """An API token. Only the sha256 of the secret is stored (the secret is 32 random bytes,
    shown once at creation); ``prefix`` is the secret's first characters, to tell tokens apart
    in listings. A revoked token (``revoked_at`` set) or an expired one authenticates nothing."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[Role] = mapped_column(_str_enum(Role, "role", 16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @validates("token_hash")
    def _check_hash(self, key: str, value: str) -> str:
        return _checked_sha256(value)


class JobKind(enum.StrEnum):
    """What a job does. ``capture``: a scene session on a rig; ``lightbox``: one lightbox
    flat field per camera of a rig (colour calibration); ``postprocess``: one scene through
    the pipeline; ``reprocess``: every scene with new parameters (fans out into ``postprocess``
    children); ``export``: the ReLoBlur layout; ``deblur``: inference on images or products."""

    CAPTURE = "capture"
    LIGHTBOX = "lightbox"
    POSTPROCESS = "postprocess"
    REPROCESS = "reprocess"
    EXPORT = "export"
    DEBLUR = "deblur"


class JobStatus(enum.StrEnum):
    """A job's state: ``queued`` → ``running`` → ``succeeded`` | ``failed`` | ``cancelled``.
    A running job whose worker died goes back to ``queued`` (it is retried) while attempts
    remain."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Job(Base):
    """A unit of background work, executed on Dask distributed.

    ``params`` (JSON) is what the job was asked to do; ``result`` (JSON) what it made;
    ``progress`` is in [0, 1] with a human ``message``; ``attempts`` counts starts (a worker
    killed mid-job leaves the job ``queued`` for a retry while ``attempts < max_attempts``);
    ``cancel_requested`` is set by a cancel and honoured at the job's next progress report.
    ``parent_id`` links the children of a fan-out (batch reprocessing) to their parent.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress_range"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[JobKind] = mapped_column(_str_enum(JobKind, "job_kind", 16), index=True)
    status: Mapped[JobStatus] = mapped_column(
        _str_enum(JobStatus, "job_status", 16), default=JobStatus.QUEUED, index=True
    )
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
    worker: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    parent: Mapped[Job | None] = relationship(remote_side=[id])
