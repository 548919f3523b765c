"""The real ``sentiment-serve`` process over HTTP on 127.0.0.1, plus the devmodel and wait-redis commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sentiment_inference import devmodel, wait_redis
from sentiment_inference.backend import TorchBackend
from sentiment_inference.settings import Settings, env_var_names
from serving import free_port


def test_sentiment_serve_over_real_http_and_graceful_sigterm(serve_process: Any, redis_server: Any) -> None:
    env = {"SENTIMENT_REDIS_URL": redis_server.url, "SENTIMENT_SHUTDOWN_DELAY_SECONDS": "1.5"}
    server = serve_process(prefix="/project", env=env)
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        assert client.get("/project/health").json() == {"status": "healthy"}
        body = {"text": ["I love this!", "This is awful."]}
        first = client.post("/project/predict", json=body)
        assert first.status_code == 200
        assert [len(p) for p in first.json()["predictions"]] == [2, 2]
        assert client.post("/project/bulk-predict", json=body).content == first.content
        metrics = client.get("/metrics").text
        assert 'sentiment_cache_hits_total{backend="redis"} 2.0' in metrics
        assert "server" not in client.get("/project/health").headers
        malformed = client.post(
            "/project/predict", content=b"{", headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 422

        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        ready = client.get("/project/ready")  # not ready during the shutdown delay ...
        assert ready.status_code == 503
        assert ready.json()["reason"] == "shutting down"
        late = client.post("/project/predict", json={"text": "routed here before endpoint removal"})
        assert late.status_code == 200  # ... but still answering requests that arrive meanwhile
    assert server.process.wait(timeout=30) == 0
    assert "Received signal" in server.log()


def test_python_m_entry_point_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sentiment_inference", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0
    for flag in ("--host", "--port", "--model-path", "--prefix"):
        assert flag in out.stdout


def test_invalid_env_setting_exits_with_a_clear_message(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    from sentiment_inference.cli import main

    monkeypatch.setenv("SENTIMENT_QUANTIZATION", "int4")
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert main(["--port", "1"]) == 2
    assert "quantization" in capsys.readouterr().err
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"  # set before torch is imported


def test_settings_env_names_match_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    contract = [
        "MODEL_PATH",
        "MODEL_ID",
        "API_PREFIX",
        "HOST",
        "PORT",
        "MAX_LENGTH",
        "QUANTIZATION",
        "TORCH_THREADS",
        "MAX_BATCH_SIZE",
        "MAX_BATCH_TOKENS",
        "MAX_WAIT_MS",
        "MAX_QUEUE",
        "MAX_TEXTS_PER_REQUEST",
        "MAX_TEXT_CHARS",
        "MAX_BODY_BYTES",
        "REDIS_URL",
        "REDIS_PASSWORD",
        "CACHE_TTL_SECONDS",
        "CACHE_TIMEOUT_MS",
        "LOCAL_CACHE_SIZE",
        "LOG_LEVEL",
    ]
    assert {f"SENTIMENT_{n}" for n in contract} <= set(env_var_names())
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} needs a description for the README table"
    monkeypatch.setenv("SENTIMENT_API_PREFIX", "project/")
    monkeypatch.setenv("SENTIMENT_MAX_QUEUE", "7")
    monkeypatch.setenv("SENTIMENT_MAX_TEXTS_PER_REQUEST", "5")
    monkeypatch.setenv("SENTIMENT_REDIS_URL", "")
    monkeypatch.setenv("SENTIMENT_LOG_LEVEL", "DEBUG")
    settings = Settings()
    assert (settings.api_prefix, settings.max_queue, settings.redis_url, settings.log_level) == (
        "/project",
        7,
        None,
        "debug",
    )
    assert Settings().model_path == "/opt/sentiment/model"
    with pytest.raises(ValueError, match=r"SENTIMENT_MAX_QUEUE \(7\) must be at least"):
        Settings(max_texts_per_request=8)


def test_devmodel_cli_writes_a_loadable_model(tmp_path: Path) -> None:
    out = tmp_path / "dev"
    assert devmodel.main(["--out", str(out), "--preset", "tiny", "--seed", "3"]) == 0
    assert (out / "MODEL_ID").read_text().strip() == "sentiment-devmodel/tiny"
    backend = TorchBackend(Settings(model_path=str(out)))
    backend.load()
    assert backend.info.labels == ("NEGATIVE", "POSITIVE")


def test_synthetic_dataset_is_deterministic_and_balanced() -> None:
    data = devmodel.synthetic_dataset(100, seed=7)
    assert data == devmodel.synthetic_dataset(100, seed=7)
    assert sum(y for _, y in data) == 50
    assert data != devmodel.synthetic_dataset(100, seed=8)


# ------------------------------------------------------------------------------------------- wait-redis


def test_wait_redis_ping_succeeds_with_auth(redis_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    server = redis_factory(password="pw-123")
    monkeypatch.setenv("SENTIMENT_REDIS_URL", f"redis://127.0.0.1:{server.port}/0")
    monkeypatch.setenv("SENTIMENT_REDIS_PASSWORD", "pw-123")
    assert wait_redis.main(["--check", "ping", "--timeout", "5"]) == 0
    monkeypatch.setenv("SENTIMENT_REDIS_PASSWORD", "wrong")
    assert wait_redis.main(["--check", "ping", "--timeout", "0.5"]) == 1


def test_wait_redis_reads_the_password_file(
    redis_factory: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = redis_factory(password="pw-from-file")
    (tmp_path / "password").write_text("pw-from-file\n")
    monkeypatch.setenv("SENTIMENT_REDIS_URL", f"redis://127.0.0.1:{server.port}/0")
    monkeypatch.setenv("SENTIMENT_REDIS_PASSWORD", "wrong")
    monkeypatch.setenv("SENTIMENT_REDIS_PASSWORD_FILE", str(tmp_path / "password"))
    assert wait_redis.main(["--check", "ping", "--timeout", "5"]) == 0
    monkeypatch.setenv("SENTIMENT_REDIS_PASSWORD_FILE", str(tmp_path / "missing"))
    assert wait_redis.main(["--check", "ping", "--timeout", "5"]) == 1


def test_wait_redis_waits_for_a_late_redis(redis_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    server = redis_factory()
    server.kill()
    monkeypatch.setenv("SENTIMENT_REDIS_URL", server.url)
    monkeypatch.delenv("SENTIMENT_REDIS_PASSWORD", raising=False)
    starter = threading.Timer(1.0, server.start)
    starter.start()
    try:
        started = time.monotonic()
        assert wait_redis.main(["--check", "ping", "--timeout", "20"]) == 0
        assert time.monotonic() - started >= 0.9
    finally:
        starter.join()


def test_wait_redis_times_out_and_checks_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTIMENT_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    assert wait_redis.main(["--check", "ping", "--timeout", "1"]) == 1
    assert time.monotonic() - started < 5
    assert wait_redis.main(["--check", "dns", "--timeout", "1"]) == 0
    monkeypatch.setenv("SENTIMENT_REDIS_URL", "redis://no-such-host.invalid:6379/0")
    assert wait_redis.main(["--check", "dns", "--timeout", "0.5"]) == 1
    monkeypatch.delenv("SENTIMENT_REDIS_URL")
    assert wait_redis.main(["--check", "dns", "--timeout", "0.5"]) == 1
