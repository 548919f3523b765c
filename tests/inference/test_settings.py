"""The server's batch token budget: 512 by default, raised to SENTIMENT_MAX_LENGTH, an explicit value wins."""

from __future__ import annotations

import pytest
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
