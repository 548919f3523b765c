"""The real operator against kmock's emulated API server with injected faults: a racing writer, API errors and
client timeouts, broken and expired watches, an operator killed mid-reconcile, semantically invalid specs.

Every test is bounded: polling with deadlines, fixed fault counts, short client timeouts and backoffs.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from typing import Any

import pytest
from operator_emulator import (
    NAMESPACE,
    SM_PATH,
    Cluster,
    OperatorHandle,
    assert_no_secret_leak,
    eventually,
)
from sentiment_devcluster.apiserver.server import Fault, matcher

NAME = "demo"
SPEC: dict[str, Any] = {"image": "registry.example/inference:1.0", "autoscaling": {"enabled": False}}
CHILDREN = [
    ("networking.k8s.io/v1/networkpolicies", f"{NAME}-redis"),
    ("networking.k8s.io/v1/networkpolicies", NAME),
    ("v1/secrets", f"{NAME}-redis-auth"),
    ("v1/services", f"{NAME}-redis"),
    ("apps/v1/deployments", f"{NAME}-redis"),
    ("v1/services", NAME),
    ("apps/v1/deployments", NAME),
]
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def _all_children(cluster: Cluster) -> bool:
    return all(cluster.api.live(path, NAMESPACE, name) is not None for path, name in CHILDREN)


def _created_once(cluster: Cluster, path: str, name: str) -> bool:
    return cluster.created_once(path, name)


def _image(cluster: Cluster) -> str | None:
    deployment = cluster.api.live("apps/v1/deployments", NAMESPACE, NAME)
    if deployment is None:
        return None
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


async def _make_ready(cluster: Cluster) -> dict[str, Any]:
    await cluster.set_deployment_status(f"{NAME}-redis", ready=1)
    await cluster.set_deployment_status(NAME, ready=1)
    ready: dict[str, Any] = await eventually(
        lambda: (c := cluster.condition(NAME, "Ready")) and c["status"] == "True" and c, what="Ready=True"
    )
    return ready


# --- case 8 ---------------------------------------------------------------------------------------


async def test_409_on_create_adopts_the_existing_object(cluster: Cluster, operator: OperatorHandle) -> None:
    """A racing writer creates the Deployment between our read and our apply: the apply makes it ours."""

    def racing_writer(request: Any) -> None:
        stale = copy.deepcopy(request.data)
        stale["metadata"] = {"name": NAME, "namespace": NAMESPACE, "uid": "created-by-someone-else"}
        stale["metadata"]["labels"] = {"team": "other"}
        stale["spec"]["template"]["spec"]["containers"][0]["image"] = "stale:0"
        cluster.api.objects["apps/v1/deployments", NAMESPACE, NAME] = stale

    race = cluster.api.inject(
        Fault(matcher(method="PATCH", plural="deployments", name=NAME), times=1, hook=racing_writer)
    )
    created = await cluster.create_model(NAME, SPEC)

    await eventually(lambda: _image(cluster) == SPEC["image"], what="the adopted Deployment updated")
    assert len(race.hits) == 1
    deployment = cluster.api.live("apps/v1/deployments", NAMESPACE, NAME)
    assert deployment is not None
    assert deployment["metadata"]["uid"] == "created-by-someone-else", "adopted, not deleted and re-created"
    refs = deployment["metadata"]["ownerReferences"]
    assert [(r["kind"], r["uid"]) for r in refs] == [("SentimentModel", created["metadata"]["uid"])]
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "sentiment-operator"
    assert not cluster.requests(method="DELETE")
    assert sorted(d["metadata"]["name"] for d in cluster.api.live_all("apps/v1/deployments")) == [
        NAME,
        f"{NAME}-redis",
    ]
    await eventually(lambda: _all_children(cluster), what="every child")
    await _make_ready(cluster)
    assert (cluster.model(NAME) or {})["status"]["observedGeneration"] == 1


# --- case 9 ---------------------------------------------------------------------------------------


async def test_5xx_and_timeouts_are_retried_with_backoff_and_converge_once(
    cluster: Cluster, operator: OperatorHandle, all_logs: pytest.LogCaptureFixture
) -> None:
    """Three 503s, then one request slower than the client timeout (2 s), then the API recovers."""
    errors = cluster.api.inject(
        Fault(matcher(method="PATCH", plural="deployments", name=NAME), times=3, status=503)
    )
    slow = cluster.api.inject(
        Fault(matcher(method="PATCH", plural="deployments", name=NAME), times=1, delay=3.0)
    )
    await cluster.create_model(NAME, SPEC)

    await eventually(lambda: _all_children(cluster), within=60, what="every child after the faults")
    await eventually(lambda: len(cluster.events(reason="ReconcileRetrying", type="Warning")) >= 4)
    assert len(errors.hits) == 3
    assert len(slow.hits) == 1
    # Retries back off: 0.5 s, 1 s, 2 s after the three 503s (retry_base=0.5, doubling).
    attempts = [*errors.hits, *slow.hits]
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    for gap, minimum in zip(gaps, [0.5, 1.0, 2.0], strict=True):
        assert gap >= minimum * 0.9, f"retry after {gap:.2f}s, backoff wants >= {minimum}s ({gaps})"
    # Converged exactly once: one Deployment, never deleted and re-created; every other child created once.
    for path, name in CHILDREN:
        assert _created_once(cluster, path, name), f"{path} {name}"
    assert sorted(d["metadata"]["name"] for d in cluster.api.live_all("apps/v1/deployments")) == [
        NAME,
        f"{NAME}-redis",
    ]
    assert _created_once(cluster, "v1/services", NAME)
    await _make_ready(cluster)
    message = cluster.events(reason="ReconcileRetrying")[0]["message"]
    assert "503" in message or "Timeout" in message
    assert_no_secret_leak(cluster, NAME, all_logs)


async def test_forbidden_is_reported_and_the_resync_timer_recovers(cluster: Cluster) -> None:
    """A 403 (e.g. RBAC not granted yet) is not retried by kopf; a Warning says why; the timer converges."""
    await cluster.start_operator(timer_interval=1.0, timer_initial_delay=1.0)
    denied = cluster.api.inject(
        Fault(matcher(method="PATCH", plural="deployments", name=NAME), times=1, status=403)
    )
    await cluster.create_model(NAME, SPEC)
    await eventually(lambda: cluster.events(reason="ReconcileFailed", type="Warning"), what="ReconcileFailed")
    # Status tells the truth while writes fail (Real-cluster correctness #10): never Ready=True.
    failed = cluster.condition(NAME, "Ready")
    assert failed is not None
    assert (failed["status"], failed["reason"]) == ("False", "ApplyFailed")
    assert "Deployment default/demo was refused" in failed["message"]
    assert "403" in failed["message"]
    await eventually(lambda: _all_children(cluster), within=30, what="every child after the timer's resync")
    assert len(denied.hits) == 1
    assert "403" in cluster.events(reason="ReconcileFailed")[0]["message"]
    assert _created_once(cluster, "apps/v1/deployments", NAME)


# --- case 10 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("expired", [False, True], ids=["broken", "expired-410"])
async def test_watch_gap_is_healed_by_relisting(
    cluster: Cluster, operator: OperatorHandle, expired: bool
) -> None:
    await cluster.create_model(NAME, SPEC)
    await eventually(lambda: _all_children(cluster), what="every child")
    await eventually(lambda: (cluster.model(NAME) or {}).get("status", {}).get("observedGeneration") == 1)

    # The watch stream breaks (or expires with 410 Gone) and the API refuses reads for a while...
    cluster.api.blocked.add("sentimentmodels")
    refused_before = len(cluster.requests(plural="sentimentmodels"))
    await cluster.api.break_watches("sentimentmodels", expired=expired)
    # ...during which the spec changes without any watch event reaching the operator.
    # (Written behind the API's back, but as the API server would store it: a new resourceVersion.)
    cluster.api.objects[SM_PATH, NAMESPACE, NAME].patch(
        {
            "metadata": {"generation": 2, "resourceVersion": cluster.api.next_resource_version()},
            "spec": {"image": "registry.example/inference:2.0"},
        }
    )
    await eventually(
        lambda: len(cluster.requests(plural="sentimentmodels")) >= refused_before + 2,
        within=30,
        what="the operator trying to re-list while the API refuses",
    )
    assert _image(cluster) == SPEC["image"], "nothing can have reached the operator during the gap"
    cluster.api.blocked.discard("sentimentmodels")

    await eventually(
        lambda: _image(cluster) == "registry.example/inference:2.0", within=60, what="change applied"
    )
    await eventually(lambda: (cluster.model(NAME) or {}).get("status", {}).get("observedGeneration") == 2)
    assert _created_once(cluster, "apps/v1/deployments", NAME)


# --- case 11 --------------------------------------------------------------------------------------


async def test_operator_killed_mid_reconcile_converges_after_restart(
    cluster: Cluster, all_logs: pytest.LogCaptureFixture
) -> None:
    """Killed after the Redis Deployment was created and before the inference Service was."""
    first = await cluster.start_operator()
    reached = asyncio.Event()
    cluster.api.inject(
        Fault(
            matcher(method="PATCH", plural="services", name=NAME),
            times=1,
            status=503,
            hook=lambda _: reached.set(),
        )
    )
    await cluster.create_model(NAME, SPEC)
    await asyncio.wait_for(reached.wait(), timeout=30)
    await first.stop(crash=True)

    assert cluster.api.live("apps/v1/deployments", NAMESPACE, f"{NAME}-redis") is not None
    assert cluster.api.live("v1/services", NAMESPACE, NAME) is None
    assert cluster.api.live("apps/v1/deployments", NAMESPACE, NAME) is None

    await cluster.start_operator()
    await eventually(lambda: _all_children(cluster), within=30, what="every child after the restart")
    for path, name in CHILDREN:
        assert _created_once(cluster, path, name), f"{path} {name}"
    assert len(cluster.api.live_all("apps/v1/deployments")) == 2
    assert len(cluster.api.live_all("v1/services")) == 2

    await _make_ready(cluster)
    model = cluster.model(NAME)
    assert model is not None
    assert model["status"]["observedGeneration"] == model["metadata"]["generation"] == 1

    await cluster.patch_model(NAME, {"spec": {"replicas": 2}})
    await eventually(lambda: (cluster.model(NAME) or {}).get("status", {}).get("observedGeneration") == 2)
    assert_no_secret_leak(cluster, NAME, all_logs)


# --- case 12 --------------------------------------------------------------------------------------

OBSERVATION_WINDOW = (
    3.0  # seconds during which a retry storm would show up (the resync timer ticks every 0.5 s)
)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"model": {"precision": "fp16"}}, "spec.model.precision"),
        (
            {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}},
            "spec.autoscaling.minReplicas",
        ),
    ],
    ids=["unknown-precision", "min-above-max"],
)
async def test_invalid_spec_sets_condition_one_event_and_no_retry_storm(
    cluster: Cluster, bad: dict[str, Any], field: str
) -> None:
    await cluster.start_operator(timer_interval=0.5, timer_initial_delay=0.5)
    # The API server refuses these specs itself (schema and CEL); the operator's own check is what stands
    # when the installed CRD is older than these rules, as here.
    cluster.api.validate_custom_resources = False
    await cluster.create_model(NAME, {**SPEC, **bad})

    ready = await eventually(
        lambda: (c := cluster.condition(NAME, "Ready")) and c["reason"] == "InvalidSpec" and c,
        what="InvalidSpec",
    )
    assert ready["status"] == "False"
    assert ready["message"].startswith(f"{field}:"), ready["message"]
    await eventually(lambda: cluster.events(reason="InvalidSpec", type="Warning"), what="the Warning Event")
    assert (cluster.model(NAME) or {})["status"]["observedGeneration"] == 1

    before = len(cluster.api.requests_log())
    await asyncio.sleep(OBSERVATION_WINDOW)  # an observation window, not a wait for a condition
    window = cluster.api.requests_log()[before:]
    operator_calls = [r for r in window if r.headers.get("User-Agent", "").startswith(("sentiment", "kopf"))]
    writes = [f"{r.method.value} {r.url.path}" for r in operator_calls if str(r.method.value) in WRITES]
    assert writes == [], f"no writes while the spec stays invalid: {writes}"
    ticks = OBSERVATION_WINDOW / 0.5
    assert len(operator_calls) <= 2 * ticks + 4, f"{len(operator_calls)} API calls in {OBSERVATION_WINDOW}s"
    assert len(cluster.events(reason="InvalidSpec", type="Warning")) == 1
    assert not cluster.requests(method="PATCH", plural="deployments")
    assert not cluster.events(reason="ReconcileRetrying")

    # Fixing the spec recovers without any manual step.
    fixed = {"model": {"precision": "int8"}} if "model" in bad else {"autoscaling": {"minReplicas": 1}}
    await cluster.patch_model(NAME, {"spec": fixed})
    await eventually(lambda: _all_children(cluster), what="children after the fix")
    await eventually(
        lambda: (c := cluster.condition(NAME, "Ready")) and c["reason"] != "InvalidSpec",
        what="InvalidSpec cleared",
    )
    assert (cluster.model(NAME) or {})["status"]["observedGeneration"] == 2
