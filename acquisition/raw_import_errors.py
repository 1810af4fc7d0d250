"""The importer's own errors, each a :class:`core.errors.UserError` (HTTP 422 unless noted).

A scene already in the database is not among them: that is
:class:`acquisition.capture_errors.SceneExistsError` (409), the one a capture raises too.
"""

from __future__ import annotations

from typing import ClassVar

from core.errors import UserError


class SceneImportError(UserError):
    """Base class of the importer's own errors (a scene already there is the capture's
    SceneExistsError); the message says what was wrong and what to do."""


class ManifestError(SceneImportError, ValueError):
    """The manifest cannot be read or fails validation; the message names the field or line."""


class RigNotFoundError(ManifestError):
    """The manifest names a rig only by name and no such rig exists."""

    http_status: ClassVar[int] = 404


class SourceFileMissingError(SceneImportError, FileNotFoundError):
    """A file the manifest names does not exist."""


class FrameSizeMismatchError(SceneImportError):
    """Frames of a capture, or of the scene, differ in size."""


class CfaMismatchError(SceneImportError):
    """Frames of the scene differ in CFA pattern."""


class CameraMismatchError(SceneImportError):
    """Frames of one role come from cameras with different serial numbers."""


class RigMismatchError(SceneImportError):
    """The existing rig's sensor or optics differ from the imported RAWs or manifest."""


class DestinationExistsError(SceneImportError):
    """A file is already at the place an imported frame would go."""

    http_status: ClassVar[int] = 409
