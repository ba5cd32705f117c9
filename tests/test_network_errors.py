"""When EnOS cannot be reached, one line says where, what failed, after how many attempts and
seconds; retries are announced to a listener (the CLI shows them on a terminal); a library's
message is never printed cut off."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest

from enosprov.backends import http as enos_http
from enosprov.backends.enos_config import EnosConfig
from enosprov.domain.errors import BackendUnavailableError

LIBRARY_NOISE = ("HTTPConnectionPool", "Max retries", "urllib3", "object at 0x", "Caused by")


def _client(url: str, retries: int = 2) -> enos_http.ApiClient:
    cfg = EnosConfig(api_url=url, org_id="o1", app_key="k", app_secret="s", retries=retries,
                     timeout=0.5, max_rps=None)  # fmt: skip
    return enos_http.ApiClient(cfg, sleep=lambda _s: None)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def retries():
    seen: list[tuple] = []
    enos_http.set_retry_listener(lambda *a: seen.append(a))
    yield seen
    enos_http.set_retry_listener(None)


def _fails(client: enos_http.ApiClient) -> str:
    with pytest.raises(BackendUnavailableError) as info:
        client.token()
    message = info.value.message
    assert "\n" not in message and not any(n in message for n in LIBRARY_NOISE), message
    return message


def test_connection_refused(retries):
    port = _closed_port()
    message = _fails(_client(f"http://127.0.0.1:{port}"))
    assert message.startswith(f"EnOS could not be reached at 127.0.0.1:{port}")
    assert "the connection was refused" in message and "after 3 attempts in" in message
    assert [r[2:4] for r in retries] == [(1, 3), (2, 3)]  # announced before each retry
    assert all(r[0] == f"127.0.0.1:{port}" for r in retries)


def test_a_name_that_does_not_resolve(retries):
    message = _fails(_client("http://no-such-host.invalid", retries=0))
    assert "no-such-host.invalid" in message and "does not resolve (DNS)" in message
    assert "after 1 attempt in" in message and retries == []


class _Handler(http.server.BaseHTTPRequestHandler):
    mode = "503"

    def do_POST(self):
        if self.mode == "cut":
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        return None


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize(("mode", "words"), [("503", "it answered HTTP 503 (a server error)"),
                                             ("cut", "the connection was cut")])  # fmt: skip
def test_server_errors_and_cut_connections_in_words(server, retries, mode, words):
    _Handler.mode = mode
    port = server.server_address[1]
    message = _fails(_client(f"http://127.0.0.1:{port}"))
    assert words in message and "after 3 attempts" in message, message
    assert len(retries) == 2 and retries[0][1] == words


def test_the_cli_says_it_in_one_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from enosprov.cli import app

    port = _closed_port()
    monkeypatch.setenv("ENOSPROV_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("X_SECRET", "abc")
    run = CliRunner().invoke
    assert run(app, ["config", "create", "dead", "--api-url", f"http://127.0.0.1:{port}",
                     "--org", "o1", "--access-key", "k", "--secret-env", "X_SECRET",
                     "--dps-url", f"http://127.0.0.1:{port}"]).exit_code == 0  # fmt: skip
    assert run(app, ["config", "add-group", "dead", "g1", "--secret-env", "X_SECRET",
                     "--product-key", "pk"]).exit_code == 0  # fmt: skip
    monkeypatch.setattr(enos_http, "backoff_delay", lambda *a, **k: 0.0)
    result = run(app, ["--profile", "dead", "devices", "list", "--group", "g1"])
    assert result.exit_code == 3
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"error: EnOS could not be reached at 127.0.0.1:{port}")
    assert "connection was refused" in lines[0] and "attempts in" in lines[0]
    assert not any(n in result.stderr for n in LIBRARY_NOISE)
