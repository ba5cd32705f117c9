"""Run the emulator under waitress: blocking (``enosprov serve``) or in a thread (tests, bench).

Sizing [ENOSPROV] (docs/enos-api.md, "Emulator specifics"). waitress reads every connection in
one asyncore loop and hands complete requests to a pool of worker threads; a connection does not
hold a thread while idle, only a slot of ``connection_limit``. An EnOS-backend client keeps up to
``workers + 2`` persistent connections to the gateway (16 workers by default) and 4 to the device
endpoint: 16 such clients hold about 350 connections. waitress's default limit of 100 made a few
clients stall (no new connection accepted while the others stayed open), so the limit is 1000,
with poll() instead of select() (select() fails beyond descriptor 1023) and the process's open
file limit raised towards it where the hard limit allows. Idle connections are closed after
``channel_timeout`` seconds (a crashed client's pool frees its slots; a live client reconnects).

Threads: a request is short (SQLite, one write transaction at a time, under the GIL), so beyond
a few threads throughput does not grow; each thread holds its own store connection. Measured with
16 clients of 16 threads each on two cores: 4, 8 and 16 threads served the same 450-750
requests/s (within the noise), 32 fewer. ``--latency-ms`` sleeps in a worker thread, so with
latency L throughput tops out at ``threads / L``: at 20 ms, 330 requests/s with 8 threads and 480
with 16. Hence 16: as fast as 8 without latency, faster with it.

Bodies: waitress refuses a request whose announced or received body exceeds ``max_body_bytes``
with its own 413 before handing it to the app (it spools bodies over 512 KiB to a temporary file,
never to memory); the app refuses the same limit itself for other servers.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .app import DEFAULT_MAX_BODY_BYTES

DEFAULT_THREADS = 16  # worker threads (see the module docstring for the sizing)
DEFAULT_CONNECTION_LIMIT = 1000  # open connections; 16 EnOS clients hold about 350
DEFAULT_CHANNEL_TIMEOUT = 60  # seconds an idle connection is kept open

# Messages waitress logs for every injected connection cut: expected, so not shown.
_FAULT_NOISE = ("Client disconnected while serving", "application returned too few bytes")


class _QuietFaults(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_FAULT_NOISE)


@dataclass(frozen=True)
class Limits:
    """The server's limits (``enosprov serve`` options); ``max_body_bytes`` None: the app's."""

    threads: int = DEFAULT_THREADS
    connection_limit: int = DEFAULT_CONNECTION_LIMIT
    channel_timeout: int = DEFAULT_CHANNEL_TIMEOUT
    max_body_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in ("threads", "connection_limit", "channel_timeout", "max_body_bytes"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{name} must be a whole number")
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1")

    def body_limit(self, app) -> int:
        """The body size limit: given here, else the app's, else the default (1 MiB)."""
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        limit = getattr(app, "max_body_bytes", None)
        return limit if isinstance(limit, int) and limit > 0 else DEFAULT_MAX_BODY_BYTES


def _raise_open_file_limit(wanted: int) -> None:
    """Raise the soft limit on open files towards ``wanted`` (within the hard limit; Unix)."""
    try:
        import resource
    except ImportError:  # Windows: no such limit to raise
        return
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _create_server(app, host: str, port: int, limits: Limits):
    import waitress

    waitress_logger = logging.getLogger("waitress")
    if not any(isinstance(f, _QuietFaults) for f in waitress_logger.filters):
        waitress_logger.addFilter(_QuietFaults())
    # connections, the listening socket, the trigger, and a store connection per thread
    _raise_open_file_limit(limits.connection_limit + 2 * limits.threads + 64)
    return waitress.create_server(
        app,
        host=host,
        port=port,
        threads=limits.threads,
        connection_limit=limits.connection_limit,
        channel_timeout=limits.channel_timeout,
        asyncore_use_poll=True,  # select() cannot watch descriptors beyond 1023
        # waitress refuses a body of max_request_body_size bytes or more: one more than allowed
        max_request_body_size=limits.body_limit(app) + 1,
        clear_untrusted_proxy_headers=True,  # no proxy is trusted: forwarded headers are dropped
    )


def _url(server) -> str:
    host = server.effective_host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{server.effective_port}"


def serve(
    app,
    host: str = "127.0.0.1",
    port: int = 8080,
    threads: int = DEFAULT_THREADS,
    *,
    connection_limit: int = DEFAULT_CONNECTION_LIMIT,
    channel_timeout: int = DEFAULT_CHANNEL_TIMEOUT,
    max_body_bytes: int | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted (Ctrl+C or SIGTERM turned into KeyboardInterrupt).

    ``on_ready(url)`` is called once the socket is bound (with port 0, the URL says which port).
    ``max_body_bytes`` None takes the app's limit (``create_app(max_body_bytes=...)``), else 1 MiB.
    """
    try:
        limits = Limits(threads, connection_limit, channel_timeout, max_body_bytes)
        server = _create_server(app, host, port, limits)
    except BaseException:
        if hasattr(app, "close"):
            app.close()
        raise
    try:
        if on_ready is not None:
            on_ready(_url(server))
        server.run()  # returns after shutting its threads down on KeyboardInterrupt/SystemExit
    finally:
        _close_all(server)
        server.task_dispatcher.shutdown(timeout=5)
        if hasattr(app, "close"):
            app.close()


def _stop_accepting(server) -> None:
    server.accepting = False
    server.del_channel()
    server.socket.close()


def _close_all(server, keep=None) -> None:
    """Close every dispatcher of the server's map; ``keep`` is only taken out of the map."""
    for dispatcher in list(server._map.values()):
        with contextlib.suppress(Exception):  # best effort while shutting down
            if dispatcher is keep:
                dispatcher.del_channel()
            else:
                dispatcher.close()


@dataclass
class RunningServer:
    """A server running in a daemon thread; ``stop()`` closes it."""

    server: Any  # a waitress server (waitress has no type information)
    thread: threading.Thread
    app: object
    url: str
    port: int
    _stopped: bool = field(default=False, repr=False)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, let running requests finish (up to ``timeout``), close everything."""
        if self._stopped:
            return
        self._stopped = True
        server = self.server
        server.trigger.pull_trigger(lambda: _stop_accepting(server))
        server.task_dispatcher.shutdown(timeout=timeout)
        # Close the channels and take the trigger out of the map: the loop sees an empty map and
        # returns. The trigger's own pipe is closed only after that, from this thread: a thunk
        # closing it could run before pull_trigger() has written to it (EBADF, or worse, a write
        # to a reused descriptor).
        server.trigger.pull_trigger(lambda: _close_all(server, keep=server.trigger))
        self.thread.join(timeout)
        server.trigger.close()
        if hasattr(self.app, "close"):
            self.app.close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_in_thread(
    app,
    host: str = "127.0.0.1",
    port: int = 0,
    threads: int = DEFAULT_THREADS,
    *,
    connection_limit: int = DEFAULT_CONNECTION_LIMIT,
    channel_timeout: int = DEFAULT_CHANNEL_TIMEOUT,
    max_body_bytes: int | None = None,
) -> RunningServer:
    """Bind now (port 0 picks a free port) and serve from a daemon thread (limits as ``serve``)."""
    limits = Limits(threads, connection_limit, channel_timeout, max_body_bytes)
    server = _create_server(app, host, port, limits)
    thread = threading.Thread(target=server.run, name="enosprov-serve", daemon=True)
    thread.start()
    return RunningServer(server, thread, app, _url(server), server.effective_port)
