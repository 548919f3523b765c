"""The test API server over HTTP (apiserver/server.py): each behaviour a client relies on, as a client
sees it, with the documented kube-apiserver behaviour it reproduces."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import kmock
import pytest
from sentiment_devcluster.apiserver.server import ApiServer, project_crd_schemas

DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
MODELS = "/apis/serving.sentiment.dev/v1alpha1/namespaces/default/sentimentmodels"
APPLY = "application/apply-patch+yaml"


@dataclass
class Answer:
    status: int
    body: Any


@dataclass
class Api:
    server: ApiServer
    url: str

    async def call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json", **params: str
    ) -> Answer:
        data = body if isinstance(body, str) else None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type, "User-Agent": "emulator-test/1.0"}
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.request(method, self.url + path, data=data, headers=headers, params=params) as resp,
        ):
            text = await resp.text()
            try:
                return Answer(resp.status, json.loads(text))
            except ValueError:
                return Answer(resp.status, text)

    async def ok(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json", **params: str
    ) -> Any:
        answer = await self.call(method, path, body, content_type, **params)
        assert answer.status < 300, answer
        return answer.body


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with ApiServer(crd_schemas=project_crd_schemas()) as server, kmock.Server(server) as http:
        server.register()
        yield Api(server, str(http.url).rstrip("/"))


def deployment(name: str = "d", **pod: Any) -> dict[str, Any]:
    pod.setdefault("containers", [{"name": "app", "image": "app:1"}])
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod},
        },
    }


def model(name: str = "m", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.sentiment.dev/v1alpha1",
        "kind": "SentimentModel",
        "metadata": {"name": name},
        "spec": spec,
    }


# ------------------------------------------------------------------------------------------ server-side apply


async def test_a_missing_object_is_a_not_found_status_an_unserved_resource_a_plain_404(api: Api) -> None:
    """kube-apiserver: GET of a missing object of a served resource is a Status with reason NotFound
    ("deployments.apps \"x\" not found"); a path of a resource it does not serve is answered like any unknown
    URL, "404 page not found" as text. Clients tell the two apart without asking discovery."""
    missing = await api.call("GET", f"{DEPLOYMENTS}/nope")
    assert missing.status == 404
    assert (missing.body["kind"], missing.body["reason"]) == ("Status", "NotFound")
    assert missing.body["message"] == 'deployments.apps "nope" not found'
    unserved = await api.call("GET", "/apis/networking.istio.io/v1/namespaces/default/virtualservices/vs")
    assert (unserved.status, unserved.body) == (404, "404 page not found\n")
    unknown = await api.call("GET", "/apis/apps/v1/namespaces/default/widgets/w")
    assert (unknown.status, unknown.body) == (404, "404 page not found\n")
    api.server.install_istio()
    served = await api.call("GET", "/apis/networking.istio.io/v1/namespaces/default/virtualservices/vs")
    assert served.body["reason"] == "NotFound"


async def test_apply_creates_prunes_and_conflicts(api: Api) -> None:
    """Server-side apply ("Field management", "Conflicts"): create on apply, fields no longer applied are
    removed, a field another manager set is a 409 naming it, and force takes it over."""
    first = deployment(initContainers=[{"name": "wait", "image": "busybox:1"}], nodeSelector={"pool": "a"})
    created = await api.call("PATCH", f"{DEPLOYMENTS}/d", json.dumps(first), APPLY, fieldManager="op")
    assert created.status == 201
    assert created.body["metadata"]["managedFields"][0]["manager"] == "op"
    second = await api.ok("PATCH", f"{DEPLOYMENTS}/d", json.dumps(deployment()), APPLY, fieldManager="op")
    assert "initContainers" not in second["spec"]["template"]["spec"]
    assert "nodeSelector" not in second["spec"]["template"]["spec"]

    await api.ok("PATCH", f"{DEPLOYMENTS}/d", {"spec": {"replicas": 3}}, "application/merge-patch+json")
    mine = {**deployment(), "spec": {**deployment()["spec"], "replicas": 1}}
    conflict = await api.call("PATCH", f"{DEPLOYMENTS}/d", json.dumps(mine), APPLY, fieldManager="op")
    assert conflict.status == 409
    assert conflict.body["reason"] == "Conflict"
    assert 'conflict with "emulator-test" using apps/v1: .spec.replicas' in conflict.body["message"]
    forced = await api.ok(
        "PATCH", f"{DEPLOYMENTS}/d", json.dumps(mine), APPLY, fieldManager="op", force="true"
    )
    assert forced["spec"]["replicas"] == 1


async def test_a_resource_version_in_an_apply_is_a_precondition(api: Api) -> None:
    """ "Using Server-Side Apply in a controller": a resourceVersion in the applied configuration makes the
    apply fail with 409 Conflict when the object changed since it was read."""
    created = await api.ok("PATCH", f"{DEPLOYMENTS}/d", json.dumps(deployment()), APPLY, fieldManager="op")
    read_at = created["metadata"]["resourceVersion"]
    await api.ok(
        "PATCH", f"{DEPLOYMENTS}/d", {"metadata": {"labels": {"x": "y"}}}, "application/merge-patch+json"
    )
    stale = {**deployment(), "metadata": {"name": "d", "resourceVersion": read_at}}
    refused = await api.call(
        "PATCH", f"{DEPLOYMENTS}/d", json.dumps(stale), APPLY, fieldManager="op", force="true"
    )
    assert refused.status == 409
    assert "the object has been modified" in refused.body["message"]
    live = await api.ok("GET", f"{DEPLOYMENTS}/d")
    current = {
        **deployment(),
        "metadata": {"name": "d", "resourceVersion": live["metadata"]["resourceVersion"]},
    }
    applied = await api.ok(
        "PATCH", f"{DEPLOYMENTS}/d", json.dumps(current), APPLY, fieldManager="op", force="true"
    )
    assert applied["metadata"]["labels"] == {"x": "y"}
    assert "resourceVersion" not in json.dumps(applied["metadata"]["managedFields"])


async def test_apply_needs_a_field_manager_and_accepts_yaml(api: Api) -> None:
    missing = await api.call("PATCH", f"{DEPLOYMENTS}/d", json.dumps(deployment()), APPLY)
    assert missing.status == 400
    assert "fieldManager is required" in missing.body["message"]
    as_yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: 2\n"
    created = await api.ok("PATCH", f"{DEPLOYMENTS}/d", as_yaml, APPLY, fieldManager="kubectl")
    assert created["spec"]["replicas"] == 2


async def test_update_entries_are_recorded_for_merge_patches(api: Api) -> None:
    """managedFields has an Update entry for the manager of a create or merge patch (from fieldManager, else
    the user agent), so that a later apply by that controller can be migrated (csaupgrade)."""
    await api.ok("POST", DEPLOYMENTS, deployment())
    patched = await api.ok(
        "PATCH",
        f"{DEPLOYMENTS}/d",
        {"spec": {"paused": True}},
        "application/merge-patch+json",
        fieldManager="op",
    )
    entries = {(e["manager"], e["operation"]) for e in patched["metadata"]["managedFields"]}
    assert entries == {("emulator-test", "Update"), ("op", "Update")}


# ----------------------------------------------------------------------------------------------- patches


async def test_strategic_merge_patch_merges_containers_and_is_refused_for_custom_resources(api: Api) -> None:
    """Strategic merge patch merges containers by name (k8s.io/api patchMergeKey); custom resources do not
    support it (415)."""
    await api.ok("POST", DEPLOYMENTS, deployment())
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "side:1"}]}}}}
    merged = await api.ok("PATCH", f"{DEPLOYMENTS}/d", patch, "application/strategic-merge-patch+json")
    assert [c["name"] for c in merged["spec"]["template"]["spec"]["containers"]] == ["app", "side"]
    await api.ok("POST", MODELS, model())
    refused = await api.call("PATCH", f"{MODELS}/m", {"spec": {}}, "application/strategic-merge-patch+json")
    assert refused.status == 415


async def test_merge_patch_replaces_lists_and_null_deletes(api: Api) -> None:
    await api.ok("POST", DEPLOYMENTS, deployment(nodeSelector={"a": "b"}))
    patch = {
        "spec": {
            "template": {"spec": {"containers": [{"name": "side", "image": "s:1"}], "nodeSelector": None}}
        }
    }
    merged = await api.ok("PATCH", f"{DEPLOYMENTS}/d", patch, "application/merge-patch+json")
    assert [c["name"] for c in merged["spec"]["template"]["spec"]["containers"]] == ["side"]
    assert "nodeSelector" not in merged["spec"]["template"]["spec"]


async def test_json_patch_test_failure_is_422(api: Api) -> None:
    await api.ok("POST", DEPLOYMENTS, deployment())
    failed = await api.call(
        "PATCH",
        f"{DEPLOYMENTS}/d",
        [{"op": "test", "path": "/metadata/resourceVersion", "value": "0"}],
        "application/json-patch+json",
    )
    assert failed.status == 422


async def test_put_with_a_stale_resource_version_is_a_conflict(api: Api) -> None:
    """Optimistic concurrency (API conventions, "Concurrency Control and Consistency"): an update whose
    resourceVersion is not the stored one is a 409."""
    created = await api.ok("POST", DEPLOYMENTS, deployment())
    await api.ok("PATCH", f"{DEPLOYMENTS}/d", {"spec": {"replicas": 2}}, "application/merge-patch+json")
    stale = await api.call("PUT", f"{DEPLOYMENTS}/d", created)
    assert stale.status == 409
    assert "the object has been modified" in stale.body["message"]


# ---------------------------------------------------------------------------------- dropping and defaults


async def test_the_stored_object_is_what_a_real_server_stores(api: Api) -> None:
    """omitempty zero values are dropped and defaults set, so reading back differs from what was sent the
    way it does on a real cluster."""
    sent = deployment(containers=[{"name": "app", "image": "app:1", "env": [{"name": "P", "value": ""}]}])
    stored = await api.ok("POST", DEPLOYMENTS, sent)
    container = stored["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "P"}]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert stored["spec"]["strategy"]["type"] == "RollingUpdate"
    assert stored["metadata"]["generation"] == 1


async def test_a_write_that_changes_nothing_is_not_written(api: Api) -> None:
    """An update that leaves the object as it is keeps its resourceVersion and sends no watch event."""
    created = await api.ok("POST", DEPLOYMENTS, deployment())
    again = await api.ok(
        "PATCH", f"{DEPLOYMENTS}/d", {"spec": {"replicas": 1}}, "application/merge-patch+json"
    )
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    same = await api.ok(
        "PATCH", f"{DEPLOYMENTS}/d", json.dumps(deployment()), APPLY, fieldManager="emulator-test"
    )
    changed = await api.ok(
        "PATCH", f"{DEPLOYMENTS}/d", {"spec": {"replicas": 4}}, "application/merge-patch+json"
    )
    assert int(changed["metadata"]["resourceVersion"]) > int(same["metadata"]["resourceVersion"])


# ----------------------------------------------------------------------------------------- custom resources


async def test_custom_resources_are_pruned_defaulted_and_validated(api: Api) -> None:
    """CRD structural schema: unknown fields pruned, defaults set, CEL rules enforced (422)."""
    stored = await api.ok("POST", MODELS, {**model(replicaz=2), "bogus": 1})
    assert "replicaz" not in stored["spec"]
    assert "bogus" not in stored
    assert stored["spec"]["model"]["id"] == "distilbert-base-uncased-finetuned-sst-2-english"
    invalid = await api.call(
        "POST", MODELS, model("n", autoscaling={"enabled": True, "minReplicas": 5, "maxReplicas": 2})
    )
    assert invalid.status == 422
    assert "minReplicas must be less than or equal to maxReplicas" in invalid.body["message"]


async def test_status_subresource_rules_and_generation(api: Api) -> None:
    """Status subresource: main-resource writes ignore status, /status writes ignore the rest; generation
    bumps on spec changes only."""
    created = await api.ok("POST", MODELS, {**model(replicas=1), "status": {"observedGeneration": 7}})
    assert "status" not in created
    assert created["metadata"]["generation"] == 1
    status = await api.ok(
        "PATCH",
        f"{MODELS}/m/status",
        {"spec": {"replicas": 9}, "status": {"observedGeneration": 1}},
        "application/merge-patch+json",
    )
    assert status["status"] == {"observedGeneration": 1}
    assert status["spec"]["replicas"] == 1
    assert status["metadata"]["generation"] == 1
    labelled = await api.ok(
        "PATCH", f"{MODELS}/m", {"metadata": {"labels": {"a": "b"}}}, "application/merge-patch+json"
    )
    assert labelled["metadata"]["generation"] == 1
    respec = await api.ok("PATCH", f"{MODELS}/m", {"spec": {"replicas": 2}}, "application/merge-patch+json")
    assert respec["metadata"]["generation"] == 2
    assert respec["status"] == {"observedGeneration": 1}


# ---------------------------------------------------------------------------- APIs installed as CRDs

GATEWAY_API = "/apis/gateway.networking.k8s.io"
ROUTES = f"{GATEWAY_API}/v1/namespaces/default/httproutes"


def http_route(name: str = "r", path: str = "/x") -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}]}],
        },
    }


async def _served(api: Api, group_version: str) -> list[str] | None:
    """The resources discovery lists for a group/version, or None when it is not served (404)."""
    answer = await api.call("GET", f"/apis/{group_version}")
    if answer.status == 404:
        return None
    assert answer.status == 200, answer
    return sorted(r["name"] for r in answer.body["resources"])


async def test_gateway_api_is_discovered_only_while_installed(api: Api) -> None:
    """API discovery (/apis/GROUP/VERSION) lists a CRD's resources, with its status subresource, exactly while
    the CRD is installed; deleting a CRD deletes its custom resources, and its paths answer like any unknown
    URL again. Gateway API before 1.0 serves HTTPRoute as v1beta1 only."""
    assert await _served(api, "gateway.networking.k8s.io/v1") is None
    assert (await api.call("GET", f"{ROUTES}/r")).body == "404 page not found\n"

    api.server.install_gateway_api("v1beta1")
    assert await _served(api, "gateway.networking.k8s.io/v1beta1") == ["httproutes", "httproutes/status"]
    assert await _served(api, "gateway.networking.k8s.io/v1") is None
    await api.server.uninstall("gateway.networking.k8s.io")

    api.server.install_gateway_api()
    assert await _served(api, "gateway.networking.k8s.io/v1") == ["httproutes", "httproutes/status"]
    await api.ok("POST", ROUTES, http_route())
    groups = (await api.ok("GET", "/apis"))["groups"]
    assert "gateway.networking.k8s.io" in {g["name"] for g in groups}

    await api.server.uninstall("gateway.networking.k8s.io")
    assert await _served(api, "gateway.networking.k8s.io/v1") is None
    assert (await api.call("GET", f"{ROUTES}/r")).body == "404 page not found\n"
    assert api.server.live("gateway.networking.k8s.io/v1/httproutes", "default", "r") is None
    groups = (await api.ok("GET", "/apis"))["groups"]
    assert "gateway.networking.k8s.io" not in {g["name"] for g in groups}
    api.server.install_gateway_api()
    assert (await api.call("GET", f"{ROUTES}/r")).body["reason"] == "NotFound", "deleted with its CRD"


async def test_an_http_route_is_a_custom_resource_whose_status_its_gateway_controller_writes(
    api: Api,
) -> None:
    """gateway.networking.k8s.io is a *.k8s.io group, but Gateway API is installed as CRDs: strategic merge
    patch is refused (415) as for any custom resource. A gateway controller's /status write changes neither
    spec nor metadata.generation; a spec change bumps the generation and leaves the status as it was, so a
    condition's observedGeneration shows it is stale (Gateway API's RouteParentStatus conditions)."""
    api.server.install_gateway_api()
    created = await api.ok("PATCH", f"{ROUTES}/r", json.dumps(http_route()), APPLY, fieldManager="op")
    assert created["metadata"]["generation"] == 1
    refused = await api.call("PATCH", f"{ROUTES}/r", {"spec": {}}, "application/strategic-merge-patch+json")
    assert refused.status == 415

    accepted = {"type": "Accepted", "status": "True", "reason": "Accepted", "observedGeneration": 1}
    parents = [{"parentRef": {"name": "gw"}, "controllerName": "example.com/gw", "conditions": [accepted]}]
    reported = await api.ok(
        "PATCH",
        f"{ROUTES}/r/status",
        {"spec": {"hostnames": ["ignored.example"]}, "status": {"parents": parents}},
        "application/merge-patch+json",
    )
    assert reported["metadata"]["generation"] == 1
    assert "hostnames" not in reported["spec"]
    assert reported["status"]["parents"] == parents

    changed = await api.ok(
        "PATCH", f"{ROUTES}/r", json.dumps(http_route(path="/y")), APPLY, fieldManager="op"
    )
    assert changed["metadata"]["generation"] == 2
    assert changed["status"]["parents"][0]["conditions"][0]["observedGeneration"] == 1
    same = await api.ok("PATCH", f"{ROUTES}/r", json.dumps(http_route(path="/y")), APPLY, fieldManager="op")
    assert same["metadata"]["generation"] == 2


# ---------------------------------------------------------------------------------- selectors and watches


async def _watch_events(
    api: Api, params: dict[str, str], while_watching: Callable[[], Awaitable[None]] | None = None
) -> list[dict[str, Any]]:
    """The events of a watch on Deployments with ``params``, until quiet for 0.2 s (at most 3 s)."""
    events: list[dict[str, Any]] = []

    async def watch() -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.get(api.url + DEPLOYMENTS, params={"watch": "true", **params}) as resp,
        ):
            async for line in resp.content:
                if line.strip():
                    events.append(json.loads(line))

    task = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    if while_watching is not None:
        await while_watching()
    seen = -1
    for _ in range(15):
        if len(events) == seen and events:
            break
        seen = len(events)
        await asyncio.sleep(0.2)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return events


async def test_list_and_watch_filter_by_label_selector(api: Api) -> None:
    await api.ok("POST", DEPLOYMENTS, deployment("a"))
    await api.ok("POST", DEPLOYMENTS, deployment("b"))
    listed = await api.ok("GET", DEPLOYMENTS, labelSelector="app=b")
    assert [item["metadata"]["name"] for item in listed["items"]] == ["b"]
    assert listed["metadata"]["resourceVersion"].isdigit()
    bad = await api.call("GET", DEPLOYMENTS, labelSelector="app in b")
    assert bad.status == 400

    async def create_two() -> None:
        await api.ok("POST", DEPLOYMENTS, deployment("c"))
        await api.ok("POST", DEPLOYMENTS, deployment("e"))

    events = await _watch_events(api, {"labelSelector": "app=c"}, create_two)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "c")]


async def test_a_watch_from_the_lists_version_sends_only_later_changes(api: Api) -> None:
    """A watch that continues from a list's resourceVersion sees what changed after it, not the list again."""
    await api.ok("POST", DEPLOYMENTS, deployment("a"))
    listed = await api.ok("GET", DEPLOYMENTS)
    await api.ok("POST", DEPLOYMENTS, deployment("b"))
    events = await _watch_events(api, {"resourceVersion": listed["metadata"]["resourceVersion"]})
    assert [e["object"]["metadata"]["name"] for e in events] == ["b"]


# ------------------------------------------------------------------------------------- garbage collection


async def test_deleting_an_owner_deletes_its_dependents(api: Api) -> None:
    """Background cascading deletion: dependents whose owners are all gone are deleted; one with a
    remaining owner stays."""
    owner = await api.ok("POST", MODELS, model())
    other = await api.ok("POST", MODELS, model("keep"))

    def ref(obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return {
            "apiVersion": obj["apiVersion"],
            "kind": "SentimentModel",
            "name": meta["name"],
            "uid": meta["uid"],
        }

    child = deployment("child")
    child["metadata"]["ownerReferences"] = [ref(owner)]
    shared = deployment("shared")
    shared["metadata"]["ownerReferences"] = [ref(owner), ref(other)]
    await api.ok("POST", DEPLOYMENTS, child)
    await api.ok("POST", DEPLOYMENTS, shared)
    await api.ok("DELETE", f"{MODELS}/m")
    assert (await api.call("GET", f"{DEPLOYMENTS}/child")).status == 404
    assert (await api.call("GET", f"{DEPLOYMENTS}/shared")).status == 200


async def test_an_owner_held_by_a_finalizer_takes_its_dependents_when_the_finalizer_goes(api: Api) -> None:
    """Garbage collection docs, "Finalizers": a deleted owner with a finalizer only gets a deletionTimestamp
    and keeps its dependents; once the finalizer is removed (as kopf does) the owner is gone and the
    background collector deletes its dependents too."""
    owner = await api.ok("POST", MODELS, {**model(), "metadata": {"name": "m", "finalizers": ["x/y"]}})
    child = deployment("child")
    child["metadata"]["ownerReferences"] = [
        {
            "apiVersion": owner["apiVersion"],
            "kind": "SentimentModel",
            "name": "m",
            "uid": owner["metadata"]["uid"],
        }
    ]
    await api.ok("POST", DEPLOYMENTS, child)
    await api.ok("DELETE", f"{MODELS}/m")
    terminating = await api.ok("GET", f"{MODELS}/m")
    assert terminating["metadata"]["deletionTimestamp"]
    assert (await api.call("GET", f"{DEPLOYMENTS}/child")).status == 200
    await api.ok("PATCH", f"{MODELS}/m", {"metadata": {"finalizers": None}}, "application/merge-patch+json")
    assert (await api.call("GET", f"{MODELS}/m")).status == 404
    assert (await api.call("GET", f"{DEPLOYMENTS}/child")).status == 404


async def test_managed_fields_set_by_a_write_are_taken_as_given(api: Api) -> None:
    """Server-side apply docs, "Clearing managedFields" (and client-go's csaupgrade): a write that sets
    managedFields replaces them; ``[{}]`` clears them; an update that leaves them out keeps them."""
    created = await api.ok("POST", DEPLOYMENTS, deployment())
    entry = {**created["metadata"]["managedFields"][0], "manager": "renamed"}
    replaced = await api.ok(
        "PATCH",
        f"{DEPLOYMENTS}/d",
        [{"op": "replace", "path": "/metadata/managedFields", "value": [entry]}],
        "application/json-patch+json",
    )
    assert [e["manager"] for e in replaced["metadata"]["managedFields"]] == ["renamed"]
    put = {k: v for k, v in replaced.items() if k != "status"}
    put["metadata"] = {k: v for k, v in put["metadata"].items() if k != "managedFields"}
    put["spec"]["paused"] = True
    kept = await api.ok("PUT", f"{DEPLOYMENTS}/d", put)
    assert "renamed" in [e["manager"] for e in kept["metadata"]["managedFields"]]
    cleared = await api.ok(
        "PATCH", f"{DEPLOYMENTS}/d", {"metadata": {"managedFields": [{}]}}, "application/merge-patch+json"
    )
    assert "managedFields" not in cleared["metadata"]


async def test_a_dependent_written_after_its_owner_is_gone_is_collected(api: Api) -> None:
    """Garbage collection docs, "Owners and dependents": the API server stores an ownerReference to an owner
    that no longer exists (a controller's write racing the owner's deletion), and the garbage collector then
    deletes that dependent, since none of its owners exist."""
    owner = await api.ok("POST", MODELS, model())
    await api.ok("DELETE", f"{MODELS}/m")
    late = deployment("late")
    uid = owner["metadata"]["uid"]
    late["metadata"]["ownerReferences"] = [
        {"apiVersion": owner["apiVersion"], "kind": "SentimentModel", "name": "m", "uid": uid}
    ]
    created = await api.call("POST", DEPLOYMENTS, late)
    assert created.status == 201, created
    assert (await api.call("GET", f"{DEPLOYMENTS}/late")).status == 404


async def test_the_prometheus_operator_kinds_are_served_once_installed(api: Api) -> None:
    """A CRD's kind is served only once installed (discovery lists it, its paths answer with Statuses): the
    operator applies a ServiceMonitor by server-side apply and finds it again by its labels, as on a cluster
    running the Prometheus operator."""
    monitors = "/apis/monitoring.coreos.com/v1/namespaces/default/servicemonitors"
    assert (await api.call("GET", f"{monitors}/m")).body == "404 page not found\n"
    assert (await api.call("GET", "/apis/monitoring.coreos.com/v1")).status == 404
    api.server.install_prometheus_operator()
    discovery = await api.ok("GET", "/apis/monitoring.coreos.com/v1")
    assert {r["name"] for r in discovery["resources"]} >= {"servicemonitors", "prometheusrules"}
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "m", "namespace": "default", "labels": {"app": "a"}},
        "spec": {
            "selector": {"matchLabels": {"app": "a"}},
            "endpoints": [{"port": "http", "interval": "1s"}],
        },
    }
    created = await api.call("PATCH", f"{monitors}/m", json.dumps(monitor), APPLY, fieldManager="op")
    assert created.status == 201
    assert created.body["spec"]["endpoints"] == [{"port": "http", "interval": "1s"}]
    listed = await api.ok("GET", monitors, labelSelector="app=a")
    assert [item["metadata"]["name"] for item in listed["items"]] == ["m"]
    assert (await api.ok("GET", monitors, labelSelector="app=b"))["items"] == []


async def test_a_bounded_request_history_keeps_the_last_requests_and_still_serves() -> None:
    """kmock matches each request against its handlers by walking its whole request log; the embedded cluster,
    which runs for hours, keeps only the last ``request_history`` requests so each one costs the same. Serving
    is unchanged: every object written is read and listed as before."""
    async with ApiServer(request_history=20) as server, kmock.Server(server) as http:
        server.register()
        api = Api(server, str(http.url).rstrip("/"))
        await api.ok("POST", DEPLOYMENTS, deployment("first"))
        for index in range(60):
            await api.ok("POST", DEPLOYMENTS, deployment(f"d{index}"))
            assert (await api.ok("GET", f"{DEPLOYMENTS}/d{index}"))["metadata"]["name"] == f"d{index}"
        assert len(server) == 20  # the last 20 requests, the newest last
        assert [r.name for r in list(server)[-2:]] == [None, "d59"]
        listed = await api.ok("GET", DEPLOYMENTS)
        assert len(listed["items"]) == 61  # every object written is there, the first one too
    async with ApiServer() as unbounded, kmock.Server(unbounded) as http:
        unbounded.register()
        api = Api(unbounded, str(http.url).rstrip("/"))
        for index in range(30):
            await api.ok("POST", DEPLOYMENTS, deployment(f"d{index}"))
        assert len(unbounded) == 30  # by default (the tests' emulator) kmock keeps them all
