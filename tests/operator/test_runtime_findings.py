"""Real-cluster correctness findings in the apply layer (sentiment_operator.kube), against the test API
server, which exposes what kmock forgave; each is a regression test of its fix."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from operator_emulator import NAMESPACE, Cluster, eventually
from sentiment_devcluster.apiserver.server import Fault, matcher
from sentiment_operator import kinds, kube, names
from sentiment_operator.kube import Kube


@pytest.fixture
def client(cluster: Cluster) -> Kube:
    return Kube.for_server(cluster.url, timeout=2.0)


def deployment(env: list[dict[str, Any]], **pod: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "demo",
            "namespace": NAMESPACE,
            "labels": {"app": "demo", names.LABEL_MANAGED_BY: names.MANAGED_BY},
        },
        "spec": {
            "selector": {"matchLabels": {"app": "demo"}},
            "template": {
                "metadata": {"labels": {"app": "demo"}},
                "spec": {"containers": [{"name": "server", "image": "img:1", "env": env}], **pod},
            },
        },
    }


def live_pod(cluster: Cluster) -> dict[str, Any]:
    live = cluster.api.live("apps/v1/deployments", NAMESPACE, "demo")
    assert live is not None
    spec: dict[str, Any] = live["spec"]["template"]["spec"]
    return spec


@pytest.fixture
async def owner_ref(cluster: Cluster) -> dict[str, Any]:
    """A controller ownerReference to a SentimentModel that exists (the API server's garbage collector deletes
    a dependent whose owner does not)."""
    owner = await cluster.create_model("demo", {})
    return {
        "apiVersion": "serving.sentiment.dev/v1alpha1",
        "kind": "SentimentModel",
        "name": "demo",
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


async def test_an_empty_env_value_causes_no_perpetual_write(cluster: Cluster, client: Kube) -> None:
    """#2: the API server drops ``value: ""`` (omitempty); what it stores still counts as what we sent."""
    assert (await client.create_or_update(deployment([{"name": "PREFIX", "value": ""}]))).outcome == "created"
    assert (
        await client.create_or_update(deployment([{"name": "PREFIX", "value": ""}]))
    ).outcome == "unchanged"
    assert live_pod(cluster)["containers"][0]["env"] == [{"name": "PREFIX"}]


async def test_a_field_no_longer_rendered_leaves_the_live_object(cluster: Cluster, client: Kube) -> None:
    """#1: a map, an init container and an env var the builders stop rendering disappear from the child."""
    env = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    first = deployment(
        env, nodeSelector={"pool": "cpu"}, initContainers=[{"name": "wait", "image": "busybox:1"}]
    )
    assert (await client.create_or_update(first)).outcome == "created"
    assert (await client.create_or_update(deployment(env[:1]))).outcome == "updated"
    pod = live_pod(cluster)
    assert "nodeSelector" not in pod
    assert "initContainers" not in pod
    assert pod["containers"][0]["env"] == env[:1]


async def test_fields_written_by_the_merge_patching_operator_are_removed_after_the_upgrade(
    cluster: Cluster, client: Kube
) -> None:
    """#1 on an upgraded cluster: a child written by earlier versions (create + merge patches, so Update
    entries of our manager) loses the fields we no longer render at the first apply (csaupgrade)."""
    old = deployment([{"name": "A", "value": "1"}], nodeSelector={"pool": "cpu"})
    await client.request("POST", kinds.DEPLOYMENT.collection_path(NAMESPACE), body=old)
    live = cluster.api.live("apps/v1/deployments", NAMESPACE, "demo")
    assert live is not None
    assert [(e["manager"], e["operation"]) for e in live["metadata"]["managedFields"]] == [
        ("sentiment-operator", "Update")
    ]
    assert (await client.create_or_update(deployment([{"name": "A", "value": "1"}]))).outcome == "updated"
    assert "nodeSelector" not in live_pod(cluster)
    migrated = cluster.api.live("apps/v1/deployments", NAMESPACE, "demo")
    assert migrated is not None
    assert [(e["manager"], e["operation"]) for e in migrated["metadata"]["managedFields"]] == [
        ("sentiment-operator", "Apply")
    ]


async def test_fields_other_actors_own_are_left_alone(cluster: Cluster, client: Kube) -> None:
    """The HPA's replicas and another controller's label survive our applies (we never send them)."""
    assert (await client.create_or_update(deployment([]))).outcome == "created"
    path = kinds.DEPLOYMENT.object_path(NAMESPACE, "demo")
    patch = {"spec": {"replicas": 4}, "metadata": {"labels": {"team": "ml"}}}
    await client.request(
        "PATCH",
        path,
        body=patch,
        content_type="application/merge-patch+json",
        query=[("fieldManager", "hpa")],
    )
    assert (await client.create_or_update(deployment([]))).outcome == "unchanged"
    live = cluster.api.live("apps/v1/deployments", NAMESPACE, "demo")
    assert live is not None
    assert live["spec"]["replicas"] == 4
    assert live["metadata"]["labels"]["team"] == "ml"


async def test_an_object_we_do_not_own_is_never_overwritten(
    cluster: Cluster, client: Kube, owner_ref: dict[str, Any]
) -> None:
    """#3: an existing object with a child's name but no ownerReference to our owner is left alone."""
    theirs = copy.deepcopy(deployment([]))
    theirs["metadata"]["labels"] = {"app": "theirs"}
    theirs["spec"]["template"]["spec"]["containers"][0]["image"] = "theirs:1"
    await client.request("POST", kinds.DEPLOYMENT.collection_path(NAMESPACE), body=theirs)
    ours = deployment([])
    ours["metadata"]["ownerReferences"] = [owner_ref]
    with pytest.raises(kube.NotOwned, match="Deployment default/demo already exists and belongs to nothing"):
        await client.create_or_update(ours)
    assert live_pod(cluster)["containers"][0]["image"] == "theirs:1"


async def test_a_users_deployment_in_the_way_is_reported_not_taken_over(cluster: Cluster) -> None:
    """#3 end to end: Ready=False/ChildNotOwned naming the object, one Warning Event, the user's object
    untouched, every other child applied."""
    await cluster.start_operator()
    theirs = deployment([])
    theirs["metadata"]["labels"] = {"team": "theirs"}
    await cluster.http("POST", "/apis/apps/v1/namespaces/default/deployments", theirs)
    await cluster.create_model(
        "demo", {"image": "registry.example/inference:1.0", "cache": {"enabled": False}}
    )
    ready = await eventually(
        lambda: (c := cluster.condition("demo", "Ready")) and c.get("reason") == "ChildNotOwned" and c,
        what="Ready=False/ChildNotOwned",
    )
    assert ready["status"] == "False"
    assert "Deployment default/demo already exists" in ready["message"]
    await eventually(lambda: cluster.api.live("v1/services", NAMESPACE, "demo"), what="the Service")
    await eventually(lambda: cluster.events(reason="ChildNotOwned", type="Warning"), what="the Warning")
    # Another reconcile (a spec change) meets the same clash: status stays, no second Event.
    await cluster.patch_model("demo", {"spec": {"replicas": 2}})
    await eventually(lambda: (cluster.model("demo") or {}).get("status", {}).get("observedGeneration") == 2)
    live = cluster.api.live("apps/v1/deployments", NAMESPACE, "demo")
    assert live is not None
    assert live["metadata"]["labels"] == {"team": "theirs"}
    assert "ownerReferences" not in live["metadata"]
    assert len(cluster.events(reason="ChildNotOwned", type="Warning")) == 1


async def test_an_object_replaced_between_the_ownership_check_and_the_apply_is_not_taken_over(
    cluster: Cluster, client: Kube, owner_ref: dict[str, Any]
) -> None:
    """The apply carries the resourceVersion the ownership check read: if the object was deleted and
    re-created by someone else in between, the write fails with 409 and the retry sees the new owner."""
    ours = deployment([])
    ours["metadata"]["ownerReferences"] = [owner_ref]
    await client.create_or_update(ours)

    def replace(_: Any) -> None:
        theirs = cluster.api.live("apps/v1/deployments", NAMESPACE, "demo")
        assert theirs is not None
        theirs["metadata"]["ownerReferences"] = []
        theirs["metadata"]["resourceVersion"] = cluster.api.next_resource_version()
        theirs["spec"]["template"]["spec"]["containers"][0]["image"] = "theirs:1"
        stored = cluster.api.objects["apps/v1/deployments", NAMESPACE, "demo"]
        stored["metadata"] = theirs["metadata"]
        stored["spec"] = theirs["spec"]

    cluster.api.inject(Fault(matcher(method="PATCH", plural="deployments", name="demo"), hook=replace))
    changed = copy.deepcopy(ours)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "ours:2"
    with pytest.raises(kube.Conflict, match="the object has been modified"):
        await client.create_or_update(changed)
    assert live_pod(cluster)["containers"][0]["image"] == "theirs:1"
    with pytest.raises(kube.NotOwned):
        await client.create_or_update(changed)
