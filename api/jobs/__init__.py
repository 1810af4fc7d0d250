"""api.jobs: running job records on Dask distributed.

:mod:`~api.jobs.runner` submits jobs and keeps them consistent with the cluster (the parent
side); :mod:`~api.jobs.worker` is the Dask task (claim, run, finish); :mod:`~api.jobs.handlers`
holds one function per :class:`core.models.JobKind` and the registry ``HANDLERS`` the worker
dispatches on; :mod:`~api.jobs.params` what each kind takes; :mod:`~api.jobs.context` what a
handler is given. The runner's module docstring describes attempts, retries, cancels and fan-out.
"""
