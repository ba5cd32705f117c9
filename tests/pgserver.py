"""A real PostgreSQL server for the test suite, started from the system's initdb / pg_ctl in a
temporary folder, listening on a Unix socket only (no TCP port), stopped at the end.

``initdb`` refuses to run as root, and CI runs as root: then the server runs as the ``postgres``
user (``runuser -u postgres``) in folders that user owns. No container runtime is needed. When
PostgreSQL is not installed, the tests that need it fail with a message saying so, unless
``ENOSPROV_TEST_POSTGRES=skip`` (then they are skipped).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "enosprov_admin"


@dataclass
class PgServer:
    root: Path  # data folder and socket folder live under it
    socket_dir: Path
    port: int
    run_as: list[str]  # ["runuser", "-u", "postgres", "--"] when root, else []
    pg_ctl: str

    def url(
        self, dbname: str = "postgres", user: str = SUPERUSER, *, tcp: bool = False, **params: str
    ) -> str:
        """A URL over the Unix socket, or over TCP on loopback (``tcp``: where TLS settings
        apply; libpq never uses TLS on a Unix socket)."""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        extra = f"&{query}" if query else ""
        host = "127.0.0.1" if tcp else str(self.socket_dir)
        return f"postgresql://{user}@/{dbname}?host={host}&port={self.port}{extra}"

    def stop(self) -> None:
        subprocess.run([*self.run_as, self.pg_ctl, "-D", str(self.root / "data"), "-m", "fast",
                        "-w", "stop"], capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


def _find(tool: str) -> str | None:
    found = shutil.which(tool)
    if found:
        return found
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (base / tool).is_file():
            return str(base / tool)
    return None


def start() -> PgServer:
    """Start a throwaway server; raise RuntimeError saying what is missing."""
    initdb, pg_ctl = _find("initdb"), _find("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError(
            "PostgreSQL is not installed (initdb and pg_ctl not found): the PostgreSQL tests "
            "need it (apt install postgresql), or set ENOSPROV_TEST_POSTGRES=skip"
        )
    run_as: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="enosprov-pg-"))
    if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, user="postgres", group="postgres")
    os.chmod(root, 0o755)
    data, sockets = root / "data", root / "sock"
    subprocess.run([*run_as, "mkdir", "-m", "0700", str(sockets)], check=True)
    result = subprocess.run(
        [*run_as, initdb, "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
         "--locale=C.UTF-8", "--no-sync"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed: {result.stderr.strip()[-500:]}")
    # local connections: trust for the test superuser, passwords (scram) for every other role,
    # so that the tests exercise password handling
    (hba := data / "pg_hba.conf").write_text(
        f"local all {SUPERUSER} trust\nlocal all all scram-sha-256\n"
        f"host all {SUPERUSER} 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        encoding="utf-8",
    )
    if run_as:
        shutil.chown(hba, user="postgres", group="postgres")
    port = _free_port()
    options = (
        f"-k {sockets} -c listen_addresses=127.0.0.1 -p {port} -c fsync=off -c max_connections=100"
    )
    log = root / "server.log"
    subprocess.run([*run_as, "touch", str(log)], check=True)
    started = subprocess.run(
        [*run_as, pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60",
         "start"],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    if started.returncode != 0:
        raise RuntimeError(
            f"pg_ctl start failed: {started.stderr.strip()} {log.read_text()[-500:]}"
        )
    os.chmod(sockets, 0o755)  # the test process (root or not) reaches the socket
    server = PgServer(root, sockets, port, run_as, pg_ctl)
    _wait_ready(server)
    return server


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(server: PgServer) -> None:
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            psycopg.connect(server.url(), connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
