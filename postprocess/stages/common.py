"""What the pipeline's stages share: the named errors, the records they hand on, the product store.

Products are files under the data directory (``processed/<scene>/<kind>/<label>_<hash16>.<ext>``)
with one ``products`` row each, named by their ``params_hash``; a unit's files are written
atomically and removed again if the unit fails before its rows are committed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core import previews
from core.dng import RawMetadata
from core.errors import UserError
from core.filestore import FileStoreError
from core.models import CaptureKind, Product, ProductKind, RunStatus
from postprocess.calibration import CalibrationError, ColourCalibration
from postprocess.flow import FlowInputError
from postprocess.masks import MaskInputError
from postprocess.warp import WarpInputError

ROLES = ("B", "S")


class PipelineError(UserError, ValueError):
    """Base of the pipeline's own named errors."""


class SceneNotFoundError(PipelineError, LookupError):
    """No scene of that name in the database."""

    http_status: ClassVar[int] = 404


class MissingCaptureError(PipelineError):
    """The scene lacks a capture the pipeline needs (whiteboard or reference pair)."""


class MissingCalibrationError(PipelineError):
    """A camera has no lightbox frame to calibrate from."""


class CorruptFrameError(PipelineError):
    """A RAW file is missing or differs from the sha256 recorded when it was stored."""


# What a unit may fail with and still let the scene's other units run: every named error of
# the stages. Anything else (a bug, a full disk) stops the run and is recorded as its error.
UNIT_ERRORS: tuple[type[BaseException], ...] = (
    PipelineError, CalibrationError, FileStoreError, FlowInputError, WarpInputError, MaskInputError,
)


@dataclass
class PairResult:
    """The products of one pair (ids of ``products`` rows)."""

    capture_id: int
    kind: str
    trigger_index: int
    blurred: int
    sharp: int
    blurred_hash: str
    sharp_hash: str
    mask: int | None = None


@dataclass
class SceneOutcome:
    """What :func:`postprocess.pipeline.process_scene` did: products made and reused per kind,
    failed units."""

    scene: str
    run_id: int
    status: RunStatus = RunStatus.RUNNING
    made: Counter = field(default_factory=Counter)
    reused: Counter = field(default_factory=Counter)
    failures: list[dict[str, str]] = field(default_factory=list)
    pairs: dict[int, PairResult] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "made": dict(self.made),
            "reused": dict(self.reused),
            "failures": self.failures,
            "pairs": {str(i): vars(p) for i, p in sorted(self.pairs.items())},
            "info": self.info,
        }


@dataclass
class SceneContext:
    """What every pair of a scene needs from the scene stage: frame shape (H, W), calibrations
    by role, white-balance gains (3,), camera → sRGB matrix (3, 3), β (3,), the S → B flow
    (H, W, 2) float32 px, the scene colour's hash, and the reference S frame once loaded."""

    scene_id: int
    name: str
    shape: tuple[int, int]
    calibrations: dict[str, ColourCalibration]
    wb_gains: np.ndarray
    ccm: np.ndarray
    beta: np.ndarray
    flow: np.ndarray
    colour_hash: str
    reference_sharp: tuple[np.ndarray, RawMetadata] | None = None


def unit_label(kind: CaptureKind | str, trigger_index: int) -> str:
    """``<kind>_<index:04d>``: a capture's name in product paths and failures."""
    return f"{CaptureKind(kind).value}_{trigger_index:04d}"


def product_path(scene: str, kind: ProductKind, label: str, h: str, ext: str) -> str:
    """``processed/<scene>/<kind>/<label>_<hash16>.<ext>``, relative to the data directory."""
    return f"processed/{scene}/{kind.value}/{label}_{h[:16]}.{ext}"


def failure(unit: str, exc: BaseException) -> dict[str, str]:
    """A failed unit as recorded in the outcome: unit, error class name, message."""
    return {"unit": unit, "error": type(exc).__name__, "message": str(exc)}


GALLERY_KINDS = (ProductKind.BLURRED, ProductKind.SHARP, ProductKind.MASK)
"""The products the console's gallery shows as thumbnails."""


class ProductStore:
    """The ``products`` rows (through ``sessions``) and their files under ``data_dir``."""

    def __init__(self, sessions: sessionmaker[Session], data_dir: Path) -> None:
        self.sessions = sessions
        self.data_dir = data_dir

    def find(self, session: Session, kind: ProductKind, h: str) -> Product | None:
        """The recorded product of that hash whose file is in place (a row whose file is gone
        is removed, so the product is made anew); its gallery preview is made if it is missing
        (products stored before post-processing made them), so processing a scene again fills
        its gallery's previews."""
        row = session.scalar(select(Product).where(Product.kind == kind, Product.params_hash == h))
        if row is not None and not (self.data_dir / row.path).is_file():
            session.delete(row)
            session.commit()
            return None
        if row is not None and row.kind in GALLERY_KINDS:  # a product stored before previews were
            previews.warm(self.data_dir, [(row.path, row.sha256)])  # made at storing gets one now
        return row

    @contextmanager
    def unit_files(self) -> Iterator[list[Path]]:
        """Collects the files a unit writes; removes them all if the unit fails."""
        written: list[Path] = []
        try:
            yield written
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise

    def commit(self, rows: list[Product]) -> list[int]:
        """Insert product rows in one transaction; a row another process inserted meanwhile
        (same kind and hash, hence the same file) is taken as it is. Then the console's gallery
        previews of the stored images are made (:func:`core.previews.warm`)."""
        images = [(r.path, r.sha256) for r in rows if r.kind in GALLERY_KINDS]
        with self.sessions() as session:
            session.add_all(rows)
            try:
                session.commit()
                ids = [r.id for r in rows]
            except IntegrityError:
                session.rollback()
                ids = None
        if ids is None:
            with self.sessions() as session:
                ids = [session.scalar(select(Product.id).where(Product.kind == r.kind,
                                                                Product.params_hash == r.params_hash))
                       for r in rows]
        previews.warm(self.data_dir, images)
        return ids
