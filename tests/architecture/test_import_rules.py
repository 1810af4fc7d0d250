"""The one-way architecture, checked on the source (ARCHITECTURE.md draws it).

- core imports nothing of ours but the migrations' runner;
- acquisition and hardware_sim never import postprocess, deblur or api;
- acquisition never imports hardware_sim (the simulator is a rig backend found by entry point);
- deblur imports only core (training datasets from elsewhere register by entry point);
- no module imports itself back through others (no circular imports), counting imports inside
  functions too; imports under ``if TYPE_CHECKING`` never run and do not count as cycles;
- inside api: a routes module never imports another routes module (what routes share lives in
  ``api.http``: deps, submit, rig_service); nothing outside ``api.cli`` imports the CLI; and
  ``api.jobs`` uses nothing of ``api.http`` but the upload checks (a deblur job's DNG inputs are
  decoded as an upload is); ``api.console`` (the web pages) uses nothing of ``api.http`` but
  token verification (``api.http.auth``): its pages read their data through the REST API.
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
    assert ("api.http.routes.captures", "api.http.submit") in seen
    assert ("api.http.routes", "api.http.routes.jobs") in seen  # the package collects the routers


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


ROUTES = "api.http.routes"


def _is_route_module(name: str) -> bool:
    return name.startswith(ROUTES + ".")


def test_routes_do_not_import_other_routes():
    """Each routes module stands alone; only the package (``ROUTERS``) imports them all."""
    wrong = sorted(
        f"{e.module}:{e.line} imports {e.target}"
        for e in EDGES
        if _is_route_module(e.module) and (_is_route_module(e.target) or e.target == ROUTES)
    )
    assert not wrong, "a routes module imports another (share it from api.http):\n" + "\n".join(wrong)


def test_only_the_cli_imports_the_cli():
    wrong = sorted(
        f"{e.module}:{e.line} imports {e.target}"
        for e in EDGES
        if (e.target == "api.cli" or e.target.startswith("api.cli."))
        and not (e.module == "api.cli" or e.module.startswith("api.cli."))
    )
    assert not wrong, "the CLI is the top of api; nothing imports it:\n" + "\n".join(wrong)


JOBS_MAY_USE_FROM_HTTP = {"api.http.uploads"}


def test_jobs_use_of_http_is_the_upload_checks_only():
    wrong = sorted(
        f"{e.module}:{e.line} imports {e.target}"
        for e in EDGES
        if e.module.startswith("api.jobs")
        and (e.target == "api.http" or e.target.startswith("api.http."))
        and e.target not in JOBS_MAY_USE_FROM_HTTP
    )
    assert not wrong, f"api.jobs may use only {sorted(JOBS_MAY_USE_FROM_HTTP)} of api.http:\n" + "\n".join(wrong)


CONSOLE_MAY_USE_FROM_HTTP = {"api.http.auth"}


def test_the_console_uses_only_token_checks_of_the_http_package():
    wrong = [
        f"{e.module} -> {e.target}"
        for e in EDGES
        if (e.module == "api.console" or e.module.startswith("api.console."))
        and (e.target == "api.http" or e.target.startswith("api.http."))
        and e.target not in CONSOLE_MAY_USE_FROM_HTTP
    ]
    assert ("api.console.pages", "api.http.auth") in {(e.module, e.target) for e in EDGES}
    assert not wrong, f"api.console may use only {sorted(CONSOLE_MAY_USE_FROM_HTTP)} of api.http:\n" + "\n".join(wrong)
