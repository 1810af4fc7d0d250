"""api: the front doors, calling the packages (no image science here).

:mod:`api.http` serves the REST API (app, middleware, routes, auth, uploads, server);
:mod:`api.jobs` runs job records on Dask (runner, worker, handlers, parameters); :mod:`api.cli`
is the ``reloblur`` command line (one Typer per topic, the demo among them). The CLI is the top
(nothing imports it); the app starts a job runner and validates job parameters, and the jobs use
nothing of :mod:`api.http` but the upload checks (``tests/architecture`` holds these rules).
"""
