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

Keywords are case-insensitive; a keyword may be given as anything from its short form (the
capitalised part, e.g. ``WIDT``, ``DEL``, ``PER``) up to its long form (``WIDTH``). Every
settable value has a query (``...?``). Replies: times are fixed point (period 9 decimals,
width/delay 11), states ``1``/``0``, choices their short form (``SING``, ``DIS``, ``T0``).
Error codes: ``?1`` no ``:`` or ``*`` prefix; ``?2`` missing keyword (``:PULSE1``, ``:``);
``?3`` invalid keyword; ``?4`` missing parameter; ``?5`` invalid parameter (also a parameter
given to a query or to ``*RST``/``*TRG``); ``?6`` query-only command without ``?``; ``?7``
``?`` on a command with no query form; ``?8`` ``*TRG`` while stopped; ``?9`` channel, width,
delay, period or level out of bounds.

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

import contextlib
import logging
import os
import re
import select
import socket
import socketserver
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from acquisition import bnc575
from acquisition.bnc575 import TICKS_PER_S
from hardware_sim.signals import Pulse, PulseBus

log = logging.getLogger(__name__)

# The instrument's facts (error table, 250 ps tick, limits) are acquisition.bnc575's, shared
# with the driver and the planner; here as Decimals for exact parsing.
MIN_WIDTH_S = Decimal(repr(bnc575.MIN_WIDTH_S))
MAX_TIME_S = Decimal(repr(bnc575.MAX_TIME_S))
MIN_PERIOD_S = Decimal(repr(bnc575.MIN_PERIOD_S))
MAX_PERIOD_S = Decimal(repr(bnc575.MAX_PERIOD_S))
MIN_LEVEL_V = Decimal("0.2")
MAX_LEVEL_V = Decimal("15")
DEFAULT_IDENTITY = "BNC,575-4,SIM0001,2.4.1-2.0.11"


_T0_TREE = {
    "MODe": "mode",
    "PERiod": "period",
    "STATe": "run",
    "TRIGger": {"MODe": "trig_mode", "EDGe": "trig_edge", "LEVel": "trig_level"},
}
_CHANNEL_TREE = {
    "STATe": "state",
    "WIDTh": "width",
    "DELay": "delay",
    "SYNC": "sync",
    "POLarity": "polarity",
    "CMODe": "cmode",
}
_ROOTS = {
    "SYSTem": {"COMMunicate": {"SERial": {"ECHo": "echo"}}, "ECHo": "echo"},
    "INSTrument": {"CATalog": "catalog"},
}
_COMMON = {"IDN": "idn", "RST": "rst", "TRG": "trg"}
_MODES = ("NORMal", "SINGle", "BURSt", "DCYCle")


class _ProtocolError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _keyword_matches(token: str, spec: str) -> bool:
    """True when ``token`` is between the short form (capitals of ``spec``) and the long form."""
    short = len(spec.rstrip("abcdefghijklmnopqrstuvwxyz"))
    token = token.upper()
    return len(token) >= short and spec.upper().startswith(token)


def _short(spec: str) -> str:
    return spec.rstrip("abcdefghijklmnopqrstuvwxyz")


def _choice(arg: str, specs: tuple[str, ...]) -> str:
    for spec in specs:
        if _keyword_matches(arg, spec):
            return _short(spec)
    raise _ProtocolError(5)


def _boolean(arg: str) -> bool:
    value = {"ON": True, "1": True, "OFF": False, "0": False}.get(arg.upper())
    if value is None:
        raise _ProtocolError(5)
    return value


def _number(arg: str, low: Decimal, high: Decimal) -> Decimal:
    try:
        value = Decimal(arg)
    except InvalidOperation:
        raise _ProtocolError(5) from None
    if not value.is_finite():
        raise _ProtocolError(5)
    if not low <= value <= high:
        raise _ProtocolError(9)
    return value


def _scaled(value: Decimal, per_second: int) -> int:
    return int((value * per_second).to_integral_value(ROUND_HALF_EVEN))


def format_ticks(ticks: int) -> str:
    """A 250 ps tick count as the instrument prints a width/delay: seconds with 11 decimals."""
    units = ticks * 25  # 1e-11 s units
    return f"{units // 10**11}.{units % 10**11:011d}"


def _format_ns(ns: int) -> str:
    return f"{ns // 10**9}.{ns % 10**9:09d}"


@dataclass
class ChannelState:
    """One output channel (A = 1). Times are held as 250 ps ticks."""

    enabled: bool = False
    width_ticks: int = 400  # 100 ns
    delay_ticks: int = 0
    sync: str = "T0"
    polarity: str = "NORM"
    cmode: str = "NORM"

    @property
    def width_s(self) -> float:
        return self.width_ticks / TICKS_PER_S

    @property
    def delay_s(self) -> float:
        return self.delay_ticks / TICKS_PER_S


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


@dataclass(frozen=True)
class _Command:
    key: str  # normalised long header, "?" appended for queries
    leaf: str
    channel: int
    query: bool
    arg: str


@dataclass(frozen=True)
class _Leaf:
    get: Callable[[int], str] | None
    set: Callable[[int, str], None] | None
    takes_arg: bool = True


def _parse(text: str, channels: int) -> _Command:
    header, _, arg = text.strip().partition(" ")
    arg = arg.strip()
    query = header.endswith("?")
    if query:
        header = header[:-1]
    if header.startswith("*"):
        name = header[1:].upper()
        if not name:
            raise _ProtocolError(2)
        if name not in _COMMON:
            raise _ProtocolError(3)
        return _Command("*" + name + "?" * query, _COMMON[name], 0, query, arg)
    if not header.startswith(":"):
        raise _ProtocolError(1)
    tokens = header[1:].split(":")
    if not all(tokens):
        raise _ProtocolError(2)
    match = re.fullmatch(r"([A-Za-z]+)(\d*)", tokens[0])
    if match is None:
        raise _ProtocolError(3)
    name, suffix = match.groups()
    channel = 0
    if _keyword_matches(name, "PULSe"):
        if not suffix:
            raise _ProtocolError(3)
        channel = int(suffix)
        if channel > channels:
            raise _ProtocolError(9)
        node: dict | str = _T0_TREE if channel == 0 else _CHANNEL_TREE
        path = [f"PULSE{channel}"]
    elif _keyword_matches(name, "SPULse") and not suffix:
        node, path = _T0_TREE, ["PULSE0"]
    else:
        root = next((spec for spec in _ROOTS if _keyword_matches(name, spec)), None)
        if root is None or suffix:
            raise _ProtocolError(3)
        node, path = _ROOTS[root], [root.upper()]
    for token in tokens[1:]:
        if isinstance(node, str):
            raise _ProtocolError(3)
        spec = next((spec for spec in node if _keyword_matches(token, spec)), None)
        if spec is None:
            raise _ProtocolError(3)
        node = node[spec]
        path.append(spec.upper())
    if not isinstance(node, str):
        raise _ProtocolError(2)
    return _Command(":" + ":".join(path) + "?" * query, node, channel, query, arg)


def canonical_key(text: str, channels: int = 8) -> str | None:
    """The normalised long header of a command line (``:puls1:widt 1e-3`` -> ``:PULSE1:WIDTH``),
    with ``?`` for queries; ``None`` when the line does not parse."""
    try:
        return _parse(text, channels).key
    except _ProtocolError:
        return None


def _garble(reply: str) -> str:
    """Deterministic line noise: every character mapped into 0x80..0xFF (no line terminators)."""
    return "".join(chr((ord(c) ^ 0xA5) | 0x80) for c in reply)


class _LineSplitter:
    """Bytes in, command lines out; terminators ``\\r\\n``, ``\\n`` or ``\\r``; blank lines dropped."""

    MAX_LINE = 65536

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[str]:
        *lines, self._buffer = re.split(rb"\r\n|\n|\r", self._buffer + data)
        if len(self._buffer) > self.MAX_LINE:
            self._buffer = b""
        return [line.decode("latin-1") for line in lines if line.strip()]


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
        self._ptys: list[_PtyServer] = []
        self._tcp: list[tuple[socketserver.TCPServer, threading.Thread]] = []
        self._connections: set[socket.socket] = set()
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

    def _letter(self, channel: int) -> str:
        return "CH" + chr(ord("A") + channel - 1)

    def _effective_delay_ticks(self, channel: int) -> int:
        total, seen = 0, set()
        while channel and channel not in seen:
            seen.add(channel)
            state = self.channels[channel]
            total += state.delay_ticks
            channel = 0 if state.sync == "T0" else ord(state.sync[2]) - ord("A") + 1
        return total

    def _set_sync(self, channel: int, arg: str) -> None:
        value = arg.upper()
        if value == "T0":
            self.channels[channel].sync = "T0"
            return
        targets = {self._letter(n): n for n in self.channels if n != channel}
        target = targets.get(value)
        if target is None:
            raise _ProtocolError(5)
        walk, seen = target, set()
        while walk and walk not in seen:  # refuse sync loops
            if walk == channel:
                raise _ProtocolError(5)
            seen.add(walk)
            sync = self.channels[walk].sync
            walk = 0 if sync == "T0" else ord(sync[2]) - ord("A") + 1
        self.channels[channel].sync = value

    def _set_running(self, on: bool) -> None:
        if on and not self.running:
            self.fire_count = 0
        self.running = on

    def _trigger(self) -> None:
        if not self.running:
            raise _ProtocolError(8)
        now = time.monotonic_ns()
        count = self.fire_count
        self.fire_count += 1
        for n, state in sorted(self.channels.items()):
            if state.enabled:
                delay = self._effective_delay_ticks(n) / TICKS_PER_S
                self._pending.append(Pulse(n, count, now, delay, state.width_s, state.polarity))

    def _build_leaves(self) -> dict[str, _Leaf]:
        def chan(n: int) -> ChannelState:  # looked up per call: *RST replaces the channels
            return self.channels[n]

        def set_attr(name: str, parse: Callable[[str], object]) -> Callable[[int, str], None]:
            return lambda _n, arg: setattr(self, name, parse(arg))

        def set_chan(name: str, parse: Callable[[str], object]) -> Callable[[int, str], None]:
            return lambda n, arg: setattr(chan(n), name, parse(arg))

        def set_period(_n: int, arg: str) -> None:
            self.period_ns = _scaled(_number(arg, MIN_PERIOD_S, MAX_PERIOD_S), 10**9)

        def set_level(_n: int, arg: str) -> None:
            value = _number(arg, MIN_LEVEL_V, MAX_LEVEL_V)
            self.trigger_level = value.quantize(Decimal("0.01"), ROUND_HALF_EVEN)

        width = lambda arg: _scaled(_number(arg, MIN_WIDTH_S, MAX_TIME_S), TICKS_PER_S)  # noqa: E731
        delay = lambda arg: _scaled(_number(arg, Decimal(0), MAX_TIME_S), TICKS_PER_S)  # noqa: E731
        flag = lambda on: "1" if on else "0"  # noqa: E731
        catalog = ", ".join(["T0"] + [self._letter(n) for n in range(1, self.channel_count + 1)])
        return {
            "idn": _Leaf(lambda _n: self.identity, None),
            "rst": _Leaf(None, lambda _n, _a: self._reset_state(), takes_arg=False),
            "trg": _Leaf(None, lambda _n, _a: self._trigger(), takes_arg=False),
            "catalog": _Leaf(lambda _n: catalog, None),
            "echo": _Leaf(lambda _n: flag(self.echo), set_attr("echo", _boolean)),
            "mode": _Leaf(lambda _n: self.mode, set_attr("mode", lambda a: _choice(a, _MODES))),
            "period": _Leaf(lambda _n: _format_ns(self.period_ns), set_period),
            "run": _Leaf(
                lambda _n: flag(self.running), lambda _n, a: self._set_running(_boolean(a))
            ),
            "trig_mode": _Leaf(
                lambda _n: self.trigger_mode,
                set_attr("trigger_mode", lambda a: _choice(a, ("DISabled", "TRIGgered"))),
            ),
            "trig_edge": _Leaf(
                lambda _n: self.trigger_edge,
                set_attr("trigger_edge", lambda a: _choice(a, ("RISing", "FALLing"))),
            ),
            "trig_level": _Leaf(lambda _n: f"{self.trigger_level:.2f}", set_level),
            "state": _Leaf(lambda n: flag(chan(n).enabled), set_chan("enabled", _boolean)),
            "width": _Leaf(
                lambda n: format_ticks(chan(n).width_ticks), set_chan("width_ticks", width)
            ),
            "delay": _Leaf(
                lambda n: format_ticks(chan(n).delay_ticks), set_chan("delay_ticks", delay)
            ),
            "sync": _Leaf(lambda n: chan(n).sync, self._set_sync),
            "polarity": _Leaf(
                lambda n: chan(n).polarity,
                set_chan("polarity", lambda a: _choice(a, ("NORMal", "INVerted"))),
            ),
            "cmode": _Leaf(
                lambda n: chan(n).cmode, set_chan("cmode", lambda a: _choice(a, _MODES))
            ),
        }

    # --------------------------------------------------------------- protocol
    def _execute(self, text: str) -> str:
        command = _parse(text, self.channel_count)
        leaf = self._leaves[command.leaf]
        if command.query:
            if leaf.get is None:
                raise _ProtocolError(7)
            if command.arg:
                raise _ProtocolError(5)
            return leaf.get(command.channel)
        if leaf.set is None:
            raise _ProtocolError(6)
        if leaf.takes_arg and not command.arg:
            raise _ProtocolError(4)
        if not leaf.takes_arg and command.arg:
            raise _ProtocolError(5)
        if leaf.takes_arg and len(command.arg.split()) != 1:
            raise _ProtocolError(5)
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
            except _ProtocolError as error:
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
        server = _PtyServer(self)
        self._ptys.append(server)
        return server.path

    def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0: any free port); returns the bound port.

        Every connection talks to the same instrument; the server keeps listening after a
        connection closes (so a client can reconnect) until ``close()``.
        """
        if self._closed:
            raise RuntimeError("emulator is closed")
        server = _TcpServer((host, port), _TcpHandler)
        server.emulator = self
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"bnc575-emulator-tcp:{server.server_address[1]}",
        )
        thread.start()
        self._tcp.append((server, thread))
        return server.server_address[1]

    def close(self) -> None:
        """Stop every transport thread, close every pty fd, socket and connection (idempotent)."""
        self._closed = True
        for pty in self._ptys:
            pty.close()
        self._ptys.clear()
        for server, thread in self._tcp:
            server.shutdown()
            server.server_close()
            thread.join(timeout=2)
        self._tcp.clear()
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for connection in connections:
            _shutdown(connection)

    def __enter__(self) -> PulseGeneratorEmulator:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class _PtyServer:
    """One pseudo-terminal: a daemon thread reads the master, writes replies back."""

    def __init__(self, emulator: PulseGeneratorEmulator) -> None:
        self._emulator = emulator
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)  # a reader that never reads must not wedge close()
        # The emulator keeps its own slave fd open so the pty survives the driver's close/reopen.
        self.path = os.ttyname(self._slave)
        self._fd_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, daemon=True, name=f"bnc575-emulator-pty:{self.path}"
        )
        self._thread.start()

    def _run(self) -> None:
        lines = _LineSplitter()
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._master], [], [], 0.05)
                if not ready:
                    continue
                data = os.read(self._master, 4096)
            except (OSError, ValueError):
                return
            for line in lines.feed(data):
                reply = self._emulator._reply_bytes(line)
                if reply is None:
                    self._close_fds()
                    return
                try:
                    os.write(self._master, reply)
                except BlockingIOError:  # nobody reads the slave: the line overruns, as on RS-232
                    log.debug(
                        "emulator %s: reply to %r dropped (slave not reading)", self.path, line
                    )
                except OSError:
                    return

    def _close_fds(self) -> None:
        with self._fd_lock:
            for fd in (self._master, self._slave):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._master = self._slave = -1

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._close_fds()


class _TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    emulator: PulseGeneratorEmulator


class _TcpHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        emulator = self.server.emulator  # type: ignore[attr-defined]
        sock: socket.socket = self.request
        with emulator._lock:
            emulator._connections.add(sock)
        lines = _LineSplitter()
        try:
            while True:
                try:
                    data = sock.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                for line in lines.feed(data):
                    reply = emulator._reply_bytes(line)
                    if reply is None:
                        _shutdown(sock)
                        return
                    sock.sendall(reply)
        except OSError:
            return
        finally:
            with emulator._lock:
                emulator._connections.discard(sock)
