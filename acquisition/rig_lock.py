"""One capture at a time per rig: an exclusive, non-blocking ``flock`` on
``<data>/locks/rig-<name>.lock``, released by the OS if the process dies.

Held by :class:`acquisition.capture.SceneCapture` for a whole run, and by the API while it
talks to a rig; a second holder gets :class:`~acquisition.capture_errors.RigBusyError`.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from acquisition.capture_errors import RigBusyError


@contextmanager
def rig_lock(data_dir: Path, rig_name: str) -> Iterator[None]:
    """Hold the rig exclusively for the duration of the block, or raise RigBusyError."""
    lock_dir = data_dir / "locks"
    if not lock_dir.is_dir():
        lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / f"rig-{rig_name}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RigBusyError(f"rig {rig_name!r} is busy: another capture is running on it; try again when it ends") from None
        yield
    finally:
        os.close(fd)
