"""Atomic file output: a temporary file beside the target, moved into place with ``os.replace``.

A reader never sees half a file, and a failed or interrupted run leaves the previous file (if
any) untouched. Files holding secrets are created owner read/write only (``private=True``);
others get the usual permissions (0666 minus the umask).

Temporary files are named ``.<name>.enosprov-<pid>-<token>.tmp`` (``<name>`` the target's name,
cut to at most 100 bytes; ``<pid>`` the writing process). A failed write removes its own; only a
process killed outright (kill -9, power loss) leaves one behind, and :func:`remove_stale_temps`
removes those of processes no longer running. No other name matches :func:`is_temp_name`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any, NamedTuple

from .domain.errors import InputFileError

TEMP_MARK = ".enosprov-"
TEMP_SUFFIX = ".tmp"
_TEMP_NAME_PART = 100  # bytes of the target's name kept in a temporary file's name
_TEMP_RE = re.compile(r"\A\..*\.enosprov-([0-9]{1,10})-[0-9a-z_]{1,20}\.tmp\Z", re.DOTALL)
# The longest a temporary name gets beyond its part of the target's name: '.', TEMP_MARK,
# a pid (10 digits at most), '-', a token (mkstemp's 8 characters or a counter) and '.tmp'.
TEMP_NAME_OVERHEAD = 1 + len(TEMP_MARK) + 10 + 1 + 20 + len(TEMP_SUFFIX)
STALE_AFTER = 24 * 3600  # seconds: a temporary file this old is stale whoever wrote it
NAME_MAX = 255  # bytes per file name (ext4, XFS, btrfs, APFS; NTFS counts 255 UTF-16 units)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_prefix(name: str) -> str:
    """``.<name>.enosprov-<pid>-``: the start of this process's temporary names for ``name``."""
    part = os.fsencode(name)[:_TEMP_NAME_PART].decode("utf-8", "ignore")
    return f".{part}{TEMP_MARK}{os.getpid()}-"


def is_temp_name(name: str) -> bool:
    """Is ``name`` the name of an enosprov temporary file (``.<name>.enosprov-<pid>-<t>.tmp``)?"""
    return _TEMP_RE.match(name) is not None


def remove_stale_temps(folder: str | Path) -> int:
    """Remove the temporary files that interrupted runs left in ``folder``; how many.

    Only regular files named like enosprov's own temporary files (:func:`is_temp_name`) are
    removed, and only when the process that wrote one is no longer running (or the file is
    older than a day): a run writing into the same folder at the same moment keeps its own.
    """
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    now = time.time()
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if m is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            old = now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER
            if not old and pid_running(int(m.group(1))):
                continue
            os.unlink(entry.path)
            removed += 1
        except OSError:
            continue  # gone already, or not ours to remove: never a reason to fail a run
    return removed


def pid_running(pid: int) -> bool:
    """Is a process with this pid running (a zombie is not)? This process counts as running."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    if sys.platform == "win32":
        return _windows_pid_running(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    try:  # Linux: a killed process its parent has not reaped yet is a zombie ('Z')
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        state = stat[stat.rindex(b")") + 2 :][:1]
        return state not in (b"Z", b"X")
    except (OSError, ValueError):
        return True


def _windows_pid_running(pid: int) -> bool:  # pragma: no cover - Windows only
    if sys.platform != "win32":  # only pid_running calls it, on Windows
        raise NotImplementedError("Windows only")
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenProcess.restype = wintypes.HANDLE
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED: it exists
    try:
        code = wintypes.DWORD()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def path_limits(folder: str | Path) -> tuple[int, int | None]:
    """(longest file name, longest path) in bytes that a file in ``folder`` may have.

    The name limit is :data:`NAME_MAX` (less when the file system says so); the path limit is
    the operating system's (PATH_MAX - 1 on POSIX, 259 characters on Windows unless long paths
    are enabled), None when there is none to speak of.
    """
    name_max, path_max = NAME_MAX, None
    if sys.platform == "win32":  # pragma: no cover - Windows only
        return name_max, None if _windows_long_paths() else 259
    probe = Path(folder).absolute()
    while not os.path.isdir(probe) and probe.parent != probe:  # isdir: never raises
        probe = probe.parent  # the folder may not exist yet: ask its nearest existing parent
    with contextlib.suppress(OSError, ValueError, AttributeError):
        limit = os.pathconf(probe, "PC_NAME_MAX")
        if 0 < limit < name_max:
            name_max = limit
    with contextlib.suppress(OSError, ValueError, AttributeError):
        limit = os.pathconf(probe, "PC_PATH_MAX")
        if limit > 0:
            path_max = limit - 1  # PATH_MAX counts the terminating NUL
    return name_max, path_max


def _windows_long_paths() -> bool:  # pragma: no cover - Windows only
    if sys.platform != "win32":  # only path_limits calls it, on Windows
        return False  # (what the AttributeError below would give elsewhere)
    import ctypes

    try:
        return bool(ctypes.WinDLL("ntdll").RtlAreLongPathsEnabled())
    except (OSError, AttributeError):
        return False


class NameProblem(NamedTuple):
    """A file name or path too long: ``what`` ("name" or "path"), its length and the limit."""

    what: str
    length: int
    limit: int
    unit: str  # "bytes", or "characters" for a Windows path


class NameLimits:
    """What a file in ``folder`` may be called: :meth:`problem` checks one name, quickly."""

    def __init__(self, folder: str | Path) -> None:
        self.name_max, self.path_max = path_limits(folder)
        if sys.platform == "win32":  # pragma: no cover - Windows counts characters
            self.unit = "characters"
            self._base = len(os.path.abspath(folder)) + 1
        else:  # the path as given is what the system calls see
            self.unit = "bytes"
            self._base = len(os.fsencode(str(folder))) + 1

    def problem(self, name: str) -> NameProblem | None:
        """Why a file called ``name`` (and its temporary file) cannot be created, or None."""
        size = len(os.fsencode(name))
        if size > self.name_max:
            return NameProblem("name", size, self.name_max, "bytes")
        if self.path_max is None:
            return None
        own = len(name) if self.unit == "characters" else size
        temp = min(size, _TEMP_NAME_PART) + TEMP_NAME_OVERHEAD  # its temporary file's name
        length = self._base + max(own, temp)
        if length > self.path_max:
            return NameProblem("path", length, self.path_max, self.unit)
        return None


class AtomicFile:
    """``with AtomicFile(path) as fh: ...`` writes ``path`` atomically (UTF-8 text, or bytes).

    Also usable without ``with``: ``open()``, write to ``.fh``, then ``commit()`` or ``abort()``.
    """

    def __init__(self, path: str | Path, *, private: bool = False, binary: bool = False) -> None:
        self.path = Path(path)
        self.private = private
        self.binary = binary
        self.fh: IO[Any] | None = None  # IO[str], or IO[bytes] when binary
        self._tmp: str | None = None

    def open(self) -> IO[Any]:
        if self.path.is_dir():
            raise InputFileError(
                f"{self.path} is a folder", hint="give a file name (e.g. results.csv)"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, self._tmp = tempfile.mkstemp(
                dir=self.path.parent, prefix=_temp_prefix(self.path.name), suffix=TEMP_SUFFIX
            )
        except OSError as exc:
            raise InputFileError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        # mkstemp creates the file 0600 (owner only) on POSIX; widen it when nothing is secret.
        if not self.private:
            os.chmod(self._tmp, 0o666 & ~_umask())
        fh: IO[Any]
        if self.binary:
            fh = os.fdopen(fd, "wb")
        else:
            fh = os.fdopen(fd, "w", encoding="utf-8", newline="")
        self.fh = fh
        return fh

    def commit(self) -> Path:
        assert self.fh is not None and self._tmp is not None
        self.fh.close()
        try:
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.abort()
            raise InputFileError(f"cannot write {self.path}: {exc.strerror or exc}") from None
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

    def __enter__(self) -> IO[Any]:
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
    tmp = path.with_name(f"{_temp_prefix(path.name)}{next(_counter)}{TEMP_SUFFIX}")
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
