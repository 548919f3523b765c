"""KEDA's admission webhook rule (apiserver/keda.py) against KEDA's own webhook (kedacore/keda
apis/keda/v1alpha1/scaledobject_webhook.go, verifyHpas), and through the test API server over HTTP: a
ScaledObject whose Deployment an HPA already scales is refused with 403 and KEDA's message; deleting the HPA
first lets it in. Also the custom metrics API's discovery a metrics adapter serves."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kmock
import pytest
from sentiment_devcluster.apiserver import keda
from sentiment_devcluster.apiserver.server import ApiServer

NS = "default"
HPAS = f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers"
SCALED_OBJECTS = f"/apis/keda.sh/v1alpha1/namespaces/{NS}/scaledobjects"


def scaled_object(name: str = "so", target: str = "web", **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": NS, **extra.pop("metadata", {})},
        "spec": {
            "scaleTargetRef": {"name": target, **extra.pop("ref", {})},
            "triggers": [{"type": "cpu", "metadata": {"value": "50"}}],
            **extra,
        },
    }


def hpa(name: str = "web", target: str = "web", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": NS, **meta},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": 1,
            "maxReplicas": 3,
        },
    }


# ------------------------------------------------------------------------------------------- the rule


def test_an_hpa_on_the_same_deployment_refuses_the_scaled_object_with_kedas_words() -> None:
    reason = keda.denial(scaled_object(), [hpa()])
    assert reason == "the workload 'web' of type 'apps/v1.Deployment' is already managed by the hpa 'web'"
    assert keda.message(reason) == (
        "admission webhook \"vscaledobject.kb.io\" denied the request: the workload 'web' of type "
        "'apps/v1.Deployment' is already managed by the hpa 'web'"
    )


def test_other_workloads_and_kinds_do_not_matter() -> None:
    assert keda.denial(scaled_object(), [hpa(target="other")]) is None
    stateful = scaled_object(ref={"apiVersion": "apps/v1", "kind": "StatefulSet"})
    assert keda.denial(stateful, [hpa()]) is None  # same name, another kind of workload


def test_the_scaled_objects_own_hpa_and_opted_out_hpas_are_allowed() -> None:
    own = hpa("keda-hpa-so", ownerReferences=[{"kind": "ScaledObject", "name": "so", "uid": "u"}])
    assert keda.denial(scaled_object(), [own]) is None
    someone_elses = hpa("keda-hpa-x", ownerReferences=[{"kind": "ScaledObject", "name": "x", "uid": "v"}])
    assert keda.denial(scaled_object(), [someone_elses]) is not None
    opted_out = hpa(annotations={keda.HPA_OWNERSHIP_ANNOTATION: "false"})
    assert keda.denial(scaled_object(), [opted_out]) is None


def test_an_ownership_transfer_must_name_the_hpa() -> None:
    annotations = {keda.TRANSFER_ANNOTATION: "true"}
    unnamed = scaled_object(metadata={"annotations": annotations})
    assert "must be specified by name in advanced settings" in str(keda.denial(unnamed, [hpa()]))
    named = scaled_object(
        metadata={"annotations": annotations},
        advanced={"horizontalPodAutoscalerConfig": {"name": "web"}},
    )
    assert keda.denial(named, [hpa()]) is None


# --------------------------------------------------------------------------------------- through the server


@pytest.fixture
async def server() -> AsyncIterator[tuple[ApiServer, str]]:
    async with ApiServer() as api, kmock.Server(api) as http:
        api.register()
        api.install_keda()
        yield api, str(http.url).rstrip("/")


async def _call(
    url: str, method: str, path: str, body: Any = None, content_type: str = "application/json"
) -> tuple[int, Any]:
    headers = {"Content-Type": content_type, "User-Agent": "test-client"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, url + path, data=None if body is None else json.dumps(body), headers=headers
        ) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def test_the_wrong_order_is_refused_and_the_right_one_admitted(server: tuple[ApiServer, str]) -> None:
    api, url = server
    assert (await _call(url, "POST", HPAS, hpa()))[0] == 201
    status, body = await _call(url, "POST", SCALED_OBJECTS, scaled_object())
    assert status == 403
    assert body["reason"] == "Forbidden"
    assert body["message"].startswith('admission webhook "vscaledobject.kb.io" denied the request: ')
    assert api.live("keda.sh/v1alpha1/scaledobjects", NS, "so") is None, "nothing is stored"
    # Server-side apply is admitted the same way.
    apply = "application/apply-patch+yaml"
    status, _ = await _call(url, "PATCH", f"{SCALED_OBJECTS}/so?fieldManager=t", scaled_object(), apply)
    assert status == 403
    assert api.live("keda.sh/v1alpha1/scaledobjects", NS, "so") is None
    assert (await _call(url, "DELETE", f"{HPAS}/web"))[0] == 200
    assert (await _call(url, "POST", SCALED_OBJECTS, scaled_object()))[0] == 201
    # An HPA created afterwards is not the webhook's business (it validates ScaledObjects only)...
    assert (await _call(url, "POST", HPAS, hpa()))[0] == 201
    # ...but the next update of the ScaledObject is refused while that HPA exists.
    merge = "application/merge-patch+json"
    status, body = await _call(url, "PATCH", f"{SCALED_OBJECTS}/so", {"spec": {"minReplicaCount": 2}}, merge)
    assert status == 403, body


async def test_the_custom_metrics_api_lists_what_an_adapter_serves(server: tuple[ApiServer, str]) -> None:
    api, url = server
    status, _ = await _call(url, "GET", "/apis/custom.metrics.k8s.io/v1beta1")
    assert status == 404
    api.serve_custom_metrics("sentiment_queue_depth")
    status, body = await _call(url, "GET", "/apis/custom.metrics.k8s.io/v1beta1")
    assert status == 200
    assert [r["name"] for r in body["resources"]] == ["pods/sentiment_queue_depth"]
