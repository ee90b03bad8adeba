"""The container health check script against real loopback servers."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.deploy.support import ROOT

pytestmark = pytest.mark.unit

SCRIPT = ROOT / "deploy" / "docker" / "healthcheck.py"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = {"/healthz": 200, "/readyz": 503}.get(self.path, 404)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=20, check=False
    )


def test_a_2xx_answer_is_healthy(server: str) -> None:
    result = _run(f"http://{server}/healthz")
    assert result.returncode == 0, result.stderr
    assert "answered 200" in result.stdout


def test_an_error_status_or_a_closed_port_is_unhealthy(server: str) -> None:
    not_ready = _run(f"http://{server}/readyz")
    assert not_ready.returncode == 1 and "answered 503" in not_ready.stderr
    closed = _run(f"http://127.0.0.1:{_closed_port()}/healthz", "--timeout", "2")
    assert closed.returncode == 1 and "unreachable" in closed.stderr


def test_the_tcp_mode_checks_that_a_port_accepts_connections(server: str) -> None:
    assert _run("--tcp", server).returncode == 0
    assert _run("--tcp", f"127.0.0.1:{_closed_port()}", "--timeout", "2").returncode == 1


def test_a_non_http_url_is_refused_without_opening_it() -> None:
    result = _run("file:///etc/passwd")
    assert result.returncode == 1 and "not an http(s) URL" in result.stderr
