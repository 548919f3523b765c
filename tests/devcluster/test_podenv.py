"""What a container sees (sentiment_devcluster.podenv), against the kubelet's documented rules: the
"Define Environment Variables for a Container" and "Distribute Credentials Securely Using Secrets" tasks,
``$(VAR)`` expansion in command and args, and how Service names resolve."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from sentiment_devcluster.podenv import ConfigError, HostMap, PathMap, PodFacts, container_env, expand

POD = PodFacts(name="web-abc", namespace="shop", ip="127.10.0.7", uid="u1", labels={"app": "web"})


def secret(name: str, **data: str) -> dict[str, Any]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"metadata": {"name": name, "namespace": "shop"}, "data": encoded}


SECRETS = {("shop", "auth"): secret("auth", password="s3cret")}
CONFIGMAPS = {("shop", "cfg"): {"metadata": {"name": "cfg"}, "data": {"level": "debug", "port": "7000"}}}


def test_env_in_order_with_references_and_key_refs() -> None:
    container = {
        "env": [
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "auth", "key": "password"}}},
            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "level"}}},
            {"name": "URL", "value": "redis://:$(PASSWORD)@cache:6379/0"},
            {"name": "LATER", "value": "$(DEFINED_AFTER)"},  # only earlier variables expand
            {"name": "DEFINED_AFTER", "value": "x"},
            {"name": "ESCAPED", "value": "$$(PASSWORD)"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        ]
    }
    env = container_env(container, POD, SECRETS, CONFIGMAPS)
    assert env["PASSWORD"] == "s3cret"
    assert env["LEVEL"] == "debug"
    assert env["URL"] == "redis://:s3cret@cache:6379/0"
    assert env["LATER"] == "$(DEFINED_AFTER)"
    assert env["ESCAPED"] == "$(PASSWORD)"
    assert (env["POD_NAME"], env["POD_IP"], env["APP"]) == ("web-abc", "127.10.0.7", "web")


def test_env_from_with_prefix_and_resource_field_ref() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}, {"secretRef": {"name": "auth"}}],
        "env": [{"name": "CPUS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}],
        "resources": {"limits": {"cpu": "1500m"}},
    }
    env = container_env(container, POD, SECRETS, CONFIGMAPS)
    assert env == {"CFG_level": "debug", "CFG_port": "7000", "password": "s3cret", "CPUS": "2"}


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ({"secretKeyRef": {"name": "missing", "key": "password"}}, 'secret "missing" not found'),
        ({"secretKeyRef": {"name": "auth", "key": "nope"}}, 'key "nope" not in Secret "auth"'),
        ({"configMapKeyRef": {"name": "gone", "key": "level"}}, 'configmap "gone" not found'),
    ],
)
def test_a_missing_reference_is_a_config_error_unless_optional(ref: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        container_env({"env": [{"name": "X", "valueFrom": ref}]}, POD, SECRETS, CONFIGMAPS)
    kind = next(iter(ref))
    optional = {kind: {**ref[kind], "optional": True}}
    assert container_env({"env": [{"name": "X", "valueFrom": optional}]}, POD, SECRETS, CONFIGMAPS) == {}


def test_expand_in_args() -> None:
    env = {"REDIS_PASSWORD": "p"}
    assert expand("--requirepass $(REDIS_PASSWORD)", env) == "--requirepass p"
    assert expand("$(UNSET) stays", env) == "$(UNSET) stays"


SERVICES = {("shop", "cache"): "127.20.0.1", ("other", "db"): "127.20.0.2"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://cache.shop.svc:6379/0", "redis://127.20.0.1:6379/0"),
        ("redis://:pw@cache:6379/0", "redis://:pw@127.20.0.1:6379/0"),
        ("http://db.other.svc.cluster.local:5432/x", "http://127.20.0.2:5432/x"),
        ("cache", "127.20.0.1"),
        ("cache:6379", "127.20.0.1:6379"),
        ("--host=db.other.svc --x", "--host=127.20.0.2 --x"),
        ("0.0.0.0", "127.10.0.7"),
        ("localhost:8000", "127.10.0.7:8000"),
        ("http://127.0.0.1:8000/ready", "http://127.10.0.7:8000/ready"),
        # Not host names: a path, a word in a sentence, another namespace's short name, an unknown Service.
        ("/cache", "/cache"),
        ("warm the cache first", "warm the cache first"),
        ("db", "db"),
        ("redis://gone.shop.svc:6379", "redis://gone.shop.svc:6379"),
    ],
)
def test_service_names_resolve_where_they_are_hosts(text: str, expected: str) -> None:
    assert HostMap.for_pod("127.10.0.7", "shop", SERVICES).rewrite(text) == expected


def test_paths_map_to_local_directories_longest_mount_first() -> None:
    paths = PathMap()
    paths.add("/data", "/local/data")
    paths.add("/data/conf", "/local/conf")
    paths.add("/opt/sentiment/model", "/models/dev")
    assert paths.local("/data/dump.rdb") == "/local/data/dump.rdb"
    assert paths.local("/data/conf/redis.conf") == "/local/conf/redis.conf"
    assert paths.local("/database") is None
    assert paths.rewrite("redis-server /data/conf/redis.conf --dir /data") == (
        "redis-server /local/conf/redis.conf --dir /local/data"
    )
    assert paths.rewrite("/opt/sentiment/model") == "/models/dev"
    assert paths.rewrite("/project") == "/project"
