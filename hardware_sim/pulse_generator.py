"""Emulator of a BNC 575 / Quantum Composers 9520-family digital delay generator.

``PulseGeneratorEmulator`` speaks the instrument's text protocol (``handle_line``) and serves it
over a real pseudo-terminal (``serve_pty``, for pyserial) and TCP (``serve_tcp``, for
``socket://`` URLs). All transports share one instrument state.

Protocol (one reply line per command, ``ok``, a value, or ``?1``..``?9``):

* ``*IDN?`` (query only), ``*RST``, ``*TRG`` (no query form; ``?8`` unless running).
* ``:PULSE0`` (alias ``:SPULSE``) is the system timer T0: ``MODe NORM|SING|BURS|DCYC``,
  ``PERiod`` (100 ns to 5000 s, 1 ns resolution), ``STATe ON|OFF|1|0`` (run / stop),
  ``TRIGger:MODe DIS|TRIG``, ``TRIGger:EDGe RIS|FALL``, ``TRIGger:LEVel`` (0.2 to 15 V).
* ``:PULSE1``.. are channels A, B, ...: ``STATe``, ``WIDTh`` (10 ns to 999.99999999975 s),
  ``DELay`` (0 to 999.99999999975 s), ``SYNC T0|CHA|CHB|..``, ``POLarity NORM|INV``,
  ``CMODe NORM|SING|BURS|DCYC`` (stored only). Widths and delays are held on the 250 ps grid
  (rounded half-even, as the hardware does; the driver refuses off-grid values beforehand).
* ``:SYSTem:COMMunicate:SERial:ECHo ON|OFF`` (the 9520's echo command) and the shorthand
  ``:SYSTem:ECHo``; ``:INSTrument:CATalog?`` lists ``T0, CHA, CHB, ...``.


Keywords are case-insensitive, from their short form (``WIDT``) up to their long form
(``WIDTH``); every settable value has a query (``...?``). The grammar, reply formats and error
codes ``?1``..``?9`` are :mod:`hardware_sim.bnc575_protocol`'s; the pty and TCP servers are
:mod:`hardware_sim.emulator_transports`'s. This module holds the instrument's state (T0 and the
channels, their SYNC chains), firing, and the transport faults (:class:`FaultPlan`).

Firing: ``:PULSE0:STATE ON`` arms (runs) the generator and resets its fire counter. Each
``*TRG`` while running fires one T0 cycle, in every system mode: the fire counter increments
and every enabled channel emits one ``Pulse`` on the bus (same ``fire_count`` and
``time.monotonic_ns()`` for all channels; ``delay_s`` is the delay after T0, summed along the
channel's SYNC chain). In SING mode the generator stays armed after firing, so repeated
``*TRG`` fire repeatedly. Free-running NORM/BURS/DCYC output and the external trigger input are
not emulated (no pulses without ``*TRG``). ``*RST`` restores defaults and stops; echo survives it.

Threads: each ``serve_pty``/``serve_tcp`` runs daemon threads; bus listeners are called on the
thread that handled the ``*TRG`` line. ``close()`` stops all of them and closes every fd/socket.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

from acquisition.bnc575 import TICKS_PER_S
from hardware_sim.bnc575_protocol import (
    MAX_LEVEL_V,
    MAX_PERIOD_S,
    MAX_TIME_S,
    MIN_LEVEL_V,
    MIN_PERIOD_S,
    MIN_WIDTH_S,
    MODES,
    Leaf,
    ProtocolError,
    boolean,
    canonical_key,
    choice,
    format_ns,
    format_ticks,
    number,
    parse_command,
    scaled,
)
from hardware_sim.emulator_transports import PtyTransport, TcpTransport
from hardware_sim.pulse_channels import (
    ChannelState,
    channel_letter,
    effective_delay_ticks,
    syncs_back_to,
)
from hardware_sim.signals import Pulse, PulseBus

__all__ = [
    "DEFAULT_IDENTITY",
    "MAX_LEVEL_V",
    "MAX_PERIOD_S",
    "MAX_TIME_S",
    "MIN_LEVEL_V",
    "MIN_PERIOD_S",
    "MIN_WIDTH_S",
    "ChannelState",
    "FaultPlan",
    "PulseGeneratorEmulator",
    "canonical_key",
    "format_ticks",
]

log = logging.getLogger(__name__)

DEFAULT_IDENTITY = "BNC,575-4,SIM0001,2.4.1-2.0.11"


@dataclass
class FaultPlan:
    """Transport faults, counted over the lines the transports receive since the plan was set.

    no_reply_to: commands whose reply (and echo) is swallowed; the command still executes (a lost
        reply). Entries match a line by its normalised long header (``:PULSE1:WIDTH`` matches any
        spelling of a width setting, ``:PULSE1:WIDTH?`` its query, ``*TRG``) or by the exact text.
    garble_after: from the Nth received command on (1-based; 0 or 1: all), every reply line is
        replaced by non-ASCII bytes 0x80..0xFF (the command still executes).
    disconnect_after: after N commands, the next received line is not executed and the transport
        that carried it closes (pty: master fd closed, a hang-up; TCP: the connection closes, the
        server keeps listening). It fires once per plan.
    """

    no_reply_to: set[str] = field(default_factory=set)
    garble_after: int | None = None
    disconnect_after: int | None = None


def _garble(reply: str) -> str:
    """Deterministic line noise: every character mapped into 0x80..0xFF (no line terminators)."""
    return "".join(chr((ord(c) ^ 0xA5) | 0x80) for c in reply)


class PulseGeneratorEmulator:
    """A BNC 575 that lives in this process (see the module docstring for the protocol).

    bus: where fired pulses go (``None``: fire counter only). identity: the ``*IDN?`` reply.
    channels: output channels (1..channels). echo: echo each command line before its reply.
    faults: transport faults (also settable later: ``emulator.faults = FaultPlan(...)``).
    """

    def __init__(
        self,
        bus: PulseBus | None = None,
        identity: str = DEFAULT_IDENTITY,
        channels: int = 4,
        echo: bool = False,
        faults: FaultPlan | None = None,
    ) -> None:
        if not 1 <= channels <= 8:
            raise ValueError(f"channels must be 1..8, got {channels}")
        self.bus = bus
        self.identity = identity
        self.channel_count = channels
        self.echo = echo
        self._lock = threading.RLock()
        self._pending: list[Pulse] = []
        self._faults = FaultPlan()
        self._received = 0
        self._disconnected = False
        self.faults = faults or FaultPlan()
        self._ptys: list[PtyTransport] = []
        self._tcp: list[TcpTransport] = []
        self._closed = False
        self._reset_state()
        self._leaves = self._build_leaves()

    # ------------------------------------------------------------------ state
    def _reset_state(self) -> None:
        self.mode = "NORM"
        self.period_ns = 1_000_000  # 1 ms
        self.trigger_mode = "DIS"
        self.trigger_edge = "RIS"
        self.trigger_level = Decimal("2.50")
        self.running = False
        self.fire_count = 0
        self.channels = {n: ChannelState() for n in range(1, self.channel_count + 1)}

    @property
    def period_s(self) -> float:
        return self.period_ns / 1e9

    @property
    def commands_received(self) -> int:
        """Non-blank lines received by the transports since ``faults`` was last set."""
        return self._received

    @property
    def faults(self) -> FaultPlan:
        return self._faults

    @faults.setter
    def faults(self, plan: FaultPlan | None) -> None:
        with self._lock:
            self._faults = plan or FaultPlan()
            self._received = 0
            self._disconnected = False

    def _set_sync(self, channel: int, arg: str) -> None:
        value = arg.upper()
        if value == "T0":
            self.channels[channel].sync = "T0"
            return
        targets = {channel_letter(n): n for n in self.channels if n != channel}
        target = targets.get(value)
        if target is None or syncs_back_to(self.channels, target, channel):  # refuse sync loops
            raise ProtocolError(5)
        self.channels[channel].sync = value

    def _set_running(self, on: bool) -> None:
        if on and not self.running:
            self.fire_count = 0
        self.running = on

    def _trigger(self) -> None:
        if not self.running:
            raise ProtocolError(8)
        now = time.monotonic_ns()
        count = self.fire_count
        self.fire_count += 1
        for n, state in sorted(self.channels.items()):
            if state.enabled:
                delay = effective_delay_ticks(self.channels, n) / TICKS_PER_S
                self._pending.append(Pulse(n, count, now, delay, state.width_s, state.polarity))

    def _build_leaves(self) -> dict[str, Leaf]:
        def chan(n: int) -> ChannelState:  # looked up per call: *RST replaces the channels
            return self.channels[n]

        def set_attr(name: str, parse: Callable[[str], object]) -> Callable[[int, str], None]:
            return lambda _n, arg: setattr(self, name, parse(arg))

        def set_chan(name: str, parse: Callable[[str], object]) -> Callable[[int, str], None]:
            return lambda n, arg: setattr(chan(n), name, parse(arg))

        def set_period(_n: int, arg: str) -> None:
            self.period_ns = scaled(number(arg, MIN_PERIOD_S, MAX_PERIOD_S), 10**9)

        def set_level(_n: int, arg: str) -> None:
            value = number(arg, MIN_LEVEL_V, MAX_LEVEL_V)
            self.trigger_level = value.quantize(Decimal("0.01"), ROUND_HALF_EVEN)

        width = lambda arg: scaled(number(arg, MIN_WIDTH_S, MAX_TIME_S), TICKS_PER_S)  # noqa: E731
        delay = lambda arg: scaled(number(arg, Decimal(0), MAX_TIME_S), TICKS_PER_S)  # noqa: E731
        flag = lambda on: "1" if on else "0"  # noqa: E731
        catalog = ", ".join(["T0"] + [channel_letter(n) for n in range(1, self.channel_count + 1)])
        return {
            "idn": Leaf(lambda _n: self.identity, None),
            "rst": Leaf(None, lambda _n, _a: self._reset_state(), takes_arg=False),
            "trg": Leaf(None, lambda _n, _a: self._trigger(), takes_arg=False),
            "catalog": Leaf(lambda _n: catalog, None),
            "echo": Leaf(lambda _n: flag(self.echo), set_attr("echo", boolean)),
            "mode": Leaf(lambda _n: self.mode, set_attr("mode", lambda a: choice(a, MODES))),
            "period": Leaf(lambda _n: format_ns(self.period_ns), set_period),
            "run": Leaf(
                lambda _n: flag(self.running), lambda _n, a: self._set_running(boolean(a))
            ),
            "trig_mode": Leaf(
                lambda _n: self.trigger_mode,
                set_attr("trigger_mode", lambda a: choice(a, ("DISabled", "TRIGgered"))),
            ),
            "trig_edge": Leaf(
                lambda _n: self.trigger_edge,
                set_attr("trigger_edge", lambda a: choice(a, ("RISing", "FALLing"))),
            ),
            "trig_level": Leaf(lambda _n: f"{self.trigger_level:.2f}", set_level),
            "state": Leaf(lambda n: flag(chan(n).enabled), set_chan("enabled", boolean)),
            "width": Leaf(
                lambda n: format_ticks(chan(n).width_ticks), set_chan("width_ticks", width)
            ),
            "delay": Leaf(
                lambda n: format_ticks(chan(n).delay_ticks), set_chan("delay_ticks", delay)
            ),
            "sync": Leaf(lambda n: chan(n).sync, self._set_sync),
            "polarity": Leaf(
                lambda n: chan(n).polarity,
                set_chan("polarity", lambda a: choice(a, ("NORMal", "INVerted"))),
            ),
            "cmode": Leaf(
                lambda n: chan(n).cmode, set_chan("cmode", lambda a: choice(a, MODES))
            ),
        }

    # --------------------------------------------------------------- protocol
    def _execute(self, text: str) -> str:
        command = parse_command(text, self.channel_count)
        leaf = self._leaves[command.leaf]
        if command.query:
            if leaf.get is None:
                raise ProtocolError(7)
            if command.arg:
                raise ProtocolError(5)
            return leaf.get(command.channel)
        if leaf.set is None:
            raise ProtocolError(6)
        if leaf.takes_arg and not command.arg:
            raise ProtocolError(4)
        if not leaf.takes_arg and command.arg:
            raise ProtocolError(5)
        if leaf.takes_arg and len(command.arg.split()) != 1:
            raise ProtocolError(5)
        leaf.set(command.channel, command.arg)
        return "ok"

    def handle_line(self, line: str) -> list[str]:
        """Execute one command line; the reply lines, without terminators (echo first if on).

        A blank line is no command and gets no reply. Pulses fired by ``*TRG`` are emitted on the
        bus before this returns, on the caller's thread.
        """
        text = line.strip()
        if not text:
            return []
        with self._lock:
            echo = self.echo
            try:
                reply = self._execute(text)
            except ProtocolError as error:
                reply = f"?{error.code}"
            pulses, self._pending = self._pending, []
        if self.bus is not None:
            for pulse in pulses:
                self.bus.emit(pulse)
        log.debug("emulator %r -> %r", text, reply)
        return [text, reply] if echo else [reply]

    def _transport_line(self, line: str) -> list[str] | None:
        """``handle_line`` with the fault plan applied; ``None`` means: close this transport now."""
        if not line.strip():
            return []
        with self._lock:
            plan = self._faults
            self._received += 1
            number = self._received
            limit = plan.disconnect_after
            if limit is not None and not self._disconnected and number > limit:
                self._disconnected = True
                log.debug("emulator: injected disconnect at %r (command %d)", line, number)
                return None
        replies = self.handle_line(line)
        if self._swallowed(line, plan):
            return []
        if plan.garble_after is not None and number >= plan.garble_after:
            return [_garble(reply) for reply in replies]
        return replies

    def _swallowed(self, line: str, plan: FaultPlan) -> bool:
        if not plan.no_reply_to:
            return False
        key = canonical_key(line, self.channel_count)
        for entry in plan.no_reply_to:
            if entry.strip() == line.strip():
                return True
            if key is not None and canonical_key(entry, self.channel_count) == key:
                return True
        return False

    def _reply_bytes(self, line: str) -> bytes | None:
        replies = self._transport_line(line)
        if replies is None:
            return None
        return b"".join(r.encode("latin-1", "replace") + b"\r\n" for r in replies)

    # ------------------------------------------------------------- transports
    def serve_pty(self) -> str:
        """Serve on a new pseudo-terminal; returns the slave path (e.g. ``/dev/pts/7``).

        The pty lives until ``close()`` (or an injected disconnect, which closes its master: the
        path then stops working and a new ``serve_pty()`` gives a new path). Each call makes an
        independent pty on the same instrument state.
        """
        if self._closed:
            raise RuntimeError("emulator is closed")
        server = PtyTransport(self._reply_bytes)
        self._ptys.append(server)
        return server.path

    def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0: any free port); returns the bound port.

        Every connection talks to the same instrument; the server keeps listening after a
        connection closes (so a client can reconnect) until ``close()``.
        """
        if self._closed:
            raise RuntimeError("emulator is closed")
        server = TcpTransport(self._reply_bytes, host, port)
        self._tcp.append(server)
        return server.port

    def close(self) -> None:
        """Stop every transport thread, close every pty fd, socket and connection (idempotent)."""
        self._closed = True
        for pty in self._ptys:
            pty.close()
        self._ptys.clear()
        for server in self._tcp:
            server.stop()
        for server in self._tcp:
            server.drop_connections()
        self._tcp.clear()

    def __enter__(self) -> PulseGeneratorEmulator:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
