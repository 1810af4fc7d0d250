"""One strict pydantic base, one YAML reader and one error formatter for every config file.

Rig files, training configs, scene specs, pipeline parameters and job parameters are all
validated by a :class:`StrictModel` (unknown keys are refused) and their problems reported the
same way: ``<dotted.location>: <what is wrong>``, joined by ``; `` (``loss.lambda_l1: Input should
be a valid number``, ``loc: unknown key``, ``data: Field required``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """A pydantic model that refuses keys it does not declare."""

    model_config = ConfigDict(extra="forbid")


def validation_problems(err: ValidationError | Iterable[ErrorDetails], root: str = "(top level)",
                        unknown: str = "unknown key") -> list[str]:
    """Each problem of ``err`` (or of a list of its ``errors()``, filtered by the caller) as
    ``<dotted.location>: <message>`` (``root`` where the problem is the whole document;
    ``unknown`` as the message of a key the model does not declare)."""
    problems = []
    for e in err.errors() if isinstance(err, ValidationError) else err:
        loc = ".".join(str(p) for p in e["loc"]) or root
        msg = unknown if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        problems.append(f"{loc}: {msg}")
    return problems


def format_validation_error(err: ValidationError | Iterable[ErrorDetails], root: str = "(top level)",
                            unknown: str = "unknown key") -> str:
    """:func:`validation_problems` joined by ``; ``."""
    return "; ".join(validation_problems(err, root, unknown))


def read_yaml(path: Path | str, error: type[Exception], what: str) -> Any:
    """The YAML document in ``path``; otherwise ``error`` (an exception class) with ``<what>
    file <path> does not exist`` or ``<what> file <path> line <n>: not valid YAML (<problem>)``."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} file {path} does not exist") from None
    except yaml.MarkedYAMLError as exc:
        line = f" line {exc.problem_mark.line + 1}" if exc.problem_mark is not None else ""
        raise error(f"{what} file {path}{line}: not valid YAML ({exc.problem})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise error(f"{what} file {path}: not valid YAML ({exc})") from None
    except OSError as exc:
        raise error(f"cannot read the {what} file {path}: {exc}") from None


def validate_model(model: type[M], data: Any, error: type[Exception], prefix: str,
                   root: str = "(top level)", unknown: str = "unknown key") -> M:
    """``model.model_validate(data)``; ``error("<prefix>: <problems>")`` when it fails."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise error(f"{prefix}: {format_validation_error(err, root, unknown)}") from None
