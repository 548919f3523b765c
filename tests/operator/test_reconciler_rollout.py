"""The Reconciler's side of a canary rollout, over the in-memory API with a fake Prometheus and a fake clock:
what it writes at each phase (the stable's template kept, the canary, the route's weights and mirror, status
and Events), that it resumes from status alone, and that the action annotation runs once. Every test runs
through both routing providers: an Istio VirtualService and a Gateway API HTTPRoute carry the same split."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from memory_kube import MemoryApi, MemoryKube
from routes import Backends, Mirror, split_of
from sentiment_operator import kinds, names
from sentiment_operator.reconciler import Reconciler

NS, NAME = "default", "demo"
MODELS = kinds.SENTIMENT_MODEL.collection_path(NS)
SPEC: dict[str, Any] = {
    "image": "registry.example/inference:1.0",
    "autoscaling": {"enabled": False},
    "cache": {"enabled": False},
    "routing": {"enabled": True},
    "monitoring": {"interval": "1s"},
    "rollout": {
        "strategy": "Canary",
        "mirrorPercent": 30,
        "steps": [20, 50],
        "interval": "10s",
        "analysis": {"prometheusURL": "http://prometheus.test:9090", "minSamples": 10, "failureThreshold": 1},
    },
}
NEW_IMAGE = "registry.example/inference:2.0"


class FakePrometheus:
    """Answers the analysis' queries from canned numbers per track; counts what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.errors = {"stable": 0.0, "canary": 0.0}

    async def query(self, promql: str) -> list[dict[str, Any]]:
        self.asked.append(promql)

        def vector(**values: float) -> list[dict[str, Any]]:
            return [{"metric": {"track": t}, "value": [0, str(v)]} for t, v in values.items()]

        if promql.startswith("histogram_quantile"):
            return vector(stable=0.01, canary=0.01)
        if "by (track, label)" in promql:
            return [
                {"metric": {"track": t, "label": label}, "value": [0, str(n)]}
                for t in ("stable", "canary")
                for label, n in (("POSITIVE", 30), ("NEGATIVE", 10))
            ]
        if "status=~" in promql:
            return vector(**self.errors)
        return vector(stable=40, canary=40)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


ROUTES = {
    "istio": ("networking.istio.io/v1", "virtualservices"),
    "gatewayAPI": ("gateway.networking.k8s.io/v1", "httproutes"),
}


@pytest.fixture(params=sorted(ROUTES))
def provider(request: pytest.FixtureRequest) -> str:
    """The routing provider the model asks for; the cluster serves only that one's API."""
    chosen: str = request.param
    return chosen


@pytest.fixture
def api(provider: str) -> MemoryApi:
    served = MemoryApi()
    served.install_istio() if provider == "istio" else served.install_gateway_api()
    return served


@pytest.fixture
def client(api: MemoryApi) -> MemoryKube:
    return MemoryKube(api)


@pytest.fixture
def prometheus() -> FakePrometheus:
    return FakePrometheus()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def reconciler(client: MemoryKube, prometheus: FakePrometheus, clock: Clock) -> Reconciler:
    return Reconciler(client, metrics_source=lambda url: prometheus, wall_clock=clock)


async def patch(client: MemoryKube, body: dict[str, Any]) -> None:
    path = kinds.SENTIMENT_MODEL.object_path(NS, NAME)
    await client.request("PATCH", path, body=body, content_type="application/merge-patch+json")


def live(api: MemoryApi, plural: str, name: str = NAME) -> dict[str, Any]:
    groups = {"deployments": "apps/v1", **{p: group for group, p in ROUTES.values()}}
    group = groups.get(plural, "serving.sentiment.dev/v1alpha1")
    found = api.live(group, plural, NS, name)
    assert found is not None, f"{plural}/{name}"
    return found


def image(api: MemoryApi, name: str) -> str:
    return str(live(api, "deployments", name)["spec"]["template"]["spec"]["containers"][0]["image"])


def roll_out(api: MemoryApi, name: str) -> None:
    """The Deployment controller's part: every replica runs the template and is available."""
    deployment = live(api, "deployments", name)
    replicas = deployment["spec"].get("replicas", 1)
    key = ("apps/v1", "deployments", NS, name)
    stored = api.objects[key]
    stored["status"] = {
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    }


def rollout_status(api: MemoryApi) -> dict[str, Any]:
    status: dict[str, Any] = live(api, "sentimentmodels")["status"]["rollout"]
    return status


def split(api: MemoryApi) -> tuple[Backends, Mirror]:
    """The backends and the mirror of the model's route, whichever provider's route the cluster serves."""
    (route,) = [live(api, plural) for group, plural in ROUTES.values() if group in api.served]
    return split_of(route)


async def started(api: MemoryApi, client: MemoryKube, reconciler: Reconciler) -> None:
    provider = next(p for p, (group, _) in ROUTES.items() if group in api.served)
    spec = copy.deepcopy(SPEC)
    spec["routing"]["provider"] = provider
    await client.request(
        "POST",
        MODELS,
        body={"apiVersion": names.API_VERSION, "kind": names.KIND, "metadata": {"name": NAME}, "spec": spec},
    )
    await reconciler.reconcile(NS, NAME)
    roll_out(api, NAME)
    await reconciler.reconcile(NS, NAME)
    await patch(client, {"spec": {"image": NEW_IMAGE}})
    result = await reconciler.reconcile(NS, NAME)
    assert result is not None
    assert [e.reason for e in result.events if e.reason.startswith("Rollout")] == ["RolloutStarted"]


async def test_canary_without_a_prometheus_is_an_invalid_spec(client: MemoryKube, api: MemoryApi) -> None:
    spec = copy.deepcopy(SPEC)
    del spec["rollout"]["analysis"]["prometheusURL"]
    await client.request(
        "POST",
        MODELS,
        body={"apiVersion": names.API_VERSION, "kind": names.KIND, "metadata": {"name": NAME}, "spec": spec},
    )
    result = await Reconciler(client).reconcile(NS, NAME)
    assert result is not None
    assert result.invalid is not None
    assert result.invalid.field == "spec.rollout.analysis.prometheusURL"
    assert "--prometheus-url" in result.invalid.message
    assert [(e.type, e.reason) for e in result.events] == [("Warning", "InvalidSpec")]
    # The operator's own setting is enough.
    assert (await Reconciler(client, prometheus_url="http://p:9090").reconcile(NS, NAME)).invalid is None  # type: ignore[union-attr]


async def test_a_rollout_keeps_the_stable_template_moves_the_weights_and_promotes(
    api: MemoryApi, client: MemoryKube, reconciler: Reconciler, prometheus: FakePrometheus, clock: Clock
) -> None:
    await started(api, client, reconciler)
    # The stable keeps the old template, the canary runs the new one, no traffic moves yet.
    assert image(api, NAME) == SPEC["image"]
    assert image(api, f"{NAME}-canary") == NEW_IMAGE
    assert split(api) == ([(NAME, None)], None)
    assert rollout_status(api)["phase"] == "Initializing"

    # The mirrored step: every request still answered by the stable, 30 % copied to the canary.
    roll_out(api, f"{NAME}-canary")
    await reconciler.reconcile(NS, NAME)
    assert split(api) == ([(NAME, None)], (f"{NAME}-canary", 30.0))
    assert rollout_status(api)["summary"] == "Progressing 1/3 mirror 30%"
    assert prometheus.asked == []  # nothing is due before the interval ends

    # Not due yet: no query. Due: one analysis (four queries), the next step.
    clock.now += 9
    await reconciler.reconcile(NS, NAME)
    assert prometheus.asked == []
    clock.now += 1
    result = await reconciler.reconcile(NS, NAME)
    assert result is not None
    assert len(prometheus.asked) == 4
    assert all('sentiment_model="demo"' in q and 'namespace="default"' in q for q in prometheus.asked)
    assert split(api) == ([(NAME, 80), (f"{NAME}-canary", 20)], None)
    assert rollout_status(api)["summary"] == "Progressing 2/3 canary 20%"
    assert rollout_status(api)["lastAnalysis"]["verdict"] == "Passed"

    clock.now += 10
    await reconciler.reconcile(NS, NAME)
    assert split(api) == ([(NAME, 50), (f"{NAME}-canary", 50)], None)

    # The last step passes: the stable takes the new template; the canary keeps its weight meanwhile.
    clock.now += 10
    await reconciler.reconcile(NS, NAME)
    assert rollout_status(api)["phase"] == "Promoting"
    assert image(api, NAME) == NEW_IMAGE
    assert split(api) == ([(NAME, 50), (f"{NAME}-canary", 50)], None)

    roll_out(api, NAME)
    result = await reconciler.reconcile(NS, NAME)
    assert result is not None
    assert rollout_status(api)["phase"] == "Stable"
    assert split(api) == ([(NAME, None)], None)
    assert api.live("apps/v1", "deployments", NS, f"{NAME}-canary") is None  # pruned
    assert "RolloutPromoted" in [e.reason for e in result.events]
    rollout = next(c for c in live(api, "sentimentmodels")["status"]["conditions"] if c["type"] == "Rollout")
    assert (rollout["status"], rollout["reason"]) == ("True", "Stable")
    assert reconciler.metrics.rollouts.labels(NS, NAME, "promoted")._value.get() == 1


async def test_a_failed_analysis_rolls_back_and_a_new_operator_resumes_from_status(
    api: MemoryApi, client: MemoryKube, prometheus: FakePrometheus, clock: Clock
) -> None:
    first = Reconciler(client, metrics_source=lambda url: prometheus, wall_clock=clock)
    await started(api, client, first)
    roll_out(api, f"{NAME}-canary")
    await first.reconcile(NS, NAME)
    # A new operator process (nothing in memory) picks the rollout up where status says it is.
    restarted = Reconciler(MemoryKube(api), metrics_source=lambda url: prometheus, wall_clock=clock)
    clock.now += 10
    prometheus.errors = {"stable": 0.0, "canary": 20.0}
    result = await restarted.reconcile(NS, NAME)
    assert result is not None
    status = rollout_status(api)
    assert (status["phase"], status["reason"]) == ("RolledBack", "AnalysisFailed")
    assert "errorRate 50% > 1%" in status["message"]
    assert [(e.type, e.reason) for e in result.events if e.type == "Warning"] == [
        ("Warning", "AnalysisFailed")
    ]
    assert split(api) == ([(NAME, None)], None)  # the mirrored step's copy stopped too
    assert live(api, "deployments", f"{NAME}-canary")["spec"]["replicas"] == 0
    assert image(api, NAME) == SPEC["image"]
    assert live(api, "sentimentmodels")["spec"]["image"] == NEW_IMAGE  # the spec as the user wrote it
    again = await restarted.reconcile(NS, NAME)
    assert again is not None
    assert [e for e in again.events if e.type == "Warning"] == []


async def test_the_action_annotation_runs_once_and_is_removed(
    api: MemoryApi, client: MemoryKube, reconciler: Reconciler, clock: Clock
) -> None:
    await started(api, client, reconciler)
    roll_out(api, f"{NAME}-canary")
    await reconciler.reconcile(NS, NAME)
    await patch(client, {"metadata": {"annotations": {names.ANNOTATION_ROLLOUT_ACTION: "pause"}}})
    result = await reconciler.reconcile(NS, NAME)
    assert result is not None
    assert [e.reason for e in result.events] == ["RolloutPaused"]
    model = live(api, "sentimentmodels")
    assert names.ANNOTATION_ROLLOUT_ACTION not in (model["metadata"].get("annotations") or {})
    assert rollout_status(api)["paused"] is True
    clock.now += 60
    quiet = await reconciler.reconcile(NS, NAME)
    assert quiet is not None
    assert quiet.events == []
    assert rollout_status(api)["step"] == 1  # paused: no analysis, no step
    await patch(client, {"metadata": {"annotations": {names.ANNOTATION_ROLLOUT_ACTION: "promote"}}})
    promoted = await reconciler.reconcile(NS, NAME)
    assert promoted is not None
    assert [e.reason for e in promoted.events if e.reason.startswith("Rollout")] == ["RolloutPromoting"]
    assert rollout_status(api)["phase"] == "Promoting"
