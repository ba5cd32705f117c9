"""Run the emulator under waitress: blocking (``enosprov serve``) or in a thread (tests, bench)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

# Messages waitress logs for every injected connection cut: expected, so not shown.
_FAULT_NOISE = ("Client disconnected while serving", "application returned too few bytes")


class _QuietFaults(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_FAULT_NOISE)


def _create_server(app, host: str, port: int, threads: int):
    import waitress

    waitress_logger = logging.getLogger("waitress")
    if not any(isinstance(f, _QuietFaults) for f in waitress_logger.filters):
        waitress_logger.addFilter(_QuietFaults())
    # no proxy is trusted: forwarded headers are dropped
    return waitress.create_server(
        app, host=host, port=port, threads=threads, clear_untrusted_proxy_headers=True
    )


def _url(server) -> str:
    host = server.effective_host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{server.effective_port}"


def serve(
    app,
    host: str = "127.0.0.1",
    port: int = 8080,
    threads: int = 8,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted (Ctrl+C or SIGTERM turned into KeyboardInterrupt).

    ``on_ready(url)`` is called once the socket is bound (with port 0, the URL says which port).
    """
    try:
        server = _create_server(app, host, port, threads)
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

    server: object
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


def start_in_thread(app, host: str = "127.0.0.1", port: int = 0, threads: int = 8) -> RunningServer:
    """Bind now (port 0 picks a free port) and serve from a daemon thread."""
    server = _create_server(app, host, port, threads)
    thread = threading.Thread(target=server.run, name="enosprov-serve", daemon=True)
    thread.start()
    return RunningServer(server, thread, app, _url(server), server.effective_port)
