"""Starting the service with uvicorn, with TCP_NODELAY on every connection.

With one worker, uvicorn lets asyncio open the listening socket, and asyncio switches Nagle's
algorithm off (TCP_NODELAY) on each accepted connection. With ``--workers N > 1``, uvicorn 0.54
binds the socket itself (``Config.bind_socket``: ``socket.socket(family=...)``, protocol number
0) and hands it to the worker processes; asyncio only sets TCP_NODELAY when the socket's protocol
is ``IPPROTO_TCP``, so it never does. Every keep-alive response then waits for the client's
delayed ACK: about 40 ms a request.

:class:`NoDelayH11Protocol` is uvicorn's HTTP protocol that sets TCP_NODELAY itself when a
connection is made, whatever created the socket; :func:`serve` always uses it.

On SIGTERM or Ctrl-C uvicorn stops accepting connections and lets the requests in flight finish
(at most the request ``timeout`` plus :data:`SHUTDOWN_MARGIN` seconds) before the app shuts down.
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from nbtools.serving import threads
from nbtools.serving.config import ServeConfig

#: The app factory the workers import.
APP_FACTORY = "nbtools.serving.app:app_from_environment"

#: Seconds the graceful shutdown waits beyond the request timeout for requests in flight.
SHUTDOWN_MARGIN = 5.0


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Switch Nagle's algorithm off on a TCP transport's socket (no-op for other sockets)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's h11 HTTP protocol with TCP_NODELAY set on each new connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Set TCP_NODELAY, then let uvicorn take the connection."""
        set_nodelay(transport)
        super().connection_made(transport)


def serve(config: ServeConfig, *, nodelay: bool = True) -> None:
    """Run the service in the foreground until interrupted.

    Parameters
    ----------
    config : ServeConfig
        The service settings; the worker processes read them from the environment.
    nodelay : bool, default=True
        Use :class:`NoDelayH11Protocol`. False keeps uvicorn's own protocol, only to measure
        the difference (``benchmarks/bench_serving.py``).
    """
    threads.configure_process()
    config.validate().to_environment()
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=config.host,
        port=config.port,
        workers=config.workers,
        http=NoDelayH11Protocol if nodelay else "h11",
        access_log=config.access_log,
        log_level="info",
        timeout_graceful_shutdown=int(config.timeout + SHUTDOWN_MARGIN),
    )
