"""The storage layer: owned-field comparison (pure) and Kube against the emulated API server (no kopf)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from apiserver.server import Fault, matcher
from operator_emulator import NAMESPACE, Cluster
from sentiment_operator import kube
from sentiment_operator.kube import KINDS, Kube

DEPLOYMENTS = KINDS["apps/v1", "Deployment"]
VIRTUAL_SERVICES = KINDS["networking.istio.io/v1", "VirtualService"]


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


def test_server_defaults_and_status_are_not_differences() -> None:
    desired = desired_deployment()
    live = desired_deployment()
    live["metadata"] |= {"uid": "u", "resourceVersion": "9", "generation": 3, "annotations": {"x": "y"}}
    live["spec"]["template"]["spec"]["containers"][0] |= {"terminationMessagePath": "/dev/termination-log"}
    live["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst"
    live["spec"]["replicas"] = 7  # the HPA's business: desired does not set it
    live["status"] = {"readyReplicas": 7}
    assert not kube.needs_update(desired, live)


@pytest.mark.parametrize(
    "edit",
    [
        lambda o: o["spec"]["template"]["spec"]["containers"][0].update(image="evil"),
        lambda o: o["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "B", "value": "2"}),
        lambda o: o["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "x"}),
        lambda o: o["metadata"]["labels"].pop("app"),
        lambda o: o["spec"]["template"]["spec"]["containers"][0]["env"][0].update(value="other"),
    ],
    ids=["image", "extra-env", "extra-container", "label-removed", "env-value"],
)
def test_changes_to_owned_fields_are_differences(edit: Any) -> None:
    live = desired_deployment()
    edit(live)
    assert kube.needs_update(desired_deployment(), live)


def test_is_subset_types() -> None:
    assert kube.is_subset({"a": 1}, {"a": 1, "b": 2})
    assert not kube.is_subset({"a": 1}, {"a": 1.5})
    assert kube.is_subset({"a": 1}, {"a": 1.0})
    assert not kube.is_subset({"a": True}, {"a": 1}), "booleans are not numbers"
    assert not kube.is_subset({"a": "1"}, {"a": 1})
    assert not kube.is_subset([1, 2], [1, 2, 3]), "list length is owned"
    assert not kube.is_subset({"a": {"b": 1}}, {"a": None})
    assert kube.is_subset({"a": None}, {}), "None means: don't care"


def test_canonicalized_quantities_and_dropped_empty_collections_are_not_differences() -> None:
    desired = {"resources": {"requests": {"cpu": "0.5", "memory": "1Gi"}, "limits": {"cpu": 2}}, "args": []}
    live = {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2"}}}
    assert kube.is_subset(desired, live)
    assert not kube.is_subset(desired, {"resources": {"requests": {"cpu": "600m", "memory": "1Gi"}}})
    assert not kube.is_subset({"resources": {"limits": {"cpu": "1"}}}, {"resources": {"limits": {}}})
    # Quantity comparison applies to resource maps only: elsewhere "1" and "1.0" are different strings.
    assert not kube.is_subset({"labels": {"v": "1"}}, {"labels": {"v": "1.0"}})


def test_owned_projection_drops_identity_and_server_fields() -> None:
    desired = desired_deployment()
    desired["status"] = {"x": 1}
    desired["metadata"]["resourceVersion"] = "1"
    projection = kube.owned_projection(desired)
    assert set(projection) == {"metadata", "spec"}
    assert projection["metadata"] == {"labels": {"app": "demo"}}


def test_ownership_needs_labels_and_the_owner_uid() -> None:
    ours = {
        "metadata": {"labels": {kube.MANAGED_BY_LABEL: kube.MANAGED_BY}, "ownerReferences": [{"uid": "u1"}]}
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
    assert KINDS["v1", "Secret"].collection_path("ns") == "/api/v1/namespaces/ns/secrets"
    assert kube.SENTIMENT_MODEL.group_version_path == "/apis/serving.sentiment.dev/v1alpha1"


# --- Kube against the emulated API server ------------------------------------------------------------------


@pytest.fixture
def client(cluster: Cluster) -> Kube:
    return Kube.for_server(cluster.url, timeout=2.0)


async def test_create_or_update_outcomes(cluster: Cluster, client: Kube) -> None:
    assert await client.create_or_update(desired_deployment()) == "created"
    assert await client.create_or_update(desired_deployment()) == "unchanged"
    assert await client.create_or_update(desired_deployment(image="img:2")) == "updated"
    live = cluster.api.live("apps/v1/deployments", NAMESPACE, "demo")
    assert live is not None
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "img:2"
    assert await client.create_or_update(desired_deployment(image="img:2")) == "unchanged"
    assert len(cluster.requests(method="POST", plural="deployments")) == 1
    assert len(cluster.requests(method="PATCH", plural="deployments")) == 1


async def test_conflict_on_create_is_adopted(cluster: Cluster, client: Kube) -> None:
    def someone_else_creates(request: Any) -> None:
        cluster.api.objects["apps/v1/deployments", NAMESPACE, "demo"] = desired_deployment(image="theirs")

    cluster.api.inject(Fault(matcher(method="POST", plural="deployments"), hook=someone_else_creates))
    assert await client.create_or_update(desired_deployment()) == "updated"
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
    outcome, uid = await client.ensure_secret(template)
    assert outcome == "created"
    assert uid
    first = cluster.api.live("v1/secrets", NAMESPACE, "demo-redis-auth")
    assert first is not None
    password = base64.b64decode(first["data"]["password"]).decode()
    assert len(password) >= 32

    assert await client.ensure_secret(template) == ("unchanged", uid)
    again = cluster.api.live("v1/secrets", NAMESPACE, "demo-redis-auth")
    assert again is not None
    assert again["data"] == first["data"]
    assert not cluster.requests(method="PATCH", plural="secrets")

    # A hand-emptied Secret is replaced with a fresh password (a new uid rolls the pods that use it).
    cluster.api.objects["v1/secrets", NAMESPACE, "demo-redis-auth"]["data"] = {}
    outcome, new_uid = await client.ensure_secret(template)
    assert outcome == "created"
    assert new_uid != uid
    fresh = cluster.api.live("v1/secrets", NAMESPACE, "demo-redis-auth")
    assert fresh is not None
    assert base64.b64decode(fresh["data"]["password"]).decode() != password


def test_passwords_are_random_and_long() -> None:
    passwords = {kube.generate_password() for _ in range(20)}
    assert len(passwords) == 20
    assert all(len(p) >= 40 for p in passwords)
