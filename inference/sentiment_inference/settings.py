"""The server's configuration: one pydantic-settings class read from ``SENTIMENT_*`` environment variables.

The README's env-var table is generated from the field descriptions, and the operator may only set names that
exist here (checked by a contract test), so every field carries a ``description``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import sentiment_contract as C
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sentiment_contract import DEFAULT_BATCH_TOKENS, ENV_PREFIX

from sentiment_inference import cpus

MAX_AUTO_WORKERS = 8  # more single-threaded workers mostly contend for the GIL between operations


def _setting(setting: C.ServerSetting, *, description: str) -> Any:
    """A field whose default and bounds are the shared contract's (the operator renders within them)."""
    return Field(setting.default, ge=setting.ge, le=setting.le, description=description)


class Settings(BaseSettings):
    """All server settings; environment variable = ``SENTIMENT_`` + the upper-cased field name."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        protected_namespaces=(),
        validate_default=True,
    )

    model_path: str = Field(
        "/opt/sentiment/model",
        description="Directory holding the model and tokenizer (save_pretrained layout). "
        "A hub id is accepted only with SENTIMENT_ALLOW_DOWNLOAD=true.",
    )
    model_id: str = Field(
        "distilbert-base-uncased-finetuned-sst-2-english",
        description="Model id shown by GET {prefix}/model (display only; the weights come from MODEL_PATH).",
    )
    allow_download: bool = Field(
        False,
        description="Allow MODEL_PATH to be a Hugging Face hub id downloaded at start-up "
        "(off: only local files are read).",
    )
    api_prefix: str = Field(
        "",
        description='Path prefix of every API route, e.g. "/project" (empty: routes at the root). '
        "/metrics, /docs and /openapi.json stay at the root.",
    )
    host: str = Field("0.0.0.0", description="Address sentiment-serve binds to.")
    port: int = _setting(C.PORT, description="Port sentiment-serve listens on.")
    max_length: int = _setting(
        C.MAX_LENGTH,
        description="Maximum sequence length in tokens; longer texts are truncated "
        "(capped at the model's position embeddings).",
    )
    quantization: Literal["none", "int8"] = Field(
        "none",
        description="Precision: none (fp32) or int8 (dynamic quantization of the Linear layers).",
    )
    runtime: Literal["auto", "transformers"] = Field(
        "auto",
        description="auto: DistilBERT checkpoints (model.safetensors + tokenizer.json) run on the built-in "
        "packed runtime (no padding, no transformers import, same answers), anything else on transformers; "
        "transformers: always transformers' AutoModelForSequenceClassification.",
    )
    torch_threads: int = _setting(
        C.TORCH_THREADS,
        description="torch intra-op threads per model worker (0 = the CPUs this container may use, from the "
        "cgroup quota and CPU affinity, split between the workers).",
    )
    model_workers: int = _setting(
        C.MODEL_WORKERS,
        description="Model worker threads, each running one batch at a time, side by side (0 = one per CPU "
        "this container may use, at most 8). With SENTIMENT_TORCH_THREADS=0 the CPUs are split between them. "
        "1 = one batch at a time on all CPUs: the lowest latency for a lone request, less throughput.",
    )
    max_batch_size: int = _setting(C.MAX_BATCH_SIZE, description="Most texts in one model batch.")
    max_batch_tokens: int | None = _setting(
        C.MAX_BATCH_TOKENS,
        description="Most padded tokens (texts x longest text) in one model batch "
        f"(unset: max({DEFAULT_BATCH_TOKENS}, SENTIMENT_MAX_LENGTH); a longer text still runs, alone).",
    )
    max_wait_ms: float = _setting(
        C.MAX_WAIT_MS,
        description="How long the batcher waits for more texts when the queue holds less than one full "
        "batch (0 = run as soon as the model is free).",
    )
    max_queue: int = _setting(
        C.MAX_QUEUE,
        description="Most texts waiting for the model; beyond it requests get 429 with Retry-After at once.",
    )
    retry_after_seconds: int = Field(
        1, ge=0, le=3600, description="Retry-After value (seconds) sent with 429 and 503 answers."
    )
    max_texts_per_request: int = _setting(
        C.MAX_TEXTS_PER_REQUEST,
        description="Most texts in one request (else 413).",
    )
    max_text_chars: int = _setting(
        C.MAX_TEXT_CHARS,
        description="Most characters in one text (else 413).",
    )
    max_body_bytes: int = _setting(
        C.MAX_BODY_BYTES,
        description="Largest request body in bytes, enforced before parsing (else 413).",
    )
    redis_url: str | None = Field(
        None,
        description="Redis URL for the shared prediction cache, e.g. redis://cache:6379/0 "
        "(unset: an in-process LRU cache).",
    )
    redis_password: SecretStr | None = Field(
        None, description="Redis password; overrides any password inside REDIS_URL."
    )
    redis_url_file: Path | None = Field(
        None,
        description="File holding the Redis URL (e.g. a mounted Secret key), read at start-up; "
        "takes precedence over REDIS_URL.",
    )
    redis_password_file: Path | None = Field(
        None,
        description="File holding the Redis password (e.g. a mounted Secret key), read at start-up; "
        "takes precedence over REDIS_PASSWORD. Files keep secrets out of the environment.",
    )
    cache_ttl_seconds: int = _setting(
        C.CACHE_TTL_SECONDS,
        description="Lifetime of a cached prediction in Redis.",
    )
    cache_timeout_ms: int = Field(
        50,
        ge=1,
        le=60_000,
        description="Redis connect/socket timeout; a slower answer counts as a cache miss.",
    )
    cache_health_check_interval: int = Field(
        15,
        ge=0,
        description="Seconds a pooled Redis connection may idle before it is checked with PING before use.",
    )
    local_cache_size: int = Field(
        10_000, ge=0, description="Entries in the in-process LRU cache used without REDIS_URL (0 = off)."
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="Log level of the server (critical, error, warning, info, debug)."
    )
    access_log: bool = Field(False, description="Log every HTTP request (uvicorn access log).")
    shutdown_delay_seconds: float = Field(
        0.0,
        ge=0,
        le=300,
        description="On SIGTERM keep serving this long with readiness 503 (lets endpoints drain) before "
        "closing the listener.",
    )
    graceful_shutdown_seconds: float = Field(
        20.0,
        ge=0,
        description="On SIGTERM readiness turns 503 at once; in-flight requests get this long to finish.",
    )

    @model_validator(mode="after")
    def _queue_fits_a_request(self) -> Settings:
        # Otherwise a full-size request could never be queued and would always get 429.
        if self.max_queue < self.max_texts_per_request:
            raise ValueError(
                f"SENTIMENT_MAX_QUEUE ({self.max_queue}) must be at least "
                f"SENTIMENT_MAX_TEXTS_PER_REQUEST ({self.max_texts_per_request})"
            )
        return self

    @model_validator(mode="after")
    def _read_secret_files(self) -> Settings:
        if self.redis_url_file is not None:
            self.redis_url = _read_secret(self.redis_url_file, "REDIS_URL_FILE") or None
        if self.redis_password_file is not None:
            self.redis_password = SecretStr(_read_secret(self.redis_password_file, "REDIS_PASSWORD_FILE"))
        return self

    @property
    def effective_model_workers(self) -> int:
        """SENTIMENT_MODEL_WORKERS, with 0 resolved to one worker per usable CPU (at most 8)."""
        return self.model_workers or min(cpus.usable_cpus(), MAX_AUTO_WORKERS)

    @property
    def effective_max_batch_tokens(self) -> int:
        """SENTIMENT_MAX_BATCH_TOKENS, or max(DEFAULT_BATCH_TOKENS, max_length) when it is unset."""
        return C.batch_token_budget(self.max_batch_tokens, self.max_length)

    @field_validator("api_prefix")
    @classmethod
    def _normalize_prefix(cls, value: str) -> str:
        value = value.strip()
        if value in ("", "/"):
            return ""
        if not value.startswith("/"):
            value = "/" + value
        return value.rstrip("/")

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("redis_url", mode="before")
    @classmethod
    def _empty_url_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value


def _read_secret(path: Path, setting: str) -> str:
    """A secret file's content without its trailing newline; a clear error naming the setting otherwise."""
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"{ENV_PREFIX}{setting}={path}: cannot read it ({exc.strerror or exc})") from None


def env_var_names() -> list[str]:
    """Every environment variable the server reads (used by the operator contract test and the README)."""
    return [ENV_PREFIX + name.upper() for name in Settings.model_fields]
