"""`enosprov serve`: the DPS emulator, the EnOS API contract over the local store."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from .options import JsonOpt, state
from .output import emit, handled, say

KEY_ENV = "ENOSPROV_SERVE_APP_KEY"
SECRET_ENV = "ENOSPROV_SERVE_APP_SECRET"
# the defaults of enosprov.emulator (app.DEFAULT_MAX_BODY_BYTES, server.DEFAULT_*), repeated here
# so that `--help` does not import the emulator; tests/test_emulator_limits.py checks they agree
THREADS = 16
CONNECTION_LIMIT = 1000
MAX_BODY_BYTES = 1024 * 1024


@handled
def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; 0.0.0.0 exposes it to the network.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port; 0 picks a free one.")
    ] = 8080,
    app_key: Annotated[
        str | None,
        typer.Option("--app-key", envvar=KEY_ENV, help="Service account key clients must use."),
    ] = None,
    app_secret: Annotated[
        str | None,
        typer.Option(
            "--app-secret",
            envvar=SECRET_ENV,
            help="Service account secret (prefer the environment variable).",
            show_envvar=True,
        ),
    ] = None,
    token_ttl: Annotated[
        int, typer.Option("--token-ttl", min=1, help="Access token lifetime in seconds.")
    ] = 7200,
    org: Annotated[
        str | None,
        typer.Option("--org", help="Only accept this orgId (default: any; 35603 otherwise)."),
    ] = None,
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            min=1,
            help="Worker threads: requests served at once (more connections than threads just "
            "queue; --latency-ms sleeps in a thread, so throughput tops out at threads/latency).",
        ),
    ] = THREADS,
    connection_limit: Annotated[
        int,
        typer.Option(
            "--connection-limit",
            min=1,
            help="[ENOSPROV] Open connections accepted at once (an EnOS client keeps up to "
            "workers + 6 open); idle ones are closed after 60 s.",
        ),
    ] = CONNECTION_LIMIT,
    max_body_bytes: Annotated[
        int,
        typer.Option(
            "--max-body-bytes",
            min=1,
            help="[ENOSPROV] Largest request body accepted; a larger one is refused with HTTP "
            "413 before it is read.",
        ),
    ] = MAX_BODY_BYTES,
    latency_ms: Annotated[
        int, typer.Option("--latency-ms", min=0, help="Fault: delay added to every DPS call.")
    ] = 0,
    fail_rate: Annotated[
        float,
        typer.Option(
            "--fail-rate", min=0.0, max=1.0, help="Fault: share of DPS calls answered 429 or 500."
        ),
    ] = 0.0,
    drop_rate: Annotated[
        float,
        typer.Option(
            "--drop-rate",
            min=0.0,
            max=1.0,
            help="Fault: share of DPS calls whose connection is cut (before or after the call).",
        ),
    ] = 0.0,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Fault: random seed, for reproducible runs.")
    ] = None,
    page_size: Annotated[
        int | None,
        typer.Option(
            "--page-size",
            min=1,
            max=1000,
            help="[ENOSPROV] Serve at most this many devices per search page, whatever was "
            "asked (tests of clients against servers with short pages). Default: as asked.",
        ),
    ] = None,
    token_refusal: Annotated[
        Literal["401", "403", "200-code", "200-status"],
        typer.Option(
            "--token-refusal",
            help="[ENOSPROV] How an expired or unknown token is answered (code 1203): HTTP 401 "
            "or 403, or HTTP 200 with 1203 in `code` or in `status`.",
        ),
    ] = "401",
    limit_shape: Annotated[
        Literal["http", "200-code", "200-status"],
        typer.Option(
            "--limit-shape",
            help="[ENOSPROV] How the --fail-rate 429s are answered: HTTP 429, or HTTP 200 with "
            "429 in `code` or in `status`.",
        ),
    ] = "http",
    date_skew: Annotated[
        int,
        typer.Option(
            "--date-skew",
            help="[ENOSPROV] Seconds the Date header of every answer is off, as from a gateway "
            "whose clock is wrong (to try `enosprov doctor`'s clock check).",
        ),
    ] = 0,
    json_: JsonOpt = False,
) -> None:
    """Run the DPS emulator: the EnOS API gateway, DPS application and device APIs over the
    store, for offline client and firmware tests. Logs one line per request on stderr; stops
    on Ctrl+C.

    [ENOSPROV] A signed request, token encryption or device signature is accepted once: the
    gateway refuses a replay with 1001, bootstrap and get/conn with 35601 "signature already
    used" (a device signs every attempt afresh).

    Example: ENOSPROV_SERVE_APP_SECRET=s3cret enosprov serve --app-key demo --port 8080
    """
    import logging
    import signal
    import sys
    import threading

    from ..domain.errors import InvalidArgumentError
    from ..emulator import Behaviour, Faults, create_app
    from ..emulator import serve as run_server
    from ..emulator.server import DEFAULT_CHANNEL_TIMEOUT
    from ..plantdb import redact

    if not app_key or not app_secret:
        raise InvalidArgumentError(
            "the emulator needs an app key and an app secret",
            hint=f"pass --app-key and --app-secret, or set {KEY_ENV} and {SECRET_ENV}",
        )
    faults = Faults(latency_ms=latency_ms, fail_rate=fail_rate, drop_rate=drop_rate, seed=seed)
    behaviour = Behaviour(page_size=page_size, token_refusal=token_refusal,
                          limit_shape=limit_shape, date_skew_s=date_skew)  # fmt: skip
    store = state(ctx).settings().store
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    log = logging.getLogger("enosprov.serve")
    log.setLevel(logging.INFO)
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    app = create_app(
        store, app_key=app_key, app_secret=app_secret, token_ttl=token_ttl, org_id=org,
        faults=faults, behaviour=behaviour, log=log.info, max_body_bytes=max_body_bytes,
    )  # fmt: skip
    groups = app.groups()

    def ready(url: str) -> None:
        data = {
            "url": url,
            "gateway": url,
            "dps": url,
            "store": redact(store) if isinstance(store, str) else str(store.resolve()),
            "appKey": app_key,
            "org": org,
            "groups": [{"groupId": g.group_id, "name": g.name} for g in groups],
            "behaviour": {
                "pageSize": page_size,
                "tokenRefusal": token_refusal,
                "limitShape": limit_shape,
                "dateSkewS": date_skew,
            },
            "faults": {
                "latencyMs": latency_ms,
                "failRate": fail_rate,
                "dropRate": drop_rate,
                "seed": seed,
            },
            "limits": {
                "threads": threads,
                "connectionLimit": connection_limit,
                "idleTimeoutS": DEFAULT_CHANNEL_TIMEOUT,
                "maxBodyBytes": max_body_bytes,
            },
        }
        names = ", ".join(f"{g.group_id} ({g.name})" for g in groups)
        for line in (
            f"enosprov DPS emulator on {url}",
            f"  API gateway   {url}  (token: {url}/apim-token-service/v2.0/token/get,"
            f" DPS: {url}/dps-service/v2.5/pvs/device)",
            f"  DPS devices   {url}  ({url}/dev/bootstrap, {url}/dev/get/conn)",
            f"  store         {data['store']}",
            f"  app key       {app_key}",
            f"  orgId         {org or 'any'}",
            f"  groups        {names or 'none yet (create one: enosprov group create ...)'}",
            f"  faults        {faults.describe()}",
            f"  behaviour     {behaviour.describe()}",
            f"  limits        {threads} threads, {connection_limit} connections (idle ones closed"
            f" after {DEFAULT_CHANNEL_TIMEOUT} s), bodies up to {max_body_bytes} bytes",
            "Ctrl+C stops it.",
        ):
            say(line, stderr=True)
        if json_:
            emit(data, True)
            sys.stdout.flush()

    if threading.current_thread() is threading.main_thread():
        # `kill`/terminate(): stop as cleanly as Ctrl+C (the store connections are closed)
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        run_server(
            app, host=host, port=port, threads=threads, connection_limit=connection_limit,
            max_body_bytes=max_body_bytes, on_ready=ready,
        )  # fmt: skip
    except OSError as exc:
        raise InvalidArgumentError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="choose another --port (0 picks a free one)",
        ) from None


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
