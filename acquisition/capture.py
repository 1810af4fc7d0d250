"""The scene capture protocol: triggers, frames, DNG files and database rows, all or nothing.

A scene session captures, one trigger each (trigger indices in brackets):
whiteboard pair [0], static reference pair [1], then N blurred/sharp pairs [2 .. N+1].
Per trigger: the operator arranges the stage, both cameras' queues are flushed, the pulse
generator fires once (camera S's exposure starts the plan's ``sharp_delay_s`` after camera B's:
at the centre of B's with ``sharp_timing: centre``, together with ``start``), one frame is
fetched from each camera
(pairing is by this trigger, never by the cameras' frame counters), both DNGs are written
atomically, then the capture and its two frame rows are committed in one transaction.

Guarantees:
* one capture at a time per rig: an exclusive ``flock`` on ``<data>/locks/rig-<name>.lock``
  (released by the OS if the process dies); a second request gets ``RigBusyError``;
* a failed trigger (no reply, garbled reply, disconnect, a frame missing on one camera, disk
  full) raises a named error and leaves neither its files nor its rows; pairs stored before
  it stay;
* ``resume=True`` first reconciles the scene (rows that are not complete and files that no
  row references, e.g. after a killed process, are removed) and continues from the first
  missing trigger index;
* each run's configuration (rig, optics, plan with its ``sharp_timing`` and ``sharp_delay_s``,
  software) is recorded at start in ``capture_runs`` and its outcome (stored triggers, status,
  error, the sharp delay the pulse generator held) at stop;
* every frame row records when its exposure started after camera B's (``exposure_delay_s``, as
  read back from the pulse generator), and so does its DNG's description.

Modules: :mod:`acquisition.capture_errors` (the named errors), :mod:`acquisition.capture_schedule`
(trigger schedule, camera settings), :mod:`acquisition.capture_outcome` (what a run reports);
the rig lock is :mod:`acquisition.rig_lock`; this module is the protocol (:class:`SceneCapture`)
and re-exports the rest.
"""

from __future__ import annotations

import contextlib
import errno
import json
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from acquisition.cameras import CameraError, CapturedFrame
from acquisition.capture_errors import (
    CameraConfigurationError,
    CaptureError,
    FrameMissingError,
    RigBusyError,
    SceneExistsError,
    StorageError,
    TriggerFailedError,
)
from acquisition.capture_outcome import CaptureOutcome, TriggerTiming
from acquisition.capture_schedule import (
    ESSENTIAL_FEATURES,
    PIXEL_FORMAT_PREFIX,
    camera_settings,
    trigger_schedule,
)
from acquisition.planner import ExposurePlan
from acquisition.rig import ROLES, Rig, Stage
from acquisition.rig_lock import rig_lock
from acquisition.synchronizer import SynchronizerError
from core import __version__, layouts
from core.db import session_factory
from core.dng import RawMetadata, write_dng
from core.filestore import is_temp_name
from core.models import (
    CameraRecord as CameraRow,
)
from core.models import (
    Capture,
    CaptureKind,
    CaptureRun,
    CaptureStatus,
    Frame,
    RunStatus,
    Scene,
    utcnow,
)
from core.models import (
    RigRecord as RigRow,
)

__all__ = [
    "ESSENTIAL_FEATURES",
    "PIXEL_FORMAT_PREFIX",
    "CameraConfigurationError",
    "CaptureError",
    "CaptureOutcome",
    "FrameMissingError",
    "RigBusyError",
    "SceneCapture",
    "SceneExistsError",
    "StorageError",
    "TriggerFailedError",
    "TriggerTiming",
    "camera_settings",
    "rig_lock",
    "trigger_schedule",
]


class SceneCapture:
    """Runs the protocol on an open rig with an exposure plan, storing under ``data_dir``."""

    def __init__(self, rig: Rig, plan: ExposurePlan, data_dir: Path, engine: Engine, fetch_margin_s: float = 15.0):
        self.rig = rig
        self.plan = plan
        self.data_dir = Path(data_dir)
        self.sessions = session_factory(engine)
        self.fetch_margin_s = fetch_margin_s
        self.exposure = {"B": plan.long_exposure_s, "S": plan.short_exposure_s}
        # When each camera's exposure starts after B's; replaced by what the generator holds.
        self.exposure_delay = {"B": 0.0, "S": plan.sharp_delay_s}
        self._delay_read_back = False

    # ---- database ------------------------------------------------------------------------
    def _rig_rows(self, session: Session) -> tuple[RigRow, dict[str, CameraRow]]:
        cfg = self.rig.config
        o = cfg.optics
        rig_row = session.scalar(select(RigRow).where(RigRow.name == cfg.name))
        if rig_row is None:
            rig_row = RigRow(
                name=cfg.name, description=cfg.description, pixel_pitch_um=o.pixel_pitch_um,
                focal_length_mm=o.focal_length_mm, nd_filters=list(o.nd_filters), cfa_pattern=o.cfa_pattern,
                bit_depth=o.bit_depth, sensor_width_px=o.sensor_width_px, sensor_height_px=o.sensor_height_px,
            )
            session.add(rig_row)
            session.flush()
        cameras = {}
        for role in ROLES:
            cam = self.rig.cameras[role]
            row = session.scalar(select(CameraRow).where(
                CameraRow.rig_id == rig_row.id, CameraRow.role == role, CameraRow.serial == cam.serial))
            if row is None:
                row = CameraRow(rig_id=rig_row.id, role=role, vendor=cam.vendor, model=cam.model,
                                serial=cam.serial, driver=cfg.cameras[role].driver)
                session.add(row)
                session.flush()
            cameras[role] = row
        return rig_row, cameras

    def _start_run(self, session: Session, rig_row: RigRow, scene_row: Scene | None, extra: dict) -> CaptureRun:
        # We hold the rig's lock, so a run of this rig still marked running belongs to a process
        # that died before it could record its outcome.
        for stale in session.scalars(select(CaptureRun).where(
                CaptureRun.rig_id == rig_row.id, CaptureRun.status == RunStatus.RUNNING)):
            stale.status = RunStatus.INTERRUPTED
            stale.error = "the capture process ended without recording an outcome (killed or crashed)"
        run = CaptureRun(
            rig_id=rig_row.id, scene_id=scene_row.id if scene_row else None,
            config={
                "rig": self.rig.config.model_dump(mode="json"),
                "plan": self.plan.as_dict(),
                "software": f"reloblur-lab {__version__}",
                **extra,
            },
        )
        session.add(run)
        session.commit()
        return run

    def _finish_run(self, run_id: int, outcome: CaptureOutcome) -> None:
        with self.sessions() as session:
            run = session.get(CaptureRun, run_id)
            run.status = outcome.status
            run.finished_at = utcnow()
            run.error = outcome.error
            run.outcome = {"stored": outcome.stored, "already_present": outcome.already_present}
            if self._delay_read_back:
                run.outcome["sharp_delay_s"] = self.exposure_delay["S"]
            session.commit()

    # ---- devices ---------------------------------------------------------------------------
    def _prepare_devices(self) -> None:
        for role in ROLES:
            camera = self.rig.cameras[role]
            if camera.is_acquiring:
                camera.stop()
            try:
                report = camera.configure(camera_settings(self.exposure[role], self.rig.config.optics))
            except CameraError as exc:
                raise CameraConfigurationError(f"camera {role} ({camera.serial}) refused its settings: {exc}") from exc
            missing = {k: v for k, v in report.not_applied.items() if k in ESSENTIAL_FEATURES}
            if missing:
                raise CameraConfigurationError(
                    f"camera {role} ({camera.serial}) did not take "
                    + ", ".join(f"{k} ({why})" for k, v in missing.items() for why in [v])
                )
        try:
            timing = self.rig.synchronizer.configure_pair(
                self.plan.pulse_width_b_s, self.plan.pulse_width_s_s, sharp_delay_s=self.plan.sharp_delay_s)
        except SynchronizerError as exc:
            raise TriggerFailedError(f"configuring the pulse generator failed: {exc}") from exc
        self.exposure_delay = {"B": 0.0, "S": timing.sharp_delay_s}  # as read back from the generator
        self._delay_read_back = True
        self.rig.operator.mount_nd_filter(self.plan.nd_transmittance)
        for role in ROLES:
            self.rig.cameras[role].start()
        try:
            self.rig.synchronizer.arm()
        except SynchronizerError as exc:
            raise TriggerFailedError(f"arming the pulse generator failed: {exc}") from exc

    def _release_devices(self) -> None:
        for action in (self.rig.synchronizer.disarm, *[c.stop for c in self.rig.cameras.values()]):
            with contextlib.suppress(Exception):  # best effort on the way out
                action()

    def _fire(self, trigger_index: int) -> dict[str, CapturedFrame]:
        """One trigger: flush, fire, fetch one frame per camera."""
        for camera in self.rig.cameras.values():
            camera.flush()
        try:
            self.rig.synchronizer.trigger()
        except SynchronizerError as exc:
            raise TriggerFailedError(f"trigger {trigger_index}: the pulse generator failed: {exc}") from exc
        frames = {}
        o = self.rig.config.optics
        for role in ROLES:
            camera = self.rig.cameras[role]
            timeout = self.exposure[role] + self.fetch_margin_s
            try:
                frame = camera.fetch(timeout)
            except CameraError as exc:
                raise FrameMissingError(f"trigger {trigger_index}: camera {role} ({camera.serial}) gave no frame: {exc}") from exc
            if frame.data.ndim != 2 or frame.data.shape != (o.sensor_height_px, o.sensor_width_px):
                raise FrameMissingError(
                    f"trigger {trigger_index}: camera {role} delivered a {frame.data.shape} {frame.pixel_format} frame, "
                    f"expected {o.sensor_height_px}×{o.sensor_width_px} Bayer"
                )
            frames[role] = frame
        return frames

    # ---- storage -----------------------------------------------------------------------------
    def _metadata(self, role: str, frame: CapturedFrame, description: str) -> RawMetadata:
        o = self.rig.config.optics
        camera = self.rig.cameras[role]
        return RawMetadata(
            cfa_pattern=o.cfa_pattern, bits=o.bit_depth, black_level=o.black_level,
            white_level=2**o.bit_depth - 1, as_shot_neutral=self.rig.as_shot_neutral,
            color_matrix_1=self.rig.color_matrix_1,
            camera_make=camera.vendor, camera_model=camera.model, camera_serial=camera.serial,
            exposure_time_s=frame.exposure_s or self.exposure[role], gain_db=frame.gain_db or 0.0,
            description=description,
        )

    def _store(
        self, folder: str, scene_row: Scene | None, rig_row: RigRow, camera_rows: dict[str, CameraRow],
        kind: str, trigger_index: int, frames: dict[str, CapturedFrame],
    ) -> int:
        """Write both DNGs, then commit the capture and frame rows; on failure remove both files.

        Returns the bytes written."""
        written: list[Path] = []
        o = self.rig.config.optics
        try:
            rel = {r: f"{folder}/{layouts.frame_name(kind, trigger_index, r)}" for r in ROLES}
            shas = {}
            for role in ROLES:
                path = self.data_dir / rel[role]
                description = json.dumps({"kind": kind, "role": role, "trigger_index": trigger_index,
                                          "exposure_delay_s": self.exposure_delay[role]})
                try:
                    shas[role] = write_dng(path, frames[role].data, self._metadata(role, frames[role], description))
                except OSError as exc:
                    reason = "the disk is full" if exc.errno == errno.ENOSPC else str(exc)
                    raise StorageError(f"trigger {trigger_index}: writing {rel[role]} failed: {reason}") from exc
                written.append(path)
            with self.sessions() as session:
                capture = Capture(
                    rig_id=rig_row.id, scene_id=scene_row.id if scene_row else None, kind=CaptureKind(kind),
                    trigger_index=trigger_index, status=CaptureStatus.COMPLETE, finished_at=utcnow(),
                )
                for role in ROLES:
                    f = frames[role]
                    capture.frames.append(Frame(
                        camera_id=camera_rows[role].id, role=role, path=rel[role], sha256=shas[role],
                        exposure_s=f.exposure_s or self.exposure[role], gain_db=f.gain_db or 0.0,
                        black_level=o.black_level, white_level=2**o.bit_depth - 1,
                        width_px=f.width, height_px=f.height, trigger_index=trigger_index,
                        sensor_timestamp_ns=f.timestamp_ns, exposure_delay_s=self.exposure_delay[role],
                    ))
                session.add(capture)
                session.commit()
            return sum(p.stat().st_size for p in written)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise

    def _reconcile(self, scene_row: Scene, folder: str) -> list[int]:
        """Drop incomplete captures of the scene and unreferenced files; return complete triggers."""
        with self.sessions() as session:
            captures = session.scalars(select(Capture).where(Capture.scene_id == scene_row.id)).all()
            complete = []
            for capture in captures:
                if capture.status == CaptureStatus.COMPLETE and len(capture.frames) == len(ROLES) and all(
                    (self.data_dir / f.path).is_file() for f in capture.frames
                ):
                    complete.append(capture.trigger_index)
                else:
                    session.delete(capture)
            session.commit()
            referenced = set(session.scalars(
                select(Frame.path).join(Capture).where(Capture.scene_id == scene_row.id)).all())
        scene_dir = self.data_dir / folder
        if scene_dir.is_dir():
            for path in scene_dir.iterdir():
                rel = f"{folder}/{path.name}"
                if path.is_file() and (rel not in referenced or is_temp_name(path.name)):
                    path.unlink()
        return sorted(complete)

    # ---- the protocol ---------------------------------------------------------------------
    def capture_scene(
        self, scene_name: str, n_pairs: int, resume: bool = False,
        on_stored: Callable[[int, Stage], None] | None = None, description: str = "",
        object_distance_m: float | None = None,
    ) -> CaptureOutcome:
        """Capture whiteboard, reference and ``n_pairs`` pairs of a scene (see module docstring)."""
        schedule = trigger_schedule(n_pairs)
        folder = layouts.raw_folder(self.rig.name, scene_name)
        with rig_lock(self.data_dir, self.rig.name):
            with self.sessions() as session:
                rig_row, camera_rows = self._rig_rows(session)
                scene_row = session.scalar(select(Scene).where(Scene.name == scene_name))
                if scene_row is not None and scene_row.rig_id != rig_row.id:
                    raise SceneExistsError(f"scene {scene_name!r} belongs to another rig; choose another name")
                has_captures = scene_row is not None and session.scalar(
                    select(Capture.id).where(Capture.scene_id == scene_row.id).limit(1)) is not None
                if has_captures and not resume:
                    raise SceneExistsError(
                        f"scene {scene_name!r} already has captures; pass --resume to continue it or choose another name")
                if scene_row is None:
                    scene_row = Scene(name=scene_name, rig_id=rig_row.id, description=description,
                                      object_distance_m=object_distance_m)
                    session.add(scene_row)
                    session.commit()
            done = self._reconcile(scene_row, folder) if resume else []
            with self.sessions() as session:
                run = self._start_run(session, session.merge(rig_row), session.merge(scene_row),
                                      {"scene": scene_name, "pairs": n_pairs, "resume": resume})
                run_id = run.id
            outcome = CaptureOutcome(run_id, scene_name, already_present=done)
            todo = [(i, stage) for i, stage in schedule if i not in set(done)]
            self._run_triggers(todo, outcome, folder, scene_row, rig_row, camera_rows, on_stored)
            return outcome

    def capture_lightbox(self, on_stored: Callable[[int, Stage], None] | None = None) -> CaptureOutcome:
        """One lightbox trigger: a flat field per camera for colour calibration (no scene)."""
        folder = layouts.raw_folder(self.rig.name, layouts.LIGHTBOX_SCENE)
        with rig_lock(self.data_dir, self.rig.name):
            with self.sessions() as session:
                rig_row, camera_rows = self._rig_rows(session)
                last = session.scalar(select(Capture.trigger_index).where(
                    Capture.rig_id == rig_row.id, Capture.kind == CaptureKind.LIGHTBOX)
                    .order_by(Capture.trigger_index.desc()).limit(1))
                run = self._start_run(session, rig_row, None, {"lightbox": True})
                run_id = run.id
                session.commit()
            outcome = CaptureOutcome(run_id, None)
            index = 0 if last is None else last + 1
            self._run_triggers([(index, Stage("lightbox"))], outcome, folder, None, rig_row, camera_rows, on_stored)
            return outcome

    def _run_triggers(self, todo, outcome, folder, scene_row, rig_row, camera_rows, on_stored) -> None:
        try:
            if todo:
                self._prepare_devices()
            for trigger_index, stage in todo:
                self.rig.operator.arrange(stage)
                fired = time.monotonic_ns()
                frames = self._fire(trigger_index)
                fetched = time.monotonic_ns()
                size = self._store(folder, scene_row, rig_row, camera_rows, stage.kind, trigger_index, frames)
                outcome.timings.append(TriggerTiming(trigger_index, fired, fetched, time.monotonic_ns(), size))
                outcome.stored.append(trigger_index)
                if on_stored:
                    on_stored(trigger_index, stage)
            outcome.status = RunStatus.COMPLETE
        except KeyboardInterrupt:
            outcome.status, outcome.error = RunStatus.INTERRUPTED, "interrupted by the operator"
            raise
        except Exception as exc:
            outcome.status, outcome.error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._release_devices()
            self._finish_run(outcome.run_id, outcome)
