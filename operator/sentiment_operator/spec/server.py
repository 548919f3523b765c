"""The inference server's settings: port, threads, batching and input limits."""

from __future__ import annotations

import re
from typing import Literal

import sentiment_contract as C
from pydantic import (
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from sentiment_contract import DEFAULT_BATCH_TOKENS

from .base import SpecFieldError, _cel, _server_setting, _Spec


class Batching(_Spec):
    """Dynamic batching of concurrent requests inside one server pod."""

    max_batch_size: int = _server_setting(C.MAX_BATCH_SIZE, description="Texts per forward pass.")
    max_batch_tokens: int | None = _server_setting(
        C.MAX_BATCH_TOKENS,
        description=f"Padded tokens per forward pass (default: max({DEFAULT_BATCH_TOKENS}, the pod's "
        "model.maxSequenceLength)); must be at least every maxSequenceLength.",
    )
    max_wait_ms: int = _server_setting(C.MAX_WAIT_MS, description="How long a batch waits for more texts.")
    max_queue: int = _server_setting(
        C.MAX_QUEUE,
        description="Texts waiting; beyond this the server answers 429.",
    )


class InputLimits(_Spec):
    """Per-request input limits (larger requests are rejected with a 4xx)."""

    max_texts_per_request: int = _server_setting(
        C.MAX_TEXTS_PER_REQUEST,
        description="Texts in one request.",
    )
    max_text_chars: int = _server_setting(C.MAX_TEXT_CHARS, description="Characters in one text.")
    max_body_bytes: int = _server_setting(
        C.MAX_BODY_BYTES,
        description="Bytes of one request body (the server needs at least 64).",
    )


_PATH_PREFIX = re.compile(r"^/$|^(/[A-Za-z0-9._~-]+)+$")


def _check_path_prefix(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith("/"):
        raise ValueError("must start with '/'")
    if not _PATH_PREFIX.match(value):
        raise ValueError("must be '/' or '/segment[/segment...]' of [A-Za-z0-9._~-] without a trailing '/'")
    if any(segment in (".", "..") for segment in value.split("/")):
        # Clients normalize dot segments away (RFC 3986), and Gateway API refuses them in path matches.
        raise ValueError("must not contain '.' or '..' segments")
    return value


class ServerSpec(_Spec):
    """The inference server's settings (passed as SENTIMENT_* environment variables)."""

    # The server refuses to start when one full request could never fit in its queue.
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "(has(self.batching) && has(self.batching.maxQueue) ? self.batching.maxQueue : "
                    f"{Batching().max_queue}) >= (has(self.limits) && has(self.limits.maxTextsPerRequest) "
                    f"? self.limits.maxTextsPerRequest : {InputLimits().max_texts_per_request})",
                    "batching.maxQueue must be at least limits.maxTextsPerRequest",
                    ".batching.maxQueue",
                )
            ]
        }
    )

    path_prefix: str | None = Field(
        None,
        description='URL prefix of every endpoint, e.g. "/project"; default "/" + metadata.name.',
        json_schema_extra={"pattern": _PATH_PREFIX.pattern},
    )
    port: int = _server_setting(C.PORT, ge=1024, description="Container and Service port (unprivileged).")
    torch_threads: int = _server_setting(
        C.TORCH_THREADS,
        description="torch intra-op threads per model worker; 0 = derive from the CPU limit, "
        "split between the model workers.",
    )
    model_workers: int = _server_setting(
        C.MODEL_WORKERS,
        description="Model worker threads, each running one batch at a time, side by side; 0 = one per CPU "
        "the container may use (at most 8). More workers: more texts/s under load; 1: the lowest latency "
        "for a lone request at low traffic.",
    )
    batching: Batching = Field(Batching(), description="Dynamic batching.")
    limits: InputLimits = Field(InputLimits(), description="Request input limits.")
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        "info", description="Log level."
    )

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        return _check_path_prefix(value)

    @model_validator(mode="after")
    def _queue_holds_a_request(self) -> ServerSpec:
        if self.batching.max_queue < self.limits.max_texts_per_request:
            raise SpecFieldError(
                "batching.maxQueue",
                f"{self.batching.max_queue} is below limits.maxTextsPerRequest="
                f"{self.limits.max_texts_per_request}: a full request could never be queued",
            )
        return self
