"""Derived settings: the batch token budget (512, raised to SENTIMENT_MAX_LENGTH), the model workers and the
secret files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError
from sentiment_inference.app import batch_limits
from sentiment_inference.batching import BatchLimits
from sentiment_inference.settings import DEFAULT_BATCH_TOKENS, Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTIMENT_MAX_BATCH_TOKENS", raising=False)
    monkeypatch.delenv("SENTIMENT_MAX_LENGTH", raising=False)


def test_unset_budget_is_512() -> None:
    settings = Settings()
    assert settings.max_batch_tokens is None
    assert settings.effective_max_batch_tokens == DEFAULT_BATCH_TOKENS == 512
    assert batch_limits(settings).max_batch_tokens == 512
    assert BatchLimits().max_batch_tokens == 512


def test_unset_budget_holds_one_full_length_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTIMENT_MAX_LENGTH", "1024")
    assert Settings().effective_max_batch_tokens == 1024
    assert batch_limits(Settings()).max_batch_tokens == 1024
    monkeypatch.setenv("SENTIMENT_MAX_LENGTH", "128")
    assert Settings().effective_max_batch_tokens == 512


def test_explicit_budget_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTIMENT_MAX_LENGTH", "1024")
    monkeypatch.setenv("SENTIMENT_MAX_BATCH_TOKENS", "256")
    settings = Settings()
    assert (settings.max_batch_tokens, settings.effective_max_batch_tokens) == (256, 256)
    assert batch_limits(settings).max_batch_tokens == 256
    monkeypatch.setenv("SENTIMENT_MAX_BATCH_TOKENS", "8192")
    assert Settings().effective_max_batch_tokens == 8192
    monkeypatch.setenv("SENTIMENT_MAX_BATCH_TOKENS", "8")
    with pytest.raises(ValueError, match="greater than or equal to 16"):
        Settings()


def test_model_workers_default_to_one_per_usable_cpu_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    from sentiment_inference import cpus

    for name in list(os.environ):
        if name.startswith("SENTIMENT_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(cpus, "usable_cpus", lambda: 2)
    assert Settings().model_workers == 0
    assert Settings().effective_model_workers == 2
    monkeypatch.setattr(cpus, "usable_cpus", lambda: 48)
    assert Settings().effective_model_workers == 8  # MAX_AUTO_WORKERS
    monkeypatch.setenv("SENTIMENT_MODEL_WORKERS", "3")
    assert Settings().effective_model_workers == 3  # explicit wins, even above the auto cap


def test_torch_threads_are_split_between_workers(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sentiment_inference import backend as backend_module

    monkeypatch.setattr(backend_module, "usable_cpus", lambda: 4)
    loaded = backend_module.TorchBackend(Settings(model_path=str(tiny_model_dir), model_workers=2))
    loaded.load()
    assert loaded.info.torch_threads == 2
    explicit = backend_module.TorchBackend(
        Settings(model_path=str(tiny_model_dir), model_workers=2, torch_threads=3)
    )
    explicit.load()
    assert explicit.info.torch_threads == 3  # SENTIMENT_TORCH_THREADS is per worker


def test_redis_secrets_come_from_files_before_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "url").write_text("redis://cache:6379/0\n")
    (tmp_path / "password").write_text("s3cret\n")
    monkeypatch.setenv("SENTIMENT_REDIS_URL", "redis://ignored:6379/0")
    monkeypatch.setenv("SENTIMENT_REDIS_PASSWORD", "ignored")
    monkeypatch.setenv("SENTIMENT_REDIS_URL_FILE", str(tmp_path / "url"))
    monkeypatch.setenv("SENTIMENT_REDIS_PASSWORD_FILE", str(tmp_path / "password"))
    settings = Settings()
    assert settings.redis_url == "redis://cache:6379/0"
    assert settings.redis_password is not None
    assert settings.redis_password.get_secret_value() == "s3cret"
    # The secret never shows in the settings' repr (logged at start-up).
    assert "s3cret" not in repr(settings)


def test_an_unreadable_secret_file_names_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTIMENT_REDIS_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValidationError, match=r"SENTIMENT_REDIS_PASSWORD_FILE=.*missing: cannot read it"):
        Settings()
