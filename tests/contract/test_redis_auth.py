"""The managed Redis and the server meet through one generated Secret, mounted as files.

The operator renders the Redis container (command, args, probe) and the Secret's keys (``redis_auth_data``);
these tests run the real ``redis-server`` from exactly that command with the Secret's files in place of the
mount, run the rendered probe in ``sh``, and read the password with the server's own settings from the file
the server pod mounts. Only the port, the bind address and the mount directory are changed for the test.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from sentiment_inference.settings import Settings
from sentiment_operator import builders, names
from sentiment_operator.spec import parse_spec
from serving import free_port


def _rendered_redis(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    children = builders.build_children("demo", "ns", parse_spec("demo", {}))
    assert children.redis_deployment is not None
    (container,) = children.redis_deployment["spec"]["template"]["spec"]["containers"]
    mount = tmp_path / "etc-redis"
    mount.mkdir()
    for key, value in builders.redis_auth_data("pw-generated").items():
        (mount / key).write_text(value)
    return container, mount


def _localize(words: list[str], mount: Path, port: int) -> list[str]:
    local = [w.replace(builders.REDIS_CONFIG_MOUNT, str(mount)) for w in words]
    return [
        str(port) if w == str(names.REDIS_PORT) else w.replace(f"-p {names.REDIS_PORT}", f"-p {port}")
        for w in local
    ]


def test_the_rendered_redis_command_requires_the_generated_password(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (make install apt-installs it)")
    container, mount = _rendered_redis(tmp_path)
    port = free_port()
    command = _localize([*container["command"], *container["args"]], mount, port)
    process = subprocess.Popen(
        [*command, "--bind", "127.0.0.1", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        probe = _localize(container["readinessProbe"]["exec"]["command"], mount, port)
        deadline = time.monotonic() + 20
        while subprocess.run(probe, check=False, timeout=10).returncode != 0:
            assert process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "the rendered readiness probe never passed"
            time.sleep(0.1)
        anonymous = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
        with pytest.raises(redis.AuthenticationError):
            anonymous.set("k", "v")
        # The server pod mounts the same Secret's password key; its settings read it from the file.
        settings = Settings(
            redis_url=f"redis://127.0.0.1:{port}/0", redis_password_file=mount / names.REDIS_PASSWORD_KEY
        )
        assert settings.redis_password is not None
        client = redis.Redis(
            host="127.0.0.1", port=port, password=settings.redis_password.get_secret_value(), socket_timeout=2
        )
        assert client.set("k", "v")
        assert client.get("k") == b"v"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_password_is_in_no_command_line_or_environment() -> None:
    children = builders.build_children("demo", "ns", parse_spec("demo", {}))
    secret_refs = [
        item
        for obj in children.objects()
        if obj["kind"] == "Deployment"
        for pod in [obj["spec"]["template"]["spec"]]
        for container in [*pod.get("initContainers", []), *pod["containers"]]
        for item in container.get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    ]
    assert secret_refs == []
