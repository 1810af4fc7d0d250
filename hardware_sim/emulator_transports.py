"""Byte transports of the emulated BNC 575: a pseudo-terminal (for pyserial) and TCP (for
``socket://`` URLs).

A transport knows nothing of the protocol: it splits the bytes it receives into command lines
(terminators ``\\r\\n``, ``\\n`` or ``\\r``; blank lines dropped) and writes back what
``reply(line)`` returns (bytes, terminators included); ``None`` means: close this transport now
(an injected disconnect). Each transport runs daemon threads until it is closed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import socket
import socketserver
import threading
import tty
from collections.abc import Callable

__all__ = ["LineSplitter", "PtyTransport", "Reply", "TcpTransport"]

# The emulator's logger: what the transports log reads as the emulator's, as before the split.
log = logging.getLogger("hardware_sim.pulse_generator")

#: ``reply(line)`` → the bytes to send back, or ``None`` to close the transport.
Reply = Callable[[str], bytes | None]


class LineSplitter:
    """Bytes in, command lines out; terminators ``\\r\\n``, ``\\n`` or ``\\r``; blank lines dropped."""

    MAX_LINE = 65536

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[str]:
        *lines, self._buffer = re.split(rb"\r\n|\n|\r", self._buffer + data)
        if len(self._buffer) > self.MAX_LINE:
            self._buffer = b""
        return [line.decode("latin-1") for line in lines if line.strip()]


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class PtyTransport:
    """One pseudo-terminal: a daemon thread reads the master, writes replies back.

    ``path`` is the slave's (e.g. ``/dev/pts/7``); it works until :meth:`close` or an injected
    disconnect (which closes the master: a hang-up).
    """

    def __init__(self, reply: Reply) -> None:
        self._reply = reply
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)  # a reader that never reads must not wedge close()
        # The emulator keeps its own slave fd open so the pty survives the driver's close/reopen.
        self.path = os.ttyname(self._slave)
        self._fd_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, daemon=True, name=f"bnc575-emulator-pty:{self.path}"
        )
        self._thread.start()

    def _run(self) -> None:
        lines = LineSplitter()
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._master], [], [], 0.05)
                if not ready:
                    continue
                data = os.read(self._master, 4096)
            except (OSError, ValueError):
                return
            for line in lines.feed(data):
                reply = self._reply(line)
                if reply is None:
                    self._close_fds()
                    return
                try:
                    os.write(self._master, reply)
                except BlockingIOError:  # nobody reads the slave: the line overruns, as on RS-232
                    log.debug(
                        "emulator %s: reply to %r dropped (slave not reading)", self.path, line
                    )
                except OSError:
                    return

    def _close_fds(self) -> None:
        with self._fd_lock:
            for fd in (self._master, self._slave):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._master = self._slave = -1

    def close(self) -> None:
        """Stop the thread and close both fds (idempotent)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._close_fds()


class TcpTransport:
    """A TCP server on ``host:port`` (0: any free port; the bound one is ``port``).

    Each connection is served on its own daemon thread; the server keeps listening after a
    connection closes (so a client can reconnect) until :meth:`stop`. An injected disconnect
    closes only the connection that carried the line.
    """

    def __init__(self, reply: Reply, host: str = "127.0.0.1", port: int = 0) -> None:
        self._reply = reply
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server = _TcpServer((host, port), _TcpHandler)
        self._server.transport = self
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"bnc575-emulator-tcp:{self.port}",
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening: shut the server down, close its socket, join its thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)

    def drop_connections(self) -> None:
        """Shut down and close every open connection."""
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for connection in connections:
            _shutdown(connection)

    def _serve(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.add(sock)
        lines = LineSplitter()
        try:
            while True:
                try:
                    data = sock.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                for line in lines.feed(data):
                    reply = self._reply(line)
                    if reply is None:
                        _shutdown(sock)
                        return
                    sock.sendall(reply)
        except OSError:
            return
        finally:
            with self._lock:
                self._connections.discard(sock)


class _TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    transport: TcpTransport


class _TcpHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.transport._serve(self.request)  # type: ignore[attr-defined]
