"""The Reconciler and the real Kube over the in-memory API (memory_kube.py): milliseconds per reconcile, the
same write semantics as the test API server. The real-cluster findings, pinned at the reconciler's level."""

from __future__ import annotations

from typing import Any

import pytest
from memory_kube import MemoryApi, MemoryKube
from sentiment_operator import kinds, kube
from sentiment_operator.reconciler import Reconciler

NS, NAME = "default", "demo"
MODELS = kinds.SENTIMENT_MODEL.collection_path(NS)
SPEC: dict[str, Any] = {"image": "registry.example/inference:1.0", "autoscaling": {"enabled": False}}


@pytest.fixture
def api() -> MemoryApi:
    return MemoryApi()


@pytest.fixture
def client(api: MemoryApi) -> MemoryKube:
    return MemoryKube(api)


async def create(client: MemoryKube, spec: dict[str, Any], name: str = NAME) -> dict[str, Any]:
    body = {
        "apiVersion": "serving.sentiment.dev/v1alpha1",
        "kind": "SentimentModel",
        "metadata": {"name": name},
    }
    created: dict[str, Any] = await client.request("POST", MODELS, body={**body, "spec": spec})
    return created


async def respec(client: MemoryKube, spec: dict[str, Any], name: str = NAME) -> None:
    await client.request(
        "PATCH",
        kinds.SENTIMENT_MODEL.object_path(NS, name),
        body={"spec": spec},
        content_type="application/merge-patch+json",
    )


def pod(api: MemoryApi, name: str = NAME) -> dict[str, Any]:
    deployment = api.live("apps/v1", "deployments", NS, name)
    assert deployment is not None
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def ready(api: MemoryApi, name: str = NAME) -> dict[str, Any]:
    model = api.live("serving.sentiment.dev/v1alpha1", "sentimentmodels", NS, name)
    assert model is not None
    condition: dict[str, Any] = next(c for c in model["status"]["conditions"] if c["type"] == "Ready")
    return condition


async def test_create_then_a_steady_reconcile_writes_nothing(api: MemoryApi, client: MemoryKube) -> None:
    await create(client, SPEC)
    reconciler = Reconciler(client)
    result = await reconciler.reconcile(NS, NAME)
    assert result is not None
    assert set(result.applied.values()) == {"created"}
    before = len(api.writes())
    again = await reconciler.reconcile(NS, NAME)
    assert again is not None
    assert set(again.applied.values()) == {"unchanged"}
    assert api.writes()[before:] == []
    assert again.events == []


async def test_turning_the_cache_off_removes_what_it_added_to_the_pod(
    api: MemoryApi, client: MemoryKube
) -> None:
    """#1: the wait-redis init containers and the Secret reference go with the cache (a merge patch left them,
    and new pods failed with CreateContainerConfigError)."""
    await create(client, {**SPEC, "cache": {"enabled": True}})
    reconciler = Reconciler(client)
    await reconciler.reconcile(NS, NAME)
    assert pod(api).get("initContainers")
    await respec(client, {"cache": {"enabled": False}})
    await reconciler.reconcile(NS, NAME)
    spec = pod(api)
    assert not [c for c in spec.get("initContainers", []) if c["name"].startswith("wait-redis")]
    assert "redis-auth" not in repr(spec)
    assert api.live("v1", "secrets", NS, f"{NAME}-redis-auth") is None


async def test_restricted_to_baseline_drops_the_restricted_fields(api: MemoryApi, client: MemoryKube) -> None:
    """#1: podSecurity restricted -> baseline no longer keeps runAsNonRoot/runAsUser."""
    await create(client, SPEC)
    reconciler = Reconciler(client)
    await reconciler.reconcile(NS, NAME)
    assert pod(api)["securityContext"].get("runAsNonRoot") is True
    await respec(client, {"podSecurity": "baseline"})
    await reconciler.reconcile(NS, NAME)
    assert "runAsNonRoot" not in pod(api).get("securityContext", {})


async def test_a_root_path_prefix_causes_no_perpetual_write(api: MemoryApi, client: MemoryKube) -> None:
    """#2: SENTIMENT_API_PREFIX renders value "" for pathPrefix "/": the server drops it; no fight."""
    await create(client, {**SPEC, "server": {"pathPrefix": "/"}})
    reconciler = Reconciler(client)
    await reconciler.reconcile(NS, NAME)
    env = {e["name"]: e for e in pod(api)["containers"][0]["env"]}
    assert "value" not in env["SENTIMENT_API_PREFIX"]
    before = len(api.writes())
    fresh = Reconciler(MemoryKube(api))  # a restarted operator: no memory of its last applies
    result = await fresh.reconcile(NS, NAME)
    assert result is not None
    assert set(result.applied.values()) == {"unchanged"}
    assert api.writes()[before:] == []


async def test_a_model_named_like_another_models_canary_is_refused(
    api: MemoryApi, client: MemoryKube
) -> None:
    """#3: model a's canary and a model named a-canary render the same object names."""
    api.install_istio()
    await create(client, {**SPEC, "routing": {"enabled": True, "canary": {"weight": 10}}}, name="a")
    await create(client, SPEC, name="a-canary")
    reconciler = Reconciler(client)
    await reconciler.reconcile(NS, "a")
    canary = api.live("apps/v1", "deployments", NS, "a-canary")
    assert canary is not None
    result = await reconciler.reconcile(NS, "a-canary")
    assert result is not None
    assert any("Deployment default/a-canary already exists" in clash for clash in result.not_owned)
    assert ready(api, "a-canary")["reason"] == "ChildNotOwned"
    assert [e.reason for e in result.events if e.type == "Warning"] == ["ChildNotOwned"]
    after = api.live("apps/v1", "deployments", NS, "a-canary")
    assert after is not None
    assert after["metadata"]["ownerReferences"] == canary["metadata"]["ownerReferences"]


async def test_a_refused_apply_reaches_status(api: MemoryApi, client: MemoryKube) -> None:
    """#10: a 403 on a child's apply is Ready=False/ApplyFailed naming the object, then the error goes up."""
    await create(client, SPEC)
    api.refuse = lambda method, path: (
        403 if method == "PATCH" and path.endswith("/deployments/demo") else None
    )
    with pytest.raises(kube.Forbidden):
        await Reconciler(client).reconcile(NS, NAME)
    condition = ready(api)
    assert (condition["status"], condition["reason"]) == ("False", "ApplyFailed")
    assert "Deployment default/demo was refused" in condition["message"]


async def test_a_status_only_change_of_a_child_is_not_answered_with_an_apply(
    api: MemoryApi, client: MemoryKube
) -> None:
    """#11 in part: the Deployment controller writing status does not make the next reconcile re-apply."""
    await create(client, SPEC)
    reconciler = Reconciler(client)
    await reconciler.reconcile(NS, NAME)
    status_path = kinds.DEPLOYMENT.object_path(NS, NAME, "status")
    await client.request(
        "PATCH",
        status_path,
        body={"status": {"readyReplicas": 1, "availableReplicas": 1, "replicas": 1}},
        content_type="application/merge-patch+json",
    )
    before = len(api.calls)
    await reconciler.reconcile(NS, NAME)
    applies = [c for c in api.calls[before:] if c.method == "PATCH" and "/deployments/" in c.path]
    assert applies == []


async def _report_ready(client: MemoryKube, name: str) -> None:
    await client.request(
        "PATCH",
        kinds.DEPLOYMENT.object_path(NS, name, "status"),
        body={"status": {"readyReplicas": 1, "availableReplicas": 1, "replicas": 1, "updatedReplicas": 1}},
        content_type="application/merge-patch+json",
    )


async def test_a_status_only_child_change_refreshes_status_and_touches_no_child(
    api: MemoryApi, client: MemoryKube
) -> None:
    """#11: after a child's status changed, the owner's status follows from reading only the children status
    is made of; nothing is applied, listed or pruned."""
    await create(client, SPEC)
    reconciler = Reconciler(client)
    await reconciler.reconcile(NS, NAME)
    await _report_ready(client, NAME)
    deployment = api.live("apps/v1", "deployments", NS, NAME)
    assert deployment is not None
    assert client.only_status_changed(deployment), "only the controller's status write happened"
    await _report_ready(client, f"{NAME}-redis")

    before = len(api.calls)
    result = await reconciler.refresh_status(NS, NAME)
    assert result is not None
    assert result.applied == {}
    assert result.deleted == []
    calls = [(c.method, c.path) for c in api.calls[before:]]
    model = kinds.SENTIMENT_MODEL.object_path(NS, NAME)
    assert [c for c in calls if c[0] != "GET"] == [("PATCH", f"{model}/status")]
    assert sorted(path for method, path in calls if method == "GET") == sorted(
        [
            model,
            kinds.DEPLOYMENT.object_path(NS, NAME),
            kinds.DEPLOYMENT.object_path(NS, f"{NAME}-redis"),
        ]
    )
    assert (ready(api)["status"], ready(api)["reason"]) == ("True", "Ready")
    assert [e.reason for e in result.events] == ["Ready"]


async def test_a_spec_edit_of_a_child_is_not_mistaken_for_a_status_change(
    api: MemoryApi, client: MemoryKube
) -> None:
    await create(client, SPEC)
    await Reconciler(client).reconcile(NS, NAME)
    await client.request(
        "PATCH",
        kinds.DEPLOYMENT.object_path(NS, NAME),
        body={"spec": {"revisionHistoryLimit": 1}},
        content_type="application/merge-patch+json",
    )
    deployment = api.live("apps/v1", "deployments", NS, NAME)
    assert deployment is not None
    assert not client.only_status_changed(deployment)
    assert not client.only_status_changed(
        {**deployment, "metadata": {**deployment["metadata"], "name": "other"}}
    )


async def test_a_status_refresh_reconciles_in_full_when_the_spec_moved_on(
    api: MemoryApi, client: MemoryKube
) -> None:
    """A new generation (or a Ready reason a child's status cannot resolve) needs the children applied."""
    await create(client, SPEC)
    reconciler = Reconciler(client)
    await reconciler.reconcile(NS, NAME)
    await respec(client, {**SPEC, "replicas": 2})
    result = await reconciler.refresh_status(NS, NAME)
    assert result is not None
    assert result.applied[f"Deployment {NS}/{NAME}"] == "updated"
    deployment = api.live("apps/v1", "deployments", NS, NAME)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 2
