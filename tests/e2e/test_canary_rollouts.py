"""Canary rollouts end to end, on real parts: the embedded cluster with Prometheus as an add-on (a real
``prometheus`` configured from the ServiceMonitor the operator renders), the real operator process, real
``sentiment-serve`` pods for the stable and the canary version, and traffic sent through the gateway
stand-in, which splits (and mirrors) it by the weights the operator writes into the route: an Istio
VirtualService, or a Gateway API HTTPRoute whose status the stand-in writes as its controller (the cluster
serves both; ``routing.provider`` picks).

A good canary (the same weights under a new id, from a volume) is promoted through every step, and a canary
whose model answers differently (trained with the labels swapped) is rolled back on the label check, through
each provider; a canary whose model directory is broken (its embeddings do not cover the tokenizer's
vocabulary: most texts fail) is rolled back on errors; an unreachable Prometheus holds the rollout until it
answers again. Each test prints its timeline (times, phases, weights, the requests each version answered and
the analyses' numbers) and writes it to ``timeline-<model>.json`` beside the cluster's state.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sentiment_contract as C
import yaml
from e2e_support import ROOT, DevCluster, metric, running_cluster, wait_until
from prometheus_client.parser import text_string_to_metric_families
from routes import split_of
from sentiment_devcluster.traffic import Traffic
from sentiment_inference.devmodel import write_devmodel
from serving import free_port

# A rollout waits for pods, Prometheus' discovery and several analysis windows: minutes on a loaded machine.
pytestmark = pytest.mark.timeout(600)

NS = "rollouts"
RATE = 50.0  # requests per second through the gateway (8 clients), the whole time a rollout runs
SMALL = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
ROLLOUT = {
    "strategy": "Canary",
    "steps": [25, 50],
    "interval": "5s",
    "progressDeadline": "120s",
    "analysis": {
        "minSamples": 15,
        "maxErrorPercent": 5,
        "maxP99LatencyMs": 2500,  # a loaded 2-CPU machine; the model answers in milliseconds
        "maxLabelShiftPercent": 25,
        "failureThreshold": 2,
        "noDataTimeout": "90s",
    },
}
# The routing providers the rollouts run through, and the suffix of their models' names. The Istio models
# route with provider auto (Istio is served, so it is chosen); the Gateway API ones pin gatewayAPI.
PROVIDERS = {"istio": "", "gatewayAPI": "-gw"}
ROUTE_KINDS = {"istio": "virtualservice", "gatewayAPI": "httproute"}
# The vocabulary the broken model keeps: every token of the server's warm-up text is below it (so the pod
# becomes ready), most words of real texts are not (so their requests fail).
BROKEN_VOCABULARY = 16000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, trained_model_dir: Path) -> Iterator[DevCluster]:
    with running_cluster(
        tmp_path_factory.mktemp("rollouts"), trained_model_dir, "--prometheus", "--serve", "gateway-api"
    ) as devcluster:
        devcluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        yield devcluster


def info(cluster: DevCluster) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((cluster.state_dir / "cluster.json").read_text())
    return found


def claim(cluster: DevCluster, name: str) -> Path:
    """The directory a PersistentVolumeClaim of the namespace is on this node."""
    return cluster.state_dir / "claims" / NS / name


def broken_copy(source: Path, target: Path) -> Path:
    """``source`` with its word embeddings cut to the first BROKEN_VOCABULARY rows (and its config saying so):
    it loads and warms up, but every text with a rarer word fails in the model."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, target)
    weights = load_file(str(target / "model.safetensors"))
    key = next(k for k in weights if k.endswith("word_embeddings.weight"))
    weights[key] = weights[key][:BROKEN_VOCABULARY].clone()
    save_file(weights, str(target / "model.safetensors"))
    config = json.loads((target / "config.json").read_text())
    config["vocab_size"] = BROKEN_VOCABULARY
    (target / "config.json").write_text(json.dumps(config))
    return target


def model(name: str, provider: str = "istio", **spec: Any) -> dict[str, Any]:
    rollout = {**ROLLOUT, **spec.pop("rollout", {})}
    routing: dict[str, Any] = {"enabled": True}
    if provider != "istio":
        routing.update(provider=provider, gateways=["sentiment-gateway"])
    return {
        "apiVersion": "serving.sentiment.dev/v1alpha1",
        "kind": "SentimentModel",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "resources": SMALL,
            "replicas": 1,
            "autoscaling": {"enabled": False},
            "cache": {"enabled": False},
            "networkPolicy": {"enabled": False},
            "server": {"torchThreads": 1, "modelWorkers": 1},
            "routing": routing,
            "monitoring": {"interval": "1s"},
            "rollout": rollout,
            **spec,
        },
    }


def patch(cluster: DevCluster, name: str, spec: dict[str, Any]) -> None:
    """``kubectl patch sm NAME --type merge`` with a spec fragment."""
    body = json.dumps({"spec": spec})
    cluster.kubectl("-n", NS, "patch", "sentimentmodel", name, "--type", "merge", "-p", body)


def release(cluster: DevCluster, name: str, claim_name: str) -> None:
    """A new model version: the model from claim ``claim_name`` under the id sentiment-devmodel/<claim>."""
    model = {"id": f"sentiment-devmodel/tiny-{claim_name}", "source": {"pvc": {"claimName": claim_name}}}
    patch(cluster, name, {"model": model})


def condition(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == ctype:
            return dict(cond)
    return {}


def answered(cluster: DevCluster, name: str) -> dict[str, float | None]:
    """The predict requests each version's pod has answered so far, from its own ``/metrics`` read through its
    Service (one pod each), and the copies the canary knew were mirrored (None: no pod answers there)."""
    api = info(cluster)["url"]
    counts: dict[str, float | None] = {"stable": None, "canary": None, "mirrored": None}
    for track, service in (("stable", name), ("canary", f"{name}-canary")):
        found = httpx.get(f"{api}/api/v1/namespaces/{NS}/services/{service}", timeout=10)
        if found.status_code != 200:
            continue
        try:
            text = httpx.get(f"http://{found.json()['spec']['clusterIP']}:8000/metrics", timeout=10).text
        except httpx.HTTPError:
            continue
        counts[track] = sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == C.REQUESTS.name and re.fullmatch(C.PREDICT_ROUTE_REGEX, sample.labels["route"])
        )
        if track == "canary":
            counts["mirrored"] = metric(text, "sentiment_mirrored_requests_total", {})
    return counts


STATE_KEYS = ("phase", "step", "stableWeight", "canaryWeight", "mirrorWeight", "reason", "message")


class Timeline:
    """The rollout's status over time: every change of phase, step, weights or reason (with the requests each
    version had answered when it was first and last seen), and each analysis."""

    def __init__(self, cluster: DevCluster, name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.started = time.monotonic()
        self.counted = 0.0  # when the pods' counts were last read
        self.entries: list[dict[str, Any]] = []
        self.analyses: list[dict[str, Any]] = []

    def poll(self) -> dict[str, Any]:
        obj = self.cluster.get("sentimentmodel", self.name, NS) or {}
        rollout = (obj.get("status") or {}).get("rollout") or {}
        entry = {key: rollout.get(key) for key in STATE_KEYS}
        changed = not self.entries or {k: self.entries[-1][k] for k in STATE_KEYS} != entry
        # The pods' counts: at each change, and at most once a second in between (the cluster's one process
        # also runs the gateway and the API server these reads go through).
        if changed or time.monotonic() - self.counted >= 1.0:
            self.counted = time.monotonic()
            counts = answered(self.cluster, self.name)
            if changed:
                now = round(time.monotonic() - self.started, 1)
                self.entries.append({"t": now, **entry, "answered": counts, "lastAnswered": counts})
            else:
                last = self.entries[-1]["lastAnswered"]
                self.entries[-1]["lastAnswered"] = {k: last[k] if v is None else v for k, v in counts.items()}
        analysis = rollout.get("lastAnalysis")
        if analysis and (not self.analyses or self.analyses[-1]["time"] != analysis["time"]):
            self.analyses.append(analysis)
        return obj

    def until(
        self, phase: str, *, within: float = 240.0, reason: str | None = None, step: int | None = None
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            obj = self.poll()
            rollout = (obj.get("status") or {}).get("rollout") or {}
            ok = (
                rollout.get("phase") == phase
                and (reason is None or rollout.get("reason") == reason)
                and (step is None or rollout.get("step") == step)
            )
            return obj if ok else None

        found: dict[str, Any] = wait_until(reached, within=within, interval=0.3, what=f"{self.name}: {phase}")
        return found

    def steps(self) -> dict[int, dict[str, float]]:
        """Per step that ended (Progressing, then another step or phase): the requests each version answered
        (and the copies the canary knew were mirrored) from when the step was first seen to when it was last
        seen."""
        out: dict[int, dict[str, float]] = {}
        for index, entry in enumerate(self.entries):
            if entry["phase"] != "Progressing" or entry["step"] in out:
                continue
            same = [
                e for e in self.entries[index:] if (e["phase"], e["step"]) == ("Progressing", entry["step"])
            ]
            if self.entries[-1] is same[-1]:
                continue  # still under way
            first, last = entry["answered"], same[-1]["lastAnswered"]
            out[entry["step"]] = {
                key: last[key] - first[key]
                for key in first
                if first[key] is not None and last[key] is not None
            }
        return out

    def save(self) -> None:
        path = self.cluster.state_dir.parent / f"timeline-{self.name}.json"
        path.write_text(json.dumps({"entries": self.entries, "analyses": self.analyses}, indent=1))
        print(f"\n{self.name} timeline:")
        for entry in self.entries:
            print(
                f"  {entry['t']:6.1f}s {entry['phase']} step {entry['step']} "
                f"{entry['stableWeight']}/{entry['canaryWeight']} mirror {entry['mirrorWeight']} "
                f"({entry['reason']}; answered so far {entry['answered']}): {entry['message']}"
            )
        for step, counts in self.steps().items():
            print(f"  step {step} answered {counts}")
        for analysis in self.analyses:
            checks = ", ".join(
                f"{c['name']} canary {c.get('canary', 'n/a')}{c['unit']} stable {c.get('stable', '-')}"
                for c in analysis["checks"]
            )
            print(
                f"  analysis {analysis['time']} {analysis['verdict']} samples {analysis['samples']}: {checks}"
            )


def deployment_image_model(cluster: DevCluster, name: str) -> str:
    deployment = cluster.get("deployment", name, NS)
    assert deployment is not None
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return next(e["value"] for e in env if e["name"] == "SENTIMENT_MODEL_ID")


def events(cluster: DevCluster, name: str) -> list[dict[str, Any]]:
    """The Events on one SentimentModel, read from the API server (kopf posts them without apiVersion, which
    kubectl's printer insists on)."""
    listed = httpx.get(f"{info(cluster)['url']}/api/v1/namespaces/{NS}/events", timeout=10).json()
    return [e for e in listed["items"] if e["involvedObject"].get("name") == name]


def start(cluster: DevCluster, name: str, provider: str = "istio", **spec: Any) -> Traffic:
    """A Ready SentimentModel at its first revision, routed through ``provider``'s route (Routing True: for an
    HTTPRoute, once the stand-in accepted it), with traffic through the gateway."""
    cluster.apply(model(name, provider, **spec))

    def ready() -> bool:
        obj = cluster.get("sentimentmodel", name, NS)
        status = (obj or {}).get("status") or {}
        return (
            condition(obj, "Ready").get("status") == "True"
            and (status.get("rollout") or {}).get("phase") == "Stable"
            and status.get("routingProvider") == provider
            and status.get("gatewayPath") == f"/{name}"
        )

    wait_until(ready, within=180, what=f"{name} Ready")
    return Traffic(f"{info(cluster)['gateway']}/{name}/predict", rate=RATE, concurrency=8).start()


def route(cluster: DevCluster, name: str, provider: str) -> dict[str, Any]:
    found = cluster.get(ROUTE_KINDS[provider], name, NS)
    assert found is not None, f"{ROUTE_KINDS[provider]} {name}"
    return found


def check_route_status(cluster: DevCluster, obj: dict[str, Any], provider: str) -> None:
    """Routing True for the route as it is now: an HTTPRoute accepted, with its references resolved, by the
    stand-in for its current generation; and no routing warning on the way."""
    name = obj["metadata"]["name"]
    routing = condition(obj, "Routing")
    assert (routing["status"], routing["reason"]) == (
        ("True", "VirtualServiceConfigured") if provider == "istio" else ("True", "HTTPRouteAccepted")
    ), routing
    warnings = {e["reason"] for e in events(cluster, name) if e["type"] == "Warning"}
    assert not warnings & {"HTTPRouteNotAccepted", "HTTPRouteRefsNotResolved"}, warnings
    if provider == "gatewayAPI":
        written = route(cluster, name, provider)
        generation = written["metadata"]["generation"]
        assert generation > 1  # every step rewrote the route
        reported = [c for p in written["status"]["parents"] for c in p["conditions"]]
        assert {(c["type"], c["status"], c["observedGeneration"]) for c in reported} == {
            ("Accepted", "True", generation),
            ("ResolvedRefs", "True", generation),
        }


def share(counts: dict[str, float]) -> float:
    """The canary's share of the requests answered (mirrored copies counted as answered by the canary)."""
    return counts["canary"] / (counts["canary"] + counts["stable"])


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_a_good_canary_is_promoted_through_every_step(
    cluster: DevCluster, trained_model_dir: Path, provider: str
) -> None:
    name = "good" + PROVIDERS[provider]
    # The same weights, published again from a volume under a new id: a new revision that answers alike.
    shutil.copytree(trained_model_dir, claim(cluster, f"retrained{PROVIDERS[provider]}"))
    traffic = start(cluster, name, provider, rollout={"mirrorPercent": 100})
    timeline = Timeline(cluster, name)
    try:
        # The ServiceMonitor the operator rendered is what the cluster's Prometheus scrapes, with its labels.
        assert cluster.get("servicemonitor", name, NS) is not None
        release(cluster, name, f"retrained{PROVIDERS[provider]}")
        timeline.until("Initializing")
        mirrored = timeline.until("Progressing")
        rollout = mirrored["status"]["rollout"]
        assert (rollout["step"], rollout["mirrorWeight"], rollout["canaryWeight"]) == (1, 100, 0)
        assert split_of(route(cluster, name, provider)) == ([(name, None)], (f"{name}-canary", 100.0))
        weighted = timeline.until("Progressing", reason="Progressing", step=2)
        assert split_of(route(cluster, name, provider)) == ([(name, 75), (f"{name}-canary", 25)], None)
        assert weighted["status"]["rollout"]["canaryWeight"] == 25
        done = timeline.until("Stable", within=300)
        assert (
            deployment_image_model(cluster, name) == f"sentiment-devmodel/tiny-retrained{PROVIDERS[provider]}"
        )
        assert cluster.get("deployment", f"{name}-canary", NS) is None  # the canary went away
    finally:
        statuses = traffic.stop()
        timeline.save()
    steps = [
        (e["step"], e["canaryWeight"], e["mirrorWeight"])
        for e in timeline.entries
        if e["phase"] == "Progressing"
    ]
    assert list(dict.fromkeys(steps)) == [(1, 0, 100), (2, 25, 0), (3, 50, 0)]  # a hold repeats a step
    assert [a["verdict"] for a in timeline.analyses][-3:] == ["Passed", "Passed", "Passed"]
    assert "promoted" in condition(done, "Rollout")["message"]
    assert condition(done, "Rollout")["status"] == "True"
    # The gateway split the requests by the route's weights, as each version's pod counted them: the mirrored
    # step copied every request to the canary (which knows a copy by its "-shadow" Host behind Istio; Envoy
    # Gateway, which the stand-in follows for HTTPRoutes, sends copies with the Host unchanged), then both
    # versions answered users, the canary about its weight's share (at 25 %, copies the mirrored step left
    # queued at the canary are answered, and counted, as well).
    answered = timeline.steps()
    mirror, quarter, half = answered[1], answered[2], answered[3]
    assert 0.7 < mirror["canary"] / mirror["stable"] < 1.3, answered
    marked = mirror["mirrored"] / mirror["canary"]
    # (The route takes the next step's weights a moment before the status shows the step: a few requests
    # the canary answered in step 1's window were users', not copies.)
    assert (marked > 0.7) if provider == "istio" else (marked == 0), answered
    assert 0.05 < share(quarter) < 0.5, answered
    assert 0.3 < share(half) < 0.7, answered
    # Users never saw an error: every request of the rollout was answered.
    assert set(statuses) == {200}, statuses
    reasons = [e["reason"] for e in events(cluster, name)]
    assert "RolloutStarted" in reasons
    assert "RolloutPromoted" in reasons
    # The weights went back to all-stable and the route sends to the stable Service only, without a mirror.
    assert split_of(route(cluster, name, provider)) == ([(name, None)], None)
    check_route_status(cluster, wait_until(lambda: routed(cluster, name), what=f"{name} routed"), provider)
    retire(cluster, name, provider)


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_a_canary_that_answers_differently_is_rolled_back_on_the_label_check(
    cluster: DevCluster, provider: str
) -> None:
    name = "flip" + PROVIDERS[provider]
    write_devmodel(
        claim(cluster, f"flipped{PROVIDERS[provider]}"), "tiny", trained=True, seed=0, flip_labels=True
    )
    traffic = start(cluster, name, provider)
    timeline = Timeline(cluster, name)
    try:
        release(cluster, name, f"flipped{PROVIDERS[provider]}")
        rolled_back = timeline.until("RolledBack", reason="AnalysisFailed")
    finally:
        traffic.stop()
        timeline.save()
    rollout_condition = condition(rolled_back, "Rollout")
    assert rollout_condition["status"] == "False"
    assert rollout_condition["reason"] == "AnalysisFailed"
    assert "labelShift" in rollout_condition["message"]
    last = timeline.analyses[-1]
    shift = next(c for c in last["checks"] if c["name"] == "labelShift")
    assert shift["passed"] is False
    assert shift["canary"] > 25
    # The canary answered about its step's share of the users, by the route's weights, until the rollback.
    assert 0.05 < share(timeline.steps()[1]) < 0.5, timeline.steps()
    # The stable is untouched, the canary is at zero replicas and gets no traffic; the spec is as written.
    assert deployment_image_model(cluster, name) == "distilbert-base-uncased-finetuned-sst-2-english"
    canary = cluster.get("deployment", f"{name}-canary", NS)
    assert canary is not None
    assert canary["spec"]["replicas"] == 0
    rollout = rolled_back["status"]["rollout"]
    assert (rollout["stableWeight"], rollout["canaryWeight"]) == (100, 0)
    assert split_of(route(cluster, name, provider)) == ([(name, None)], None)
    assert rolled_back["spec"]["model"]["source"] == {
        "pvc": {"claimName": f"flipped{PROVIDERS[provider]}", "readOnly": True}
    }
    warnings = [
        e for e in events(cluster, name) if e["type"] == "Warning" and e["reason"] == "AnalysisFailed"
    ]
    assert len(warnings) == 1
    check_route_status(cluster, wait_until(lambda: routed(cluster, name), what=f"{name} routed"), provider)
    retire(cluster, name, provider)


def retire(cluster: DevCluster, name: str, provider: str) -> None:
    """Delete a Gateway API run's model once it is checked: the models stay few (two CPUs run every pod, and
    Prometheus scrapes each one every second), so the tests after it run on the load they were written for;
    the Istio runs' models stay for the dashboard and alert tests below."""
    if provider != "istio":
        cluster.kubectl("-n", NS, "delete", "sentimentmodel", name, "--wait", "--timeout=120s")


def routed(cluster: DevCluster, name: str) -> dict[str, Any] | None:
    """The SentimentModel once Routing is True for its route as it is now."""
    obj = cluster.get("sentimentmodel", name, NS)
    return obj if condition(obj, "Routing").get("status") == "True" else None


def test_a_canary_with_a_broken_model_is_rolled_back_on_errors(
    cluster: DevCluster, trained_model_dir: Path
) -> None:
    broken_copy(trained_model_dir, claim(cluster, "broken"))
    traffic = start(cluster, "errs")
    timeline = Timeline(cluster, "errs")
    try:
        release(cluster, "errs", "broken")
        rolled_back = timeline.until("RolledBack", reason="AnalysisFailed")
    finally:
        statuses = traffic.stop()
        timeline.save()
    message = condition(rolled_back, "Rollout")["message"]
    assert "errorRate" in message
    errors = next(c for c in timeline.analyses[-1]["checks"] if c["name"] == "errorRate")
    assert errors["passed"] is False
    assert errors["canary"] > 5
    assert errors["stable"] == 0
    assert statuses[500] > 0  # the canary's share of the users did see errors, until the rollback


def test_an_unreachable_prometheus_holds_the_rollout_until_it_answers(
    cluster: DevCluster, trained_model_dir: Path
) -> None:
    shutil.copytree(trained_model_dir, claim(cluster, "again"))
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    traffic = start(cluster, "hold", rollout={"analysis": {**ROLLOUT["analysis"], "prometheusURL": nowhere}})
    timeline = Timeline(cluster, "hold")
    try:
        release(cluster, "hold", "again")
        held = timeline.until("Progressing", reason="NoData")
        assert "Prometheus did not answer" in condition(held, "Rollout")["message"]
        assert nowhere in condition(held, "Rollout")["message"]
        step = held["status"]["rollout"]["step"]
        # Two more intervals: still at the same step, never promoted blind.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rollout = timeline.poll()["status"]["rollout"]
            assert (rollout["phase"], rollout["step"]) == ("Progressing", step)
            time.sleep(0.5)
        # Prometheus answers again (the cluster's own): the rollout goes on and is promoted.
        analysis = {**ROLLOUT["analysis"], "prometheusURL": info(cluster)["prometheus"]}
        patch(cluster, "hold", {"rollout": {"analysis": analysis}})
        timeline.until("Stable", within=300)
    finally:
        traffic.stop()
        timeline.save()
    assert any(e["reason"] == "NoData" for e in timeline.entries)
    assert deployment_image_model(cluster, "hold") == "sentiment-devmodel/tiny-again"


# --- the dashboard's, the alerts' and the analysis' queries, against the Prometheus that saw the rollouts ---

DASHBOARD = json.loads(
    (ROOT / "examples" / "grafana" / "sentiment-dashboard.json").read_text(encoding="utf-8")
)
RULES = yaml.safe_load((ROOT / "examples" / "monitoring" / "prometheusrule.yaml").read_text(encoding="utf-8"))
GRAFANA = {"$namespace": NS, "$service": ".*", "$__rate_interval": "15m", "$__range": "1h"}
# The models whose rollouts ran above and are still there (the Gateway API ones were deleted), by outcome.
FLIPPED = ["flip"]
PROMOTED = ["good", "hold"]
ROLLED_BACK = [*FLIPPED, "errs"]
# The operator's rollout counters outlive a deleted model: the rollback alert counts the Gateway API run too.
ROLLBACKS_COUNTED = [*ROLLED_BACK, "flip-gw"]
# Queries of series this cluster has no source for, each with the reason (everything else must answer).
NOT_HERE = {
    "kube_": "kube-state-metrics does not run in the embedded cluster",
    "container_": "cAdvisor (the kubelet's) does not run in the embedded cluster",
    "sentiment_cache_errors_total": "these models run without Redis: no cache error can happen",
}


def promql(cluster: DevCluster, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{info(cluster)['prometheus']}/api/v1/query", params={"query": expr}, timeout=10
    ).json()
    assert answer["status"] == "success", (expr, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def by(result: list[dict[str, Any]], *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(r["metric"].get(label, "") for label in labels): float(r["value"][1]) for r in result}


def dashboard_queries() -> list[tuple[str, str]]:
    out = []
    for panel in DASHBOARD["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in GRAFANA.items():
                expr = expr.replace(name, value)
            out.append((f"{panel['title']} {target['refId']}", expr))
    for variable in DASHBOARD["templating"]["list"]:
        if variable["type"] == "query":
            selector = variable["query"]["query"].removeprefix("label_values(").rsplit(",", 1)[0]
            out.append((f"variable {variable['name']}", selector.replace("$namespace", NS)))
    return out


def test_every_dashboard_query_answers_with_the_rollouts_numbers(cluster: DevCluster) -> None:
    answered = 0
    for where, expr in dashboard_queries():
        if any(marker in expr for marker in NOT_HERE):
            continue
        result = promql(cluster, expr)
        assert result, f"{where}: no result for {expr}"
        answered += 1
    assert answered >= 20
    titles = {panel["title"]: panel["targets"][0]["expr"] for panel in DASHBOARD["panels"]}

    def panel(title: str, *labels: str) -> dict[tuple[str, ...], float]:
        expr = titles[title]
        for name, value in GRAFANA.items():
            expr = expr.replace(name, value)
        return by(promql(cluster, expr), *labels)

    split = panel("Rollout: traffic split", "sentiment_model", "track")
    for model in PROMOTED + ROLLED_BACK:  # every rollout ended: all traffic on the stable
        assert (split[model, "stable"], split[model, "canary"], split[model, "mirror"]) == (100, 0, 0)
    errors = panel("Rollout: error rate, canary vs stable", "sentiment_model", "track")
    assert errors["errs", "canary"] > 0.05
    assert errors["errs", "stable"] == 0
    p99 = panel("Rollout: p99 latency, canary vs stable", "sentiment_model", "track")
    assert all(0 < value < 2.5 for value in p99.values()), p99
    shares = panel("Rollout: predicted label shares", "sentiment_model", "track", "label")
    for flip in FLIPPED:
        assert shares[flip, "canary", "NEGATIVE"] > shares[flip, "stable", "NEGATIVE"] + 0.2
    outcomes = panel("Rollouts by outcome", "sentiment_model", "outcome")
    for model in PROMOTED:
        assert outcomes[model, "promoted"] >= 0.9
    for model in ROLLED_BACK:
        assert outcomes[model, "rolled_back"] >= 0.9


def test_the_analysis_queries_answer_for_both_tracks(cluster: DevCluster) -> None:
    from sentiment_operator.analysis import queries

    flip = {name: by(promql(cluster, expr), "track") for name, expr in queries(NS, "flip", 900).items()}
    errs = {name: by(promql(cluster, expr), "track") for name, expr in queries(NS, "errs", 900).items()}
    for name in ("requests", "errors", "p99"):
        assert set(flip[name]) == {("stable",), ("canary",)}, (name, flip[name])
    assert flip["errors"] == {("stable",): 0.0, ("canary",): 0.0}  # no error: zero, not missing
    assert errs["errors"][("canary",)] > 0
    assert errs["errors"][("stable",)] == 0
    assert all(0 < value < 2.5 for value in flip["p99"].values())
    labels = by(promql(cluster, queries(NS, "flip", 900)["labels"]), "track", "label")
    assert labels[("canary", "NEGATIVE")] > labels[("canary", "POSITIVE")]  # the flipped model's answers
    assert labels[("stable", "POSITIVE")] > labels[("stable", "NEGATIVE")]


def test_the_alerts_fire_on_a_rollback_and_a_model_that_is_not_ready(cluster: DevCluster) -> None:
    cluster.kubectl("-n", NS, "apply", "-f", str(ROOT / "examples" / "monitoring" / "prometheusrule.yaml"))
    # A model that cannot be Ready (an invalid spec): the operator's gauge says 0.
    cluster.apply(model("broken-spec", resources={"requests": {"cpu": "4"}, "limits": {"cpu": "2"}}))
    prometheus = info(cluster)["prometheus"]

    def loaded() -> list[str]:
        groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        return [g["name"] for g in groups]

    wait_until(lambda: len(loaded()) == 2, within=60, what="the PrometheusRule's groups loaded")
    groups = {g["name"]: g for g in RULES["spec"]["groups"]}
    alerts = {r["alert"]: r["expr"] for r in groups["sentiment-models.alerts"]["rules"]}
    rolled_back = wait_until(
        lambda: by(promql(cluster, alerts["SentimentRolloutRolledBack"]), "sentiment_model"),
        within=60,
        what="the rollback alert's series",
    )
    assert set(rolled_back) == {(model,) for model in ROLLBACKS_COUNTED}
    not_ready = wait_until(
        lambda: by(promql(cluster, alerts["SentimentModelNotReady"]), "sentiment_model"),
        within=60,
        what="the not-Ready alert's series",
    )
    assert not_ready == {("broken-spec",): 0.0}
    firing = wait_until(
        lambda: (
            {
                (a["labels"]["alertname"], a["labels"]["sentiment_model"], a["state"])
                for a in httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
            }
            >= {("SentimentRolloutRolledBack", model, "firing") for model in ROLLBACKS_COUNTED}
            | {("SentimentModelNotReady", "broken-spec", "pending")}
        ),
        within=60,
        what="the alerts firing (not Ready: pending for its 5 minutes)",
    )
    assert firing
    # The latency and overload alerts compare recorded numbers: those answer for every model and track that
    # had traffic in their 5 minutes (NaN for the others: no rate), under the thresholds (nothing is slow or
    # refused here), so the alerts stay quiet.
    recorded = {r["record"]: r["expr"] for r in groups["sentiment-models.rules"]["rules"]}

    def numbers(expr: str) -> dict[tuple[str, ...], float]:
        return {
            k: v
            for k, v in by(promql(cluster, expr), "sentiment_model", "track").items()
            if not math.isnan(v)
        }

    latency = wait_until(
        lambda: numbers("sentiment:predict_latency_seconds:p99_5m"), within=30, what="the recorded p99"
    )
    assert all(0 < value < 2 for value in latency.values()), latency
    overload = numbers(recorded["sentiment:predict_overloaded:ratio_5m"])
    assert overload.keys() == latency.keys()
    assert set(overload.values()) == {0.0}
    assert promql(cluster, alerts["SentimentPredictLatencyHigh"]) == []
    assert promql(cluster, alerts["SentimentPredictOverloaded"]) == []
