"""The Redis prediction cache: managed by the operator, external, or off."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import sentiment_contract as C
from pydantic import (
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from .base import DEFAULT_REDIS_IMAGE, SpecFieldError, _cel, _server_setting, _Spec
from .model import ResourceRequirements
from .quantities import _REDIS_MEMORY, parse_quantity, parse_redis_memory


class SecretKeyRef(_Spec):
    """A key of a Secret in the SentimentModel's namespace."""

    name: str = Field(min_length=1, description="Secret name.")
    key: str = Field(min_length=1, description="Key inside the Secret.")


class ManagedRedis(_Spec):
    """A single-replica Redis run by the operator: no persistence, LRU eviction, generated password."""

    image: str = Field(DEFAULT_REDIS_IMAGE, min_length=1, description="Redis image.")
    resources: ResourceRequirements = Field(
        ResourceRequirements(
            requests={"cpu": "200m", "memory": "300Mi"}, limits={"cpu": "500m", "memory": "500Mi"}
        ),
        description="Redis container resources.",
    )
    max_memory: str = Field(
        "256mb",
        description="Redis maxmemory (LRU keys are evicted beyond it); keep it below the memory limit.",
        json_schema_extra={"pattern": _REDIS_MEMORY.pattern},
    )

    @field_validator("max_memory")
    @classmethod
    def _memory_size(cls, value: str) -> str:
        parse_redis_memory(value)
        return value

    @model_validator(mode="after")
    def _fits_in_limit(self) -> ManagedRedis:
        limit = self.resources.limits.get("memory")
        if limit is not None and parse_redis_memory(self.max_memory) >= parse_quantity(limit):
            raise SpecFieldError(
                "maxMemory",
                f"{self.max_memory} must be smaller than the memory limit {limit} of the container",
            )
        return self


class ExternalRedis(_Spec):
    """A Redis the user runs; the URL (redis:// or rediss://) comes from a Secret."""

    url_secret_ref: SecretKeyRef = Field(description="Secret key holding the Redis URL.")
    password_secret_ref: SecretKeyRef | None = Field(
        None, description="Optional Secret key holding the Redis password (applied on top of the URL)."
    )


class CacheSpec(_Spec):
    """Prediction cache shared by all pods of the model."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!(has(self.managed) && has(self.external))",
                    "managed and external are mutually exclusive",
                    ".external",
                )
            ]
        }
    )

    enabled: bool = Field(True, description="Use a Redis cache (otherwise only the in-process LRU).")
    ttl_seconds: int = _server_setting(
        C.CACHE_TTL_SECONDS,
        description="Lifetime of cached predictions.",
    )
    managed: ManagedRedis | None = Field(None, description="Operator-managed Redis (the default).")
    external: ExternalRedis | None = Field(None, description="Use an existing Redis instead.")

    @model_validator(mode="before")
    @classmethod
    def _default_managed(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("managed") is None and data.get("external") is None:
            return {**data, "managed": {}}
        return data

    @model_validator(mode="after")
    def _exclusive(self) -> CacheSpec:
        if self.managed is not None and self.external is not None:
            raise SpecFieldError("external", "managed and external are mutually exclusive; set only one")
        return self

    @property
    def mode(self) -> Literal["managed", "external", "disabled"]:
        if not self.enabled:
            return "disabled"
        return "external" if self.external is not None else "managed"
