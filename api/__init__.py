"""api: the front doors. The FastAPI service (app, routes, auth, uploads), the `reloblur` CLI
(``api.cli``, one Typer per topic), the Dask job runner and the demo. No image science here: it
calls the packages."""
