"""The pulse generator driver's errors: port, transport, reply and instrument (``?1``..``?9``).

Each is a :class:`SynchronizerError` whose ``command`` is the line concerned, if any. An
instrument's ``?n`` reply is the :class:`InstrumentError` subclass ``ERROR_CLASSES[n]``, with
its ``code`` and ``meaning`` (:data:`acquisition.bnc575.ERROR_MEANINGS`).
"""

from __future__ import annotations

from acquisition.bnc575 import ERROR_MEANINGS


class SynchronizerError(Exception):
    """Base of the pulse generator driver's errors; ``command`` is the line concerned, if any."""

    def __init__(self, message: str, *, command: str | None = None) -> None:
        super().__init__(message)
        self.command = command


class PortNotFoundError(SynchronizerError):
    """The serial device (or TCP endpoint) does not exist / nothing listens there."""


class WrongInstrumentError(SynchronizerError):
    """Something answered ``*IDN?`` that is not a BNC 575 / Quantum Composers 9520."""


class DisconnectedError(SynchronizerError):
    """The port went away (unplugged, connection closed, I/O error)."""


class NoReplyError(SynchronizerError):
    """No complete reply line within the timeout."""


class GarbledReplyError(SynchronizerError):
    """A reply that is not ASCII text or not what the command can answer."""


class ReadbackMismatchError(SynchronizerError):
    """The instrument holds other settings than those just sent; ``mismatches`` lists
    ``(header, sent, read back)``."""

    def __init__(self, message: str, mismatches: list[tuple[str, str, str]]) -> None:
        super().__init__(message)
        self.mismatches = mismatches


class UnrepresentableWidthError(SynchronizerError, ValueError):
    """A width, delay or period that the instrument cannot hold exactly (grid or range)."""


class InstrumentError(SynchronizerError):
    """The instrument refused a command with ``?code``."""

    code = 0

    def __init__(self, code: int, command: str) -> None:
        meaning = ERROR_MEANINGS.get(code, "unknown error")
        super().__init__(
            f"pulse generator refused {command!r}: ?{code} ({meaning})", command=command
        )
        self.code = code
        self.meaning = meaning


class BadPrefixError(InstrumentError):
    code = 1


class MissingKeywordError(InstrumentError):
    code = 2


class InvalidKeywordError(InstrumentError):
    code = 3


class MissingParameterError(InstrumentError):
    code = 4


class InvalidParameterError(InstrumentError):
    code = 5


class QueryOnlyError(InstrumentError):
    code = 6


class NoQueryFormError(InstrumentError):
    code = 7


class NotRunningError(InstrumentError):
    """``?8``: unavailable in the current state, e.g. ``*TRG`` while not armed."""

    code = 8


class OutOfBoundsError(InstrumentError):
    code = 9


ERROR_CLASSES: dict[int, type[InstrumentError]] = {
    cls.code: cls
    for cls in (
        BadPrefixError,
        MissingKeywordError,
        InvalidKeywordError,
        MissingParameterError,
        InvalidParameterError,
        QueryOnlyError,
        NoQueryFormError,
        NotRunningError,
        OutOfBoundsError,
    )
}
