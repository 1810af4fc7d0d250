"""The read cache: JSON answers of read endpoints, kept until the database changes.

A read endpoint's answer depends on the database (and, for rigs, on files: those entries also
carry a ``max_age``). :class:`ReadCache` keeps the encoded answer of each URL together with the
database's *change version* when the query began, and serves it again while that version has
not moved. The version comes from a :class:`ChangeWatch`:

* SQLite: ``PRAGMA data_version`` on a connection of the watch's own, which changes whenever
  any other connection (this process's pool, a Dask worker, the CLI) commits. Exact: a read
  after a commit always sees the commit. A few microseconds, asked on the event loop.
* PostgreSQL: ``LISTEN reloblur_changes``; migration 0005 makes every table ``NOTIFY`` that
  channel after each insert, update or delete statement. A thread counts the notifications. A
  commit made elsewhere is seen once its notification arrives (well under a millisecond on one
  host); while the listening connection is down, nothing is cached.

The version is read before the query runs, so an answer that raced a commit is stored under
the older version and is never served after it. Writes made through this process also
invalidate at once (:meth:`ReadCache.bump`, called for every non-GET request), so a client
reads its own writes even before PostgreSQL's notification arrives.

An answer with a ``max_age`` (rigs: their files and locks are not in the database) is served
past that age only while one fresh read runs in the background; the database part of it is
still exact.

Only answers that are the same for every caller allowed to read them are cached (the viewer
endpoints; not ``/me`` nor ``/tokens``); the caller's token is checked before the cache is
consulted. ``settings.read_cache`` turns the cache off.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from typing import Any

from sqlalchemy import make_url

log = logging.getLogger(__name__)

CHANNEL = "reloblur_changes"
"""The PostgreSQL notification channel the change triggers (migration 0005) notify."""


class ChangeWatch:
    """The database's change version: ``version()`` moves whenever something commits; None
    while changes cannot be seen (then nothing may be cached)."""

    def version(self) -> int | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the watch's connection."""


class SqliteChangeWatch(ChangeWatch):
    """``PRAGMA data_version`` of a dedicated connection to the SQLite file at ``path``."""

    def __init__(self, path: str) -> None:
        self._connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()

    def version(self) -> int | None:
        try:
            with self._lock:
                return self._connection.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return None

    def close(self) -> None:
        self._connection.close()


class PostgresChangeWatch(ChangeWatch):
    """Counts ``NOTIFY reloblur_changes`` on a listening connection, in a daemon thread.

    ``url``: a libpq URL (``postgresql://user@host:port/db``). While the connection is down,
    ``version()`` is None and the thread reconnects every ``retry_s`` seconds; a reconnection
    counts as a change (what happened meanwhile was not seen).
    """

    def __init__(self, url: str, retry_s: float = 1.0) -> None:
        self.url, self.retry_s = url, retry_s
        self._count = 0
        self._listening = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="read-cache-listen", daemon=True)
        self._thread.start()
        self._listening.wait(timeout=5.0)

    def version(self) -> int | None:
        return self._count if self._listening.is_set() else None

    def _listen(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self._count += 1
                    self._listening.set()
                    while not self._stop.is_set():
                        for _ in connection.notifies(timeout=0.5):
                            self._count += 1
            except Exception as exc:  # noqa: BLE001 - the cache stays off until it reconnects
                self._listening.clear()
                if not self._stop.is_set():
                    log.warning("read cache: lost the change notifications (%s); retrying", exc)
                    self._stop.wait(self.retry_s)
            self._listening.clear()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


def change_watch(database_url: str) -> ChangeWatch | None:
    """The watch for ``database_url`` (SQLite file or PostgreSQL), or None for any other
    database (e.g. in-memory SQLite): then nothing is cached."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite" and url.database and url.database != ":memory:":
        if url.database.startswith("file:"):
            return None
        return SqliteChangeWatch(url.database)
    if backend == "postgresql":
        plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresChangeWatch(plain)
    return None


class ReadCache:
    """Encoded answers by URL, valid while the watch's version is the one they were read at.

    Beyond ``max_entries`` answers or ``max_bytes`` of them, the least recently used go first
    (an answer larger than a quarter of ``max_bytes`` is not kept). Thread-safe.
    """

    def __init__(self, watch: ChangeWatch | None, max_entries: int = 2048,
                 max_bytes: int = 64 << 20) -> None:
        self.watch, self.max_entries, self.max_bytes = watch, max_entries, max_bytes
        self._bytes = 0
        self._local = 0
        self._entries: OrderedDict[str, tuple[tuple[int, int], float, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def version(self) -> tuple[int, int] | None:
        """The current version (the watch's and this process's own writes), None: don't cache."""
        if self.watch is None:
            return None
        seen = self.watch.version()
        return None if seen is None else (seen, self._local)

    def bump(self) -> None:
        """Something was written through this process: every entry is stale."""
        self._local += 1

    def get(self, key: str, version: tuple[int, int] | None) -> tuple[bytes, bool] | None:
        """(answer, past its max age) stored for ``key`` at ``version``; None if there is none.

        An answer past its max age may be served while a fresh one is read (its database part
        is still exact: the version matched)."""
        if version is None:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != version:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[2], time.monotonic() > entry[1]

    def put(self, key: str, version: tuple[int, int] | None, body: bytes,
            max_age: float | None = None) -> None:
        """Store ``body`` for ``key``, read at ``version``; ``max_age`` seconds at most."""
        if version is None or len(body) > self.max_bytes // 4:
            return
        expires = time.monotonic() + max_age if max_age is not None else float("inf")
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old[2])
            self._entries[key] = (version, expires, body)
            self._bytes += len(body)
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._bytes -= len(self._entries.popitem(last=False)[1][2])

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()

    def stats(self) -> dict[str, Any]:
        return {"entries": len(self._entries), "bytes": self._bytes, "hits": self.hits,
                "misses": self.misses}
