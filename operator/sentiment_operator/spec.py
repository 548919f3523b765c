"""The SentimentModel spec as pydantic models: the one source of truth for validation and the CRD schema.

Field names are snake_case in Python and camelCase in YAML (aliases); unknown fields are rejected. Cross-field
rules live next to the fields they check, both as Python validators (``SpecFieldError``, which names the
offending field) and as CEL rules (``x-kubernetes-validations``) copied into the generated CRD.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

import sentiment_contract as C
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from sentiment_contract import DEFAULT_BATCH_TOKENS

from .names import RESERVED_INIT_CONTAINERS, SERVER_CONTAINER, canary_name
from .podsecurity import RESTRICTED_CONTAINER_CONTEXT, container_violations, restricted_pod_context

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


# --- Kubernetes quantities -------------------------------------------------------------------------------

_QUANTITY = re.compile(
    r"^(?P<num>[0-9]+(\.[0-9]*)?|\.[0-9]+)(?P<suffix>[eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?$"
)
_QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": Decimal(10**3)}
_DECIMAL.update({"M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15)})
_DECIMAL["E"] = Decimal(10**18)


def parse_quantity(value: str | int | float) -> Decimal:
    """Parse a non-negative Kubernetes resource quantity ("500m", "1Gi", "2") into a Decimal of base units."""
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a valid Kubernetes quantity (examples: 500m, 2, 1Gi)")
    try:
        number = Decimal(match["num"])
    except InvalidOperation as exc:  # pragma: no cover - the regex only admits valid decimals
        raise ValueError(f"{text!r} is not a valid Kubernetes quantity") from exc
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    if suffix[:1] in ("e", "E"):
        return number * (Decimal(10) ** int(suffix[1:]))
    return number


def _coerce_quantity(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("a quantity must be a string or a number")
    text = str(value).strip()
    parse_quantity(text)
    return text


Quantity = Annotated[
    str,
    BeforeValidator(_coerce_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": _QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]

_REDIS_MEMORY = re.compile(r"^([0-9]+)([bB]|[kKmMgG][bB]?)?$")
_REDIS_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 10**6, "mb": 2**20, "g": 10**9, "gb": 2**30}


def parse_redis_memory(value: str) -> int:
    """Bytes of a redis.conf memory size ("256mb", "1gb", "100000")."""
    match = _REDIS_MEMORY.match(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a Redis memory size (examples: 256mb, 1gb)")
    return int(match[1]) * _REDIS_UNITS[(match[2] or "").lower()]


# --- Models ----------------------------------------------------------------------------------------------


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


class ResourceRequirements(_Spec):
    """Compute resources for a container (the requests/limits part of a Kubernetes ResourceRequirements)."""

    requests: dict[str, Quantity] = Field(
        default_factory=dict, description="Minimum resources, e.g. cpu: 500m."
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict, description="Maximum resources, e.g. memory: 2Gi."
    )

    @model_validator(mode="after")
    def _requests_within_limits(self) -> ResourceRequirements:
        for resource, request in self.requests.items():
            limit = self.limits.get(resource)
            if limit is not None and parse_quantity(request) > parse_quantity(limit):
                raise SpecFieldError(
                    f"requests.{resource}", f"request {request} is larger than the limit {limit}"
                )
        return self

    def to_k8s(self) -> dict[str, dict[str, str]]:
        """The Kubernetes ResourceRequirements dict (empty sections omitted)."""
        out: dict[str, dict[str, str]] = {}
        if self.requests:
            out["requests"] = dict(self.requests)
        if self.limits:
            out["limits"] = dict(self.limits)
        return out


class ImageSource(_Spec):
    """The model is baked into the inference image at ``path``."""

    path: str = Field(
        DEFAULT_MODEL_PATH, description="Absolute path of the model directory inside the image."
    )

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path (start with '/')")
        return value


class PvcSource(_Spec):
    """The model lives on an existing PersistentVolumeClaim, mounted read-only by default."""

    claim_name: str = Field(
        min_length=1, description="Name of the PersistentVolumeClaim in the same namespace."
    )
    sub_path: str | None = Field(None, description="Directory inside the volume that holds the model.")
    read_only: bool = Field(True, description="Mount the claim read-only.")

    @field_validator("sub_path")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("/") or ".." in value.split("/")):
            raise ValueError("must be a relative path without '..'")
        return value


class DownloadSource(_Spec):
    """An init container runs ``sentiment-fetch-model`` to download the model into a shared emptyDir."""

    revision: str = Field(
        "main", min_length=1, description="Model revision (branch, tag or commit) to fetch."
    )


class ModelSource(_Spec):
    """Where the model comes from: exactly one of image, pvc or download."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "(has(self.image) ? 1 : 0) + (has(self.pvc) ? 1 : 0) + (has(self.download) ? 1 : 0) == 1",
                    "exactly one of image, pvc or download must be set",
                )
            ]
        }
    )

    image: ImageSource | None = Field(None, description="Use the model baked into the inference image.")
    pvc: PvcSource | None = Field(None, description="Mount the model from a PersistentVolumeClaim.")
    download: DownloadSource | None = Field(None, description="Download the model in an init container.")

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        chosen = [name for name in ("image", "pvc", "download") if getattr(self, name) is not None]
        if len(chosen) != 1:
            found = ", ".join(chosen) if chosen else "none"
            raise SpecFieldError(
                "image", f"exactly one of image, pvc or download must be set (found: {found})"
            )
        return self

    @property
    def kind(self) -> Literal["image", "pvc", "download"]:
        if self.pvc is not None:
            return "pvc"
        if self.download is not None:
            return "download"
        return "image"


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


class ModelSpec(_Spec):
    """Which model to serve and how."""

    id: str = Field(
        DEFAULT_MODEL_ID, min_length=1, description="Model id reported by the server and fetched."
    )
    source: ModelSource = Field(
        ModelSource(image=ImageSource()),
        description="Where the model comes from (default: baked into the image).",
        # No default in the CRD: a stored `image: {}` would survive a later `kubectl apply` of `pvc:`.
        json_schema_extra=_without_default,
    )
    max_sequence_length: int = _server_setting(
        C.MAX_LENGTH, ge=8, description="Tokens per text after truncation."
    )
    precision: Literal["none", "int8"] = Field(
        "none", description="none = float32; int8 = dynamic int8 quantization of the linear layers."
    )


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


class _HPAScalingPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["Pods", "Percent"]
    value: int = Field(gt=0)
    period_seconds: int = Field(alias="periodSeconds", gt=0, le=1800)


class _HPAScalingRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stabilization_window_seconds: int | None = Field(None, alias="stabilizationWindowSeconds", ge=0, le=3600)
    select_policy: Literal["Max", "Min", "Disabled"] | None = Field(None, alias="selectPolicy")
    policies: list[_HPAScalingPolicy] | None = None
    tolerance: Quantity | None = None


class _HPABehavior(BaseModel):
    """Checks the passed-through HPA behavior so mistakes become InvalidSpec rather than a 422 on apply."""

    model_config = ConfigDict(extra="forbid")

    scale_up: _HPAScalingRules | None = Field(None, alias="scaleUp")
    scale_down: _HPAScalingRules | None = Field(None, alias="scaleDown")


class AutoscalingSpec(_Spec):
    """An autoscaling/v2 HorizontalPodAutoscaler; while enabled, the operator leaves replicas alone."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.minReplicas <= self.maxReplicas",
                    "minReplicas must be less than or equal to maxReplicas",
                    ".minReplicas",
                )
            ]
        },
    )

    enabled: bool = Field(True, description="Create the HPA.")
    min_replicas: int = Field(1, ge=1, description="Lower bound of replicas.")
    max_replicas: int = Field(10, ge=1, description="Upper bound of replicas.")
    target_cpu_utilization_percentage: int = Field(
        70, ge=1, le=1000, alias="targetCPUUtilizationPercentage", description="Average CPU, % of requests."
    )
    target_memory_utilization_percentage: int | None = Field(
        None, ge=1, le=1000, alias="targetMemoryUtilizationPercentage", description="Optional memory target."
    )
    behavior: dict[str, Any] | None = Field(
        None, description="autoscaling/v2 HorizontalPodAutoscalerBehavior, passed through unchanged."
    )

    @field_validator("behavior")
    @classmethod
    def _behavior(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                _HPABehavior.model_validate(value)
            except ValidationError as exc:
                error = exc.errors(include_url=False)[0]
                message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
                raise SpecFieldError(_relative(error["loc"]), message) from None
        return value

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise SpecFieldError(
                "minReplicas",
                f"minReplicas ({self.min_replicas}) must be less than or equal to maxReplicas "
                f"({self.max_replicas})",
            )
        return self


class CanarySpec(_Spec):
    """A second Deployment (other image and/or model) that gets ``weight`` percent of the routed traffic."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("self.weight >= 0 && self.weight <= 100", "weight must be between 0 and 100", ".weight")
            ]
        }
    )

    image: str | None = Field(None, min_length=1, description="Canary image (default: spec.image).")
    model: ModelSpec | None = Field(None, description="Canary model (default: spec.model).")
    weight: int = Field(10, ge=0, le=100, description="Percent of gateway traffic sent to the canary.")


class RoutingSpec(_Spec):
    """An Istio VirtualService that routes a path prefix on gateway(s) to the model."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("!has(self.canary) || self.enabled", "canary requires routing to be enabled", ".canary")
            ]
        }
    )

    enabled: bool = Field(False, description="Create the VirtualService.")
    gateways: list[str] = Field(
        ["istio-ingress/sentiment-gateway"], min_length=1, description="Istio gateways (namespace/name)."
    )
    hosts: list[str] = Field(["*"], min_length=1, description="Hosts the route applies to.")
    path_prefix: str | None = Field(
        None,
        description="Gateway path prefix (default: server.pathPrefix); rewritten to the server's prefix.",
        json_schema_extra={"pattern": _PATH_PREFIX.pattern},
    )
    canary: CanarySpec | None = Field(None, description="Optional canary with a traffic weight.")

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        return _check_path_prefix(value)

    @model_validator(mode="after")
    def _canary_needs_routing(self) -> RoutingSpec:
        if self.canary is not None and not self.enabled:
            raise SpecFieldError(
                "canary", "a canary needs routing.enabled: true (it only gets routed traffic)"
            )
        return self


class AllowFrom(_Spec):
    """A peer allowed to reach the inference server."""

    namespace: str = Field(min_length=1, description="Namespace whose pods may connect (e.g. the gateway's).")


class NetworkPolicySpec(_Spec):
    """NetworkPolicies: Redis only from this model's pods; the server only from the listed namespaces."""

    enabled: bool = Field(True, description="Create the NetworkPolicies.")
    allow_from: list[AllowFrom] = Field(
        [AllowFrom(namespace="istio-ingress")],
        description="Namespaces allowed to reach the server (pods of this model are always allowed).",
    )


class DisruptionBudgetSpec(_Spec):
    """A PodDisruptionBudget for the server pods whenever more than one is wanted: voluntary evictions (node
    drains, cluster upgrades) then take them down a few at a time instead of all at once."""

    enabled: bool = Field(
        True, description="Create the PodDisruptionBudget when more than one pod is wanted."
    )
    max_unavailable: int = Field(1, ge=1, description="Server pods one voluntary disruption may take down.")


_CONTAINER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class SentimentModelSpec(_Spec):
    """The desired state of one sentiment-analysis service."""

    model: ModelSpec = Field(ModelSpec(), description="The model to serve.")
    image: str = Field(DEFAULT_IMAGE, min_length=1, description="Inference server image.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="Image pull policy of every container from the inference image."
    )
    replicas: int = Field(1, ge=0, description="Server replicas; used only when autoscaling is disabled.")
    resources: ResourceRequirements = Field(
        ResourceRequirements(requests={"cpu": "1", "memory": "1Gi"}, limits={"cpu": "3", "memory": "2Gi"}),
        description="Server container resources (HPA CPU/memory targets are relative to the requests).",
    )
    env: list[dict[str, Any]] = Field(
        [],
        description="Extra environment variables (Kubernetes EnvVar objects) for the server container.",
        json_schema_extra={
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}},
                "x-kubernetes-preserve-unknown-fields": True,
            }
        },
    )
    node_selector: dict[str, str] = Field({}, description="Node labels the server pods must match.")
    tolerations: list[dict[str, Any]] = Field([], description="Kubernetes Tolerations of the server pods.")
    topology_spread: list[dict[str, Any]] | None = Field(
        None,
        description="Kubernetes TopologySpreadConstraints of the server pods. Unset: spread across nodes "
        "and zones (maxSkew 1, ScheduleAnyway); [] for none. A constraint without labelSelector selects "
        "this model's server pods.",
    )
    disruption_budget: DisruptionBudgetSpec = Field(
        DisruptionBudgetSpec(), description="PodDisruptionBudget of the server pods."
    )
    init_containers: list[dict[str, Any]] = Field(
        [],
        description="Extra init containers (Kubernetes Container objects), run after the operator's own.",
        json_schema_extra={
            "items": {
                "type": "object",
                "required": ["name", "image"],
                "properties": {"name": {"type": "string"}, "image": {"type": "string"}},
                "x-kubernetes-preserve-unknown-fields": True,
            }
        },
    )
    pod_security: Literal["restricted", "baseline"] = Field(
        "restricted",
        description='Pod Security level of the server pods; "baseline" is an explicit opt-out for images '
        "that need a writable root filesystem or root.",
    )
    server: ServerSpec = Field(ServerSpec(), description="Server settings.")
    # CRD default {}, not {managed: {}}: a stored managed block would clash with a later `external:`.
    cache: CacheSpec = Field(CacheSpec(), description="Prediction cache.", json_schema_extra={"default": {}})
    autoscaling: AutoscalingSpec = Field(AutoscalingSpec(), description="Horizontal pod autoscaling.")
    routing: RoutingSpec = Field(RoutingSpec(), description="Istio routing.")
    network_policy: NetworkPolicySpec = Field(NetworkPolicySpec(), description="Network isolation.")

    @field_validator("topology_spread")
    @classmethod
    def _topology_spread(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for index, item in enumerate(value or []):
            missing = [key for key in ("maxSkew", "topologyKey", "whenUnsatisfiable") if key not in item]
            if missing:
                raise SpecFieldError(f"[{index}]", f"a TopologySpreadConstraint needs {', '.join(missing)}")
            if item["whenUnsatisfiable"] not in ("DoNotSchedule", "ScheduleAnyway"):
                raise SpecFieldError(
                    f"[{index}].whenUnsatisfiable", "must be DoNotSchedule or ScheduleAnyway"
                )
            if (
                not isinstance(item["maxSkew"], int)
                or isinstance(item["maxSkew"], bool)
                or item["maxSkew"] < 1
            ):
                raise SpecFieldError(f"[{index}].maxSkew", "must be an integer of at least 1")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen: set[str] = set()
        for index, item in enumerate(value):
            name = item.get("name")
            if not isinstance(name, str) or not _ENV_NAME.match(name):
                raise SpecFieldError(f"[{index}].name", "must be a valid environment variable name")
            if name in SERVER_ENV_NAMES:
                raise SpecFieldError(f"[{index}].name", f"{name} is set by the operator from the spec")
            if name in seen:
                raise SpecFieldError(f"[{index}].name", f"{name} is listed twice")
            seen.add(name)
        return value

    @field_validator("init_containers")
    @classmethod
    def _init_containers(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen: set[str] = set()
        for index, item in enumerate(value):
            name = item.get("name")
            if not isinstance(name, str) or not _CONTAINER_NAME.match(name) or len(name) > 63:
                raise SpecFieldError(f"[{index}].name", "must be a DNS-1123 label")
            if name in RESERVED_INIT_CONTAINERS or name == SERVER_CONTAINER or name in seen:
                raise SpecFieldError(f"[{index}].name", f"{name!r} is already used by another container")
            seen.add(name)
            if not isinstance(item.get("image"), str) or not item["image"]:
                raise SpecFieldError(f"[{index}].image", "is required")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> SentimentModelSpec:
        models = [("model", self.model)]
        if self.routing.canary is not None and self.routing.canary.model is not None:
            models.append(("routing.canary.model", self.routing.canary.model))
        budget = self.server.batching.max_batch_tokens
        for where, model in models:
            if budget is not None and budget < model.max_sequence_length:
                raise SpecFieldError(
                    "server.batching.maxBatchTokens",
                    f"{budget} cannot hold one text of "
                    f"{where}.maxSequenceLength={model.max_sequence_length} tokens",
                )
        if self.pod_security == "restricted":
            pod_context = restricted_pod_context(10001)
            for index, user in enumerate(self.init_containers):
                merged = {**RESTRICTED_CONTAINER_CONTEXT, **(user.get("securityContext") or {})}
                problems = container_violations({**user, "securityContext": merged}, pod_context, "container")
                if problems:
                    raise SpecFieldError(
                        f"initContainers[{index}].securityContext",
                        f"{'; '.join(p.removeprefix('container: ') for p in problems)} under podSecurity "
                        "restricted (set podSecurity: baseline to opt out)",
                    )
        return self

    # --- derived values used by the builders and the status -------------------------------------------------

    def effective_max_batch_tokens(self, model: ModelSpec | None = None) -> int:
        """The padded-token budget of a pod serving ``model``: maxBatchTokens, or when unset
        max(DEFAULT_BATCH_TOKENS, its maxSequenceLength). Without ``model``: the largest over the stable
        and the canary model."""
        if self.server.batching.max_batch_tokens is not None:
            return self.server.batching.max_batch_tokens
        if model is None:
            models = [self.model]
            if self.routing.canary is not None and self.routing.canary.model is not None:
                models.append(self.routing.canary.model)
            return max(self.effective_max_batch_tokens(m) for m in models)
        return C.batch_token_budget(None, model.max_sequence_length)

    def path_prefix(self, name: str) -> str:
        """The server's path prefix, defaulting to "/<name>"."""
        return self.server.path_prefix or f"/{name}"

    def gateway_prefix(self, name: str) -> str:
        """The path prefix on the gateway, defaulting to the server's."""
        return self.routing.path_prefix or self.path_prefix(name)


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


def check_name(name: str) -> None:
    """Child names derive from metadata.name, so it must be a short DNS-1035 label."""
    if not _DNS1035.match(name) or len(name) > MAX_NAME_LENGTH:
        raise InvalidSpecError(
            "metadata.name",
            f"{name!r} must be a DNS-1035 label (lowercase letters, digits, '-', starting with a letter) "
            f"of at most {MAX_NAME_LENGTH} characters, so that child names like {canary_name(name)} "
            "are valid",
        )


def parse_spec(name: str, spec: Mapping[str, Any] | None) -> SentimentModelSpec:
    """Validate a SentimentModel's spec and resolve name-dependent defaults.

    Raises InvalidSpecError naming the first offending field (dotted path from "spec").
    """
    check_name(name)
    raw = _plain(spec) if spec is not None else {}
    if not isinstance(raw, dict):
        raise InvalidSpecError("spec", "must be an object")
    try:
        parsed = SentimentModelSpec.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        ctx_error = (error.get("ctx") or {}).get("error")
        if isinstance(ctx_error, SpecFieldError):
            raise InvalidSpecError(_dotted(error["loc"], ctx_error.field), ctx_error.message) from None
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        raise InvalidSpecError(_dotted(error["loc"], None), message) from None
    server = parsed.server.model_copy(update={"path_prefix": parsed.path_prefix(name)})
    return parsed.model_copy(update={"server": server})
