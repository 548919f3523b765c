"""The kinds registry is the one source of what the operator manages: a kind added there alone is watched
(with the server-side child selector), pruned, and permitted in the ClusterRole."""

from __future__ import annotations

from typing import Any

import kopf
import pytest
from memory_kube import MemoryApi, MemoryKube
from sentiment_operator import handlers, kinds, names, rbac
from sentiment_operator.reconciler import Reconciler

CONFIG_MAP = kinds.Kind("v1", "ConfigMap", "configmaps")
NS, NAME = "default", "demo"


@pytest.fixture
def with_config_maps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kinds, "CHILD_KINDS", (*kinds.CHILD_KINDS, kinds.ChildKind(CONFIG_MAP)))


@pytest.mark.usefixtures("with_config_maps")
def test_a_kind_added_to_the_registry_is_in_the_cluster_role() -> None:
    rules = {(r["apiGroups"][0], r["resources"][0]): r["verbs"] for r in rbac.cluster_role_rules()}
    assert rules["", "configmaps"] == ["create", "delete", "get", "list", "patch", "watch"]


@pytest.mark.usefixtures("with_config_maps")
def test_a_kind_added_to_the_registry_is_watched_through_the_child_selector() -> None:
    registry = kopf.OperatorRegistry()
    handlers.register(registry)
    watched = {
        (h.selector.group, h.selector.version, h.selector.plural or h.selector.any_name)
        for resource_handlers in [registry._watching.get_all_handlers()]
        for h in resource_handlers
    }
    assert ("", "v1", "configmaps") in watched
    settings = kopf.OperatorSettings()
    handlers.configure_settings(settings, handlers.OperatorConfig())
    assert settings.watching.label_selectors["", "v1", "configmaps"] == names.CHILD_SELECTOR


@pytest.mark.usefixtures("with_config_maps")
async def test_a_kind_added_to_the_registry_is_pruned() -> None:
    api = MemoryApi()
    api.served["v1"]["configmaps"] = ("ConfigMap", True, False)
    client = MemoryKube(api)
    model: dict[str, Any] = await client.request(
        "POST",
        kinds.SENTIMENT_MODEL.collection_path(NS),
        body={
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": {"name": NAME},
            "spec": {"autoscaling": {"enabled": False}},
        },
    )
    owner = {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "name": NAME,
        "uid": model["metadata"]["uid"],
    }
    stale = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{NAME}-left-behind",
            "labels": names.instance_selector(NAME),
            "ownerReferences": [{**owner, "controller": True}],
        },
    }
    await client.request("POST", CONFIG_MAP.collection_path(NS), body=stale)
    result = await Reconciler(client).reconcile(NS, NAME)
    assert result is not None
    assert f"ConfigMap {NS}/{NAME}-left-behind" in result.deleted
    assert api.live("v1", "configmaps", NS, f"{NAME}-left-behind") is None
