"""Behaviour of the pure child builders, feature by feature (the golden files pin the exact output)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sentiment_operator import builders, kinds, names
from sentiment_operator.builders import Children, Release, build_children, template_revision
from sentiment_operator.spec import SERVER_ENV_NAMES, parse_spec
from sentiment_operator.traffic import TrafficSplit

UID = "5f0b8f57-1c33-4c1e-9e4b-0a4d3c0f4a10"


def build(name: str = "demo", namespace: str = "ns", uid: str | None = UID, **raw: Any) -> Children:
    return build_children(name, namespace, parse_spec(name, raw), uid=uid)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container.get("env", [])}


def server(children: Children) -> dict[str, Any]:
    (container,) = children.deployment["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "server"
    return container


def init_names(deployment: dict[str, Any]) -> list[str]:
    return [c["name"] for c in deployment["spec"]["template"]["spec"].get("initContainers", [])]


def test_default_children_and_names() -> None:
    children = build()
    kinds = [(obj["kind"], obj["metadata"]["name"]) for obj in children.objects()]
    assert kinds == [
        ("NetworkPolicy", "demo-redis"),
        ("NetworkPolicy", "demo"),
        ("Secret", "demo-redis-auth"),
        ("Service", "demo-redis"),
        ("Deployment", "demo-redis"),
        ("Service", "demo"),
        ("Deployment", "demo"),
        ("HorizontalPodAutoscaler", "demo"),
        ("ServiceMonitor", "demo"),
    ]
    assert children.keys() == {
        (o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in children.objects()
    }


def test_every_object_has_labels_namespace_and_controller_owner() -> None:
    for obj in build(routing={"enabled": True, "canary": {"weight": 20}}).objects():
        meta = obj["metadata"]
        assert meta["namespace"] == "ns"
        assert meta["labels"]["app.kubernetes.io/instance"] == "demo"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "sentiment-operator"
        assert {"app.kubernetes.io/name", "app.kubernetes.io/component", "app.kubernetes.io/part-of"} <= set(
            meta["labels"]
        )
        assert names.instance_selector("demo").items() <= meta["labels"].items()
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "serving.sentiment.dev/v1alpha1",
                "kind": "SentimentModel",
                "name": "demo",
                "uid": UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_without_uid_there_are_no_owner_references() -> None:
    assert all("ownerReferences" not in obj["metadata"] for obj in build(uid=None).objects())


def test_managed_kinds_cover_every_child_kind() -> None:
    """Each provider's route is one of the child kinds; the renders for both providers, and a load metric on a
    cluster with KEDA (the ScaledObject), cover every child kind."""
    produced: set[tuple[str, str]] = set()
    for provider, kind in builders.ROUTE_KINDS.items():
        routing = {"enabled": True, "provider": provider, "canary": {}}
        children = build(routing=routing, autoscaling={"minReplicas": 2})
        assert children.routing_provider == provider
        assert children.route is not None
        assert (children.route["apiVersion"], children.route["kind"]) == (kind.api_version, kind.kind)
        produced |= {(obj["apiVersion"], obj["kind"]) for obj in children.objects()}
    keda = build_children(
        "demo", "ns", parse_spec("demo", {"autoscaling": {"metric": "queueDepth"}}), uid=UID, keda=True
    )
    produced |= {(obj["apiVersion"], obj["kind"]) for obj in keda.objects()}
    assert produced == {(child.kind.api_version, child.kind.kind) for child in kinds.CHILD_KINDS}


def test_objects_are_independent_copies() -> None:
    children = build(routing={"enabled": True, "canary": {"weight": 30}})
    objects = children.objects()
    objects[0]["metadata"]["labels"]["x"] = "y"
    probe = server(children)["readinessProbe"]
    probe["periodSeconds"] = 99
    assert server(children)["livenessProbe"]["periodSeconds"] != 99
    redis = children.redis_deployment
    assert redis is not None
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    container["readinessProbe"]["exec"]["command"].append("x")
    assert container["livenessProbe"]["exec"]["command"][-1] != "x"
    assert "x" not in children.objects()[1]["metadata"]["labels"]


def test_replicas_are_left_to_the_hpa_when_autoscaling() -> None:
    children = build(replicas=4)
    assert "replicas" not in children.deployment["spec"]
    assert children.hpa is not None
    hpa = children.hpa["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "demo"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 10)
    assert hpa["metrics"] == [
        {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
        }
    ]
    assert "behavior" not in hpa


def test_fixed_replicas_without_autoscaling() -> None:
    children = build(replicas=4, autoscaling={"enabled": False})
    assert children.deployment["spec"]["replicas"] == 4
    assert children.hpa is None


def test_hpa_memory_target_and_behavior_pass_through() -> None:
    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": 60,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        }
    }
    children = build(
        autoscaling={
            "minReplicas": 2,
            "maxReplicas": 5,
            "targetMemoryUtilizationPercentage": 80,
            "behavior": behavior,
        }
    )
    assert children.hpa is not None
    spec = children.hpa["spec"]
    assert spec["behavior"] == behavior
    assert spec["metrics"][1]["resource"] == {
        "name": "memory",
        "target": {"type": "Utilization", "averageUtilization": 80},
    }


def test_rolling_update_never_reduces_capacity() -> None:
    strategy = build().deployment["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def test_probes_and_draining() -> None:
    children = build(server={"pathPrefix": "/project"})
    container = server(children)
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/project/ready", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, (
        "model load must get at least 5 minutes"
    )
    assert container["readinessProbe"]["httpGet"]["path"] == "/project/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/project/health"
    pod = children.deployment["spec"]["template"]["spec"]
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert 0 < sleep < pod["terminationGracePeriodSeconds"]


def test_root_prefix_probes_and_env() -> None:
    container = server(build(server={"pathPrefix": "/"}))
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert env_of(container)["SENTIMENT_API_PREFIX"] == ""


def test_server_env_contract() -> None:
    children = build(
        model={"id": "my/model", "precision": "int8", "maxSequenceLength": 256},
        server={"port": 9000, "torchThreads": 2, "logLevel": "debug", "batching": {"maxBatchSize": 8}},
        cache={"ttlSeconds": 60},
        env=[
            {"name": "EXTRA", "value": "1"},
            {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
        ],
    )
    env = env_of(server(children))
    operator_names = {name for name in env if name.startswith("SENTIMENT_")}
    assert operator_names <= SERVER_ENV_NAMES
    assert env["SENTIMENT_MODEL_ID"] == "my/model"
    assert env["SENTIMENT_MODEL_PATH"] == "/opt/sentiment/model"
    assert env["SENTIMENT_QUANTIZATION"] == "int8"
    assert env["SENTIMENT_MAX_LENGTH"] == "256"
    assert env["SENTIMENT_PORT"] == "9000"
    assert env["SENTIMENT_TORCH_THREADS"] == "2"
    assert env["SENTIMENT_LOG_LEVEL"] == "debug"
    assert env["SENTIMENT_MAX_BATCH_SIZE"] == "8"
    assert env["SENTIMENT_CACHE_TTL_SECONDS"] == "60"
    assert env["SENTIMENT_API_PREFIX"] == "/demo"
    assert env["SENTIMENT_REDIS_URL"] == "redis://demo-redis.ns.svc:6379/0"
    assert env["SENTIMENT_REDIS_PASSWORD_FILE"] == "/var/run/secrets/sentiment/redis/password"
    assert "SENTIMENT_REDIS_PASSWORD" not in env, "secrets are mounted files, not env vars"
    assert env["EXTRA"] == "1"
    assert env["FROM_CM"] == {"configMapKeyRef": {"name": "c", "key": "k"}}
    assert all(isinstance(item.get("value", ""), str) for item in server(children)["env"])
    assert server(children)["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]


def test_model_workers_reach_stable_and_canary_server_env() -> None:
    default = build(routing={"enabled": True, "canary": {}})
    assert env_of(server(default))["SENTIMENT_MODEL_WORKERS"] == "0"
    children = build(
        server={"modelWorkers": 1, "torchThreads": 2},
        routing={"enabled": True, "canary": {"model": {"id": "new", "precision": "int8"}}},
    )
    assert children.canary_deployment is not None
    for deployment in (children.deployment, children.canary_deployment):
        env = env_of(deployment["spec"]["template"]["spec"]["containers"][0])
        assert env["SENTIMENT_MODEL_WORKERS"] == "1"
        assert env["SENTIMENT_TORCH_THREADS"] == "2"


def test_managed_redis_wait_containers_and_redis_objects() -> None:
    children = build()
    assert init_names(children.deployment) == ["wait-redis-dns", "wait-redis-ping"]
    for init in children.deployment["spec"]["template"]["spec"]["initContainers"]:
        assert init["image"] == children.deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert init["command"] == ["sentiment-wait-redis"]
        assert init["args"][:2] == ["--check", init["name"].removeprefix("wait-redis-")]
        assert set(env_of(init)) == {"SENTIMENT_REDIS_URL", "SENTIMENT_REDIS_PASSWORD_FILE"}
        assert {
            "name": "redis-auth",
            "mountPath": "/var/run/secrets/sentiment/redis",
            "readOnly": True,
        } in init["volumeMounts"]
    volumes = {v["name"]: v for v in children.deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["redis-auth"]["projected"] == {
        "defaultMode": 0o440,
        "sources": [
            {"secret": {"name": "demo-redis-auth", "items": [{"key": "password", "path": "password"}]}}
        ],
    }
    assert children.redis_auth_secret is not None
    assert children.redis_auth_secret["metadata"]["name"] == "demo-redis-auth"
    assert "data" not in children.redis_auth_secret
    assert "stringData" not in children.redis_auth_secret
    assert children.redis_deployment is not None
    (redis,) = children.redis_deployment["spec"]["template"]["spec"]["containers"]
    args = redis["args"]
    assert args[args.index("--save") + 1] == ""
    assert args[args.index("--appendonly") + 1] == "no"
    assert args[args.index("--maxmemory") + 1] == "256mb"
    assert args[args.index("--maxmemory-policy") + 1] == "allkeys-lru"
    # The password is in the mounted config file: not on the command line, not in the environment.
    assert redis["command"] == ["redis-server", "/etc/redis/redis.conf"]
    assert "--requirepass" not in args
    assert "env" not in redis
    assert "REDISCLI_AUTH=" in " ".join(redis["readinessProbe"]["exec"]["command"]), (
        "probes must authenticate"
    )
    assert "redis-cli" in " ".join(redis["readinessProbe"]["exec"]["command"])
    assert {"name": "data", "mountPath": "/data"} in redis["volumeMounts"]
    assert {"name": "redis-auth", "mountPath": "/etc/redis", "readOnly": True} in redis["volumeMounts"]
    redis_volumes = {v["name"]: v for v in children.redis_deployment["spec"]["template"]["spec"]["volumes"]}
    assert redis_volumes["redis-auth"]["secret"] == {"secretName": "demo-redis-auth", "defaultMode": 0o440}
    assert children.redis_service is not None
    assert children.redis_service["spec"]["ports"][0]["port"] == 6379


def test_external_redis_reads_url_and_password_from_the_users_secret() -> None:
    children = build(
        cache={
            "external": {
                "urlSecretRef": {"name": "shared", "key": "url"},
                "passwordSecretRef": {"name": "shared", "key": "pw"},
            }
        }
    )
    assert children.redis_deployment is None
    assert children.redis_service is None
    assert children.redis_auth_secret is None
    env = env_of(server(children))
    assert env["SENTIMENT_REDIS_URL_FILE"] == "/var/run/secrets/sentiment/redis/url"
    assert env["SENTIMENT_REDIS_PASSWORD_FILE"] == "/var/run/secrets/sentiment/redis/password"
    assert not {"SENTIMENT_REDIS_URL", "SENTIMENT_REDIS_PASSWORD"} & set(env)
    volumes = {v["name"]: v for v in children.deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["redis-auth"]["projected"]["sources"] == [
        {"secret": {"name": "shared", "items": [{"key": "url", "path": "url"}]}},
        {"secret": {"name": "shared", "items": [{"key": "pw", "path": "password"}]}},
    ]
    assert init_names(children.deployment) == ["wait-redis-dns", "wait-redis-ping"]
    assert [p["metadata"]["name"] for p in children.network_policies] == ["demo"]


def test_cache_disabled_means_no_redis_anywhere() -> None:
    children = build(cache={"enabled": False})
    assert children.redis_deployment is None
    assert children.redis_auth_secret is None
    assert init_names(children.deployment) == []
    assert not any(name.startswith("SENTIMENT_REDIS") for name in env_of(server(children)))
    assert "SENTIMENT_CACHE_TTL_SECONDS" in env_of(server(children))


def test_download_source_fetches_into_a_shared_empty_dir() -> None:
    children = build(model={"id": "org/m", "source": {"download": {"revision": "v2"}}})
    pod = children.deployment["spec"]["template"]["spec"]
    assert init_names(children.deployment) == ["fetch-model", "wait-redis-dns", "wait-redis-ping"]
    fetch = pod["initContainers"][0]
    assert fetch["command"] == ["sentiment-fetch-model"]
    assert fetch["args"] == ["--model-id", "org/m", "--revision", "v2", "--out", "/model"]
    assert {"name": "model", "mountPath": "/model"} in fetch["volumeMounts"]
    assert {"name": "model", "emptyDir": {"sizeLimit": "4Gi"}} in pod["volumes"]
    container = server(children)
    assert {"name": "model", "mountPath": "/model", "readOnly": True} in container["volumeMounts"]
    assert env_of(container)["SENTIMENT_MODEL_PATH"] == "/model"


def test_pvc_source_mounts_the_claim() -> None:
    children = build(model={"source": {"pvc": {"claimName": "models", "subPath": "sst2"}}})
    pod = children.deployment["spec"]["template"]["spec"]
    assert {"name": "model", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}} in pod[
        "volumes"
    ]
    container = server(children)
    assert {"name": "model", "mountPath": "/model", "readOnly": True, "subPath": "sst2"} in container[
        "volumeMounts"
    ]
    assert env_of(container)["SENTIMENT_MODEL_PATH"] == "/model"
    assert "fetch-model" not in init_names(children.deployment)


def test_image_source_uses_the_baked_path() -> None:
    container = server(build(model={"source": {"image": {"path": "/srv/model"}}}))
    assert env_of(container)["SENTIMENT_MODEL_PATH"] == "/srv/model"
    assert all(mount["name"] != "model" for mount in container["volumeMounts"])


def test_user_init_containers_run_last_with_restricted_defaults() -> None:
    children = build(initContainers=[{"name": "warm", "image": "busybox", "command": ["true"]}])
    assert init_names(children.deployment) == ["wait-redis-dns", "wait-redis-ping", "warm"]
    warm = children.deployment["spec"]["template"]["spec"]["initContainers"][-1]
    assert warm["securityContext"]["allowPrivilegeEscalation"] is False
    assert warm["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_restricted_and_baseline_security_contexts() -> None:
    restricted = build().deployment["spec"]["template"]["spec"]
    assert restricted["securityContext"]["runAsNonRoot"] is True
    assert restricted["securityContext"]["runAsUser"] == 10001
    assert restricted["automountServiceAccountToken"] is False
    assert restricted["enableServiceLinks"] is False
    assert server(build())["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in server(build())["volumeMounts"]
    baseline = build(podSecurity="baseline")
    pod = baseline.deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert "securityContext" not in server(baseline)
    # Redis is the operator's own image: always restricted.
    assert baseline.redis_deployment is not None
    redis_pod = baseline.redis_deployment["spec"]["template"]["spec"]
    assert redis_pod["securityContext"]["runAsUser"] == 10002
    # Without an fsGroup the mounted Redis password stays root-owned: it must be readable by the image's own
    # user; restricted pods read it through their fsGroup.
    modes = {
        pod["securityContext"].get("fsGroup"): volume["projected"]["defaultMode"]
        for pod in (pod, build().deployment["spec"]["template"]["spec"])
        for volume in pod["volumes"]
        if volume["name"] == "redis-auth"
    }
    assert modes == {None: 0o444, 10001: 0o440}


def test_node_selector_and_tolerations() -> None:
    toleration = {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}
    pod = build(nodeSelector={"pool": "cpu"}, tolerations=[toleration]).deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "cpu"}
    assert pod["tolerations"] == [toleration]


def test_config_hash_rolls_pods_only_when_config_changes() -> None:
    def config_hash(children: Children) -> str:
        value: str = children.deployment["spec"]["template"]["metadata"]["annotations"][
            names.ANNOTATION_CONFIG_HASH
        ]
        return value

    base = config_hash(build())
    assert config_hash(build()) == base
    assert config_hash(build(replicas=7)) == base  # replicas are not pod configuration
    assert config_hash(build(server={"logLevel": "debug"})) != base
    assert config_hash(build(image="example/inference:2")) != base


def test_redis_auth_version_goes_into_the_pods_that_use_the_password() -> None:
    spec = parse_spec("demo", {})
    children = build_children("demo", "ns", spec, uid=UID, redis_auth_version="abc")
    for deployment in (children.deployment, children.redis_deployment):
        assert deployment is not None
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations[names.ANNOTATION_REDIS_AUTH_VERSION] == "abc"
    external = parse_spec("demo", {"cache": {"external": {"urlSecretRef": {"name": "r", "key": "u"}}}})
    annotations = build_children("demo", "ns", external, redis_auth_version="abc").deployment["spec"][
        "template"
    ]["metadata"]["annotations"]
    assert names.ANNOTATION_REDIS_AUTH_VERSION not in annotations


def test_prometheus_scrape_annotations() -> None:
    annotations = build(server={"port": 8080}).deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8080"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_services_select_their_own_track() -> None:
    children = build(routing={"enabled": True, "canary": {"weight": 10}})
    assert children.canary_deployment is not None
    assert children.canary_service is not None
    for deployment, service in (
        (children.deployment, children.service),
        (children.canary_deployment, children.canary_service),
    ):
        selector = service["spec"]["selector"]
        assert deployment["spec"]["selector"]["matchLabels"] == selector
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert children.service["spec"]["selector"] != children.canary_service["spec"]["selector"]


def test_virtual_service_routes_exact_and_prefix_to_the_service() -> None:
    children = build(
        routing={"enabled": True, "hosts": ["api.example.com"]}, server={"pathPrefix": "/project"}
    )
    assert children.route is not None
    spec = children.route["spec"]
    assert children.route["apiVersion"] == "networking.istio.io/v1"
    assert spec["hosts"] == ["api.example.com"]
    assert spec["gateways"] == ["istio-ingress/sentiment-gateway"]
    (route,) = spec["http"]
    # "/project" must not capture "/projects".
    assert route["match"] == [{"uri": {"exact": "/project"}}, {"uri": {"prefix": "/project/"}}]
    assert route["route"] == [
        {"destination": {"host": "demo.ns.svc.cluster.local", "port": {"number": 8000}}}
    ]
    assert "rewrite" not in route


@pytest.mark.parametrize(
    ("gateway", "server", "routes"),
    [
        # Real-cluster correctness #6: "/" at the gateway with the default server prefix /demo sent every
        # request to the server without its prefix: a 404 each.
        ("/", None, [({"prefix": "/"}, "/demo/")]),
        ("/", "/", [({"prefix": "/"}, None)]),
        ("/public", "/", [({"exact": "/public"}, "/"), ({"prefix": "/public/"}, "/")]),
        ("/public", None, [({"exact": "/public"}, "/demo"), ({"prefix": "/public/"}, "/demo/")]),
        (None, None, [({"exact": "/demo"}, None), ({"prefix": "/demo/"}, None)]),
    ],
)
def test_the_gateway_path_always_reaches_the_servers_prefix(
    gateway: str | None, server: str | None, routes: list[tuple[dict[str, str], str | None]]
) -> None:
    routing: dict[str, Any] = {"enabled": True}
    if gateway is not None:
        routing["pathPrefix"] = gateway
    children = build(routing=routing, server={} if server is None else {"pathPrefix": server})
    assert children.route is not None
    got = [
        (match["uri"], (http.get("rewrite") or {}).get("uri"))
        for http in children.route["spec"]["http"]
        for match in http["match"]
    ]
    assert got == routes


@pytest.mark.parametrize(("weight", "expected"), [(10, [90, 10]), (50, [50, 50]), (0, [None]), (100, [None])])
def test_canary_weights(weight: int, expected: list[int | None]) -> None:
    children = build(routing={"enabled": True, "canary": {"weight": weight, "image": "example/inference:2"}})
    assert children.route is not None
    destinations = children.route["spec"]["http"][0]["route"]
    assert [d.get("weight") for d in destinations] == expected
    if weight == 100:
        assert destinations[0]["destination"]["host"] == "demo-canary.ns.svc.cluster.local"
    elif weight == 0:
        assert destinations[0]["destination"]["host"] == "demo.ns.svc.cluster.local"
    else:
        assert sum(d["weight"] for d in destinations) == 100
    assert children.canary_deployment is not None
    canary_image = children.canary_deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert canary_image == "example/inference:2"
    assert children.canary_hpa is not None
    assert children.canary_hpa["spec"]["scaleTargetRef"]["name"] == "demo-canary"


def test_canary_model_defaults_to_the_stable_model_and_can_differ() -> None:
    children = build(
        model={"id": "stable"},
        routing={"enabled": True, "canary": {"model": {"id": "new", "precision": "int8"}}},
    )
    assert children.canary_deployment is not None
    canary_env = env_of(children.canary_deployment["spec"]["template"]["spec"]["containers"][0])
    assert canary_env["SENTIMENT_MODEL_ID"] == "new"
    assert canary_env["SENTIMENT_QUANTIZATION"] == "int8"
    assert canary_env["SENTIMENT_API_PREFIX"] == "/demo", "both tracks serve the same path"
    same = build(model={"id": "stable"}, routing={"enabled": True, "canary": {}})
    assert same.canary_deployment is not None
    assert (
        env_of(same.canary_deployment["spec"]["template"]["spec"]["containers"][0])["SENTIMENT_MODEL_ID"]
        == "stable"
    )


def test_batch_token_budget_is_always_explicit_and_per_track() -> None:
    assert env_of(server(build()))["SENTIMENT_MAX_BATCH_TOKENS"] == "512"
    children = build(
        model={"maxSequenceLength": 1024},
        routing={"enabled": True, "canary": {"model": {"maxSequenceLength": 4096}}},
    )
    assert env_of(server(children))["SENTIMENT_MAX_BATCH_TOKENS"] == "1024"
    assert children.canary_deployment is not None
    canary_env = env_of(children.canary_deployment["spec"]["template"]["spec"]["containers"][0])
    assert (canary_env["SENTIMENT_MAX_LENGTH"], canary_env["SENTIMENT_MAX_BATCH_TOKENS"]) == ("4096", "4096")
    explicit = build(server={"batching": {"maxBatchTokens": 8192}}, routing={"enabled": True, "canary": {}})
    assert env_of(server(explicit))["SENTIMENT_MAX_BATCH_TOKENS"] == "8192"
    assert explicit.canary_deployment is not None
    explicit_canary = explicit.canary_deployment["spec"]["template"]["spec"]["containers"][0]
    assert env_of(explicit_canary)["SENTIMENT_MAX_BATCH_TOKENS"] == "8192"


def test_canary_replicas_without_autoscaling_follow_the_weight() -> None:
    children = build(
        replicas=10, autoscaling={"enabled": False}, routing={"enabled": True, "canary": {"weight": 25}}
    )
    assert children.canary_deployment is not None
    assert children.canary_deployment["spec"]["replicas"] == 3
    assert children.canary_hpa is None


def test_gateway_prefix_different_from_server_prefix_is_rewritten() -> None:
    children = build(
        routing={"enabled": True, "pathPrefix": "/public/sentiment"}, server={"pathPrefix": "/api"}
    )
    assert children.route is not None
    http = children.route["spec"]["http"]
    assert [(h["match"], h["rewrite"]) for h in http] == [
        ([{"uri": {"exact": "/public/sentiment"}}], {"uri": "/api"}),
        ([{"uri": {"prefix": "/public/sentiment/"}}], {"uri": "/api/"}),
    ]
    assert (
        builders.gateway_path("demo", parse_spec("demo", {"routing": {"enabled": True, "pathPrefix": "/p"}}))
        == "/p"
    )


def test_routing_disabled_has_no_route_and_no_gateway_path() -> None:
    spec = parse_spec("demo", {})
    assert build().route is None
    assert builders.gateway_path("demo", spec) is None
    assert builders.inference_url("demo", "ns", spec) == "http://demo.ns.svc.cluster.local:8000/demo"


def test_the_cluster_domain_is_the_operators_setting() -> None:
    spec = parse_spec("demo", {"routing": {"enabled": True}})
    assert (
        builders.inference_url("demo", "ns", spec, "corp.example")
        == "http://demo.ns.svc.corp.example:8000/demo"
    )
    children = builders.build_children("demo", "ns", spec, cluster_domain="corp.example")
    assert children.route is not None
    (route,) = children.route["spec"]["http"][:1]
    assert {d["destination"]["host"] for d in route["route"]} == {"demo.ns.svc.corp.example"}
    assert "cluster.local" not in json.dumps(children.objects())


def test_network_policies_isolate_redis_and_the_server() -> None:
    children = build(networkPolicy={"allowFrom": [{"namespace": "ops"}, {"namespace": "monitoring"}]})
    redis_policy, server_policy = children.network_policies
    inference_pods = {"app.kubernetes.io/name": "sentiment-inference", "app.kubernetes.io/instance": "demo"}
    assert children.redis_deployment is not None
    redis_labels = children.redis_deployment["spec"]["template"]["metadata"]["labels"]
    assert redis_policy["spec"]["podSelector"]["matchLabels"].items() <= redis_labels.items()
    assert redis_policy["spec"]["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": inference_pods}}],
            "ports": [{"protocol": "TCP", "port": 6379}],
        }
    ]
    assert server_policy["spec"]["podSelector"]["matchLabels"] == inference_pods
    (rule,) = server_policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
    namespaces = rule["from"][1]["namespaceSelector"]["matchExpressions"][0]
    assert namespaces == {
        "key": "kubernetes.io/metadata.name",
        "operator": "In",
        "values": ["monitoring", "ops"],
    }
    # The selector covers both tracks, and no other model's pods.
    for deployment in (children.deployment,):
        assert inference_pods.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    other = build(name="other").deployment["spec"]["template"]["metadata"]["labels"]
    assert not inference_pods.items() <= other.items()


def test_network_policies_can_be_disabled() -> None:
    assert build(networkPolicy={"enabled": False}).network_policies == ()


def test_objects_are_plain_json() -> None:
    for obj in build(routing={"enabled": True, "canary": {}}).objects():
        assert json.loads(json.dumps(obj)) == obj


def test_server_pods_spread_across_nodes_and_zones_by_default() -> None:
    children = build()
    spread = children.deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    selector = children.deployment["spec"]["selector"]["matchLabels"]
    assert [(c["topologyKey"], c["maxSkew"], c["whenUnsatisfiable"]) for c in spread] == [
        ("kubernetes.io/hostname", 1, "ScheduleAnyway"),
        ("topology.kubernetes.io/zone", 1, "ScheduleAnyway"),
    ]
    assert all(c["labelSelector"] == {"matchLabels": selector} for c in spread)


def test_topology_spread_can_be_replaced_or_turned_off() -> None:
    own = [{"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}]
    children = build(topologySpread=own, routing={"enabled": True, "canary": {"weight": 10}})
    (constraint,) = children.deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert constraint["maxSkew"] == 2
    assert constraint["labelSelector"] == {
        "matchLabels": children.deployment["spec"]["selector"]["matchLabels"]
    }
    assert children.canary_deployment is not None
    (canary,) = children.canary_deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert (
        canary["labelSelector"]["matchLabels"]
        == children.canary_deployment["spec"]["selector"]["matchLabels"]
    )
    off = build(topologySpread=[])
    assert "topologySpreadConstraints" not in off.deployment["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"topologyKey": "k", "whenUnsatisfiable": "ScheduleAnyway"}, "needs maxSkew"),
        (
            {"maxSkew": 1, "topologyKey": "k", "whenUnsatisfiable": "Sometimes"},
            "DoNotSchedule or ScheduleAnyway",
        ),
        ({"maxSkew": 0, "topologyKey": "k", "whenUnsatisfiable": "ScheduleAnyway"}, "at least 1"),
    ],
)
def test_a_broken_spread_constraint_is_an_invalid_spec(bad: dict[str, Any], message: str) -> None:
    from sentiment_operator.spec import InvalidSpecError, parse_spec

    with pytest.raises(InvalidSpecError, match=message) as caught:
        parse_spec("demo", {"topologySpread": [bad]})
    assert caught.value.field.startswith("spec.topologySpread[0]")


@pytest.mark.parametrize(
    ("spec", "budget"),
    [
        ({"autoscaling": {"enabled": False}, "replicas": 1}, None),
        ({"autoscaling": {"enabled": False}, "replicas": 3}, 1),
        ({"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 4}}, None),
        ({"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 4}}, 1),
        ({"autoscaling": {"enabled": False}, "replicas": 4, "disruptionBudget": {"maxUnavailable": 2}}, 2),
        ({"autoscaling": {"enabled": False}, "replicas": 4, "disruptionBudget": {"enabled": False}}, None),
    ],
)
def test_a_disruption_budget_whenever_more_than_one_server_pod_is_wanted(
    spec: dict[str, Any], budget: int | None
) -> None:
    """With one pod a budget would block every node drain; with more, evictions go a few at a time."""
    children = build(**spec)
    if budget is None:
        assert children.disruption_budget is None
        return
    pdb = children.disruption_budget
    assert pdb is not None
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"] == {
        "maxUnavailable": budget,
        "selector": {"matchLabels": children.deployment["spec"]["selector"]["matchLabels"]},
    }
    assert pdb in children.objects()


# --- canary rollouts ----------------------------------------------------------------------------------------

ROLLING = {
    "routing": {"enabled": True},
    "monitoring": {"interval": "1s", "labels": {"release": "kube-prometheus-stack"}},
    "rollout": {"strategy": "Canary", "steps": [20, 60], "interval": "2s"},
    "autoscaling": {"enabled": False},
    "replicas": 3,
}


def rolling(image: str = "img:2", release: Release | None = None, **extra: Any) -> Children:
    return build_children(
        "demo", "ns", parse_spec("demo", {**ROLLING, "image": image, **extra}), uid=UID, release=release
    )


def revision_of(deployment: dict[str, Any]) -> str:
    return str(deployment["spec"]["template"]["metadata"]["annotations"][names.ANNOTATION_REVISION])


def test_the_template_revision_follows_the_pod_template_only() -> None:
    base = parse_spec("demo", {**ROLLING, "image": "img:1"})
    revision = template_revision("demo", "ns", base)
    assert revision_of(rolling("img:1").deployment) == revision
    assert template_revision("demo", "ns", parse_spec("demo", {**ROLLING, "image": "img:2"})) != revision
    # Replicas, routing and the rollout's own settings are not the template.
    same = parse_spec(
        "demo", {**ROLLING, "image": "img:1", "replicas": 5, "rollout": {"strategy": "Immediate"}}
    )
    assert template_revision("demo", "ns", same) == revision
    # Nor is the Redis password's version (a regenerated password rolls the pods but is no release).
    with_auth = build_children("demo", "ns", base, uid=UID, redis_auth_version="v9").deployment
    assert revision_of(with_auth) == revision


def test_during_a_rollout_the_stable_keeps_its_template_and_the_canary_runs_the_new_one() -> None:
    old = parse_spec("demo", {**ROLLING, "image": "img:1"})
    children = rolling("img:2", Release(stable_spec=old, canary="serving", split=TrafficSplit(80, 20)))
    stable_image = server(children)["image"]
    assert children.canary_deployment is not None
    assert stable_image == "img:1"
    assert children.canary_deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "img:2"
    assert revision_of(children.deployment) == template_revision("demo", "ns", old)
    assert revision_of(children.canary_deployment) == template_revision(
        "demo", "ns", parse_spec("demo", {**ROLLING, "image": "img:2"})
    )
    # The stable keeps the spec's replicas; the canary gets enough for the largest step (60 % of 3).
    assert children.deployment["spec"]["replicas"] == 3
    assert children.canary_deployment["spec"]["replicas"] == 2
    route = children.route["spec"]["http"][0]["route"]  # type: ignore[index]
    assert [(r["destination"]["host"].split(".")[0], r["weight"]) for r in route] == [
        ("demo", 80),
        ("demo-canary", 20),
    ]


def test_a_mirrored_step_copies_to_the_canary_and_a_rollback_scales_it_to_zero() -> None:
    old = parse_spec("demo", {**ROLLING, "image": "img:1"})
    mirrored = rolling("img:2", Release(stable_spec=old, canary="serving", split=TrafficSplit(mirror=40)))
    http = mirrored.route["spec"]["http"][0]  # type: ignore[index]
    assert [r["destination"]["host"].split(".")[0] for r in http["route"]] == ["demo"]
    assert http["mirror"]["host"] == "demo-canary.ns.svc.cluster.local"
    assert http["mirrorPercentage"] == {"value": 40.0}
    down = rolling("img:2", Release(stable_spec=old, canary="scaled-down"), autoscaling={"enabled": True})
    assert down.canary_deployment is not None
    assert down.canary_deployment["spec"]["replicas"] == 0
    assert down.canary_hpa is None  # an HPA would scale it back up
    assert "replicas" not in down.deployment["spec"]  # the stable's belong to its HPA
    assert [r["destination"]["host"].split(".")[0] for r in down.route["spec"]["http"][0]["route"]] == [
        "demo"
    ]  # type: ignore[index]


def test_the_service_monitor_selects_this_models_stable_and_canary_services_only() -> None:
    old = parse_spec("demo", {**ROLLING, "image": "img:1"})
    children = rolling("img:2", Release(stable_spec=old, canary="serving", split=TrafficSplit(80, 20)))
    monitor = children.service_monitor
    assert monitor is not None
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [
        obj["metadata"]["name"]
        for obj in children.objects()
        if obj["kind"] == "Service" and selector.items() <= obj["metadata"]["labels"].items()
    ]
    assert selected == ["demo", "demo-canary"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"], endpoint["scrapeTimeout"]) == (
        "http",
        "/metrics",
        "1s",
        "1s",
    )
    targets = {r["targetLabel"]: r for r in endpoint["relabelings"] if r.get("regex") is None}
    assert targets[names.SERIES_LABEL_MODEL]["sourceLabels"] == [
        "__meta_kubernetes_service_label_app_kubernetes_io_instance"
    ]
    tracks = {r["regex"]: r["replacement"] for r in endpoint["relabelings"] if r.get("regex")}
    assert tracks == {
        names.COMPONENT_INFERENCE: names.TRACK_STABLE,
        names.COMPONENT_CANARY: names.TRACK_CANARY,
    }
    assert build("demo", monitoring={"serviceMonitor": False}).service_monitor is None
