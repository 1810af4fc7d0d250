"""Errors the HTTP layer raises itself (not user errors of the science packages); the app
maps each to its status in ``api.app.create_app``."""

from __future__ import annotations


class PayloadTooLargeError(Exception):
    """The request body passed ``max_upload_mb`` (HTTP 413)."""


class ModelUnavailableError(Exception):
    """No deblurring model is loaded (HTTP 503)."""
