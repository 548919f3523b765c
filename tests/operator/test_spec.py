"""SentimentModel spec validation: defaults, every rejected field named precisely, quantity parsing."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import pytest
from sentiment_operator.spec import (
    DEFAULT_IMAGE,
    DEFAULT_MODEL_ID,
    DEFAULT_MODEL_PATH,
    InvalidSpecError,
    SentimentModelSpec,
    parse_quantity,
    parse_redis_memory,
    parse_spec,
)


def test_empty_spec_takes_the_documented_defaults() -> None:
    spec = parse_spec("project", {})
    assert spec.model.id == DEFAULT_MODEL_ID
    assert spec.model.source.kind == "image"
    assert spec.model.source.image is not None
    assert spec.model.source.image.path == DEFAULT_MODEL_PATH
    assert spec.model.max_sequence_length == 512
    assert spec.model.precision == "none"
    assert spec.image == DEFAULT_IMAGE
    assert spec.image_pull_policy == "IfNotPresent"
    assert spec.resources.requests == {"cpu": "1", "memory": "1Gi"}
    assert spec.resources.limits == {"cpu": "3", "memory": "2Gi"}
    assert spec.pod_security == "restricted"
    assert spec.server.path_prefix == "/project"  # resolved from metadata.name
    assert spec.server.port == 8000
    assert spec.server.torch_threads == 0
    assert spec.server.model_workers == 0  # 0 = the server picks one worker per usable CPU
    assert spec.server.batching.max_batch_size == 32
    assert spec.server.limits.max_body_bytes == 1048576
    assert spec.cache.mode == "managed"
    assert spec.cache.managed is not None
    assert spec.cache.managed.image == "redis:7.4-alpine"
    assert spec.cache.managed.max_memory == "256mb"
    assert spec.cache.managed.resources.requests == {"cpu": "200m", "memory": "300Mi"}
    assert spec.cache.managed.resources.limits == {"cpu": "500m", "memory": "500Mi"}
    assert spec.autoscaling.enabled
    assert (spec.autoscaling.min_replicas, spec.autoscaling.max_replicas) == (1, 10)
    assert spec.autoscaling.target_cpu_utilization_percentage == 70
    assert spec.autoscaling.target_memory_utilization_percentage is None
    assert not spec.routing.enabled
    assert spec.routing.gateways == ["istio-ingress/sentiment-gateway"]
    assert spec.gateway_prefix("project") == "/project"
    assert spec.network_policy.enabled
    assert spec.routing.provider == "auto"
    assert spec.network_policy.allow_from == []
    assert spec.network_policy.gateway is None  # the routing provider's default data plane


def test_batch_token_budget_defaults_to_512_or_the_longest_sequence() -> None:
    default = parse_spec("a", {})
    assert default.server.batching.max_batch_tokens is None
    assert default.effective_max_batch_tokens() == 512
    assert default.effective_max_batch_tokens(default.model) == 512
    short = parse_spec("a", {"model": {"maxSequenceLength": 128}})
    assert short.effective_max_batch_tokens(short.model) == 512
    long = parse_spec("a", {"model": {"maxSequenceLength": 1024}})
    assert long.effective_max_batch_tokens() == 1024
    explicit = parse_spec(
        "a", {"model": {"maxSequenceLength": 1024}, "server": {"batching": {"maxBatchTokens": 4096}}}
    )
    assert explicit.effective_max_batch_tokens() == 4096
    assert explicit.effective_max_batch_tokens(explicit.model) == 4096
    # Unset, a maxSequenceLength up to the 8192 maximum stays valid (the budget follows it).
    assert parse_spec("a", {"model": {"maxSequenceLength": 8192}}).effective_max_batch_tokens() == 8192


def test_batch_token_budget_covers_a_longer_canary_model() -> None:
    spec = parse_spec(
        "a",
        {
            "model": {"maxSequenceLength": 256},
            "routing": {"enabled": True, "canary": {"model": {"maxSequenceLength": 2048}}},
        },
    )
    canary = spec.routing.canary
    assert canary is not None
    assert canary.model is not None
    assert spec.effective_max_batch_tokens() == 2048
    assert spec.effective_max_batch_tokens(spec.model) == 512
    assert spec.effective_max_batch_tokens(canary.model) == 2048
    with pytest.raises(InvalidSpecError) as info:
        parse_spec(
            "a",
            {
                "server": {"batching": {"maxBatchTokens": 1024}},
                "routing": {"enabled": True, "canary": {"model": {"maxSequenceLength": 2048}}},
            },
        )
    assert "spec.server.batching.maxBatchTokens" in str(info.value)
    assert "routing.canary.model.maxSequenceLength=2048" in str(info.value)


def test_none_spec_is_the_empty_spec() -> None:
    assert parse_spec("a", None) == parse_spec("a", {})


def test_yaml_names_round_trip() -> None:
    raw = {
        "model": {
            "id": "m",
            "source": {"pvc": {"claimName": "models", "subPath": "sst2"}},
            "precision": "int8",
        },
        "imagePullPolicy": "Always",
        "server": {"pathPrefix": "/x", "batching": {"maxBatchTokens": 4096}, "logLevel": "debug"},
        "cache": {"external": {"urlSecretRef": {"name": "r", "key": "url"}}},
        "autoscaling": {"targetCPUUtilizationPercentage": 50, "targetMemoryUtilizationPercentage": 80},
        "routing": {"enabled": True, "pathPrefix": "/gw", "canary": {"weight": 25}},
        "networkPolicy": {"allowFrom": [{"namespace": "a"}, {"namespace": "b"}]},
    }
    spec = parse_spec("demo", raw)
    assert spec.model.source.kind == "pvc"
    assert spec.cache.mode == "external"
    assert spec.autoscaling.target_cpu_utilization_percentage == 50
    assert spec.gateway_prefix("demo") == "/gw"
    dumped = spec.model_dump(by_alias=True, exclude_none=True)
    assert dumped["autoscaling"]["targetCPUUtilizationPercentage"] == 50
    assert dumped["model"]["source"]["pvc"]["claimName"] == "models"
    assert parse_spec("demo", dumped) == spec


class _KopfLikeView(Mapping[str, Any]):
    """kopf hands handlers read-only Mapping views, not dicts."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def test_accepts_read_only_mapping_views() -> None:
    view = _KopfLikeView({"replicas": 3, "autoscaling": _KopfLikeView({"enabled": False})})
    spec = parse_spec("demo", view)
    assert spec.replicas == 3
    assert not spec.autoscaling.enabled


def test_cache_disabled_and_modes() -> None:
    assert parse_spec("a", {"cache": {"enabled": False}}).cache.mode == "disabled"
    assert parse_spec("a", {"cache": {"managed": {"maxMemory": "100mb"}}}).cache.mode == "managed"


def test_root_path_prefix_is_allowed() -> None:
    spec = parse_spec("a", {"server": {"pathPrefix": "/"}})
    assert spec.path_prefix("a") == "/"


# Each case: (spec, the field InvalidSpecError must name, a fragment of its message).
BAD_SPECS: list[tuple[dict[str, Any], str, str]] = [
    ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "spec.autoscaling.minReplicas", "maxReplicas"),
    ({"autoscaling": {"minReplicas": -1}}, "spec.autoscaling.minReplicas", "greater than or equal to 0"),
    (
        {"autoscaling": {"minReplicas": 0}},
        "spec.autoscaling.minReplicas",
        "needs metric queueDepth or inFlight",
    ),
    (
        {"autoscaling": {"minReplicas": 0, "metric": "inFlight"}},
        "spec.autoscaling.minReplicas",
        "needs routing enabled",
    ),
    ({"autoscaling": {"metric": "gpu"}}, "spec.autoscaling.metric", "'cpu', 'memory', 'queueDepth' or"),
    ({"autoscaling": {"targetQueueDepth": 0}}, "spec.autoscaling.targetQueueDepth", "greater than or equal"),
    (
        {"autoscaling": {"prometheus": {"serverAddress": "prometheus:9090"}}},
        "spec.autoscaling.prometheus.serverAddress",
        "should match pattern",
    ),
    (
        {"autoscaling": {"targetCPUUtilizationPercentage": 0}},
        "spec.autoscaling.targetCPUUtilizationPercentage",
        "",
    ),
    ({"routing": {"enabled": True, "canary": {"weight": 101}}}, "spec.routing.canary.weight", "100"),
    ({"routing": {"enabled": True, "canary": {"weight": -1}}}, "spec.routing.canary.weight", "0"),
    ({"routing": {"canary": {"weight": 10}}}, "spec.routing.canary", "routing.enabled"),
    ({"routing": {"enabled": True, "pathPrefix": "gw"}}, "spec.routing.pathPrefix", "start with '/'"),
    ({"routing": {"enabled": True, "gateways": []}}, "spec.routing.gateways", "at least 1"),
    ({"routing": {"provider": "linkerd"}}, "spec.routing.provider", "'auto', 'istio' or 'gatewayAPI'"),
    ({"routing": {"gateways": ["a/gw", "b/gw", "a/gw"]}}, "spec.routing.gateways[2]", "listed twice"),
    (
        {"routing": {"provider": "gatewayAPI", "gateways": ["Infra/GW"]}},
        "spec.routing.gateways[0]",
        "namespace/name",
    ),
    ({"routing": {"hosts": ["*", "API.example.com"]}}, "spec.routing.hosts[1]", "Gateway API hostname"),
    ({"routing": {"hosts": ["api.example.com:80"]}}, "spec.routing.hosts[0]", "provider: istio"),
    ({"routing": {"pathPrefix": "/a/../b"}}, "spec.routing.pathPrefix", "'..' segments"),
    ({"server": {"pathPrefix": "/a/."}}, "spec.server.pathPrefix", "'..' segments"),
    (
        {"networkPolicy": {"gateway": {}}},
        "spec.networkPolicy.gateway.namespaceSelector",
        "namespaceSelector, podSelector or both",
    ),
    (
        {
            "networkPolicy": {
                "gateway": {"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}
            }
        },
        "spec.networkPolicy.gateway.podSelector.matchExpressions[0].values",
        "at least one value",
    ),
    (
        {
            "networkPolicy": {
                "gateway": {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Is"}]}}
            }
        },
        "spec.networkPolicy.gateway.podSelector.matchExpressions[0].operator",
        "'In', 'NotIn', 'Exists' or 'DoesNotExist'",
    ),
    (
        {"model": {"source": {"image": {}, "pvc": {"claimName": "m"}}}},
        "spec.model.source.image",
        "exactly one of image, pvc or download",
    ),
    ({"model": {"source": {}}}, "spec.model.source.image", "found: none"),
    ({"model": {"source": {"pvc": {}}}}, "spec.model.source.pvc.claimName", "required"),
    (
        {"model": {"source": {"pvc": {"claimName": "m", "subPath": "../etc"}}}},
        "spec.model.source.pvc.subPath",
        "..",
    ),
    ({"model": {"source": {"image": {"path": "relative"}}}}, "spec.model.source.image.path", "absolute"),
    ({"model": {"precision": "fp16"}}, "spec.model.precision", "'none' or 'int8'"),
    ({"model": {"maxSequenceLength": 100000}}, "spec.model.maxSequenceLength", "8192"),
    (
        {"cache": {"managed": {}, "external": {"urlSecretRef": {"name": "r", "key": "url"}}}},
        "spec.cache.external",
        "mutually exclusive",
    ),
    (
        {"cache": {"external": {"urlSecretRef": {"name": "r"}}}},
        "spec.cache.external.urlSecretRef.key",
        "required",
    ),
    ({"cache": {"managed": {"maxMemory": "lots"}}}, "spec.cache.managed.maxMemory", "Redis memory size"),
    ({"cache": {"managed": {"maxMemory": "1gb"}}}, "spec.cache.managed.maxMemory", "memory limit 500Mi"),
    ({"cache": {"ttlSeconds": 0}}, "spec.cache.ttlSeconds", ""),
    ({"server": {"pathPrefix": "project"}}, "spec.server.pathPrefix", "start with '/'"),
    ({"server": {"pathPrefix": "/project/"}}, "spec.server.pathPrefix", "trailing"),
    ({"server": {"pathPrefix": "/a b"}}, "spec.server.pathPrefix", ""),
    ({"server": {"port": 80}}, "spec.server.port", "1024"),
    ({"server": {"logLevel": "verbose"}}, "spec.server.logLevel", ""),
    ({"server": {"modelWorkers": -1}}, "spec.server.modelWorkers", "greater than or equal to 0"),
    ({"server": {"modelWorkers": 65}}, "spec.server.modelWorkers", "less than or equal to 64"),
    (
        {"server": {"batching": {"maxBatchTokens": 256}}},
        "spec.server.batching.maxBatchTokens",
        "maxSequenceLength",
    ),
    ({"server": {"batching": {"maxBatchSize": 0}}}, "spec.server.batching.maxBatchSize", ""),
    (
        {"server": {"limits": {"maxTextsPerRequest": 600}}},
        "spec.server.batching.maxQueue",
        "a full request could never be queued",
    ),
    ({"resources": {"requests": {"cpu": "lots"}}}, "spec.resources.requests.cpu", "quantity"),
    (
        {"resources": {"requests": {"cpu": "4"}, "limits": {"cpu": "2"}}},
        "spec.resources.requests.cpu",
        "larger",
    ),
    ({"resources": {"requests": {"memory": True}}}, "spec.resources.requests.memory", "string or a number"),
    ({"replicas": -1}, "spec.replicas", "greater than or equal to 0"),
    ({"replicas": "three"}, "spec.replicas", "integer"),
    ({"imagePullPolicy": "Sometimes"}, "spec.imagePullPolicy", ""),
    ({"podSecurity": "privileged"}, "spec.podSecurity", "'restricted' or 'baseline'"),
    ({"env": [{"name": "SENTIMENT_PORT", "value": "1"}]}, "spec.env[0].name", "set by the operator"),
    ({"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}, "spec.env[1].name", "twice"),
    ({"env": [{"value": "1"}]}, "spec.env[0].name", "valid environment variable name"),
    (
        {"initContainers": [{"name": "fetch-model", "image": "x"}]},
        "spec.initContainers[0].name",
        "already used",
    ),
    ({"initContainers": [{"name": "Bad_Name", "image": "x"}]}, "spec.initContainers[0].name", "DNS-1123"),
    ({"initContainers": [{"name": "warm"}]}, "spec.initContainers[0].image", "required"),
    (
        {"initContainers": [{"name": "warm", "image": "x", "securityContext": {"privileged": True}}]},
        "spec.initContainers[0].securityContext",
        "privileged",
    ),
    (
        {"initContainers": [{"name": "warm", "image": "x", "securityContext": {"runAsUser": 0}}]},
        "spec.initContainers[0].securityContext",
        "runAsUser must not be 0",
    ),
    (
        {
            "initContainers": [
                {"name": "w", "image": "x", "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}
            ]
        },
        "spec.initContainers[0].securityContext",
        "capabilities",
    ),
    ({"networkPolicy": {"allowFrom": [{}]}}, "spec.networkPolicy.allowFrom[0].namespace", "required"),
    ({"bogus": 1}, "spec.bogus", "unknown field"),
    ({"server": {"pathprefix": "/x"}}, "spec.server.pathprefix", "unknown field"),
    ({"autoscaling": {"enabled": "maybe"}}, "spec.autoscaling.enabled", "boolean"),
    (
        {
            "autoscaling": {
                "behavior": {"scaleDown": {"policies": [{"type": "Pod", "value": 1, "periodSeconds": 60}]}}
            }
        },
        "spec.autoscaling.behavior.scaleDown.policies[0].type",
        "'Pods' or 'Percent'",
    ),
    (
        {"autoscaling": {"behavior": {"scaledown": {}}}},
        "spec.autoscaling.behavior.scaledown",
        "unknown field",
    ),
    (
        {"autoscaling": {"behavior": {"scaleUp": {"stabilizationWindowSeconds": 7200}}}},
        "spec.autoscaling.behavior.scaleUp.stabilizationWindowSeconds",
        "3600",
    ),
]


@pytest.mark.parametrize(("raw", "field", "fragment"), BAD_SPECS, ids=[case[1] for case in BAD_SPECS])
def test_invalid_spec_names_the_field(raw: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec("demo", raw)
    assert caught.value.field == field
    assert fragment in caught.value.message
    assert str(caught.value) == f"{field}: {caught.value.message}"
    assert "Value error" not in caught.value.message


def test_baseline_allows_init_containers_that_restricted_rejects() -> None:
    raw: dict[str, Any] = {
        "initContainers": [{"name": "warm", "image": "x", "securityContext": {"runAsUser": 0}}]
    }
    with pytest.raises(InvalidSpecError):
        parse_spec("demo", raw)
    spec = parse_spec("demo", {**raw, "podSecurity": "baseline"})
    assert spec.init_containers[0]["name"] == "warm"


def test_restricted_init_container_that_complies_is_accepted() -> None:
    raw = {
        "initContainers": [
            {
                "name": "warm",
                "image": "x",
                "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
            }
        ]
    }
    assert parse_spec("demo", raw).init_containers[0]["name"] == "warm"


@pytest.mark.parametrize(
    "name",
    ["", "Project", "1project", "project-", "pro_ject", "a" * 57],
)
def test_bad_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(name, {})
    assert caught.value.field == "metadata.name"


def test_longest_allowed_name() -> None:
    assert parse_spec("a" * 56, {}).server.path_prefix == "/" + "a" * 56


def test_spec_is_immutable() -> None:
    spec = parse_spec("a", {})
    with pytest.raises(ValueError, match="frozen"):
        spec.replicas = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        (3, Decimal(3)),
        ("1.5", Decimal("1.5")),
        ("1Gi", Decimal(2**30)),
        ("300Mi", Decimal(300 * 2**20)),
        ("1G", Decimal(10**9)),
        ("128974848", Decimal(128974848)),
        ("129e6", Decimal(129_000_000)),
        ("1k", Decimal(1000)),
    ],
)
def test_parse_quantity(text: str | int, expected: Decimal) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "1Gb", "-1", "1 Gi", "Mi"])
def test_parse_quantity_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="quantity"):
        parse_quantity(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("256mb", 256 * 2**20), ("1gb", 2**30), ("100", 100), ("1k", 1000), ("2KB", 2048), ("1m", 10**6)],
)
def test_parse_redis_memory(text: str, expected: int) -> None:
    assert parse_redis_memory(text) == expected


def test_model_can_be_built_directly_by_python_name() -> None:
    spec = SentimentModelSpec(replicas=2, image_pull_policy="Always")
    assert spec.replicas == 2
    assert spec.image_pull_policy == "Always"
