"""`enosprov doctor`: prove a profile against its EnOS tenant (core/doctor.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from .options import JsonOpt, state
from .output import emit, handled, say, table


@handled
def doctor(
    ctx: typer.Context,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help="The profile to check (default: the root --profile, ENOSPROV_PROFILE, or the "
            "current profile).",
            show_default=False,
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Check, read-only, that enosprov will work with a profile's EnOS tenant: the API
    gateway answers (TLS verified), the clock agrees with the gateway's, the access key gets a
    token, the service account may use DPS on each group of the profile, round-trip latency,
    and the DPS device address (dpsUrl) answers. Nothing is changed in EnOS.

    Each check says what it proved, its time, the EnOS code and requestId, and what to do.
    Exit 0: every check passed (warnings included); 8: a check failed; 3: the gateway could
    not be reached. --json is safe for support tickets: it never holds a secret.

    Example: enosprov doctor --profile prod
    """
    from .. import profiles
    from ..core.doctor import run_checks
    from ..domain.errors import EXIT_CHECK_FAILED, EXIT_UNAVAILABLE, InvalidArgumentError
    from ..settings import Settings

    st = state(ctx)
    settings = Settings.resolve(profile=profile or st.profile)
    if settings.backend != "enos" or settings.profile is None:
        raise InvalidArgumentError(
            "doctor checks an EnOS profile, and none is selected",
            hint="enosprov doctor --profile NAME (enosprov config list shows them)",
        )
    config = profiles.to_enos_config(settings.profile, settings.config_path)
    report = run_checks(config)
    emit(report, json_, lambda r: _show(r))
    if report.unreachable:
        raise typer.Exit(EXIT_UNAVAILABLE)
    if not report.ok:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _show(report) -> None:
    table(
        f"enosprov doctor: profile {report.profile} ({report.api_url})",
        ["check", "result", "time", "EnOS code", "what it found / what to do"],
        [
            [
                c.name,
                c.result,
                f"{c.seconds * 1000:.0f} ms" if c.seconds else "-",
                "-" if c.enos_code is None else str(c.enos_code),
                c.detail + (f". To do: {c.remedy}" if c.remedy and c.result != "pass" else ""),
            ]
            for c in report.checks
        ],
    )
    failed = sum(c.result == "fail" for c in report.checks)
    warned = sum(c.result == "warn" for c in report.checks)
    warnings = f" ({warned} warning{'s' if warned > 1 else ''})" if warned else ""
    say(f"{failed} check(s) failed{warnings}" if failed else f"no check failed{warnings}")
