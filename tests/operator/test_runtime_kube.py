"""The storage layer: owned-field comparison (pure) and Kube against the emulated API server (no kopf)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from operator_emulator import NAMESPACE, Cluster
from sentiment_devcluster.apiserver.server import Fault, matcher
from sentiment_operator import kinds, kube, names
from sentiment_operator.builders import redis_auth_data
from sentiment_operator.kube import Kube

DEPLOYMENTS = kinds.DEPLOYMENT
VIRTUAL_SERVICES = kinds.VIRTUAL_SERVICE


# --- pure: what counts as a difference ---------------------------------------------------------------------


def desired_deployment(image: str = "img:1", **extra_spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "demo", "namespace": NAMESPACE, "labels": {"app": "demo"}},
        "spec": {
            "selector": {"matchLabels": {"app": "demo"}},
            "template": {
                "metadata": {"labels": {"app": "demo"}},
                "spec": {
                    "containers": [{"name": "server", "image": image, "env": [{"name": "A", "value": "1"}]}]
                },
            },
            **extra_spec,
        },
    }


def _entry(manager: str, operation: str, fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": "apps/v1",
        "time": "2026-01-01T00:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
        **extra,
    }


def test_managed_fields_upgrade_hands_our_update_entries_to_our_apply_entry() -> None:
    """csaupgrade: our Update entries' fields are merged into our Apply entry; others' entries stay."""
    live = desired_deployment()
    live["metadata"]["resourceVersion"] = "7"
    live["metadata"]["managedFields"] = [
        _entry(names.FIELD_MANAGER, "Update", {"f:spec": {"f:template": {"f:spec": {"f:nodeSelector": {}}}}}),
        _entry(names.FIELD_MANAGER, "Apply", {"f:spec": {"f:replicas": {}}}),
        _entry("kube-controller-manager", "Update", {"f:status": {}}, subresource="status"),
        _entry("hpa", "Update", {"f:spec": {"f:replicas": {}}}),
    ]
    patch = kube.managed_fields_upgrade(live)
    assert patch is not None
    test, replace = patch
    assert test == {"op": "test", "path": "/metadata/resourceVersion", "value": "7"}
    entries = replace["value"]
    assert [(e["manager"], e["operation"]) for e in entries] == [
        ("kube-controller-manager", "Update"),
        ("hpa", "Update"),
        (names.FIELD_MANAGER, "Apply"),
    ]
    assert entries[-1]["fieldsV1"] == {
        "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:nodeSelector": {}}}}
    }


def test_nothing_to_upgrade_without_our_update_entries() -> None:
    live = desired_deployment()
    live["metadata"]["managedFields"] = [
        _entry(names.FIELD_MANAGER, "Apply", {"f:spec": {}}),
        _entry("x", "Update", {}),
    ]
    assert kube.managed_fields_upgrade(live) is None
    assert kube.managed_fields_upgrade(desired_deployment()) is None


def test_ownership_needs_labels_and_the_owner_uid() -> None:
    ours = {
        "metadata": {"labels": {names.LABEL_MANAGED_BY: names.MANAGED_BY}, "ownerReferences": [{"uid": "u1"}]}
    }
    assert kube.is_owned_by(ours, "u1")
    assert not kube.is_owned_by(ours, "u2")
    assert not kube.is_owned_by({"metadata": {"ownerReferences": [{"uid": "u1"}]}}, "u1")


def test_error_classification() -> None:
    body = b'{"kind": "Status", "reason": "AlreadyExists", "message": "exists"}'
    assert isinstance(kube._classify("POST", "/x", 409, body), kube.Conflict)
    assert isinstance(kube._classify("GET", "/x", 404, b"404 page not found"), kube.NotFound)
    assert isinstance(kube._classify("GET", "/x", 403, b"{}"), kube.Forbidden)
    assert isinstance(kube._classify("PATCH", "/x", 422, b"{}"), kube.Invalid)
    for status in (429, 500, 502, 503, 504):
        assert isinstance(kube._classify("GET", "/x", status, b""), kube.Transient)
    assert "409 AlreadyExists: exists" in str(kube._classify("POST", "/x", 409, body))


def test_paths() -> None:
    assert DEPLOYMENTS.object_path("ns", "n", "status") == "/apis/apps/v1/namespaces/ns/deployments/n/status"
    assert kinds.SECRET.collection_path("ns") == "/api/v1/namespaces/ns/secrets"
    assert kinds.SENTIMENT_MODEL.group_version_path == "/apis/serving.sentiment.dev/v1alpha1"


# --- Kube against the emulated API server ------------------------------------------------------------------


@pytest.fixture
def client(cluster: Cluster) -> Kube:
    return Kube.for_server(cluster.url, timeout=2.0)


async def test_create_or_update_outcomes(cluster: Cluster, client: Kube) -> None:
    assert (await client.create_or_update(desired_deployment())).outcome == "created"
    assert (await client.create_or_update(desired_deployment())).outcome == "unchanged"
    assert (await client.create_or_update(desired_deployment(image="img:2"))).outcome == "updated"
    live = cluster.api.live("apps/v1/deployments", NAMESPACE, "demo")
    assert live is not None
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "img:2"
    assert (await client.create_or_update(desired_deployment(image="img:2"))).outcome == "unchanged"
    # A read per call, and a server-side apply only when there is something to apply: the two "unchanged"
    # calls find the object as our last apply left it (same rendering; spec and metadata untouched).
    assert not cluster.requests(method="POST", plural="deployments")
    applies = cluster.requests(method="PATCH", plural="deployments")
    assert len(applies) == 2
    assert all(r.headers["Content-Type"] == kube.APPLY_PATCH for r in applies)
    assert all(r.params == {"fieldManager": names.FIELD_MANAGER, "force": "true"} for r in applies)
    # Someone else writes the object: the next call applies again (a no-op on the server, so "unchanged").
    path = DEPLOYMENTS.object_path(NAMESPACE, "demo")
    await client.request(
        "PATCH",
        path,
        body={"metadata": {"labels": {"x": "y"}}},
        content_type="application/merge-patch+json",
        query=[("fieldManager", "kubectl-edit")],
    )
    assert (await client.create_or_update(desired_deployment(image="img:2"))).outcome == "unchanged"
    assert len(cluster.requests(method="PATCH", plural="deployments")) == 4


async def test_an_object_created_between_our_read_and_our_apply_ends_up_as_rendered(
    cluster: Cluster, client: Kube
) -> None:
    """Apply creates or updates in one request: a racing create is not an error (it was ours to make)."""

    def someone_else_creates(request: Any) -> None:
        cluster.api.objects["apps/v1/deployments", NAMESPACE, "demo"] = desired_deployment(image="theirs")

    cluster.api.inject(Fault(matcher(method="PATCH", plural="deployments"), hook=someone_else_creates))
    assert (await client.create_or_update(desired_deployment())).outcome == "created"
    live = cluster.api.live("apps/v1/deployments", NAMESPACE, "demo")
    assert live is not None
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "img:1"


async def test_errors_are_typed(cluster: Cluster, client: Kube) -> None:
    cluster.api.inject(Fault(matcher(method="GET", plural="deployments"), status=503))
    with pytest.raises(kube.Transient, match="503"):
        await client.get(DEPLOYMENTS, NAMESPACE, "demo")
    cluster.api.inject(Fault(matcher(method="GET", plural="deployments"), status=403))
    with pytest.raises(kube.Forbidden):
        await client.get(DEPLOYMENTS, NAMESPACE, "demo")
    cluster.api.inject(Fault(matcher(method="GET", plural="deployments"), delay=3.0))
    with pytest.raises(kube.Transient, match="Timeout"):
        await client.get(DEPLOYMENTS, NAMESPACE, "demo")
    assert await client.get(DEPLOYMENTS, NAMESPACE, "demo") is None


async def test_a_missing_object_costs_one_request_no_discovery(cluster: Cluster, client: Kube) -> None:
    before = len(cluster.api.requests_log())
    assert await client.get(DEPLOYMENTS, NAMESPACE, "nothing-here") is None
    assert [r.url.path for r in cluster.api.requests_log()[before:]] == [
        DEPLOYMENTS.object_path(NAMESPACE, "nothing-here")
    ]


async def test_missing_kind_is_kind_missing_not_not_found(cluster: Cluster, client: Kube) -> None:
    assert not await client.serves(VIRTUAL_SERVICES)
    with pytest.raises(kube.KindMissing):
        await client.get(VIRTUAL_SERVICES, NAMESPACE, "demo")
    with pytest.raises(kube.KindMissing):
        await client.list(VIRTUAL_SERVICES, NAMESPACE, {"a": "b"})
    cluster.api.install_istio()
    assert await client.serves(VIRTUAL_SERVICES)
    assert await client.get(VIRTUAL_SERVICES, NAMESPACE, "demo") is None


async def test_list_filters_by_labels_even_if_the_server_does_not(cluster: Cluster, client: Kube) -> None:
    ours = desired_deployment()
    ours["metadata"]["labels"] = {"app.kubernetes.io/instance": "demo", "tier": "x"}
    other = desired_deployment()
    other["metadata"] = {
        "name": "other",
        "namespace": NAMESPACE,
        "labels": {"app.kubernetes.io/instance": "o"},
    }
    await client.create(ours)
    await client.create(other)
    found = await client.list(DEPLOYMENTS, NAMESPACE, {"app.kubernetes.io/instance": "demo"})
    assert [d["metadata"]["name"] for d in found] == ["demo"]


async def test_secret_is_generated_once_and_never_rewritten(cluster: Cluster, client: Kube) -> None:
    template = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "demo-redis-auth", "namespace": NAMESPACE, "labels": {"a": "b"}},
    }
    outcome, uid = await client.ensure_secret(template, redis_auth_data)
    assert outcome == "created"
    assert uid
    first = cluster.api.live("v1/secrets", NAMESPACE, "demo-redis-auth")
    assert first is not None
    password = base64.b64decode(first["data"]["password"]).decode()
    assert len(password) >= 32

    assert await client.ensure_secret(template, redis_auth_data) == ("unchanged", uid)
    again = cluster.api.live("v1/secrets", NAMESPACE, "demo-redis-auth")
    assert again is not None
    assert again["data"] == first["data"]
    assert not cluster.requests(method="PATCH", plural="secrets")

    # A hand-emptied Secret is replaced with a fresh password (a new uid rolls the pods that use it).
    cluster.api.objects["v1/secrets", NAMESPACE, "demo-redis-auth"]["data"] = {}
    outcome, new_uid = await client.ensure_secret(template, redis_auth_data)
    assert outcome == "created"
    assert new_uid != uid
    fresh = cluster.api.live("v1/secrets", NAMESPACE, "demo-redis-auth")
    assert fresh is not None
    fresh_password = base64.b64decode(fresh["data"]["password"]).decode()
    assert fresh_password != password
    assert base64.b64decode(fresh["data"]["redis.conf"]).decode() == f"requirepass {fresh_password}\n"

    # A Secret written by an operator that passed the password on Redis's command line has no redis.conf:
    # it is regenerated with both keys, and the new uid rolls Redis and the server pods together.
    older = {"password": first["data"]["password"]}
    cluster.api.objects["v1/secrets", NAMESPACE, "demo-redis-auth"]["data"] = older
    outcome, upgraded_uid = await client.ensure_secret(template, redis_auth_data)
    assert outcome == "created"
    assert upgraded_uid not in (uid, new_uid)
    upgraded = cluster.api.live("v1/secrets", NAMESPACE, "demo-redis-auth")
    assert upgraded is not None
    assert set(upgraded["data"]) == {"password", "redis.conf"}


def test_passwords_are_random_and_long() -> None:
    passwords = {kube.generate_password() for _ in range(20)}
    assert len(passwords) == 20
    assert all(len(p) >= 40 for p in passwords)
