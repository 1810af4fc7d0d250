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

Modules: :mod:`acquisition.synchronizer_link` (the port and the line protocol),
:mod:`acquisition.synchronizer_times` (seconds ↔ ticks ↔ command text, :class:`PairTiming`),
:mod:`acquisition.synchronizer_errors` (the errors); this module is the instrument's commands
(:class:`PulseGenerator`) and re-exports the rest, so ``from acquisition.synchronizer import …``
serves every name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from acquisition import bnc575
from acquisition.synchronizer_errors import (
    ERROR_CLASSES,
    BadPrefixError,
    DisconnectedError,
    GarbledReplyError,
    InstrumentError,
    InvalidKeywordError,
    InvalidParameterError,
    MissingKeywordError,
    MissingParameterError,
    NoQueryFormError,
    NoReplyError,
    NotRunningError,
    OutOfBoundsError,
    PortNotFoundError,
    QueryOnlyError,
    ReadbackMismatchError,
    SynchronizerError,
    UnrepresentableWidthError,
    WrongInstrumentError,
)
from acquisition.synchronizer_link import SerialLink
from acquisition.synchronizer_link import log as log
from acquisition.synchronizer_times import (
    MAX_PERIOD_S,
    MAX_TIME_S,
    MIN_PERIOD_S,
    MIN_WIDTH_S,
    RELATIVE_TOLERANCE,
    RESOLUTION_S,
    TICKS_PER_S,
    PairTiming,
    TimeKind,
    _format_ticks,
    _reply_ticks,
    _ticks,
    format_period,
    format_time,
    quantise,
    representable,
)

__all__ = [
    "CHANNEL_CAMERA_B",
    "CHANNEL_CAMERA_S",
    "ERROR_CLASSES",
    "ERROR_MEANINGS",
    "MAX_PERIOD_S",
    "MAX_TIME_S",
    "MIN_PERIOD_S",
    "MIN_WIDTH_S",
    "RELATIVE_TOLERANCE",
    "RESOLUTION_S",
    "SUPPORTED_MODELS",
    "TICKS_PER_S",
    "BadPrefixError",
    "DisconnectedError",
    "GarbledReplyError",
    "Identity",
    "InstrumentError",
    "InvalidKeywordError",
    "InvalidParameterError",
    "MissingKeywordError",
    "MissingParameterError",
    "NoQueryFormError",
    "NoReplyError",
    "NotRunningError",
    "OutOfBoundsError",
    "PairTiming",
    "PortNotFoundError",
    "PulseGenerator",
    "QueryOnlyError",
    "ReadbackMismatchError",
    "SerialLink",
    "SynchronizerError",
    "TimeKind",
    "UnrepresentableWidthError",
    "WrongInstrumentError",
    "format_period",
    "format_time",
    "quantise",
    "representable",
]

CHANNEL_CAMERA_B = bnc575.CHANNEL_CAMERA_B
CHANNEL_CAMERA_S = bnc575.CHANNEL_CAMERA_S
SUPPORTED_MODELS = bnc575.SUPPORTED_MODELS
ERROR_MEANINGS = bnc575.ERROR_MEANINGS


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


class PulseGenerator(SerialLink):
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
        super().__init__(port, baudrate=baudrate, timeout_s=timeout_s, retries=retries)
        self.identity: Identity | None = None

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

    def __enter__(self) -> PulseGenerator:
        self.open()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

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
