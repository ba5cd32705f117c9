"""Label printers: where a label's bytes go (`--printer URI`, docs/labels.md#printers).

:func:`open_printer` turns a URI into a :class:`Printer`; the printer decides the label format
(:attr:`Printer.label_format`):

``tcp://HOST[:PORT]`` (port 9100 by default): ZPL sent raw to a Zebra-compatible printer, exactly
    the bytes given, on every OS. **One TCP connection per** :meth:`Printer.send`: connect, send
    the bytes, half-close (``shutdown(SHUT_WR)``), then wait briefly (``eof_wait``) for the
    printer to close its side, as the CUPS socket backend does (its ``waiteof``). A printer that
    resets the connection before it has taken every byte is reported; one that keeps the
    connection open is not waited for longer than ``eof_wait``. A connection of its own per label
    ties every error to one label, and survives a printer switched off and on between labels.
    :meth:`Printer.status` asks the Zebra host status (``~HS``) on a connection of its own.
``lp:QUEUE``: PDF through the system's ``lp`` command (CUPS), ``lp -d QUEUE FILE``, ``lp`` found
    on PATH when the printer is opened. No status.
``file:PATH``: written to a file, the format by PATH's extension (``.zpl``, ``.pdf``, ``.png``,
    ``.svg``). ZPL is appended to PATH (a spool: exactly what a ``tcp://`` printer would get, in
    order). A PDF, PNG or SVG cannot be appended to: each label is written to a new numbered file
    next to PATH, ``<stem>-0001<ext>``, ``<stem>-0002<ext>``..., counting on from the highest
    number already there; an existing file is never overwritten. No status.

Every failure to print is one :class:`~enosprov.errors.PrinterError` (exit code 6) whose message
says what happened (``label not printed: printer 10.0.0.5:9100 refused the connection``). A bad
URI (or ``lp:`` without ``lp``) is one :class:`~enosprov.errors.InvalidArgumentError`. Messages
and :func:`public_uri` never show a user name or password given in a URI.

The ``~HS`` reply (ZPL II Programming Guide, "~HS Host Status Return"): three strings, each
``<STX>...<ETX><CR><LF>``, comma-separated fields; string 1 ``aaa,b,c,dddd,...``: ``b`` paper out
flag, ``c`` pause flag; string 2 ``mmm,n,o,p,...``: ``o`` head up flag, ``p`` ribbon out flag.

Library code: no typer, no rich.
"""

from __future__ import annotations

import abc
import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from .domain.errors import InvalidArgumentError, PrinterError

DEFAULT_PORT = 9100
DEFAULT_TIMEOUT = 5.0  # seconds to connect, and for the printer to take each block of bytes
EOF_WAIT = 0.5  # seconds to wait for the printer to close its side after the last byte
STATUS_TIMEOUT = 0.3  # seconds a ~HS status query may take, everything included
LP_TIMEOUT = 60.0  # seconds `lp` may take to spool a file
CHUNK = 64 * 1024  # bytes per socket send
FILE_FORMATS = {".zpl": "zpl", ".pdf": "pdf", ".png": "png", ".svg": "svg"}
URI_HINT = (
    "tcp://HOST[:PORT] (ZPL, raw, port 9100 by default), lp:QUEUE (PDF through lp) or "
    "file:PATH (.zpl, .pdf, .png or .svg)"
)
STX, ETX = b"\x02", b"\x03"
_FRAME = re.compile(rb"\x02([^\x02\x03]*)\x03")
_QUEUE = re.compile(r"[^\s\x00-\x1f\x7f#]+")  # a CUPS destination, optionally queue/instance


def public_uri(uri: str) -> str:
    """``uri`` without a user name or password (what journals and messages show)."""
    uri = uri.strip()
    if "://" in uri:
        scheme, _, rest = uri.partition("://")
        netloc, sep, tail = rest.partition("/")
        if "@" in netloc:
            netloc = netloc.rpartition("@")[2]
        return f"{scheme}://{netloc}{sep}{tail}"
    return uri


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _bytes(value: int) -> str:
    return f"{value:,}"


class Printer(abc.ABC):
    """Where labels go (TcpPrinter, LpPrinter, FilePrinter). Use as a context manager, or call
    :meth:`close`."""

    uri: str  # public_uri of what was opened
    label_format: str  # "zpl", "pdf", "png" or "svg": what send() takes
    name: str  # how messages name the printer

    @abc.abstractmethod
    def send(self, data: bytes, *, what: str) -> None:
        """Print ``data`` (one label, or a document of labels, in :attr:`label_format`);
        PrinterError when it was not printed. ``what`` names it (a deviceSn)."""

    def status(self, timeout: float = STATUS_TIMEOUT) -> str | None:
        """A problem the printer reports ("paper out", "head open"...), or None when it reports
        none, cannot be asked, or does not answer within ``timeout`` seconds."""
        return None

    def close(self) -> None:  # noqa: B027 - a default: most printers hold nothing
        """Release what the printer holds (nothing by default)."""

    def _error(self, problem: str, what: str, hint: str | None = None) -> PrinterError:
        return PrinterError(f"label not printed: {problem}", what=what, hint=hint)

    def __enter__(self) -> Printer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uri}>"


class TcpPrinter(Printer):
    """ZPL, raw, to a Zebra-compatible printer's TCP port (9100)."""

    label_format = "zpl"

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        eof_wait: float = EOF_WAIT,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.eof_wait = eof_wait
        shown = f"[{host}]" if ":" in host else host
        self.name = f"{shown}:{port}"
        self.uri = f"tcp://{self.name}"

    def _connect(self, timeout: float, what: str) -> socket.socket:
        who = f"printer {self.name}"
        try:
            return socket.create_connection((self.host, self.port), timeout=timeout)
        except ConnectionRefusedError:
            raise self._error(
                f"{who} refused the connection", what,
                f"is the printer on, and its raw port {self.port} enabled?",
            ) from None  # fmt: skip
        except TimeoutError:
            raise self._error(
                f"{who} did not answer within {_seconds(timeout)}", what,
                "check that the printer is on and on the network, and its address",
            ) from None  # fmt: skip
        except socket.gaierror as exc:
            raise self._error(
                f"{who}: unknown host name ({exc.strerror or exc})", what,
                "check the printer's address in --printer",
            ) from None  # fmt: skip
        except OSError as exc:
            raise self._error(
                f"{who} cannot be reached: {exc.strerror or exc}", what,
                "check that the printer is on and on the network, and its address",
            ) from None  # fmt: skip

    def send(self, data: bytes, *, what: str) -> None:
        who = f"printer {self.name}"
        total = len(data)
        hint = "check the printer (paper, head, errors on its display), then reprint"
        with self._connect(self.timeout, what) as sock:
            sent = 0
            view = memoryview(data)
            try:
                while sent < total:
                    sent += sock.send(view[sent : sent + CHUNK])
            except TimeoutError:
                raise self._error(
                    f"{who} did not answer within {_seconds(self.timeout)} (it took "
                    f"{_bytes(sent)} of {_bytes(total)} bytes)", what, hint,
                ) from None  # fmt: skip
            except OSError:  # reset, broken pipe, aborted
                raise self._error(
                    f"{who} closed the connection after {_bytes(sent)} of {_bytes(total)} bytes",
                    what, hint,
                ) from None  # fmt: skip
            # Every byte is handed over. Half-close and give the printer a moment to close its
            # side: one that resets the connection now did not read everything.
            early = self._error(
                f"{who} closed the connection before taking all {_bytes(total)} bytes", what, hint
            )
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                raise early from None
            deadline = time.monotonic() + self.eof_wait
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return  # the printer keeps the connection open: the bytes are delivered
                sock.settimeout(left)
                try:
                    if not sock.recv(4096):
                        return  # the printer read everything and closed: done
                except TimeoutError:
                    return
                except OSError:
                    raise early from None

    def status(self, timeout: float = STATUS_TIMEOUT) -> str | None:
        deadline = time.monotonic() + timeout
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError:
            return None
        reply = b""
        with sock:
            try:
                sock.sendall(b"~HS")
                while reply.count(ETX) < 3:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    sock.settimeout(left)
                    chunk = sock.recv(1024)
                    if not chunk:
                        break
                    reply += chunk
            except OSError:  # timeout, reset: parse what came, if anything
                pass
        return parse_host_status(reply)


def parse_host_status(reply: bytes) -> str | None:
    """The problems a Zebra ``~HS`` (host status return) reply reports, or None.

    The reply is three strings, each framed ``<STX>...<ETX><CR><LF>``, fields separated by
    commas (ZPL II Programming Guide, ``~HS``). String 1 ``aaa,b,c,dddd,...``: ``b`` paper out
    flag, ``c`` pause flag (fields 2 and 3); string 2 ``mmm,n,o,p,...``: ``o`` head up flag,
    ``p`` ribbon out flag (fields 3 and 4). Anything else, a partial or malformed reply
    included, is None: no problem known."""
    frames = _FRAME.findall(reply)
    if len(frames) < 2:
        return None
    first = frames[0].decode("ascii", "replace").split(",")
    second = frames[1].decode("ascii", "replace").split(",")
    if len(first) < 3 or len(second) < 4:
        return None
    flags = [
        (first[1], "paper out"),
        (first[2], "paused"),
        (second[2], "head open"),
        (second[3], "ribbon out"),
    ]
    problems = [text for flag, text in flags if flag.strip() == "1"]
    return ", ".join(problems) or None


class LpPrinter(Printer):
    """PDF through the system's ``lp`` command (CUPS): ``lp -d QUEUE FILE``."""

    label_format = "pdf"

    def __init__(self, queue: str, *, timeout: float = LP_TIMEOUT) -> None:
        self.queue = queue
        self.timeout = timeout
        self.uri = f"lp:{queue}"
        self.name = self.uri
        lp = shutil.which("lp")
        if lp is None:
            raise InvalidArgumentError(
                f"cannot print to {self.uri}: the lp command is not on PATH",
                hint="install CUPS (lp), or print with tcp://HOST or to file:PATH",
            )
        self.lp = lp

    def send(self, data: bytes, *, what: str) -> None:
        fd, name = tempfile.mkstemp(prefix="enosprov-label-", suffix=".pdf")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            try:
                done = subprocess.run(
                    [self.lp, "-d", self.queue, name],
                    capture_output=True,
                    timeout=self.timeout,
                    check=False,
                    stdin=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired:
                raise self._error(
                    f"lp -d {self.queue} did not finish within {_seconds(self.timeout)}", what
                ) from None
            except OSError as exc:
                raise self._error(f"cannot run lp: {exc.strerror or exc}", what) from None
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).decode("utf-8", "replace").strip()
                last = tail.splitlines()[-1][:200] if tail else ""
                raise self._error(
                    f"lp -d {self.queue} exited with {done.returncode}"
                    + (f": {last}" if last else ""),
                    what,
                    "check the queue name (lpstat -p) and the CUPS server",
                )
        finally:
            with contextlib.suppress(OSError):  # a temporary copy: best effort
                os.unlink(name)


class FilePrinter(Printer):
    """Labels written to a file: ZPL appended to PATH; PDF, PNG, SVG to numbered files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.uri = f"file:{path}"
        self.name = str(self.path)
        fmt = FILE_FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            raise InvalidArgumentError(
                f"printer file:{path}: the extension says the label format: "
                + ", ".join(FILE_FORMATS),
                hint="e.g. file:labels.zpl or file:labels/label.pdf",
            )
        self.label_format = fmt
        self._next = 0

    def numbered(self, number: int) -> Path:
        return self.path.with_name(f"{self.path.stem}-{number:04d}{self.path.suffix}")

    def _first_free(self) -> int:
        pattern = re.compile(re.escape(self.path.stem) + r"-(\d+)" + re.escape(self.path.suffix))
        try:
            found = [
                int(m.group(1))
                for entry in self.path.parent.iterdir()
                if (m := pattern.fullmatch(entry.name))
            ]
        except OSError:
            found = []
        return max(found, default=0) + 1

    def send(self, data: bytes, *, what: str) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.label_format == "zpl":
                with open(self.path, "ab") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                return
            if not self._next:
                self._next = self._first_free()
            while True:
                target = self.numbered(self._next)
                self._next += 1
                try:
                    with open(target, "xb") as fh:  # never overwrites another label
                        fh.write(data)
                    return
                except FileExistsError:
                    continue
        except OSError as exc:
            where = exc.filename or self.path
            raise self._error(f"cannot write {where}: {exc.strerror or exc}", what) from None


def open_printer(
    uri: str, *, timeout: float = DEFAULT_TIMEOUT, eof_wait: float = EOF_WAIT
) -> Printer:
    """The printer of ``uri`` (``tcp://HOST[:PORT]``, ``lp:QUEUE``, ``file:PATH``).

    ``timeout`` is the seconds a ``tcp://`` printer has to accept the connection and to take
    each block of bytes; ``eof_wait`` the seconds it has to close its side after the last byte.
    InvalidArgumentError for a bad URI, or an ``lp:`` printer without ``lp`` on PATH. Nothing
    is sent when opening."""
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidArgumentError("no printer given", hint=URI_HINT)
    text = uri.strip()
    shown = public_uri(text)
    scheme, sep, rest = text.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in ("tcp", "lp", "file"):
        raise InvalidArgumentError(f"{shown!r} is not a printer URI", hint=URI_HINT)
    if scheme == "tcp":
        return _tcp(text, shown, timeout, eof_wait)
    if scheme == "lp":
        queue = rest[2:] if rest.startswith("//") else rest
        if not _QUEUE.fullmatch(queue) or queue.startswith("-"):
            raise InvalidArgumentError(
                f"printer {shown!r}: {queue!r} is not a print queue name",
                hint="lp:QUEUE, the queue as `lpstat -p` lists it (e.g. lp:zebra)",
            )
        return LpPrinter(queue)
    path = rest
    if path.startswith("//"):  # file:///abs/path (a file URL), file://C:/x on Windows
        path = path[2:]
        if re.match(r"/[A-Za-z]:[/\\]", path):
            path = path[1:]
    if not path:
        raise InvalidArgumentError(f"printer {shown!r}: no file given", hint=URI_HINT)
    return FilePrinter(path)


def _tcp(text: str, shown: str, timeout: float, eof_wait: float) -> TcpPrinter:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidArgumentError(f"printer {shown!r}: {exc}", hint=URI_HINT) from None
    if parts.username is not None or parts.password is not None:
        raise InvalidArgumentError(
            f"printer {shown!r}: a raw tcp:// printer takes no user name or password",
            hint="tcp://HOST[:PORT]",
        )
    if not parts.hostname:
        raise InvalidArgumentError(f"printer {shown!r}: no host", hint="tcp://HOST[:PORT]")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidArgumentError(
            f"printer {shown!r}: only a host and a port", hint="tcp://HOST[:PORT]"
        )
    if port == 0:
        raise InvalidArgumentError(f"printer {shown!r}: port 0", hint="tcp://HOST[:PORT]")
    if timeout <= 0 or eof_wait < 0:
        raise InvalidArgumentError("printer timeouts must be positive")
    return TcpPrinter(parts.hostname, port or DEFAULT_PORT, timeout=timeout, eof_wait=eof_wait)
