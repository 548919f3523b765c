"""Clients that send headers and part of a body, then stall, against a real ``sentiment-serve`` with no proxy
in front: each gets 408 once SENTIMENT_BODY_READ_TIMEOUT_SECONDS passes and its connection is closed, and
beyond SENTIMENT_MAX_CONNECTIONS new connections get 503 at once instead of exhausting file descriptors.
Only 127.0.0.1 is targeted; every loop is bounded."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from serving import HOST, ServerProcess

BODY_TIMEOUT = 1.0
MAX_CONNECTIONS = 8


@pytest.fixture
def server(serve: Callable[..., ServerProcess]) -> ServerProcess:
    process = serve(
        SENTIMENT_BODY_READ_TIMEOUT_SECONDS=str(BODY_TIMEOUT), SENTIMENT_MAX_CONNECTIONS=str(MAX_CONNECTIONS)
    )
    process.wait_ready()
    return process


def stalled(server: ServerProcess) -> socket.socket:
    """A connection that sent its headers and 10 of 100 announced body bytes, and then nothing."""
    sock = socket.create_connection((HOST, server.port), timeout=10)
    head = (
        f"POST {server.prefix}/predict HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n"
    )
    sock.sendall(head.encode() + b'{"text": [')
    return sock


def read_all(sock: socket.socket, within: float) -> bytes:
    """Everything the server sends until it closes the connection (bounded by ``within`` seconds)."""
    sock.settimeout(within)
    data = b""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"the connection stayed open for {within}s; received {data!r}")


@contextlib.contextmanager
def sockets(count: int, server: ServerProcess) -> Iterator[list[socket.socket]]:
    opened = [stalled(server) for _ in range(count)]
    try:
        yield opened
    finally:
        for sock in opened:
            sock.close()


def test_a_stalled_body_gets_408_naming_the_setting_and_the_connection_closes(server: ServerProcess) -> None:
    with sockets(1, server) as (sock,):
        started = time.monotonic()
        answer = read_all(sock, within=15)
        waited = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    error = json.loads(body)
    assert error["error"] == "body_timeout", error
    assert "SENTIMENT_BODY_READ_TIMEOUT_SECONDS" in error["detail"]
    assert error["value"] == 10  # the bytes that did arrive
    assert waited >= BODY_TIMEOUT * 0.9
    # Served requests are unaffected.
    assert httpx.post(server.url("/predict"), json={"text": ["fine"]}, timeout=30).status_code == 200


def test_beyond_the_connection_cap_new_connections_get_503_until_the_stalled_ones_time_out(
    server: ServerProcess,
) -> None:
    # The cap counts the new connection too: MAX_CONNECTIONS - 1 stalled ones leave no room.
    with sockets(MAX_CONNECTIONS - 1, server) as held:
        refused = httpx.post(server.url("/predict"), json={"text": ["x"]}, timeout=10)
        assert refused.status_code == 503, refused.text
        for sock in held:  # each stalled client is answered 408 and dropped
            assert read_all(sock, within=15).startswith(b"HTTP/1.1 408")
    deadline = time.monotonic() + 30
    while True:
        answer = httpx.post(server.url("/predict"), json={"text": ["back"]}, timeout=30)
        if answer.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answer.status_code == 200, answer.text
