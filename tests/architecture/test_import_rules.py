"""The one-way architecture, checked on the source (ARCHITECTURE.md draws it).

- core imports nothing of ours but the migrations' runner;
- acquisition and hardware_sim never import postprocess, deblur or api;
- acquisition never imports hardware_sim (the simulator is a rig backend found by entry point);
- deblur imports only core (training datasets from elsewhere register by entry point);
- no module imports itself back through others (no circular imports), counting imports inside
  functions too; imports under ``if TYPE_CHECKING`` never run and do not count as cycles.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from .imports import PACKAGES, cycles, edges

ALLOWED: dict[str, set[str]] = {
    "core": {"core", "migrations"},
    "acquisition": {"acquisition", "core"},
    "hardware_sim": {"hardware_sim", "acquisition", "core"},
    "deblur": {"deblur", "core"},
    "postprocess": {"postprocess", "core", "acquisition", "hardware_sim"},
    "api": set(PACKAGES),
    "migrations": {"migrations", "core"},
}

EDGES = edges()


def test_the_scan_sees_the_imports_it_should():
    """Guard against a scanner that finds nothing: known arrows are present."""
    seen = {(e.module, e.target) for e in EDGES}
    assert ("hardware_sim.rig", "acquisition.backends") in seen
    assert ("core.migrate", "migrations") in {(m, t.split(".")[0]) for m, t in seen}
    assert len(EDGES) > 200


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_what_it_may(package):
    wrong = sorted(
        f"{e.module}:{e.line} imports {e.target}"
        for e in EDGES
        if e.source_package == package and e.target_package not in ALLOWED[package]
    )
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package])}:\n" + "\n".join(wrong)


def test_no_circular_imports_between_modules():
    graph: dict[str, set[str]] = defaultdict(set)
    for e in EDGES:
        if not e.type_only and e.target != e.module:
            graph[e.module].add(e.target)
    found = cycles(graph)
    assert not found, "circular imports:\n" + "\n".join(" ↔ ".join(c) for c in found)


def test_no_circular_imports_between_packages():
    graph: dict[str, set[str]] = defaultdict(set)
    for e in EDGES:
        if not e.type_only and e.source_package != e.target_package:
            graph[e.source_package].add(e.target_package)
    # core → migrations (the runner) and migrations → core (the models) is the one allowed pair.
    found = [c for c in cycles(graph) if c != ["core", "migrations"]]
    assert not found, f"packages importing each other: {found}"
