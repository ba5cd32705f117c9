"""One exception hierarchy for everything enosprov raises on purpose.

Every error carries a stable ``code`` (for ``--json`` consumers), an ``exit_code`` (for the CLI), an
optional ``hint`` that says how to fix it, and, when it mirrors an EnOS DPS error, the EnOS numeric
code (``enos_code``). Messages never contain secrets.
"""

from __future__ import annotations

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_EXISTS_DIFFERENT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_MISMATCH",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_PRINTER",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "NOT_FOUND_CODES",
    "AuthError",
    "BackendUnavailableError",
    "ConflictError",
    "CopyMismatchError",
    "DefinitionConflictError",
    "EnosprovError",
    "InputFileError",
    "InvalidArgumentError",
    "NotAllocatedError",
    "NotFoundError",
    "PrinterError",
    "RefusedError",
    "StoreError",
    "StoreVersionError",
    "ValidationFailedError",
    "enos_error",
    "is_not_found",
]

# Process exit codes, documented in README.md ("Exit codes"). Stable: factory scripts depend on them.
EXIT_OK = 0
EXIT_FAILED = 1  # refused, invalid input, not found, conflict
EXIT_USAGE = 2  # Click's own code for bad command-line usage
EXIT_UNAVAILABLE = 3  # backend unreachable or busy; safe to retry
EXIT_MISMATCH = 4  # a verification found a difference
EXIT_PARTIAL = 5  # a batch finished but some rows were conflicts or skipped as invalid
EXIT_PRINTER = 6  # labels not (all) printed: the printer refused, timed out or reported a problem
EXIT_EXISTS_DIFFERENT = 7  # a definition (master data / registration group) exists, different
EXIT_CHECK_FAILED = 8  # `doctor`: a check of the profile against its tenant failed
EXIT_INTERRUPTED = 130


class EnosprovError(Exception):
    """Base class. ``str(err)`` is the one-line message shown to users."""

    code: str = "error"
    exit_code: int = EXIT_FAILED

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        enos_code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.enos_code = enos_code
        self.request_id = request_id

    def to_dict(self) -> dict:
        out: dict = {"code": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        if self.enos_code is not None:
            out["enosCode"] = self.enos_code
        if self.request_id:
            out["requestId"] = self.request_id
        return out


class InvalidArgumentError(EnosprovError):
    """A parameter is missing or malformed (EnOS 99400 / 35400)."""

    code = "invalid_argument"


class NotFoundError(EnosprovError):
    """A group, master data group or device does not exist (EnOS 35404 / 99404)."""

    code = "not_found"


class ConflictError(EnosprovError):
    """The object already exists with other data, e.g. a duplicated deviceSn (EnOS 35601)."""

    code = "conflict"


class DefinitionConflictError(ConflictError):
    """A master data group or registration group exists with another definition: re-running a
    set-up with the same definition is fine ("unchanged"), a different one is this (exit 7)."""

    code = "exists_different"
    exit_code = EXIT_EXISTS_DIFFERENT

    def __init__(self, message: str, *, differences: list[dict], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.differences = differences

    def to_dict(self) -> dict:
        return {**super().to_dict(), "differences": self.differences}


class CopyMismatchError(EnosprovError):
    """After ``store copy`` wrote, the target does not hold every row of the source (the source
    changed during the copy): the copy was rolled back, nothing was written."""

    code = "mismatch"
    exit_code = EXIT_MISMATCH


class RefusedError(EnosprovError):
    """The operation is not allowed in the object's current state (EnOS 35603)."""

    code = "refused"


class AuthError(EnosprovError):
    """A signature, token or secret did not verify (EnOS 35601 'Verify not pass')."""

    code = "auth_failed"


class NotAllocatedError(EnosprovError):
    """The device side asked for connection info before the device was allocated (EnOS 10000)."""

    code = "not_allocated"


class InputFileError(EnosprovError):
    """An input file (CSV, TOML) is unreadable or structurally wrong."""

    code = "invalid_input"


class ValidationFailedError(EnosprovError):
    """A batch input has invalid rows; nothing was written. ``issues`` holds every row error."""

    code = "validation_failed"

    def __init__(self, message: str, issues: list, *, total: int | None = None, **kw) -> None:
        super().__init__(message, **kw)
        self.issues = issues
        self.total = len(issues) if total is None else total  # issues may be a capped sample

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["issueCount"] = self.total
        out["issues"] = [i.to_dict() for i in self.issues]
        return out


class StoreError(EnosprovError):
    """The local store cannot be opened or is busy beyond the wait limit."""

    code = "store_unavailable"
    exit_code = EXIT_UNAVAILABLE


class StoreVersionError(EnosprovError):
    """The store was written by a newer enosprov; retrying will not help, upgrading will."""

    code = "store_version"


class BackendUnavailableError(EnosprovError):
    """The backend could not be reached; retrying later is safe."""

    code = "backend_unavailable"
    exit_code = EXIT_UNAVAILABLE


class PrinterError(EnosprovError):
    """A label was not printed: the printer refused the connection, did not answer in time,
    closed the connection early or reported a problem, or ``lp`` failed (enosprov.printing).

    ``what`` names the label (a deviceSn, a document). A partial failure is never success: the
    commands that print exit with :data:`EXIT_PRINTER` when any label was not printed."""

    code = "printer_failed"
    exit_code = EXIT_PRINTER

    def __init__(self, message: str, *, what: str | None = None, **kw) -> None:
        super().__init__(message, **kw)
        self.what = what


# EnOS code -> exception class, used by the backends to raise consistently.
ENOS_CODE_CLASSES: dict[int, type[EnosprovError]] = {
    35400: InvalidArgumentError,
    35404: NotFoundError,
    35601: ConflictError,
    35603: RefusedError,
    10000: NotAllocatedError,
    99400: InvalidArgumentError,
    99403: RefusedError,
    99404: NotFoundError,
    99500: BackendUnavailableError,
}


# How EnOS says "no such device" to a look-up: it documents 35601 "Verify not pass/sn not found"
# and 35404 for a get by system sn; a gateway may also answer the generic 99404.
NOT_FOUND_CODES = (35601, 35404, 99404)


def is_not_found(err: EnosprovError) -> bool:
    """``err`` says the device looked up does not exist (enosprov's NotFoundError, or one of
    the codes EnOS answers with)."""
    return err.code == "not_found" or err.enos_code in NOT_FOUND_CODES


def enos_error(
    enos_code: int, message: str, *, cls: type[EnosprovError] | None = None, **kw
) -> EnosprovError:
    """Build the enosprov exception that mirrors an EnOS error code.

    ``cls`` overrides the class where EnOS reuses a code for another meaning (35601 is both
    "DeviceSn duplicated" and "sn not found").
    """
    cls = cls or ENOS_CODE_CLASSES.get(enos_code, EnosprovError)
    return cls(message, enos_code=enos_code, **kw)
