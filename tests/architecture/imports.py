"""The project's import graph, read from the source with :mod:`ast` (nothing is imported).

Every ``import`` and ``from … import`` counts, at module level or inside a function: a lazy
import is still an arrow between packages.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "acquisition", "hardware_sim", "postprocess", "deblur", "api", "migrations")


@dataclass(frozen=True)
class ImportEdge:
    """``module`` (dotted, e.g. ``deblur.data``) imports ``target`` at ``line``; ``top_level``:
    the import runs when the module is imported (not inside a function); ``type_only``: under
    ``if TYPE_CHECKING`` (for annotations; it never runs)."""

    module: str
    target: str
    line: int
    top_level: bool
    type_only: bool = False

    @property
    def source_package(self) -> str:
        return self.module.split(".")[0]

    @property
    def target_package(self) -> str:
        return self.target.split(".")[0]


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def source_files() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((REPO / package).rglob("*.py"))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _submodule_exists(dotted: str) -> bool:
    path = REPO / Path(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _module_edges(module: str, is_package: bool, tree: ast.AST) -> list[ImportEdge]:
    found: list[ImportEdge] = []

    def visit(node: ast.AST, top: bool, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, False, typing_only)
            elif isinstance(child, ast.If) and _is_type_checking(child):
                visit(child, False, True)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] in PACKAGES:
                        found.append(ImportEdge(module, alias.name, child.lineno, top, typing_only))
            elif isinstance(child, ast.ImportFrom):
                target = _resolve(module, is_package, child)
                if target.split(".")[0] in PACKAGES:
                    # ``from pkg import mod`` imports the submodule when there is one.
                    for alias in child.names:
                        sub = f"{target}.{alias.name}"
                        name = sub if _submodule_exists(sub) else target
                        found.append(ImportEdge(module, name, child.lineno, top, typing_only))
            else:
                visit(child, top, typing_only)

    visit(tree, True, False)
    return found


def edges() -> list[ImportEdge]:
    """Every import of one of our packages, in every module of ours."""
    found: list[ImportEdge] = []
    for path in source_files():
        tree = ast.parse(path.read_text(), str(path))
        found.extend(_module_edges(module_name(path), path.name == "__init__.py", tree))
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return sorted(out)
