"""Errors the HTTP layer raises itself that are not a caller's mistake about the request's
content (those are :class:`core.errors.UserError`); the app maps each to its status in
``api.http.app.create_app``."""

from __future__ import annotations


class PayloadTooLargeError(Exception):
    """The request body passed ``max_upload_mb`` (HTTP 413)."""


class ModelUnavailableError(Exception):
    """No deblurring model is loaded (HTTP 503)."""
