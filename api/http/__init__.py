"""api.http: what serves HTTP. :mod:`~api.http.app` builds the FastAPI app (error mapping,
lifespan) with the :mod:`~api.http.middleware`; :mod:`~api.http.routes` one router per resource,
sharing :mod:`~api.http.deps` (dependencies, lookups), :mod:`~api.http.submit` (job submission)
and :mod:`~api.http.rig_service` (rig files, busy rigs); :mod:`~api.http.server` runs it
(``reloblur serve``); :mod:`~api.http.auth`, :mod:`~api.http.uploads`,
:mod:`~api.http.readcache`, :mod:`~api.http.schemas` and :mod:`~api.http.errors` serve them.
"""
