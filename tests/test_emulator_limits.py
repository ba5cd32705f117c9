"""The emulator's limits: body size, connections and threads, concurrent token requests.

The load tests start `enosprov serve` as a process with its default limits (the server has its
own interpreter, as in real use) and stay short; longer runs belong to a torture suite.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import wsgiref.simple_server
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from conftest import APP_KEY, APP_SECRET, make_group

from enosprov.backends import apim
from enosprov.backends.enos import EnosBackend
from enosprov.backends.enos_config import EnosConfig
from enosprov.backends.local import LocalBackend
from enosprov.emulator import create_app, start_in_thread

MB = 1024 * 1024
DATA = {"max_capacity": 1, "phase": "single"}


@contextlib.contextmanager
def serve_process(store_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen, dict]]:
    """`enosprov serve --port 0 --json ARGS` over a store with the meters-eu group: the process
    and its `--json` start-up data; stopped with SIGTERM (terminate on Windows)."""
    with LocalBackend(store_path) as be:
        make_group(be)
    env = dict(os.environ, ENOSPROV_SERVE_APP_KEY=APP_KEY, ENOSPROV_SERVE_APP_SECRET=APP_SECRET)
    proc = subprocess.Popen(
        [sys.executable, "-m", "enosprov", "--store", str(store_path), "serve", "--port", "0",
         "--json", *args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line, f"enosprov serve did not start (exit {proc.wait(timeout=10)})"
        yield proc, json.loads(line)["data"]
    finally:
        if sys.platform == "win32":
            proc.terminate()
        else:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def token_body(ts: int | None = None) -> dict:
    ts = int(time.time() * 1000) if ts is None else ts
    return {
        "appKey": APP_KEY,
        "encryption": apim.token_encryption(APP_KEY, ts, APP_SECRET),
        "timestamp": ts,
    }


# -- body size ------------------------------------------------------------------------------


class _Unreadable(io.RawIOBase):
    def read(self, *args):
        raise AssertionError("the body was read")


def test_the_app_refuses_a_large_body_without_reading_it(store_path):
    lines: list[str] = []
    app = create_app(store_path, app_key=APP_KEY, app_secret=APP_SECRET, log=lines.append,
                     max_body_bytes=64)  # fmt: skip
    answers = []

    def start_response(status, headers):
        answers.append((status, dict(headers)))

    for path in ("/dev/bootstrap", apim.TOKEN_GET_PATH, "/dps-service/v2.5/pvs/device"):
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "",
                   "CONTENT_LENGTH": str(200 * MB), "wsgi.input": _Unreadable()}  # fmt: skip
        doc = json.loads(b"".join(app(environ, start_response)))
        status, headers = answers.pop()
        assert status.startswith("413 ")
        assert doc["code"] == 99400 and doc["data"] is None
        assert doc["msg"] == "Invalid Argument: request body larger than 64 bytes"
        assert headers["x-request-id"] == doc["requestId"]
    assert all(" status=413 code=99400 " in line for line in lines) and len(lines) == 3
    # exactly the limit is read and served
    body = json.dumps(token_body()).encode()
    app.max_body_bytes = len(body)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": apim.TOKEN_GET_PATH, "QUERY_STRING": "",
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}  # fmt: skip
    assert json.loads(b"".join(app(environ, start_response)))["status"] == 0
    app.close()
    with pytest.raises(Exception, match="body size limit"):
        create_app(store_path, app_key=APP_KEY, app_secret=APP_SECRET, max_body_bytes=0)


@contextlib.contextmanager
def _wsgiref(app) -> Iterator[str]:
    class Quiet(wsgiref.simple_server.WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = wsgiref.simple_server.make_server("127.0.0.1", 0, app, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        app.close()


@contextlib.contextmanager
def _waitress(app, **kw) -> Iterator[str]:
    with start_in_thread(app, **kw) as running:
        yield running.url


def _headers_only(url: str, length: int) -> tuple[int, bytes]:
    """POST announcing ``length`` body bytes but sending none: the answer comes before any body
    only if the server refuses on the announced length."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.putrequest("POST", "/dev/bootstrap")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(length))
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("server", ["waitress", "wsgiref"])
def test_servers_refuse_an_announced_large_body_before_it_arrives(store_path, server):
    app = create_app(store_path, app_key=APP_KEY, app_secret=APP_SECRET, log=lambda line: None,
                     max_body_bytes=1000)  # fmt: skip
    with (_waitress if server == "waitress" else _wsgiref)(app) as url:
        status, body = _headers_only(url, 200 * MB)
        assert status == 413
        if server == "wsgiref":  # the app's own refusal
            assert json.loads(body)["msg"].endswith("larger than 1000 bytes")
        # up to the limit: read and answered (the body is not JSON: 99400)
        r = requests.post(url + "/dev/bootstrap", data=b"x" * 1000, timeout=5)
        assert (r.status_code, r.json()["code"]) == (200, 99400)
        r = requests.post(url + "/dev/bootstrap", data=b"x" * 1001, timeout=5)
        assert r.status_code == 413


def test_start_in_thread_takes_the_limit_from_the_app_or_its_own(store_path):
    app = create_app(store_path, app_key=APP_KEY, app_secret=APP_SECRET, log=lambda line: None,
                     max_body_bytes=100)  # fmt: skip
    with start_in_thread(app) as running:
        assert running.server.adj.max_request_body_size == 101  # waitress refuses >= this
        assert requests.post(running.url + "/x", data=b"x" * 101, timeout=5).status_code == 413
    with start_in_thread(app, max_body_bytes=5000) as running:
        assert running.server.adj.max_request_body_size == 5001
        assert running.server.adj.connection_limit == 1000
        assert running.server.adj.asyncore_use_poll is True


def _peak_rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    kb = next(int(line.split()[1]) for line in text.splitlines() if line.startswith("VmHWM:"))
    return kb / 1024


def _post_huge(url: str, size: int, chunk: bytes, outcome: list) -> None:
    """POST a body of ``size`` bytes produced on the fly (never held whole)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)

    def body():
        for _ in range(size // len(chunk)):
            yield chunk

    sent = "whole body sent"
    try:
        try:
            conn.request("POST", "/dev/bootstrap", body=body(),
                         headers={"Content-Length": str(size),
                                  "Content-Type": "application/json"})  # fmt: skip
        except (BrokenPipeError, ConnectionResetError):
            sent = "cut while sending"  # the server answered and closed: read what it said
        try:
            outcome.append((conn.getresponse().status, sent))
        except (ConnectionError, http.client.HTTPException):
            outcome.append(("reset", sent))
    finally:
        conn.close()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_serve_memory_stays_flat_under_eight_200_mb_bodies(store_path):
    size, chunk = 200 * MB, b"\0" * MB
    with serve_process(store_path) as (proc, data):
        url = data["url"]
        assert data["limits"]["maxBodyBytes"] == MB
        outcome: list = []
        started = time.monotonic()
        threads = [
            threading.Thread(target=_post_huge, args=(url, size, chunk, outcome)) for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        elapsed = time.monotonic() - started
        peak = _peak_rss_mb(proc.pid)
        # still serving
        assert requests.post(url + apim.TOKEN_GET_PATH, json=token_body(), timeout=5).ok
    print(f"8 x 200 MB: peak RSS {peak:.0f} MB, {elapsed:.2f} s, {outcome}")
    assert len(outcome) == 8 and all(status in (413, "reset") for status, _ in outcome), outcome
    assert all(sent == "cut while sending" for _, sent in outcome), outcome  # never read whole
    assert peak < 300, f"peak RSS {peak:.0f} MB"


# -- connections and threads ----------------------------------------------------------------


def test_sixteen_enos_clients_never_stall(store_path):
    """16 EnOS-backend clients, 16 threads each (their default pool of workers), registering
    and reading devices for ~5 s: more connections than waitress's default limit (100)."""
    clients, per_client, seconds = 16, 16, 5.0
    with serve_process(store_path) as (_proc, data):
        url = data["url"]
        assert data["limits"] == {"threads": 16, "connectionLimit": 1000, "idleTimeoutS": 60,
                                  "maxBodyBytes": MB}  # fmt: skip
        cfg = dict(api_url=url, org_id="o1", app_key=APP_KEY, app_secret=APP_SECRET,
                   dps_url=url, workers=per_client, retries=0, timeout=15.0)  # fmt: skip
        backends = [EnosBackend(EnosConfig(**cfg)) for _ in range(clients)]
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        stop = time.monotonic() + seconds

        def work(enos: EnosBackend, name: str) -> None:
            i = 0
            while time.monotonic() < stop:
                i += 1
                try:
                    t0 = time.perf_counter()
                    sn = enos.create("meters-eu", count=1,
                                     device_data={"deviceSn": f"{name}-{i:05d}", **DATA})[0]  # fmt: skip
                    t1 = time.perf_counter()
                    assert enos.get(sn).sn == sn
                    t2 = time.perf_counter()
                except Exception as exc:  # reported below, one failure stops this worker
                    with lock:
                        errors.append(f"{name}: {exc!r}"[:300])
                    return
                with lock:
                    latencies.extend((t1 - t0, t2 - t1))

        threads = [
            threading.Thread(target=work, args=(enos, f"C{c:02d}T{t:02d}"))
            for c, enos in enumerate(backends)
            for t in range(per_client)
        ]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        elapsed = time.monotonic() - started
        for enos in backends:
            enos.close()
        with LocalBackend(store_path) as be:
            stored = sum(be.device_counts().values())
    hung = [t.name for t in threads if t.is_alive()]
    latencies.sort()
    print(f"{clients} clients x {per_client} threads: {len(latencies)} requests in "
          f"{elapsed:.1f} s, p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, "
          f"max {latencies[-1] * 1000:.0f} ms")  # fmt: skip
    assert not hung and errors == [], errors[:5]
    assert stored == len(latencies) // 2 > clients * per_client
    assert latencies[-1] < 5.0, f"slowest request {latencies[-1]:.1f} s"


class _FrozenFirstCall:
    """``time`` for enosprov.backends.http whose ``time()`` returns ``frozen`` at each thread's
    first call (every client signs its first token request in the same millisecond)."""

    def __init__(self, frozen: float) -> None:
        self.frozen = frozen
        self._local = threading.local()

    def time(self) -> float:
        if not getattr(self._local, "done", False):
            self._local.done = True
            return self.frozen
        return time.time()

    def __getattr__(self, name):
        return getattr(time, name)


def test_sixteen_token_requests_in_the_same_millisecond(emulator, store_path, monkeypatch):
    from enosprov.backends import http
    from enosprov.backends.http import ApiClient

    lines: list[str] = []
    emulator.holder["app"] = create_app(
        store_path, app_key=APP_KEY, app_secret=APP_SECRET, log=lines.append
    )
    monkeypatch.setattr(http, "time", _FrozenFirstCall(time.time()))
    cfg = EnosConfig(api_url=emulator.url, org_id="o1", app_key=APP_KEY, app_secret=APP_SECRET,
                     retries=0, timeout=10.0)  # fmt: skip
    clients = [ApiClient(cfg) for _ in range(16)]
    barrier = threading.Barrier(16)
    tokens: list[str] = []
    errors: list[Exception] = []

    def fetch(client: ApiClient) -> None:
        barrier.wait()
        try:
            tokens.append(client.token())
        except Exception as exc:  # AuthError or anything else: reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetch, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for c in clients:
        c.close()
    emulator.holder["app"].close()
    assert errors == [] and len(tokens) == 16 and len(set(tokens)) == 1
    answered = [line for line in lines if "token/get" in line]
    assert sum("code=1001" in line for line in answered) >= 15  # all but one collided at first
    assert sum("code=0 " in line for line in answered) == 16


def test_serve_defaults_match_the_emulator():
    from enosprov.cli import serve as cli_serve
    from enosprov.emulator import app, server

    assert cli_serve.THREADS == server.DEFAULT_THREADS
    assert cli_serve.CONNECTION_LIMIT == server.DEFAULT_CONNECTION_LIMIT
    assert cli_serve.MAX_BODY_BYTES == app.DEFAULT_MAX_BODY_BYTES


@pytest.mark.skipif(sys.platform == "win32", reason="Unix open file limits")
def test_connections_beyond_descriptor_1023_are_served(store_path):
    """poll(), not select(): select() fails beyond descriptor 1023 and would stop the server."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2600  # both ends of 1100 connections live in this process
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"the open file limit ({hard}) is below {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    app = create_app(store_path, app_key=APP_KEY, app_secret=APP_SECRET, log=lambda line: None)
    holders: list[socket.socket] = []
    try:
        with start_in_thread(app, connection_limit=1200) as running:
            while len(holders) < 1100:
                holders.append(socket.create_connection(("127.0.0.1", running.port), timeout=5))
            doc = requests.post(running.url + apim.TOKEN_GET_PATH, json=token_body(), timeout=10)
            assert doc.json()["status"] == 0
    finally:
        for s in holders:
            s.close()
        if soft < needed:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
