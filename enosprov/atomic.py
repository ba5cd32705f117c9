"""Atomic file output: a temporary file beside the target, moved into place with ``os.replace``.

A reader never sees half a file, and a failed or interrupted run leaves the previous file (if
any) untouched and no temporary file behind. Files holding secrets are created owner read/write
only (``private=True``); others get the usual permissions (0666 minus the umask).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
from pathlib import Path
from typing import IO

from .errors import InputFileError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicFile:
    """``with AtomicFile(path) as fh: ...`` writes ``path`` atomically (UTF-8 text, or bytes).

    Also usable without ``with``: ``open()``, write to ``.fh``, then ``commit()`` or ``abort()``.
    """

    def __init__(self, path: str | Path, *, private: bool = False, binary: bool = False) -> None:
        self.path = Path(path)
        self.private = private
        self.binary = binary
        self.fh: IO[str] | None = None
        self._tmp: str | None = None

    def open(self) -> IO[str]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, self._tmp = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
            )
        except OSError as exc:
            raise InputFileError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        # mkstemp creates the file 0600 (owner only) on POSIX; widen it when nothing is secret.
        if not self.private:
            os.chmod(self._tmp, 0o666 & ~_umask())
        if self.binary:
            self.fh = os.fdopen(fd, "wb")
        else:
            self.fh = os.fdopen(fd, "w", encoding="utf-8", newline="")
        return self.fh

    def commit(self) -> Path:
        assert self.fh is not None and self._tmp is not None
        self.fh.close()
        os.replace(self._tmp, self.path)
        self._tmp = None
        return self.path

    def abort(self) -> None:
        """Drop the temporary file; a no-op after commit()."""
        if self._tmp is None:
            return
        if self.fh is not None and not self.fh.closed:
            self.fh.close()
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)
        self._tmp = None

    def __enter__(self) -> IO[str]:
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


_counter = itertools.count()


def write_bytes(path: str | Path, data: bytes, *, private: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; the folder must exist.

    The lean path for many small files (burn exports): a temporary name unique to this process
    and call, created exclusively with os.open (owner-only when ``private``), then os.replace.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{next(_counter)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(tmp, flags, 0o600 if private else 0o666)
    except OSError as exc:
        raise InputFileError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str | Path, text: str, *, private: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with AtomicFile(path, private=private) as fh:
        fh.write(text)
    return Path(path)
