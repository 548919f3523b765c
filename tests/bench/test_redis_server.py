"""The one redis-server helper (bench/redis_server.py) that the benchmark and the test fixtures share."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.redis_server import RedisServer


def test_flush_dbsize_kill_and_restart_on_the_same_port(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as redis:
        port = redis.port
        assert redis.url == f"redis://127.0.0.1:{port}/0"
        client = redis.client()
        client.set("a", "1")
        client.set("b", "2")
        assert redis.dbsize() == 2
        redis.flush()
        assert redis.dbsize() == 0
        redis.kill()
        assert redis.process is None
        redis.start()
        assert redis.port == port
        assert redis.client().ping()
    assert redis.process is None


def test_a_password_is_required_when_set(tmp_path: Path) -> None:
    import redis as redis_py

    with RedisServer(tmp_path, password="s3cret") as server:
        assert server.client().ping()
        anonymous = redis_py.Redis(host="127.0.0.1", port=server.port, socket_timeout=2)
        with pytest.raises(redis_py.exceptions.AuthenticationError):
            anonymous.ping()
