"""Pure status computation: conditions, transitions, replica counts, InvalidSpec."""

from __future__ import annotations

from typing import Any

import pytest
from sentiment_operator import status
from sentiment_operator.spec import InvalidSpecError, parse_spec
from sentiment_operator.status_model import SentimentModelStatus

NAME, NS = "demo", "prod"
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def deployment(
    *, replicas: int | None = 2, ready: int = 0, available: int | None = None, updated: int = 0
) -> Any:
    spec: dict[str, Any] = {} if replicas is None else {"replicas": replicas}
    avail = ready if available is None else available
    return {
        "spec": spec,
        "status": {
            "readyReplicas": ready,
            "availableReplicas": avail,
            "updatedReplicas": updated,
            "conditions": [{"type": "Available", "status": "True" if avail else "False"}],
        },
    }


def compute(spec: dict[str, Any], observed: status.Observed, previous: Any = None, now: str = T0) -> Any:
    computed = status.compute_status(
        name=NAME,
        url=f"http://{NAME}.{NS}.svc.cluster.local:8000/{NAME}",
        generation=3,
        spec=parse_spec(NAME, spec),
        observed=observed,
        previous=previous,
        now=now,
    )
    # Every status the operator writes is what the status model (and so the CRD's schema) describes.
    SentimentModelStatus.model_validate(computed)
    return computed


def cond(st: Any, ctype: str) -> Any:
    return next(c for c in st["conditions"] if c["type"] == ctype)


def test_all_ready() -> None:
    st = compute(
        {"autoscaling": {"enabled": False}, "replicas": 2},
        status.Observed(inference=deployment(ready=2, updated=2), redis=deployment(replicas=1, ready=1)),
    )
    assert st["observedGeneration"] == 3
    assert (st["replicas"], st["readyReplicas"], st["updatedReplicas"], st["replicasSummary"]) == (
        2,
        2,
        2,
        "2/2",
    )
    assert st["url"] == "http://demo.prod.svc.cluster.local:8000/demo"
    assert st["gatewayPath"] is None
    ready = cond(st, "Ready")
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == ("True", "Ready", 3)
    assert ready["lastTransitionTime"] == T0
    assert [c["type"] for c in st["conditions"]] == [
        "Ready",
        "Available",
        "CacheReady",
        "Autoscaling",
        "Routing",
        "Rollout",
    ]
    # Features that are off are not problems: True, reason Disabled.
    assert (cond(st, "Autoscaling")["status"], cond(st, "Autoscaling")["reason"]) == ("True", "Disabled")
    assert (cond(st, "Routing")["status"], cond(st, "Routing")["reason"]) == ("True", "Disabled")


def test_missing_deployment_is_not_ready() -> None:
    st = compute({}, status.Observed())
    assert cond(st, "Available")["reason"] == "DeploymentNotFound"
    ready = cond(st, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "DeploymentNotAvailable")
    # Autoscaling on, live Deployment missing: desired falls back to minReplicas.
    assert st["replicasSummary"] == "0/1"


def test_unready_deployment_names_the_counts() -> None:
    st = compute(
        {"autoscaling": {"enabled": False}, "replicas": 3}, status.Observed(inference=deployment(replicas=3))
    )
    ready = cond(st, "Ready")
    assert ready["reason"] == "Progressing"
    assert cond(st, "Available")["reason"] == "MinimumReplicasUnavailable"
    assert "0/3" in ready["message"]


def test_progress_deadline_exceeded_is_surfaced() -> None:
    dep = deployment(replicas=1)
    dep["status"]["conditions"].append(
        {
            "type": "Progressing",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": "too slow",
        }
    )
    st = compute({}, status.Observed(inference=dep))
    assert (cond(st, "Available")["reason"], cond(st, "Available")["message"]) == (
        "ProgressDeadlineExceeded",
        "too slow",
    )
    assert (cond(st, "Ready")["reason"], cond(st, "Ready")["message"]) == (
        "DeploymentNotAvailable",
        "too slow",
    )


def test_scaled_to_zero() -> None:
    st = compute(
        {"autoscaling": {"enabled": False}, "replicas": 0}, status.Observed(inference=deployment(replicas=0))
    )
    assert cond(st, "Available")["reason"] == "ScaledToZero"
    assert st["replicasSummary"] == "0/0"


def test_hpa_owned_replicas_come_from_the_live_deployment() -> None:
    st = compute(
        {"autoscaling": {"minReplicas": 2, "maxReplicas": 8}},
        status.Observed(
            inference=deployment(replicas=5, ready=4, updated=5),
            redis=deployment(replicas=1, ready=1),
            hpa={"metadata": {"name": NAME}},
        ),
    )
    assert st["replicasSummary"] == "4/5"
    auto = cond(st, "Autoscaling")
    assert (auto["status"], auto["reason"]) == ("True", "HorizontalPodAutoscalerConfigured")
    assert "2-8 replicas at 70% CPU" in auto["message"]


def test_managed_cache_not_ready_blocks_ready() -> None:
    st = compute({}, status.Observed(inference=deployment(ready=2), redis=deployment(replicas=1, ready=0)))
    assert cond(st, "Available")["status"] == "True"
    assert (cond(st, "CacheReady")["status"], cond(st, "CacheReady")["reason"]) == (
        "False",
        "RedisNotAvailable",
    )
    assert (cond(st, "Ready")["status"], cond(st, "Ready")["reason"]) == ("False", "CacheNotReady")


@pytest.mark.parametrize(
    ("cache", "expected"),
    [
        ({"enabled": False}, ("True", "Disabled")),
        ({"external": {"urlSecretRef": {"name": "r", "key": "url"}}}, ("True", "ExternalRedis")),
    ],
)
def test_unmanaged_cache_does_not_block_ready(cache: dict[str, Any], expected: tuple[str, str]) -> None:
    st = compute({"cache": cache}, status.Observed(inference=deployment(ready=2)))
    assert (cond(st, "CacheReady")["status"], cond(st, "CacheReady")["reason"]) == expected
    assert cond(st, "Ready")["status"] == "True"


def test_routing_states() -> None:
    spec = {"routing": {"enabled": True, "pathPrefix": "/api/sentiment"}}
    applied = compute(
        spec, status.Observed(inference=deployment(ready=1), routing="applied", routing_provider="istio")
    )
    assert cond(applied, "Routing")["status"] == "True"
    assert applied["gatewayPath"] == "/api/sentiment"
    assert applied["routingProvider"] == "istio"
    missing = compute(spec, status.Observed(inference=deployment(ready=1), routing="not-served"))
    assert (cond(missing, "Routing")["status"], cond(missing, "Routing")["reason"]) == (
        "False",
        "IstioAndGatewayAPINotInstalled",
    )
    assert missing["routingProvider"] is None
    # Istio missing is reported, not a failure: Ready does not depend on it.
    # Nothing routes the path: status must not claim it (kubectl get sm would show PATH /api/sentiment).
    assert missing["gatewayPath"] is None


def test_canary_not_available_is_mentioned_but_does_not_block() -> None:
    st = compute(
        {"routing": {"enabled": True, "canary": {"weight": 10}}, "cache": {"enabled": False}},
        status.Observed(inference=deployment(ready=2), canary=deployment(replicas=1), routing="applied"),
    )
    ready = cond(st, "Ready")
    assert ready["status"] == "True"
    assert "canary Deployment demo-canary is not available yet" in ready["message"]


def test_last_transition_time_changes_only_when_status_flips() -> None:
    spec = {"cache": {"enabled": False}}
    first = compute(spec, status.Observed(inference=deployment(ready=1)), now=T0)
    # Same status, different message (more replicas ready): the transition time stays.
    second = compute(spec, status.Observed(inference=deployment(ready=2)), previous=first, now=T1)
    assert cond(second, "Ready")["lastTransitionTime"] == T0
    assert cond(second, "Ready")["message"] != cond(first, "Ready")["message"]
    # Status flips: new transition time.
    third = compute(spec, status.Observed(inference=deployment(ready=0)), previous=second, now=T1)
    assert cond(third, "Ready")["lastTransitionTime"] == T1
    assert cond(third, "Ready")["status"] == "False"
    assert cond(third, "Autoscaling")["lastTransitionTime"] == T0  # unchanged conditions keep theirs


def test_invalid_status_names_the_field_and_keeps_the_rest() -> None:
    spec = {"cache": {"enabled": False}}
    valid = compute(spec, status.Observed(inference=deployment(ready=2)), now=T0)
    error = InvalidSpecError("spec.model.precision", "Input should be 'none' or 'int8'")
    st = status.invalid_status(error=error, generation=4, previous=valid, now=T1)
    assert set(st) == {"observedGeneration", "conditions"}
    assert st["observedGeneration"] == 4
    ready = cond(st, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"] == "spec.model.precision: Input should be 'none' or 'int8'"
    assert ready["lastTransitionTime"] == T1
    assert cond(st, "Available") == cond(valid, "Available")


def test_status_changed_detects_removals_and_ignores_equal() -> None:
    st = compute({}, status.Observed(inference=deployment(ready=1)))
    stored = {k: v for k, v in st.items() if v is not None}  # what a merge patch of ``st`` leaves behind
    assert not status.status_changed(stored, st)
    assert status.status_changed({"gatewayPath": "/x"}, {"gatewayPath": None})
    assert not status.status_changed({}, {"gatewayPath": None})
    assert status.status_changed(None, {"observedGeneration": 1})
    assert not status.status_changed({"observedGeneration": 1, "other": 1}, {"observedGeneration": 1})


def test_replica_failure_makes_available_false_with_the_controllers_message() -> None:
    """Real-cluster correctness #10: a Deployment that cannot create pods says why, and Ready follows."""
    failing = deployment(ready=0)
    failing["status"]["conditions"].append(
        {
            "type": "ReplicaFailure",
            "status": "True",
            "reason": "FailedCreate",
            "message": 'pods "demo-x" is forbidden: exceeded quota: compute',
        }
    )
    st = compute(
        {"autoscaling": {"enabled": False}, "cache": {"enabled": False}}, status.Observed(inference=failing)
    )
    available = cond(st, "Available")
    assert (available["status"], available["reason"]) == ("False", "ReplicaFailure")
    assert "exceeded quota" in available["message"]
    assert cond(st, "Ready")["status"] == "False"


def test_an_hpa_that_cannot_scale_makes_autoscaling_false() -> None:
    """Real-cluster correctness #10: ScalingActive=False (e.g. no CPU request) is not "configured"."""
    hpa = {
        "status": {
            "conditions": [
                {
                    "type": "ScalingActive",
                    "status": "False",
                    "reason": "FailedGetResourceMetric",
                    "message": "missing request for cpu in container server",
                }
            ]
        }
    }
    st = compute(
        {"cache": {"enabled": False}}, status.Observed(inference=deployment(ready=2, updated=2), hpa=hpa)
    )
    autoscaling = cond(st, "Autoscaling")
    assert (autoscaling["status"], autoscaling["reason"]) == ("False", "FailedGetResourceMetric")
    assert "missing request for cpu" in autoscaling["message"]
    hpa["status"]["conditions"][0]["status"] = "True"
    assert (
        cond(compute({"cache": {"enabled": False}}, status.Observed(hpa=hpa)), "Autoscaling")["status"]
        == "True"
    )


def test_a_refused_apply_is_ready_false_and_keeps_the_other_conditions() -> None:
    previous = {
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Ready", "message": "ok"},
            {"type": "Routing", "status": "True", "reason": "Disabled", "message": "off"},
        ]
    }
    st = status.failed_status(
        message="Deployment prod/demo was refused: 403", generation=4, previous=previous, now=T1
    )
    assert "observedGeneration" not in st
    ready = cond(st, "Ready")
    assert (ready["status"], ready["reason"], ready["lastTransitionTime"]) == ("False", "ApplyFailed", T1)
    assert cond(st, "Routing")["reason"] == "Disabled"


def test_the_status_model_refuses_what_the_operator_never_writes() -> None:
    with pytest.raises(ValueError, match="replicaCount"):
        SentimentModelStatus.model_validate({"replicaCount": 1})
    with pytest.raises(ValueError, match="status"):
        SentimentModelStatus.model_validate({"conditions": [{"type": "Ready", "status": "Maybe"}]})


# --- autoscaling on load ---------------------------------------------------------------------------------

LOAD = {"cache": {"enabled": False}, "autoscaling": {"metric": "queueDepth", "maxReplicas": 4}}
HPA_LIVE: dict[str, Any] = {"spec": {}, "status": {}}


def so_live(*conditions: tuple[str, str, str]) -> dict[str, Any]:
    return {"status": {"conditions": [{"type": t, "status": s, "reason": r} for t, s, r in conditions]}}


def test_an_hpa_pods_metric_is_false_until_the_metric_is_served() -> None:
    running = deployment(ready=1, updated=2)
    missing = cond(
        compute(LOAD, status.Observed(inference=running, hpa=HPA_LIVE, metric_served=False)), "Autoscaling"
    )
    assert (missing["status"], missing["reason"]) == ("False", "MetricNotServed")
    assert "sentiment_queue_depth" in missing["message"]
    served = cond(
        compute(LOAD, status.Observed(inference=running, hpa=HPA_LIVE, metric_served=True)), "Autoscaling"
    )
    assert (served["status"], served["reason"]) == ("True", "HorizontalPodAutoscalerConfigured")
    assert served["message"] == "1-4 replicas at 32 queued texts per pod (sentiment_queue_depth)"
    # Ready does not depend on autoscaling.
    ready = cond(
        compute(LOAD, status.Observed(inference=running, hpa=HPA_LIVE, metric_served=False)), "Ready"
    )
    assert ready["status"] == "True"


@pytest.mark.parametrize(
    ("scaled_object", "expected"),
    [
        (None, ("False", "ScaledObjectNotFound")),
        (so_live(), ("False", "ScaledObjectNotReady")),
        (so_live(("Ready", "False", "ScaledObjectCheckFailed")), ("False", "ScaledObjectCheckFailed")),
        (
            so_live(("Ready", "True", "ScaledObjectReady"), ("Active", "False", "ScalerNotActive")),
            ("True", "ScaledObjectReady"),
        ),
    ],
)
def test_keda_autoscaling_reports_what_keda_says(scaled_object: Any, expected: tuple[str, str]) -> None:
    observed = status.Observed(inference=deployment(ready=1), scaled_object=scaled_object, keda=True)
    autoscaling = cond(compute(LOAD, observed), "Autoscaling")
    assert (autoscaling["status"], autoscaling["reason"]) == expected
    if expected[0] == "True":
        assert autoscaling["message"].endswith("; idle")


def test_idle_at_zero_is_ready_only_for_scale_to_zero() -> None:
    zero = {**LOAD, "autoscaling": {"metric": "inFlight", "minReplicas": 0}, "routing": {"enabled": True}}
    at_zero = status.Observed(inference=deployment(replicas=0), keda=True, scaled_object=so_live())
    st = compute(zero, at_zero)
    assert (cond(st, "Ready")["status"], cond(st, "Ready")["reason"]) == ("True", "ScaledToZero")
    assert (cond(st, "Available")["status"], cond(st, "Available")["reason"]) == ("False", "ScaledToZero")
    assert st["replicasSummary"] == "0/0"
    # A fixed replicas: 0 is not a model waiting for requests.
    fixed = compute({"cache": {"enabled": False}, "autoscaling": {"enabled": False}, "replicas": 0}, at_zero)
    assert cond(fixed, "Ready")["status"] == "False"


def test_a_switch_in_progress_is_reported() -> None:
    observed = status.Observed(inference=deployment(ready=1), autoscaler_leaving="ScaledObject prod/demo")
    autoscaling = cond(compute({"cache": {"enabled": False}}, observed), "Autoscaling")
    assert (autoscaling["status"], autoscaling["reason"]) == ("False", "AutoscalerSwitching")
    assert "ScaledObject prod/demo" in autoscaling["message"]
