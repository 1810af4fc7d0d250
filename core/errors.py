"""The one base of the errors a user can cause, and the HTTP status each answers with.

A named error says what was wrong with the caller's input or request (a rig file with an unknown
key, a busy rig, a scene that is not there). Its class carries ``http_status``: the API answers
with it (``api`` reads the attribute, it keeps no table of classes), and the job runner records
such an error as the job's failure without retrying it (a retry would fail the same way).

Errors that also subclass :class:`ValueError` stay catchable as such by callers that predate
this base.
"""

from __future__ import annotations

from typing import ClassVar


class UserError(Exception):
    """An error the caller caused; its message names what was wrong and how to put it right.

    ``http_status``: the status the API answers with (422 Unprocessable Content unless a
    subclass says otherwise: 404 for what is not there, 409 for a conflict with the current
    state, 413/415 for an unacceptable upload)."""

    http_status: ClassVar[int] = 422


def http_status_of(exc: BaseException, default: int = 422) -> int:
    """The HTTP status of ``exc``: its class's ``http_status`` when it is a :class:`UserError`,
    else ``default`` (a plain ValueError raised on bad input)."""
    return exc.http_status if isinstance(exc, UserError) else default


def is_user_error(exc: BaseException) -> bool:
    """True for an error the caller caused (a :class:`UserError` or a ValueError): retrying the
    same request fails the same way."""
    return isinstance(exc, UserError | ValueError)
