"""The text protocol of the emulated BNC 575: command grammar, argument parsing, reply formats.

:func:`parse_command` turns one command line into a :class:`Command` (its normalised long
header, the leaf it names, the channel: 0 = T0, 1 = A, ...) or raises :class:`ProtocolError`
with the instrument's error code:

``?1`` no ``:`` or ``*`` prefix; ``?2`` missing keyword (``:PULSE1``, ``:``); ``?3`` invalid
keyword; ``?4`` missing parameter; ``?5`` invalid parameter (also a parameter given to a query or
to ``*RST``/``*TRG``); ``?6`` query-only command without ``?``; ``?7`` ``?`` on a command with no
query form; ``?8`` ``*TRG`` while stopped; ``?9`` channel, width, delay, period or level out of
bounds.

Keywords are case-insensitive; a keyword may be given as anything from its short form (the
capitalised part, e.g. ``WIDT``, ``DEL``, ``PER``) up to its long form (``WIDTH``). Numbers are
parsed exactly (:class:`~decimal.Decimal`, seconds or volts) and held as integers: periods in
ns, widths and delays in 250 ps ticks (rounded half-even, as the hardware does). Replies: times
are fixed point (period 9 decimals, width/delay 11), states ``1``/``0``, choices their short
form (``SING``, ``DIS``, ``T0``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from acquisition import bnc575

__all__ = [
    "MAX_LEVEL_V",
    "MAX_PERIOD_S",
    "MAX_TIME_S",
    "MIN_LEVEL_V",
    "MIN_PERIOD_S",
    "MIN_WIDTH_S",
    "MODES",
    "Command",
    "Leaf",
    "ProtocolError",
    "boolean",
    "canonical_key",
    "choice",
    "format_ns",
    "format_ticks",
    "keyword_matches",
    "number",
    "parse_command",
    "scaled",
]

# The instrument's facts (error table, 250 ps tick, limits) are acquisition.bnc575's, shared
# with the driver and the planner; here as Decimals for exact parsing.
MIN_WIDTH_S = Decimal(repr(bnc575.MIN_WIDTH_S))
MAX_TIME_S = Decimal(repr(bnc575.MAX_TIME_S))
MIN_PERIOD_S = Decimal(repr(bnc575.MIN_PERIOD_S))
MAX_PERIOD_S = Decimal(repr(bnc575.MAX_PERIOD_S))
MIN_LEVEL_V = Decimal("0.2")
MAX_LEVEL_V = Decimal("15")


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
MODES = ("NORMal", "SINGle", "BURSt", "DCYCle")


class ProtocolError(Exception):
    """A command the instrument refuses; ``code`` is the digit of its ``?N`` reply."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def keyword_matches(token: str, spec: str) -> bool:
    """True when ``token`` is between the short form (capitals of ``spec``) and the long form."""
    short = len(spec.rstrip("abcdefghijklmnopqrstuvwxyz"))
    token = token.upper()
    return len(token) >= short and spec.upper().startswith(token)


def short_form(spec: str) -> str:
    """The short form of a keyword spec: its capitalised part (``WIDTh`` → ``WIDT``)."""
    return spec.rstrip("abcdefghijklmnopqrstuvwxyz")


def choice(arg: str, specs: tuple[str, ...]) -> str:
    """The short form of the choice ``arg`` names (``?5`` if none)."""
    for spec in specs:
        if keyword_matches(arg, spec):
            return short_form(spec)
    raise ProtocolError(5)


def boolean(arg: str) -> bool:
    """``ON``/``1`` → True, ``OFF``/``0`` → False (``?5`` otherwise)."""
    value = {"ON": True, "1": True, "OFF": False, "0": False}.get(arg.upper())
    if value is None:
        raise ProtocolError(5)
    return value


def number(arg: str, low: Decimal, high: Decimal) -> Decimal:
    """``arg`` as an exact Decimal in ``[low, high]`` (``?5`` not a number, ``?9`` out of bounds)."""
    try:
        value = Decimal(arg)
    except InvalidOperation:
        raise ProtocolError(5) from None
    if not value.is_finite():
        raise ProtocolError(5)
    if not low <= value <= high:
        raise ProtocolError(9)
    return value


def scaled(value: Decimal, per_second: int) -> int:
    """Seconds → integer units of ``1/per_second`` s, rounded half-even."""
    return int((value * per_second).to_integral_value(ROUND_HALF_EVEN))


def format_ticks(ticks: int) -> str:
    """A 250 ps tick count as the instrument prints a width/delay: seconds with 11 decimals."""
    units = ticks * 25  # 1e-11 s units
    return f"{units // 10**11}.{units % 10**11:011d}"


def format_ns(ns: int) -> str:
    """A period in ns as the instrument prints it: seconds with 9 decimals."""
    return f"{ns // 10**9}.{ns % 10**9:09d}"


@dataclass(frozen=True)
class Command:
    """One parsed command line."""

    key: str  # normalised long header, "?" appended for queries
    leaf: str
    channel: int
    query: bool
    arg: str


@dataclass(frozen=True)
class Leaf:
    """What a leaf command does: ``get(channel)`` answers its query, ``set(channel, arg)``
    applies it (``None``: no query form / query only); ``takes_arg``: a setting needs one."""

    get: Callable[[int], str] | None
    set: Callable[[int, str], None] | None
    takes_arg: bool = True


def parse_command(text: str, channels: int) -> Command:
    """One command line of an instrument with ``channels`` outputs → :class:`Command`, or
    :class:`ProtocolError` (codes 1, 2, 3, 9; argument checks are the caller's)."""
    header, _, arg = text.strip().partition(" ")
    arg = arg.strip()
    query = header.endswith("?")
    if query:
        header = header[:-1]
    if header.startswith("*"):
        name = header[1:].upper()
        if not name:
            raise ProtocolError(2)
        if name not in _COMMON:
            raise ProtocolError(3)
        return Command("*" + name + "?" * query, _COMMON[name], 0, query, arg)
    if not header.startswith(":"):
        raise ProtocolError(1)
    tokens = header[1:].split(":")
    if not all(tokens):
        raise ProtocolError(2)
    match = re.fullmatch(r"([A-Za-z]+)(\d*)", tokens[0])
    if match is None:
        raise ProtocolError(3)
    name, suffix = match.groups()
    channel = 0
    if keyword_matches(name, "PULSe"):
        if not suffix:
            raise ProtocolError(3)
        channel = int(suffix)
        if channel > channels:
            raise ProtocolError(9)
        node: dict | str = _T0_TREE if channel == 0 else _CHANNEL_TREE
        path = [f"PULSE{channel}"]
    elif keyword_matches(name, "SPULse") and not suffix:
        node, path = _T0_TREE, ["PULSE0"]
    else:
        root = next((spec for spec in _ROOTS if keyword_matches(name, spec)), None)
        if root is None or suffix:
            raise ProtocolError(3)
        node, path = _ROOTS[root], [root.upper()]
    for token in tokens[1:]:
        if isinstance(node, str):
            raise ProtocolError(3)
        spec = next((spec for spec in node if keyword_matches(token, spec)), None)
        if spec is None:
            raise ProtocolError(3)
        node = node[spec]
        path.append(spec.upper())
    if not isinstance(node, str):
        raise ProtocolError(2)
    return Command(":" + ":".join(path) + "?" * query, node, channel, query, arg)


def canonical_key(text: str, channels: int = 8) -> str | None:
    """The normalised long header of a command line (``:puls1:widt 1e-3`` -> ``:PULSE1:WIDTH``),
    with ``?`` for queries; ``None`` when the line does not parse."""
    try:
        return parse_command(text, channels).key
    except ProtocolError:
        return None
