"""GenICam node map helpers: find a feature's node, and check and convert a value for it.

A value is refused with :class:`~acquisition.cameras.base.FeatureValueError` when the node
cannot take it: an enumeration entry it lacks, a non-bool for a boolean, a non-string for a
string, a number outside ``[min, max]`` (in the node's unit) or off an integer node's increment.
"""

from __future__ import annotations

import numpy as np
from genicam.genapi import (
    EAccessMode,
    IBoolean,
    IEnumeration,
    IFloat,
    IInteger,
    IString,
    LogicalErrorException,
)
from genicam.genapi import GenericException as GenApiError

from acquisition.cameras.base import FeatureValueError

_READABLE = (EAccessMode.RO, EAccessMode.RW)
_WRITABLE = (EAccessMode.WO, EAccessMode.RW)
_VALUE_TYPES = (IInteger, IFloat, IBoolean, IEnumeration, IString)


def _node(node_map: object, name: str) -> object | None:
    """The node called ``name``, or None when the node map has no such node."""
    try:
        return node_map.get_node(name)
    except LogicalErrorException:
        return None


def _range_text(node: object) -> str:
    unit = ""
    try:
        unit = f" {node.unit}" if node.unit else ""
    except (GenApiError, AttributeError):
        unit = ""
    return f"[{node.min:g}, {node.max:g}]{unit}"


def _coerce(name: str, node: object, value: object) -> object:
    """``value`` converted to what ``node`` takes; FeatureValueError when it cannot take it."""
    if isinstance(node, IEnumeration):
        entries = tuple(node.symbolics)
        if not isinstance(value, str) or value not in entries:
            raise FeatureValueError(f"{name} must be one of {', '.join(entries)}; got {value!r}")
        return value
    if isinstance(node, IBoolean):
        if not isinstance(value, bool):
            raise FeatureValueError(f"{name} takes True or False; got {value!r}")
        return value
    if isinstance(node, IString):
        if not isinstance(value, str):
            raise FeatureValueError(f"{name} takes a string; got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise FeatureValueError(f"{name} takes a number; got {value!r}")
    if isinstance(node, IInteger):
        if not float(value).is_integer():
            raise FeatureValueError(f"{name} takes an integer; got {value!r}")
        number = int(value)
        if not node.min <= number <= node.max:
            raise FeatureValueError(f"{name}={number} outside {_range_text(node)}")
        inc = node.inc
        if inc > 1 and (number - node.min) % inc:
            raise FeatureValueError(f"{name}={number} not a step of {inc} from {node.min}")
        return number
    number = float(value)
    if not node.min <= number <= node.max:
        raise FeatureValueError(f"{name}={number:g} outside {_range_text(node)}")
    return number
