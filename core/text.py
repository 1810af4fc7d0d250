"""Text that crosses a trust boundary: control characters in names and in log lines.

No name, id or path of this system contains an ASCII control character (U+0000..U+001F,
U+007F). Such characters are refused at the edge (:func:`has_control_characters`), and every
field that goes into a log line is escaped (:func:`printable`), so a request can never write a
forged log line.
"""

from __future__ import annotations

_CONTROL_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}
_CONTROL_ESCAPES[ord("\\")] = "\\\\"


def has_control_characters(text: str) -> bool:
    """Whether ``text`` holds an ASCII control character (U+0000..U+001F or U+007F)."""
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def printable(text: str) -> str:
    """``text`` with every ASCII control character escaped as ``\\xNN`` and the backslash
    doubled: the result is one line, and the escaping cannot be forged by the input."""
    return text.translate(_CONTROL_ESCAPES)


def refuse_control_characters(value: str, field: str) -> str:
    """``value`` unchanged; ValueError naming ``field`` when it holds a control character."""
    if has_control_characters(value):
        raise ValueError(f"{field} must not contain control characters (got {printable(value)!r})")
    return value
