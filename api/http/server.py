"""Running the HTTP service: one process, or several HTTP workers beside one job runner.

``reloblur serve`` calls :func:`serve`; :class:`ServerThread` serves an app in a thread of this
process (``reloblur demo``, the tests).

* ``workers == 1``: one process serves HTTP and runs the job runner (its Dask LocalCluster, or
  a client of ``settings.dask_scheduler``) in its lifespan.
* ``workers > 1``: this process starts the job runner, then ``workers`` HTTP processes
  (spawned; each builds its app with :func:`worker_app`, settings from the environment, no
  runner) and supervises them: one that dies is started again; SIGINT or SIGTERM stops them
  all gracefully. The HTTP workers record jobs; the runner takes every queued job from the
  jobs table within ``api.jobs.runner.DISPATCH_S``. Python runs one thread at a time per
  process, so more HTTP processes is how reads use more than one core.

  Each HTTP process listens on its own socket bound with ``SO_REUSEPORT``, so the kernel
  spreads connections evenly over them. (With one shared socket, as uvicorn's own
  ``--workers`` does, whichever process wakes first accepts a burst of keep-alive
  connections: measured here, 50 clients then ran at 1,900 or 3,400 requests/s depending on
  how the connections happened to fall.) Hence a fixed port (not 0) when ``workers > 1``.

Logging: uvicorn's, plus the project's loggers at INFO with timestamps (:func:`log_config`):
the audit line of every request that may write (``reloblur.audit``, see
``api.http.middleware.WriteRequestsMiddleware``), the job runner, model loading. uvicorn's access log (a
line per request, reads included) is off unless asked for (``--access-log``,
``RELOBLUR_ACCESS_LOG``), as in gunicorn: at thousands of reads a second its formatting and
writes cost about a quarter of the throughput (measured with ``benchmarks/bench_api.py``).

In every HTTP process the interpreter is tuned for serving once the app is built
(:func:`tune_interpreter`): what exists then (modules, the app, the ORM's mappers) is frozen
out of garbage collection and the youngest generation is collected less often (full
collections of a heap that holds PyTorch and SQLAlchemy pause for ~100 ms); and a thread that
runs a query hands the interpreter back to the event loop after 1 ms instead of 5.
"""

from __future__ import annotations

import copy
import gc
import logging
import logging.config
import multiprocessing
import signal
import socket
import sys
import threading
import time

from core.settings import Settings, get_settings
from core.text import printable

log = logging.getLogger(__name__)

GC_THRESHOLDS = (20_000, 20, 20)
"""Allocations before a young collection, and young (then middle) collections before an older
one (CPython's defaults: 700, 10, 10)."""


SWITCH_INTERVAL_S = 0.001
"""How long a thread may hold the interpreter while another waits for it (CPython: 5 ms)."""


def tune_interpreter() -> None:
    """Tune this process for serving (see the module doc): freeze what exists now out of the
    garbage collector, collect less often, and hand the interpreter between threads sooner."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    # The logging HOWTO's "Optimization": no caller lookup (a stack walk per record) and no
    # thread or process names, which no format of ours or uvicorn's prints; the access log
    # writes a record per request.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


PROJECT_LOGGERS = ("api", "core", "acquisition", "postprocess", "deblur", "hardware_sim",
                   "reloblur")
"""Loggers of the project that ``reloblur serve`` shows (INFO and above, on stderr)."""


class EscapingFormatter(logging.Formatter):
    """A formatter whose message part is one line: control characters that any field put into
    it (a request path, a token's name, a scene name) are escaped (:func:`core.text.printable`),
    so no caller can forge a log line. Tracebacks keep their lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = printable(record.message)
        return super().formatMessage(record)


def log_config() -> dict:
    """uvicorn's logging configuration plus the project's loggers, with timestamps: the audit
    log of write requests (``reloblur.audit``), the job runner, model loading."""
    import uvicorn.config

    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["formatters"]["reloblur"] = {
        "()": "api.http.server.EscapingFormatter",
        "fmt": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    config["handlers"]["reloblur"] = {
        "class": "logging.StreamHandler", "formatter": "reloblur", "stream": "ext://sys.stderr"}
    for name in PROJECT_LOGGERS:
        config["loggers"][name] = {"handlers": ["reloblur"], "level": "INFO", "propagate": False}
    return config


def worker_app():
    """The app of one HTTP worker process (uvicorn's factory): settings from the environment,
    no job runner (the serving process runs it)."""
    from api.http.app import create_app

    app = create_app(get_settings(), start_runner=False)
    app.state.runner_elsewhere = True  # the serving process runs it (see serve)
    tune_interpreter()
    return app


class ServeError(ValueError):
    """``serve`` cannot start as asked (e.g. several workers on port 0)."""


class ServerThread:
    """The API (``create_app(settings)``) on uvicorn in a daemon thread, on 127.0.0.1 and a free
    port; ``with ServerThread(app) as base_url: ...`` stops it (and its job runner) on exit.
    ServeError when it does not start (``reloblur demo`` and the tests serve this way)."""

    def __init__(self, app, log_level: str = "warning") -> None:
        import uvicorn

        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level=log_level, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ServeError("the API server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` (IPv6 when ``host`` is)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def http_worker(host: str, port: int, access_log: bool) -> None:
    """One HTTP worker process: its own ``SO_REUSEPORT`` socket, uvicorn, :func:`worker_app`."""
    import uvicorn

    sock = reuse_port_socket(host, port)
    config = uvicorn.Config(worker_app, factory=True, log_level="info", access_log=access_log,
                            log_config=log_config())
    uvicorn.Server(config).run(sockets=[sock])


def serve(settings: Settings, host: str, port: int, workers: int, access_log: bool) -> None:
    """Serve the API on ``host:port`` with ``workers`` HTTP processes until interrupted."""
    import uvicorn

    if workers == 1:
        from api.http.app import create_app

        app = create_app(settings)
        tune_interpreter()
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=access_log,
                    log_config=log_config())
        return
    if port == 0:
        raise ServeError("several HTTP workers need a fixed port, not 0")
    logging.config.dictConfig(log_config())
    reuse_port_socket(host, port).close()  # fail here, clearly, when the address is taken
    from api.jobs.runner import JobRunner

    runner = JobRunner(settings, dispatch_queued=True).start()
    try:
        _supervise(host, port, workers, access_log)
    finally:
        runner.close()


def _supervise(host: str, port: int, workers: int, access_log: bool) -> None:
    """Run ``workers`` HTTP worker processes until SIGINT/SIGTERM; restart any that dies."""
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()

    def start(index: int) -> multiprocessing.process.BaseProcess:
        process = context.Process(target=http_worker, args=(host, port, access_log),
                                  name=f"reloblur-http-{index}")
        process.start()
        return process

    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    processes = [start(i) for i in range(workers)]
    log.info("serving on http://%s:%d with %d HTTP workers (pids %s)", host, port, workers,
             ", ".join(str(p.pid) for p in processes))
    try:
        while not stop.wait(0.5):
            for i, process in enumerate(processes):
                if not process.is_alive():
                    log.warning("HTTP worker %s exited (code %s); starting another",
                                process.name, process.exitcode)
                    processes[i] = start(i)
    finally:
        for process in processes:
            process.terminate()  # SIGTERM: uvicorn finishes its requests and shuts down
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
