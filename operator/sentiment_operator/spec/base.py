"""What every part of the spec shares: the base model (camelCase aliases, unknown fields refused), CEL
rules, field errors, defaults and bounds."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import sentiment_contract as C
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
)
from pydantic.alias_generators import to_camel

JsonDict = dict[str, JsonValue]

SINGULAR = "sentimentmodel"
SHORT_NAMES = ("sm",)

DEFAULT_MODEL_ID = "distilbert-base-uncased-finetuned-sst-2-english"
DEFAULT_MODEL_PATH = "/opt/sentiment/model"
DEFAULT_IMAGE = "ghcr.io/sentiment-operator/inference:0.1.0"
DEFAULT_REDIS_IMAGE = "redis:7.4-alpine"

# Child names get suffixes of up to 11 characters ("-redis-auth"); Services must be DNS-1035 labels (<= 63),
# and "<name>-canary" is the longest Service name.
MAX_NAME_LENGTH = 56
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

# Every SENTIMENT_* variable the operator sets on the server container (all are Settings fields of the
# inference server; a contract test checks that). Users may not set these through spec.env.
SERVER_ENV_NAMES: frozenset[str] = frozenset(
    {
        "SENTIMENT_MODEL_PATH",
        "SENTIMENT_MODEL_ID",
        "SENTIMENT_API_PREFIX",
        "SENTIMENT_HOST",
        "SENTIMENT_PORT",
        "SENTIMENT_MAX_LENGTH",
        "SENTIMENT_QUANTIZATION",
        "SENTIMENT_TORCH_THREADS",
        "SENTIMENT_MODEL_WORKERS",
        "SENTIMENT_MAX_BATCH_SIZE",
        "SENTIMENT_MAX_BATCH_TOKENS",
        "SENTIMENT_MAX_WAIT_MS",
        "SENTIMENT_MAX_QUEUE",
        "SENTIMENT_MAX_TEXTS_PER_REQUEST",
        "SENTIMENT_MAX_TEXT_CHARS",
        "SENTIMENT_MAX_BODY_BYTES",
        "SENTIMENT_REDIS_URL",
        "SENTIMENT_REDIS_PASSWORD",
        "SENTIMENT_REDIS_URL_FILE",
        "SENTIMENT_REDIS_PASSWORD_FILE",
        "SENTIMENT_CACHE_TTL_SECONDS",
        "SENTIMENT_LOG_LEVEL",
    }
)


class SpecFieldError(ValueError):
    """A cross-field rule failed; ``field`` is relative to the model that raised it (e.g. "minReplicas")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidSpecError(Exception):
    """A spec that cannot be served; ``field`` is a dotted path such as "spec.model.precision"."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class _Spec(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


def _cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"rule": rule, "message": message}
    if field_path is not None:
        out["fieldPath"] = field_path
        out["reason"] = "FieldValueInvalid"
    return out


def _without_default(schema: JsonDict) -> None:
    """Keep a field's default out of the CRD (pydantic still applies it)."""
    schema.pop("default", None)


def _server_setting(
    setting: C.ServerSetting,
    *,
    ge: int | None = None,
    le: int | None = None,
    description: str,
) -> Any:
    """A spec field rendered into a server setting: the shared contract's default and bounds, optionally
    narrowed (never widened), so every value the CRD admits boots the server."""
    low, high = setting.narrowed(ge=ge, le=le)
    return Field(setting.default, ge=low, le=high, description=description)


def _plain(value: Any) -> Any:
    """Deep-copy mappings/sequences (kopf hands out read-only views) into plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _relative(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out.lstrip(".")


def _dotted(loc: tuple[int | str, ...], extra: str | None) -> str:
    out = "spec"
    parts: list[int | str] = list(loc)
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    if extra:
        out += extra if extra.startswith("[") else f".{extra}"
    return out
