"""Driver for the BNC 575 / Quantum Composers 9520-family pulse generator that triggers the rig.

Channel A (``:PULSE1``) drives camera B (the blurred, long exposure), channel B (``:PULSE2``)
drives camera S (the sharp, short exposure); both are synced to T0. Channel B may be delayed by
a further ``sharp_delay_s`` beyond channel A (``configure_pair``): with (tL − tS)/2 camera S's
exposure sits at the centre of camera B's (``sharp_timing: centre``), with 0 both exposures start
together (``start``, the paper's timing). A camera in trigger-width mode exposes for the pulse
width.

Transport: pyserial (``serial_for_url``) over RS-232 / USB virtual COM (8N1, no flow control) or
TCP (``socket://host:port``). Each command is sent with ``\\r\\n`` and gets exactly one reply
line (``ok``, a value, or ``?1``..``?9``); an echo of the command line, if the instrument has echo
on, is recognised and dropped, so no echo configuration is needed.

Times: widths 10 ns to 999.99999999975 s, delays 0 to 999.99999999975 s, on a 250 ps grid
(``RESOLUTION_S``). A value off the grid (beyond 1e-15 relative) or out of range is refused with
``UnrepresentableWidthError``; ``quantise()`` rounds to the grid (range unchanged),
``representable()`` tells whether a value would be accepted.
Widths and delays are sent with 11 decimals, the period with 9 (1 ns, 100 ns to 5000 s).

Failures: ``?n`` replies raise an ``InstrumentError`` subclass (``ERROR_CLASSES``); unreadable
replies ``GarbledReplyError``; silence past ``timeout_s`` ``NoReplyError``; a lost port
``DisconnectedError``. After ``NoReplyError``/``DisconnectedError`` the port is closed and reopened
(``retries`` attempts) and the command re-sent once, except ``*TRG``: a re-sent trigger could
fire twice, so the error is raised saying the trigger state is unknown (the port is reopened
lazily by the next call). All methods are thread-safe (one exchange at a time). Every exchange
is logged at DEBUG on this module's logger.
"""

from __future__ import annotations

import errno
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import serial

from acquisition import bnc575

try:
    import termios

    _PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, termios.error)
except ImportError:  # pragma: no cover - Windows
    _PORT_ERRORS = (serial.SerialException, OSError)

log = logging.getLogger(__name__)

# The instrument's facts live in acquisition.bnc575 (shared with the emulator and the planner).
RESOLUTION_S = bnc575.RESOLUTION_S
TICKS_PER_S = bnc575.TICKS_PER_S
MIN_WIDTH_S = bnc575.MIN_WIDTH_S
MAX_TIME_S = bnc575.MAX_TIME_S
MIN_PERIOD_S = bnc575.MIN_PERIOD_S
MAX_PERIOD_S = bnc575.MAX_PERIOD_S
RELATIVE_TOLERANCE = bnc575.RELATIVE_TOLERANCE
CHANNEL_CAMERA_B = bnc575.CHANNEL_CAMERA_B
CHANNEL_CAMERA_S = bnc575.CHANNEL_CAMERA_S
SUPPORTED_MODELS = bnc575.SUPPORTED_MODELS
ERROR_MEANINGS = bnc575.ERROR_MEANINGS

TimeKind = bnc575.TimeKind


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


@dataclass(frozen=True)
class Identity:
    """The four ``*IDN?`` fields, e.g. ``BNC``, ``575-4``, ``31415``, ``2.4.1-2.0.11``."""

    make: str
    model: str
    serial: str
    firmware: str

    @property
    def supported(self) -> bool:
        prefixes = SUPPORTED_MODELS.get(self.make.strip().upper(), ())
        return any(self.model.strip().upper().startswith(p) for p in prefixes)


# ------------------------------------------------------------------------------- numbers
def _finite(seconds: object, name: str) -> float:
    if not bnc575.is_finite_seconds(seconds):
        raise UnrepresentableWidthError(
            f"{name} must be a finite number of seconds, got {seconds!r}"
        )
    return float(seconds)


def _ticks(seconds: float, kind: TimeKind = "width", name: str | None = None) -> int:
    """``seconds`` as a count of 250 ps ticks, or ``UnrepresentableWidthError``."""
    name = name or kind
    if kind not in bnc575.MIN_TICKS:
        raise ValueError(f"kind must be 'width' or 'delay', got {kind!r}")
    seconds = _finite(seconds, name)
    ticks = bnc575.nearest_ticks(seconds)
    if not bnc575.on_grid(seconds):
        raise UnrepresentableWidthError(
            f"{name} {seconds!r} s is not a multiple of {RESOLUTION_S * 1e12:g} ps "
            f"(nearest: {ticks / TICKS_PER_S!r} s); quantise() it first"
        )
    if not bnc575.representable(seconds, kind):
        low = MIN_WIDTH_S if kind == "width" else 0.0
        raise UnrepresentableWidthError(
            f"{name} {seconds!r} s is outside [{low:g} s, {MAX_TIME_S!r} s]"
        )
    return ticks


representable = bnc575.representable


def quantise(seconds: float) -> float:
    """``seconds`` rounded to the nearest multiple of 250 ps (ties to even); idempotent.

    Only the grid is applied, never the range: a value outside it stays outside (it is not
    clamped), so check ``representable(quantise(x), kind)`` before use. Raises
    ``UnrepresentableWidthError`` only for a non-finite or non-numeric ``seconds``.
    """
    return bnc575.quantise(_finite(seconds, "time"))


def format_time(seconds: float, kind: TimeKind = "width", name: str | None = None) -> str:
    """A width/delay as sent to the instrument: seconds with 11 decimals, exactly."""
    return _format_ticks(_ticks(seconds, kind, name))


def _format_ticks(ticks: int) -> str:
    units = ticks * 25  # units of 1e-11 s
    return f"{units // 10**11}.{units % 10**11:011d}"


def format_period(seconds: float) -> str:
    """A period (100 ns to 5000 s, multiple of 1 ns) as sent: seconds with 9 decimals."""
    seconds = _finite(seconds, "period")
    ns = round(seconds * 1e9)
    if abs(ns / 1e9 - seconds) > RELATIVE_TOLERANCE * abs(seconds):
        raise UnrepresentableWidthError(f"period {seconds!r} s is not a multiple of 1 ns")
    if not MIN_PERIOD_S <= seconds <= MAX_PERIOD_S:
        raise UnrepresentableWidthError(f"period {seconds!r} s is outside [100 ns, 5000 s]")
    return f"{ns // 10**9}.{ns % 10**9:09d}"


def _reply_ticks(reply: str) -> Decimal | None:
    try:
        value = Decimal(reply) * TICKS_PER_S
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


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


@dataclass(frozen=True)
class PairTiming:
    """The pair's timing as the instrument holds it after ``configure_pair`` (read back), in
    250 ps ticks: both widths and both channels' delays after T0."""

    width_b_ticks: int
    width_s_ticks: int
    delay_b_ticks: int
    delay_s_ticks: int

    @property
    def width_b_s(self) -> float:
        return self.width_b_ticks / TICKS_PER_S

    @property
    def width_s_s(self) -> float:
        return self.width_s_ticks / TICKS_PER_S

    @property
    def delay_b_s(self) -> float:
        return self.delay_b_ticks / TICKS_PER_S

    @property
    def delay_s_s(self) -> float:
        return self.delay_s_ticks / TICKS_PER_S

    @property
    def sharp_delay_s(self) -> float:
        """How long after camera B's trigger camera S's comes (s)."""
        return (self.delay_s_ticks - self.delay_b_ticks) / TICKS_PER_S


class PulseGenerator:
    """A BNC 575 / QC 9520 on ``port``.

    port: a device path (``/dev/ttyUSB0``, ``COM3``), a pyserial URL (``socket://10.0.0.5:2001``)
        or a callable returning one, called at every (re)open (e.g. to follow a re-enumerated
        USB port). baudrate: 38400 or 115200 as set on the instrument (ignored for TCP).
    timeout_s: how long one command waits for its reply (> 0). retries: reopen attempts after a
        lost port or a missing reply before giving up (0: none; the command is re-sent once).
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
        self.identity: Identity | None = None
        self._serial: serial.SerialBase | None = None
        self._wanted_open = False
        self._rx = bytearray()
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- port lifecycle
    def open(self, expect_family: bool = True) -> Identity | None:
        """Open the port; with ``expect_family`` also check ``*IDN?`` (``WrongInstrumentError``).

        Returns the identity when checked. Opening an open driver only re-checks the identity.
        """
        with self._lock:
            if self._serial is None:
                self._open_port()
            self._wanted_open = True
            if not expect_family:
                return None
            try:
                return self.check_identity()
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        """Close the port (idempotent); later calls raise until ``open()``."""
        with self._lock:
            self._wanted_open = False
            self._drop_port()

    def __enter__(self) -> PulseGenerator:
        self.open()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

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

    # ----------------------------------------------------------------- operations
    def identify(self) -> Identity:
        """``*IDN?`` split into its four fields (``GarbledReplyError`` if it has not four)."""
        reply = self.query("*IDN?")
        fields = [f.strip() for f in reply.split(",")]
        if len(fields) != 4:
            raise GarbledReplyError(
                f"*IDN? answered {reply!r}, not 4 comma-separated fields", command="*IDN?"
            )
        self.identity = Identity(*fields)
        return self.identity

    def check_identity(self) -> Identity:
        """``identify()`` and raise ``WrongInstrumentError`` unless it is a 575 / 9520."""
        try:
            identity = self.identify()
        except GarbledReplyError as exc:
            raise WrongInstrumentError(
                f"the instrument on {self.port} is not a BNC 575: {exc}"
            ) from exc
        if not identity.supported:
            raise WrongInstrumentError(
                f"the instrument on {self.port} is {identity.make} {identity.model} "
                f"(serial {identity.serial}), not a BNC 575 / Quantum Composers 9520"
            )
        return identity

    def reset(self) -> None:
        """``*RST``: factory defaults, stopped."""
        self.command("*RST")

    def set_period(self, period_s: float) -> None:
        """T0 period in seconds (100 ns to 5000 s, multiple of 1 ns)."""
        self.command(f":PULSE0:PER {format_period(period_s)}")

    def configure_pair(
        self, width_b_s: float, width_s_s: float, delay_s: float = 0.0, sharp_delay_s: float = 0.0
    ) -> PairTiming:
        """Single-shot pair: channel A (camera B) ``width_b_s`` and channel B (camera S)
        ``width_s_s`` wide (seconds, 10 ns to 999.99999999975 s on the 250 ps grid), both synced to
        T0, channel A with ``delay_s`` and channel B with ``delay_s + sharp_delay_s`` (each 0 to
        999.99999999975 s, and so their sum), enabled, normal polarity; external trigger
        disabled; channel mode NORM (follows T0). ``sharp_delay_s`` = (tL − tS)/2 puts camera S's
        exposure at the centre of camera B's; 0 starts both together. Every value is then read
        back; ``ReadbackMismatchError`` if any differs. Arguments are checked before anything is
        sent. Returns the timing read back (``PairTiming``).
        """
        delay_b = _ticks(delay_s, "delay", "delay_s")
        delay_s_ticks = delay_b + _ticks(sharp_delay_s, "delay", "sharp_delay_s")
        if delay_s_ticks > bnc575.MAX_TICKS:
            raise UnrepresentableWidthError(
                f"channel B's delay delay_s + sharp_delay_s = {delay_s_ticks / TICKS_PER_S!r} s is outside "
                f"[0 s, {MAX_TIME_S!r} s]"
            )
        plan: list[tuple[str, str, tuple[str, ...] | Decimal]] = [
            (":PULSE0:MODE", "SING", ("SING", "SINGLE")),
            (":PULSE0:TRIG:MOD", "DIS", ("DIS", "DISABLED")),
        ]
        for channel, width_s, name, delay_ticks in (
            (CHANNEL_CAMERA_B, width_b_s, "width_b_s", delay_b),
            (CHANNEL_CAMERA_S, width_s_s, "width_s_s", delay_s_ticks),
        ):
            width = format_time(width_s, "width", name)
            delay = _format_ticks(delay_ticks)
            head = f":PULSE{channel}"
            plan += [
                (f"{head}:CMOD", "NORM", ("NORM", "NORMAL")),
                (f"{head}:SYNC", "T0", ("T0",)),
                (f"{head}:WIDTH", width, Decimal(width)),
                (f"{head}:DELAY", delay, Decimal(delay)),
                (f"{head}:POL", "NORM", ("NORM", "NORMAL")),
                (f"{head}:STATE", "ON", ("1", "ON")),
            ]
        mismatches = []
        held: dict[str, int] = {}
        with self._lock:  # no other thread's command lands between setting and reading back
            for header, value, _ in plan:
                self.command(f"{header} {value}")
            for header, value, expected in plan:
                got = self.query(f"{header}?")
                if isinstance(expected, Decimal):
                    ticks = _reply_ticks(got)
                    ok = ticks == expected * TICKS_PER_S  # exact, on the 250 ps grid
                    if ok:
                        held[header] = int(ticks)
                else:
                    ok = got.strip().upper() in expected
                if not ok:
                    mismatches.append((header, value, got))
        if mismatches:
            listed = "; ".join(f"{h}: sent {v}, holds {g}" for h, v, g in mismatches)
            raise ReadbackMismatchError(
                f"pulse generator on {self.port} did not take the pair settings: {listed}",
                mismatches,
            )
        b, s = f":PULSE{CHANNEL_CAMERA_B}", f":PULSE{CHANNEL_CAMERA_S}"
        return PairTiming(
            held[f"{b}:WIDTH"], held[f"{s}:WIDTH"], held[f"{b}:DELAY"], held[f"{s}:DELAY"]
        )

    def arm(self) -> None:
        """``:PULSE0:STATE ON``: run; in single-shot mode each trigger then fires once."""
        self.command(":PULSE0:STATE ON")

    def disarm(self) -> None:
        """``:PULSE0:STATE OFF``."""
        self.command(":PULSE0:STATE OFF")

    def is_armed(self) -> bool:
        return self.query(":PULSE0:STATE?").upper() in ("1", "ON")

    def trigger(self) -> None:
        """``*TRG``: fire once (``NotRunningError`` when not armed). Never re-sent: on a lost reply
        or port it raises ``NoReplyError``/``DisconnectedError`` and the trigger state is unknown."""
        self.command("*TRG")
