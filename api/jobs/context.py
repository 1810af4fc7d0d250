"""What a job handler is given (:class:`JobContext`) and the errors a run ends with.

Shared by the worker (:mod:`api.jobs.worker`), which builds the context for the job it claimed,
and the handlers (:mod:`api.jobs.handlers`), which use it to report progress and note what they
write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.errors import UserError
from core.jobs import report_progress
from core.models import Job
from core.settings import Settings

POLL_S = 0.25
"""How often the runner's watcher and a fan-out parent look at the records (s)."""


class JobFailure(UserError, ValueError):
    """A job that cannot succeed as asked; the message says why (not retried)."""


class RetryableJobError(RuntimeError):
    """Raised by :func:`api.jobs.worker.run_job` after a transient failure so that Dask retries
    the task."""


def open_session(engine: Engine) -> Session:
    """A new session on ``engine`` (the caller closes it: ``with open_session(engine) as s``)."""
    from core.db import session_factory

    return session_factory(engine)()


@dataclass
class JobContext:
    """What a handler gets: the job (as claimed), its database and settings."""

    job: Job
    engine: Engine
    settings: Settings
    database_url: str
    overrides: dict[str, Any]
    written: list[Path] = field(default_factory=list)
    """Files this run wrote: removed if it is cancelled (:func:`api.jobs.worker.discard`)."""
    made_dirs: list[Path] = field(default_factory=list)
    """Folders this run created (outermost first): removed, when left empty, if it is cancelled."""
    run_job: Callable[..., dict[str, Any]] | None = None
    """The Dask task that runs a job (:func:`api.jobs.worker.run_job`, which sets it): what a
    fan-out parent submits for its children."""

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def will_write_in(self, folder: Path) -> None:
        """Note the folders up to ``folder`` that do not exist yet; call before writing there."""
        missing = []
        for d in (folder, *folder.parents):
            if d.exists():
                break
            missing.append(d)
        self.made_dirs += [d for d in reversed(missing) if d not in self.made_dirs]

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress; raises JobCancelled when a cancel was requested."""
        report_progress(self.engine, self.job.id, fraction, message)

    def rel(self, path: Path | str | None) -> str | None:
        """``path`` relative to the data directory when it lies inside it."""
        if path is None:
            return None
        path = Path(path)
        try:
            return path.resolve().relative_to(self.data_dir.resolve()).as_posix()
        except ValueError:
            return str(path)
