"""The egress proxy: a run reaches exactly the listed host:port entries, through the proxy only,
and every decision is in the run's result. Two real HTTP servers on loopback: A is listed, B
is running but not listed."""

from __future__ import annotations

import hashlib
import http.server
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shipyard.errors import ConfigError
from shipyard.sandbox import (
    BwrapBackend,
    EgressProxy,
    Limits,
    Mount,
    ProcessBackend,
    RunResult,
    bwrap_available,
    parse_egress,
)

needs_bwrap = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not available")

LIMITS = Limits(timeout_seconds=30, cpu_seconds=20, memory_mb=1024)
BIG = bytes(range(256)) * 20_000  # 5 MB: more than any buffer on the way holds


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        port = self.server.server_address[1]
        body = BIG if self.path == "/big" else f"server {port} {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Servers:
    a: int
    b: int


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    running = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler) for _ in "ab"]
    for server in running:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Servers(a=running[0].server_address[1], b=running[1].server_address[1])
    for server in running:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def backend() -> Iterator[BwrapBackend]:
    if not bwrap_available():
        pytest.skip("bubblewrap is not available")
    sandbox = BwrapBackend(pool_size=1)
    yield sandbox
    sandbox.close()


# Run inside the sandbox: through HTTP_PROXY with urllib, then a raw CONNECT to the proxy
# named by HTTPS_PROXY, then straight at the port without the proxy.
CLIENT = """
import os, socket, sys, urllib.error, urllib.request, urllib.parse
port = int(sys.argv[1])
try:
    reply = urllib.request.urlopen(f"http://127.0.0.1:{port}/plain", timeout=10)
    print("http", reply.read().decode())
except urllib.error.HTTPError as exc:
    print("http", exc.code, exc.read().decode().strip())
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
tunnel = socket.create_connection((proxy.hostname, proxy.port), timeout=10)
tunnel.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n".encode())
reply = b""
while b"\\r\\n\\r\\n" not in reply:
    reply += tunnel.recv(4096)
head, _, body = reply.partition(b"\\r\\n\\r\\n")
print("connect", head.split(b"\\r\\n")[0].decode())
if b" 200 " in head:
    tunnel.sendall(b"GET /tunnelled HTTP/1.1\\r\\nHost: a\\r\\nConnection: close\\r\\n\\r\\n")
    while chunk := tunnel.recv(4096):
        body += chunk
    print("tunnelled", body.partition(b"\\r\\n\\r\\n")[2].decode())
try:
    socket.create_connection(("127.0.0.1", port), timeout=3)
    print("direct reached")
except OSError:
    print("direct refused")
"""


def client(
    backend: BwrapBackend | ProcessBackend, workdir: Path, port: int, egress: list[str]
) -> RunResult:
    argv = ["python" if backend.isolated else sys.executable, "-c", CLIENT, str(port)]
    return backend.run(argv, workdir=workdir, limits=LIMITS, egress=egress)


@needs_bwrap
def test_a_listed_host_is_reached_through_the_proxy_only(
    backend: BwrapBackend, servers: Servers, tmp_path: Path
) -> None:
    result = client(backend, tmp_path, servers.a, [f"127.0.0.1:{servers.a}"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"http server {servers.a} /plain",
        "connect HTTP/1.1 200 Connection established",
        f"tunnelled server {servers.a} /tunnelled",
        "direct refused",  # the sandbox has no network: only the proxy leads out
    ]
    assert result.egress_log == (f"allowed 127.0.0.1:{servers.a}",) * 2


@needs_bwrap
def test_a_running_host_that_is_not_listed_gets_403(
    backend: BwrapBackend, servers: Servers, tmp_path: Path
) -> None:
    result = client(backend, tmp_path, servers.b, [f"127.0.0.1:{servers.a}"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"http 403 shipyard egress proxy: 127.0.0.1:{servers.b} is not in the tier's egress list"
    )
    assert lines[1:] == ["connect HTTP/1.1 403 Forbidden", "direct refused"]
    assert result.egress_log == (f"denied 127.0.0.1:{servers.b}",) * 2


@needs_bwrap
def test_the_log_names_every_decision_in_order(
    backend: BwrapBackend, servers: Servers, tmp_path: Path
) -> None:
    code = (
        "import sys, urllib.request\n"
        "for port in sys.argv[1:]:\n"
        "    try:\n"
        "        urllib.request.urlopen(f'http://127.0.0.1:{port}/', timeout=10).read()\n"
        "    except OSError:\n"
        "        pass\n"
    )
    argv = ["python", "-c", code, str(servers.b), str(servers.a)]
    egress = [f"127.0.0.1:{servers.a}"]
    result = backend.run(argv, workdir=tmp_path, limits=LIMITS, egress=egress)
    assert result.egress_log == (
        f"denied 127.0.0.1:{servers.b}",
        f"allowed 127.0.0.1:{servers.a}",
    )


@needs_bwrap
def test_a_large_download_comes_through_whole(
    backend: BwrapBackend, servers: Servers, tmp_path: Path
) -> None:
    code = (
        "import hashlib, sys, urllib.request\n"
        "url = f'http://127.0.0.1:{sys.argv[1]}/big'\n"
        "print(hashlib.sha256(urllib.request.urlopen(url, timeout=20).read()).hexdigest())\n"
    )
    argv = ["python", "-c", code, str(servers.a)]
    result = backend.run(argv, workdir=tmp_path, limits=LIMITS, egress=[f"127.0.0.1:{servers.a}"])
    assert result.stdout.strip() == hashlib.sha256(BIG).hexdigest(), result.stderr


@needs_bwrap
def test_an_empty_list_reaches_nothing(
    backend: BwrapBackend, servers: Servers, tmp_path: Path
) -> None:
    result = client(backend, tmp_path, servers.a, [])
    assert result.stdout.splitlines()[0].startswith("http 403"), result
    assert result.egress_log == (f"denied 127.0.0.1:{servers.a}",) * 2


PROXY_NAMES = "import os; print(sorted(k for k in os.environ if 'proxy' in k.lower()))"


@needs_bwrap
def test_without_egress_there_are_no_proxy_variables(backend: BwrapBackend, tmp_path: Path) -> None:
    pooled = backend.run(["python", "-c", PROXY_NAMES], workdir=tmp_path, limits=LIMITS)
    one_off = backend.run(
        ["python", "-c", PROXY_NAMES],
        workdir=tmp_path,
        limits=LIMITS,
        mounts=[Mount(source=tmp_path)],
        in_place=True,
    )
    assert pooled.stdout.strip() == one_off.stdout.strip() == "[]", (pooled, one_off)
    assert pooled.egress_log == one_off.egress_log == ()


@needs_bwrap
def test_a_bad_egress_entry_is_refused_before_anything_runs(
    backend: BwrapBackend, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"api\.example\.com"):
        backend.run(["true"], workdir=tmp_path, limits=LIMITS, egress=["api.example.com"])


def test_the_process_backend_points_its_run_at_the_proxy(servers: Servers, tmp_path: Path) -> None:
    result = client(ProcessBackend(), tmp_path, servers.a, [f"127.0.0.1:{servers.a}"])
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        f"http server {servers.a} /plain",
        "connect HTTP/1.1 200 Connection established",
        f"tunnelled server {servers.a} /tunnelled",
    ], result
    # Not confined: a program that ignores the proxy variables reaches the host directly.
    assert lines[3] == "direct reached"
    denied = client(ProcessBackend(), tmp_path, servers.b, [f"127.0.0.1:{servers.a}"])
    assert denied.stdout.splitlines()[:2] == [
        f"http 403 shipyard egress proxy: 127.0.0.1:{servers.b} is not in the tier's egress list",
        "connect HTTP/1.1 403 Forbidden",
    ], denied


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        (["API.Example.com:443", "127.0.0.1:8080"], ("api.example.com:443", "127.0.0.1:8080")),
        (["[::1]:8080", "[::1]:8080"], ("[::1]:8080",)),
        ([], ()),
    ],
)
def test_parse_egress_normalises_entries(entries: list[str], expected: tuple[str, ...]) -> None:
    assert parse_egress(entries) == expected


@pytest.mark.parametrize(
    "entry", ["api.example.com", "api.example.com:", ":443", "host:0", "host:99999", "::1:80",
              "https://api.example.com:443", "host:https"],
)  # fmt: skip
def test_parse_egress_names_an_entry_without_a_port(entry: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_egress(["ok.example.com:443", entry])
    assert repr(entry) in refused.value.message
    assert refused.value.hint


def _ask(proxy: EgressProxy, request: bytes) -> bytes:
    host, port = proxy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        reply = b""
        while chunk := conn.recv(4096):
            reply += chunk
    return reply


def test_the_proxy_answers_malformed_and_unreachable_requests(servers: Servers) -> None:
    with socket.socket() as spare:  # a port with nothing listening on it
        spare.bind(("127.0.0.1", 0))
        closed_port = spare.getsockname()[1]
    with EgressProxy([f"127.0.0.1:{closed_port}"]) as proxy:
        relative = _ask(proxy, b"GET /path HTTP/1.1\r\nHost: x\r\n\r\n")
        unreachable = _ask(proxy, f"CONNECT 127.0.0.1:{closed_port} HTTP/1.1\r\n\r\n".encode())
        no_port = _ask(proxy, b"CONNECT example.com HTTP/1.1\r\n\r\n")
    assert relative.startswith(b"HTTP/1.1 400 "), relative
    assert unreachable.startswith(b"HTTP/1.1 502 "), unreachable
    assert no_port.startswith(b"HTTP/1.1 400 "), no_port
    assert proxy.log == (f"allowed 127.0.0.1:{closed_port}",)


def test_closing_the_proxy_ends_open_tunnels(servers: Servers) -> None:
    proxy = EgressProxy([f"127.0.0.1:{servers.a}"])
    host, port = proxy.url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=10)
    conn.sendall(f"CONNECT 127.0.0.1:{servers.a} HTTP/1.1\r\n\r\n".encode())
    assert conn.recv(4096).startswith(b"HTTP/1.1 200 ")
    proxy.close()  # the server is waiting for a request on the tunnel; nothing is sent
    assert conn.recv(4096) == b""  # ended by the proxy (the 10 s timeout would raise)
    conn.close()
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=2)
