"""The capture's named errors, each a :class:`core.errors.UserError` (HTTP 409 unless noted):
what failed and what was kept is in the message."""

from __future__ import annotations

from core.errors import UserError


class CaptureError(UserError, RuntimeError):
    """A capture that could not complete; the message says what failed and what was kept."""

    http_status = 409


class RigBusyError(CaptureError):
    """Another capture holds the rig."""

    http_status = 409


class SceneExistsError(CaptureError):
    """The scene already exists: it has captures and resume was not asked for, it belongs to
    another rig, or an import names it (:mod:`acquisition.raw_import` raises this one too)."""

    http_status = 409


class CameraConfigurationError(CaptureError):
    """A camera could not take a setting the protocol cannot do without."""


class FrameMissingError(CaptureError):
    """A camera delivered no (or a wrong) frame for a trigger."""


class TriggerFailedError(CaptureError):
    """The pulse generator failed during a trigger."""


class StorageError(CaptureError):
    """A frame could not be written (e.g. the disk is full)."""
