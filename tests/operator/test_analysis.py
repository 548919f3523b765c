"""A step's analysis, pure: metric values -> verdict (a table), the queries it sends, and the numbers it reads
out of Prometheus answers."""

from __future__ import annotations

import math
from typing import Any

import pytest
import sentiment_contract as C
from promql_parser import parse
from sentiment_operator.analysis import (
    Analysis,
    CheckName,
    MetricsUnavailable,
    TrackMetrics,
    Verdict,
    analyse,
    collect,
    evaluate,
    queries,
)
from sentiment_operator.spec import AnalysisSpec

SPEC = AnalysisSpec(max_error_percent=1, max_p99_latency_ms=500, max_label_shift_percent=10, min_samples=20)
GOOD = TrackMetrics(requests=100, errors=0, p99_seconds=0.05, labels={"POSITIVE": 70, "NEGATIVE": 30})


def side(**changes: Any) -> TrackMetrics:
    values = {
        "requests": 100.0,
        "errors": 0.0,
        "p99_seconds": 0.05,
        "labels": {"POSITIVE": 70, "NEGATIVE": 30},
    }
    values.update(changes)
    return TrackMetrics(**values)


# (canary, stable, verdict, what the message must say)
TABLE = [
    (side(), side(), Verdict.PASSED, "errorRate 0% <= 1%"),
    (side(labels={"POSITIVE": 75, "NEGATIVE": 25}), side(), Verdict.PASSED, "labelShift 5pp <= 10pp"),
    (side(errors=1), side(), Verdict.PASSED, "errorRate 1% <= 1%"),  # at the threshold still passes
    (side(errors=2), side(errors=1), Verdict.FAILED, "errorRate 2% > 1% (stable 1%)"),
    (side(errors=100, labels={}), side(), Verdict.FAILED, "errorRate 100% > 1%"),
    (side(p99_seconds=0.75), side(), Verdict.FAILED, "p99Latency 750ms > 500ms (stable 50ms)"),
    (
        side(labels={"POSITIVE": 30, "NEGATIVE": 70}),
        side(),
        Verdict.FAILED,
        "labelShift 40pp > 10pp: NEGATIVE is 70.0% of the canary's answers, 30.0% of the stable's",
    ),
    # A label only one side ever answers counts with its whole share.
    (
        side(labels={"POSITIVE": 60, "NEGATIVE": 28, "NEUTRAL": 12}),
        side(),
        Verdict.FAILED,
        "labelShift 12pp > 10pp: NEUTRAL is 12.0% of the canary's answers, 0.0% of the stable's",
    ),
    # Below minSamples on either side: no data, never a pass -- and never a failure either.
    (side(requests=19), side(), Verdict.NO_DATA, "canary 19 (minSamples 20 per side)"),
    (side(), side(requests=3), Verdict.NO_DATA, "stable 3"),
    (side(requests=5, errors=5), side(), Verdict.NO_DATA, "canary 5"),
    (TrackMetrics(), TrackMetrics(), Verdict.NO_DATA, "stable 0, canary 0"),
    # Enough requests, but no latency histogram or no answers to compare: no data.
    (side(p99_seconds=None), side(), Verdict.NO_DATA, "no data for p99Latency"),
    (side(labels={}), side(), Verdict.NO_DATA, "no data for labelShift"),
    # A failure wins over missing values.
    (side(errors=50, p99_seconds=None), side(), Verdict.FAILED, "errorRate 50% > 1%"),
]


@pytest.mark.parametrize(("canary", "stable", "verdict", "says"), TABLE)
def test_metric_values_decide_the_verdict(
    canary: TrackMetrics, stable: TrackMetrics, verdict: Verdict, says: str
) -> None:
    analysis = evaluate({"stable": stable, "canary": canary}, SPEC, 60)
    assert analysis.verdict == verdict, analysis.message
    assert says in analysis.message
    assert analysis.samples == {"stable": round(stable.requests), "canary": round(canary.requests)}
    if verdict == Verdict.FAILED:
        assert analysis.failed
        assert all(check.passed is False for check in analysis.failed)
        for check in analysis.failed:  # the failing metric, its value and the threshold are in the message
            assert check.name in analysis.message
            assert f"{check.threshold:g}" in analysis.message


def test_a_passed_window_lists_every_check_with_both_sides() -> None:
    analysis = evaluate({"stable": side(p99_seconds=0.1), "canary": side(p99_seconds=0.2)}, SPEC, 60)
    assert [check.name for check in analysis.checks] == list(CheckName)
    latency = analysis.checks[1]
    assert (latency.canary, latency.stable, latency.threshold) == (
        pytest.approx(200),
        pytest.approx(100),
        500,
    )


def test_queries_select_one_model_in_one_namespace_by_track_and_parse() -> None:
    found = queries("prod", "project", 30)
    assert set(found) == {"requests", "errors", "p99", "labels"}
    for promql in found.values():
        parse(promql)  # a real PromQL parser
        assert 'namespace="prod"' in promql
        assert 'sentiment_model="project"' in promql
        assert "by (track" in promql
        assert "[30s]" in promql
    assert C.REQUESTS.name in found["requests"]
    assert f'route=~"{C.PREDICT_ROUTE_REGEX}"' in found["requests"]
    assert f'status=~"{C.ERROR_STATUS_REGEX}"' in found["errors"]
    assert found["p99"].startswith("histogram_quantile(0.99,")
    assert C.REQUEST_SECONDS.name in found["p99"]
    assert C.PREDICTIONS.name in found["labels"]
    assert "by (track, label)" in found["labels"]


def test_collect_reads_vectors_and_ignores_what_is_not_a_number_or_not_ours() -> None:
    results: dict[str, list[dict[str, Any]]] = {
        "requests": [
            {"metric": {"track": "stable"}, "value": [1, "120.5"]},
            {"metric": {"track": "canary"}, "value": [1, "30"]},
            {"metric": {"track": "other"}, "value": [1, "7"]},
        ],
        "errors": [{"metric": {"track": "canary"}, "value": [1, "3"]}],
        "p99": [
            {"metric": {"track": "canary"}, "value": [1, "NaN"]},
            {"metric": {"track": "stable"}, "value": [1, "0.2"]},
        ],
        "labels": [
            {"metric": {"track": "canary", "label": "POSITIVE"}, "value": [1, "20"]},
            {"metric": {"track": "canary"}, "value": [1, "5"]},
        ],
    }
    found = collect(results)
    assert found["stable"] == TrackMetrics(requests=120.5, p99_seconds=0.2)
    assert found["canary"] == TrackMetrics(requests=30, errors=3, labels={"POSITIVE": 20})
    assert math.isclose(found["stable"].requests, 120.5)


class FakeSource:
    """A MetricsSource answering from canned vectors (or failing)."""

    def __init__(self, answers: dict[str, list[dict[str, Any]]] | None = None, fail: str = "") -> None:
        self.answers = answers or {}
        self.fail = fail
        self.asked: list[str] = []

    async def query(self, promql: str) -> list[dict[str, Any]]:
        self.asked.append(promql)
        if self.fail:
            raise MetricsUnavailable(self.fail)
        for key, answer in self.answers.items():
            if promql == queries("ns", "m", 10)[key]:
                return answer
        return []


def vector(**by_track: float) -> list[dict[str, Any]]:
    return [{"metric": {"track": track}, "value": [0, str(value)]} for track, value in by_track.items()]


async def test_analyse_asks_every_query_and_evaluates_the_answers() -> None:
    labels = [
        {"metric": {"track": track, "label": "POSITIVE"}, "value": [0, "40"]}
        for track in ("stable", "canary")
    ]
    source = FakeSource(
        {
            "requests": vector(stable=40, canary=40),
            "errors": vector(canary=0),
            "p99": vector(stable=0.01, canary=0.02),
            "labels": labels,
        }
    )
    analysis = await analyse(source, "ns", "m", SPEC, 10)
    assert source.asked == list(queries("ns", "m", 10).values())
    assert analysis.verdict == Verdict.PASSED, analysis.message


async def test_prometheus_unavailable_is_no_data_saying_why() -> None:
    analysis = await analyse(
        FakeSource(fail="http://prom:9090/api/v1/query: ClientConnectorError"), "ns", "m", SPEC, 10
    )
    assert analysis == Analysis(
        Verdict.NO_DATA,
        "no data: Prometheus did not answer: http://prom:9090/api/v1/query: ClientConnectorError",
        10,
    )
