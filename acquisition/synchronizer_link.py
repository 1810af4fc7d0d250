"""The pulse generator's line protocol: a pyserial port (RS-232, USB virtual COM or
``socket://host:port``, 8N1, no flow control) carrying one ``\\r\\n``-terminated ASCII command
and exactly one reply line (``ok``, a value, or ``?1``..``?9``) at a time.

An echoed command line is recognised and dropped. ``?n`` is raised as its
:class:`~acquisition.synchronizer_errors.InstrumentError`; an unreadable reply as
``GarbledReplyError``; silence past ``timeout_s`` as ``NoReplyError``; a lost port as
``DisconnectedError``, after which the port is reopened (``retries`` attempts) and the command
re-sent once, except ``*TRG`` (a re-sent trigger could fire twice). One exchange at a time
(a lock); each is logged at DEBUG on the ``acquisition.synchronizer`` logger.
"""

from __future__ import annotations

import errno
import logging
import re
import threading
import time
from collections.abc import Callable

import serial

from acquisition.synchronizer_errors import (
    ERROR_CLASSES,
    DisconnectedError,
    GarbledReplyError,
    NoReplyError,
    PortNotFoundError,
    SynchronizerError,
)

try:
    import termios

    _PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, termios.error)
except ImportError:  # pragma: no cover - Windows
    _PORT_ERRORS = (serial.SerialException, OSError)

# The driver's logger (acquisition.synchronizer documents it): the exchanges happen here.
log = logging.getLogger("acquisition.synchronizer")


def _not_found(exc: BaseException) -> bool:
    for error in (exc, exc.__cause__, exc.__context__):
        if isinstance(error, FileNotFoundError | ConnectionRefusedError):
            return True
        if getattr(error, "errno", None) in (errno.ENOENT, errno.ENODEV, errno.ECONNREFUSED):
            return True
    return isinstance(exc, ValueError) and "URL" in str(exc)  # serial_for_url: unknown scheme


def _is_idempotent(command: str) -> bool:
    return command.split(maxsplit=1)[0].upper() not in ("*TRG",)


_ERROR_REPLY = re.compile(r"\?([1-9])")


class SerialLink:
    """The port and its exchanges: one command, one reply line (see the module docstring).

    port: a device path, a pyserial URL or a callable returning one (called at every (re)open).
    baudrate: as set on the instrument (ignored for TCP). timeout_s: how long one command waits
    for its reply (> 0). retries: reopen attempts after a lost port or a missing reply.
    :class:`acquisition.synchronizer.PulseGenerator` is this link plus the instrument's commands.
    """

    def __init__(
        self,
        port: str | Callable[[], str],
        baudrate: int = 115200,
        timeout_s: float = 1.0,
        retries: int = 1,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries!r}")
        self._port_spec = port
        self.port: str | None = port if isinstance(port, str) else None
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self.retries = retries
        self._serial: serial.SerialBase | None = None
        self._wanted_open = False
        self._rx = bytearray()
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- port lifecycle
    def close(self) -> None:
        """Close the port (idempotent); later calls raise until ``open()``."""
        with self._lock:
            self._wanted_open = False
            self._drop_port()

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def _open_port(self) -> None:
        port = self._port_spec() if callable(self._port_spec) else self._port_spec
        self.port = port
        try:
            self._serial = serial.serial_for_url(
                port,
                baudrate=self.baudrate,
                timeout=min(0.05, self.timeout_s),
                write_timeout=self.timeout_s,
                bytesize=8,
                parity="N",
                stopbits=1,
                xonxoff=False,
                rtscts=False,
            )
        except (ValueError, *_PORT_ERRORS) as exc:
            if isinstance(exc, ValueError) and not _not_found(exc):
                raise  # a bad setting (baud rate...), not a missing port
            if _not_found(exc):
                raise PortNotFoundError(f"no pulse generator port at {port!r}: {exc}") from exc
            raise DisconnectedError(f"could not open pulse generator port {port!r}: {exc}") from exc
        self._rx.clear()
        log.debug("opened %s", port)

    def _drop_port(self) -> None:
        port, self._serial = self._serial, None
        self._rx.clear()
        if port is not None:
            try:
                port.close()
            except _PORT_ERRORS as exc:
                log.debug("closing %s: %s", self.port, exc)

    def _reopen(self, cause: SynchronizerError, command: str) -> None:
        last: SynchronizerError = cause
        for attempt in range(self.retries):
            self._drop_port()
            if attempt:
                time.sleep(min(0.1, self.timeout_s))
            try:
                self._open_port()
                return
            except (PortNotFoundError, DisconnectedError) as exc:
                last = exc
        raise DisconnectedError(
            f"{cause}; reopening {self.port!r} failed after {self.retries} attempt(s): {last}",
            command=command,
        ) from last

    # ----------------------------------------------------------------- exchanges
    def _read_line(self, command: str, deadline: float) -> bytes:
        assert self._serial is not None
        while True:
            end = self._rx.find(b"\n")
            if end >= 0:
                line = bytes(self._rx[:end]).strip(b"\r")
                del self._rx[: end + 1]
                if line.strip():
                    return line
                continue
            if time.monotonic() >= deadline:
                partial = f" (partial line {bytes(self._rx)!r})" if self._rx else ""
                raise NoReplyError(
                    f"no reply to {command!r} from {self.port} within {self.timeout_s:g} s{partial}",
                    command=command,
                )
            self._rx += self._serial.read(max(1, self._serial.in_waiting))

    def _exchange_once(self, command: str) -> bytes:
        if self._serial is None:
            if not self._wanted_open:
                raise SynchronizerError(
                    f"pulse generator port is not open (sending {command!r}): call open()"
                )
            self._open_port()
        assert self._serial is not None
        deadline = time.monotonic() + self.timeout_s
        try:
            self._serial.reset_input_buffer()
            self._rx.clear()
            self._serial.write(command.encode("ascii") + b"\r\n")
            self._serial.flush()
            line = self._read_line(command, deadline)
            if line.strip() == command.encode("ascii"):  # echo on: the command comes back first
                line = self._read_line(command, deadline)
        except serial.SerialTimeoutException as exc:
            raise NoReplyError(
                f"writing {command!r} to {self.port} timed out: {exc}", command=command
            ) from exc
        except _PORT_ERRORS as exc:
            raise DisconnectedError(
                f"lost {self.port} while sending {command!r}: {exc}", command=command
            ) from exc
        return line

    def _exchange(self, command: str, expect_value: bool) -> str:
        command = command.strip()
        with self._lock:
            try:
                raw = self._exchange_once(command)
            except (NoReplyError, DisconnectedError) as exc:
                self._drop_port()
                if not _is_idempotent(command):
                    raise type(exc)(
                        f"{exc}; {command!r} was NOT re-sent (a trigger could fire twice): "
                        "the trigger state is unknown",
                        command=command,
                    ) from exc
                if self.retries == 0:
                    raise
                log.debug("%s: %s; reopening and re-sending %r once", self.port, exc, command)
                self._reopen(exc, command)
                raw = self._exchange_once(command)
            reply = self._check(command, raw, expect_value)
            log.debug("%s: %r -> %r", self.port, command, reply)
            return reply

    def _check(self, command: str, raw: bytes, expect_value: bool) -> str:
        try:
            text = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            text = None
        if text is None or not text.isprintable():
            log.debug("%s: %r -> garbled %r", self.port, command, raw)
            raise GarbledReplyError(
                f"garbled reply to {command!r} from {self.port}: {raw!r}", command=command
            )
        match = _ERROR_REPLY.fullmatch(text)
        if match:
            code = int(match.group(1))
            log.debug("%s: %r -> %r", self.port, command, text)
            raise ERROR_CLASSES[code](code, command)
        if expect_value and (not text or text.lower() == "ok"):
            raise GarbledReplyError(
                f"expected a value in reply to {command!r}, got {text!r}", command=command
            )
        if not expect_value and text.lower() != "ok":
            raise GarbledReplyError(
                f"expected 'ok' in reply to {command!r}, got {text!r}", command=command
            )
        return text

    def query(self, command: str) -> str:
        """Send a query (its header ends in ``?``) and return the value it answers."""
        header = command.split(maxsplit=1)[0] if command.strip() else ""
        if not header.endswith("?"):
            raise ValueError(f"a query's header ends with '?': {command!r}")
        return self._exchange(command, expect_value=True)

    def command(self, command: str) -> None:
        """Send a command that must answer ``ok``."""
        self._exchange(command, expect_value=False)
