"""Server-side apply against https://kubernetes.io/docs/reference/using-api/server-side-apply/
(apiserver/apply.py). Each test names the section of that page it reproduces."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sentiment_devcluster.apiserver.apply import (
    ApplyConflict,
    apply,
    field_set,
    from_fields_v1,
    read_entries,
    record_update,
    to_fields_v1,
)
from sentiment_devcluster.apiserver.schema import TypeInfo

DEPLOYMENT = TypeInfo("Deployment", has_status=True)


def deployment(**pod: Any) -> dict[str, Any]:
    pod.setdefault("containers", [{"name": "app", "image": "app:1"}])
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "default", "labels": {"app": "d"}},
        "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {"spec": pod}},
    }


def pod(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def managers(obj: dict[str, Any]) -> dict[tuple[str, str], Any]:
    return {(e.manager, e.operation): e.fields for e in read_entries(obj)}


def test_apply_creates_and_records_the_manager() -> None:
    """ "Field management": the applier is recorded in managedFields with operation Apply."""
    obj = apply(None, deployment(), DEPLOYMENT, manager="op")
    assert pod(obj)["containers"] == [{"name": "app", "image": "app:1"}]
    (entry,) = obj["metadata"]["managedFields"]
    assert entry["manager"] == "op"
    assert entry["operation"] == "Apply"
    assert entry["fieldsType"] == "FieldsV1"
    containers = entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert containers == {'k:{"name":"app"}': {".": {}, "f:image": {}, "f:name": {}}}
    # Identity and server-set metadata are owned by no one.
    assert "f:name" not in entry["fieldsV1"]["f:metadata"]
    assert entry["fieldsV1"]["f:metadata"]["f:labels"] == {"f:app": {}}


def test_fields_v1_round_trips() -> None:
    fields = field_set(deployment(env_test=None), DEPLOYMENT)
    assert from_fields_v1(to_fields_v1(fields)) == fields


def test_a_field_no_longer_applied_is_removed() -> None:
    """ "Merge strategy": fields the manager applied before and omits now are removed (when no one else
    owns them): a list-map element (an init container), a map entry, a whole map, an env var."""
    first = deployment(
        initContainers=[{"name": "wait", "image": "busybox"}],
        nodeSelector={"pool": "cpu"},
        containers=[{"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}, {"name": "B"}]}],
    )
    live = apply(None, first, DEPLOYMENT, manager="op")
    second = deployment(containers=[{"name": "app", "image": "app:1", "env": [{"name": "B"}]}])
    live = apply(live, second, DEPLOYMENT, manager="op")
    spec = pod(live)
    assert "initContainers" not in spec
    assert "nodeSelector" not in spec
    assert spec["containers"] == [{"name": "app", "image": "app:1", "env": [{"name": "B"}]}]


def test_list_maps_merge_by_key_and_keep_other_managers_elements() -> None:
    """ "Merge strategy": listType=map merges element by element on the keys; another manager's element
    (an injected sidecar) stays."""
    live = apply(None, deployment(), DEPLOYMENT, manager="op")
    sidecar = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy"}]}}},
    }
    live = apply(live, sidecar, DEPLOYMENT, manager="mesh")
    live = apply(live, deployment(containers=[{"name": "app", "image": "app:2"}]), DEPLOYMENT, manager="op")
    assert pod(live)["containers"] == [{"name": "app", "image": "app:2"}, {"name": "proxy", "image": "envoy"}]


def test_ports_merge_by_container_port_and_protocol() -> None:
    live = apply(
        None,
        deployment(containers=[{"name": "app", "ports": [{"containerPort": 80}, {"containerPort": 9090}]}]),
        DEPLOYMENT,
        manager="op",
    )
    live = apply(
        live,
        deployment(containers=[{"name": "app", "ports": [{"containerPort": 80}]}]),
        DEPLOYMENT,
        manager="op",
    )
    assert pod(live)["containers"][0]["ports"] == [{"containerPort": 80}]


def test_fields_owned_by_an_update_are_kept_when_the_applier_omits_them() -> None:
    """ "Using Server-Side Apply in a controller" / "Transferring ownership": replicas set by the HPA (an
    Update) stay when the applier's configuration leaves them out."""
    live = apply(None, deployment(), DEPLOYMENT, manager="op")
    before = copy.deepcopy(live)
    live["spec"]["replicas"] = 5
    record_update(before, live, DEPLOYMENT, manager="hpa")
    assert managers(live)[("hpa", "Update")] == {("f:spec", "f:replicas")}
    live = apply(live, deployment(), DEPLOYMENT, manager="op")
    assert live["spec"]["replicas"] == 5


def test_a_conflicting_apply_is_refused_and_force_takes_ownership() -> None:
    """ "Conflicts": another manager owns the field with another value: 409 unless force, which moves the
    field to the applier."""
    live = apply(
        None, {**deployment(), "spec": {**deployment()["spec"], "replicas": 2}}, DEPLOYMENT, manager="a"
    )
    mine = {**deployment(), "spec": {**deployment()["spec"], "replicas": 3}}
    with pytest.raises(ApplyConflict) as caught:
        apply(live, mine, DEPLOYMENT, manager="b")
    assert str(caught.value).startswith("Apply failed with")
    assert 'conflict with "a" using apps/v1: .spec.replicas' in str(caught.value)
    forced = apply(live, mine, DEPLOYMENT, manager="b", force=True)
    assert forced["spec"]["replicas"] == 3
    assert ("f:spec", "f:replicas") not in managers(forced)[("a", "Apply")]
    assert ("f:spec", "f:replicas") in managers(forced)[("b", "Apply")]


def test_applying_the_same_value_shares_ownership_without_conflict() -> None:
    """ "Conflicts": "if the value is the same, the field is shared" (both managers own it)."""
    live = apply(None, deployment(), DEPLOYMENT, manager="a")
    live = apply(live, deployment(), DEPLOYMENT, manager="b")
    owners = managers(live)
    assert ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"app"}', "f:image") in owners[
        ("b", "Apply")
    ]
    # "a" stops applying the image: "b" still owns it, so it stays.
    live = apply(live, deployment(containers=[{"name": "app"}]), DEPLOYMENT, manager="a")
    assert pod(live)["containers"] == [{"name": "app", "image": "app:1"}]


def test_update_entries_take_over_the_fields_they_change() -> None:
    """ "Field management": a non-apply write makes its manager the owner of what it changed (operation
    Update), and those fields leave the other managers' sets."""
    live = apply(None, deployment(), DEPLOYMENT, manager="op")
    before = copy.deepcopy(live)
    pod(live)["containers"][0]["image"] = "app:9"
    record_update(before, live, DEPLOYMENT, manager="kubectl-edit")
    image = ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"app"}', "f:image")
    assert image in managers(live)[("kubectl-edit", "Update")]
    assert image not in managers(live)[("op", "Apply")]


def test_fields_written_by_merge_patches_survive_the_first_apply_of_the_same_controller() -> None:
    """ "Upgrading from client-side apply to server-side apply": fields a controller once wrote with merge
    patches belong to its Update entry, so its first apply cannot remove them: they stay until the entry is
    migrated (client-go's csaupgrade). This is the trap an upgraded operator must handle."""
    old = deployment(nodeSelector={"pool": "cpu"})
    live = copy.deepcopy(old)
    record_update(None, live, DEPLOYMENT, manager="sentiment-operator")
    live = apply(live, deployment(), DEPLOYMENT, manager="sentiment-operator")
    assert pod(live)["nodeSelector"] == {"pool": "cpu"}


def test_status_is_not_applied_through_the_main_resource() -> None:
    """Status subresource: the main resource ignores status, and /status ignores the rest."""
    config = {**deployment(), "status": {"replicas": 9}}
    live = apply(None, config, DEPLOYMENT, manager="op")
    assert "status" not in live
    status = apply(
        live, {**deployment(), "status": {"replicas": 1}}, DEPLOYMENT, manager="ctl", subresource="status"
    )
    assert status["status"] == {"replicas": 1}
    entry = next(e for e in status["metadata"]["managedFields"] if e["manager"] == "ctl")
    assert entry["subresource"] == "status"
    assert set(entry["fieldsV1"]) == {"f:status"}
