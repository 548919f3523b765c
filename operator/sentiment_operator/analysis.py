"""A rollout step's analysis: the canary against its thresholds and against the stable version, over one
window, from the server metrics in Prometheus.

The queries are built here (one source: the tests evaluate exactly these against a real Prometheus), the
numbers come through :class:`MetricsSource` (the Prometheus client, or a fake), and :func:`evaluate` turns
them into a verdict: Failed when a check is over its threshold, NoData when a side answered fewer than
``minSamples`` requests or a value is missing (never a pass), else Passed. Pure but for the one ``await``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import sentiment_contract as C

from sentiment_operator.names import SERIES_LABEL_MODEL, SERIES_LABEL_TRACK, TRACK_CANARY, TRACK_STABLE
from sentiment_operator.spec import AnalysisSpec
from sentiment_operator.status import Reason

TRACKS = (TRACK_STABLE, TRACK_CANARY)


class MetricsUnavailable(Exception):
    """Prometheus could not answer (unreachable, timed out, refused the query)."""


class MetricsSource(Protocol):
    """Instant PromQL queries: the result vector as ``[{"metric": {labels}, "value": [time, "text"]}]``."""

    async def query(self, promql: str) -> list[dict[str, Any]]: ...


class Verdict(StrEnum):
    PASSED = "Passed"
    FAILED = "Failed"
    NO_DATA = Reason.NO_DATA.value  # the Rollout condition's reason while the rollout holds for it


class CheckName(StrEnum):
    """The checks of every step (their names in status and in messages)."""

    ERROR_RATE = "errorRate"
    P99_LATENCY = "p99Latency"
    LABEL_SHIFT = "labelShift"


@dataclass(frozen=True)
class Check:
    """One check: the canary's value (and the stable's, for comparison) against the threshold.
    ``passed`` is None when there was nothing to compare."""

    name: CheckName
    unit: str
    threshold: float
    canary: float | None
    stable: float | None
    passed: bool | None
    detail: str = ""

    def describe(self) -> str:
        """E.g. "errorRate 12.5% > 1% (stable 0%)" or "labelShift 41pp <= 10pp: POSITIVE ..."."""
        if self.canary is None:
            return f"{self.name}: no data"
        relation = ">" if self.passed is False else "<="
        text = f"{self.name} {self.canary:.4g}{self.unit} {relation} {self.threshold:g}{self.unit}"
        if self.stable is not None:
            text += f" (stable {self.stable:.4g}{self.unit})"
        return f"{text}: {self.detail}" if self.detail else text


@dataclass(frozen=True)
class Analysis:
    """The outcome of one window: the verdict, why, and every number it was made from."""

    verdict: Verdict
    message: str
    window_seconds: float
    samples: Mapping[str, int] = field(default_factory=dict)  # predict requests answered, per track
    checks: tuple[Check, ...] = ()

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if check.passed is False)


@dataclass(frozen=True)
class TrackMetrics:
    """What one side (stable or canary) did in the window."""

    requests: float = 0.0
    errors: float = 0.0
    p99_seconds: float | None = None
    labels: Mapping[str, float] = field(default_factory=dict)  # answers per top label


# --- the queries --------------------------------------------------------------------------------------------


def _selector(namespace: str, model: str, **extra: str) -> str:
    matchers = {"namespace": f'="{namespace}"', SERIES_LABEL_MODEL: f'="{model}"', **extra}
    return "{" + ", ".join(f"{key}{value}" for key, value in matchers.items()) + "}"


def _range(window_seconds: float) -> str:
    return f"[{max(1, round(window_seconds))}s]"


def queries(namespace: str, model: str, window_seconds: float) -> dict[str, str]:
    """The PromQL of one analysis, every one grouped ``by (track)``: requests, errors, p99 (seconds), answers
    by label."""
    window = _range(window_seconds)
    predict = {"route": f'=~"{C.PREDICT_ROUTE_REGEX}"'}
    requests = _selector(namespace, model, **predict)
    errors = _selector(namespace, model, **predict, status=f'=~"{C.ERROR_STATUS_REGEX}"')
    track = SERIES_LABEL_TRACK
    return {
        "requests": f"sum by ({track}) (increase({C.REQUESTS.name}{requests}{window}))",
        # "or ... * 0": a side without a single error has 0 errors, not no number at all.
        "errors": f"sum by ({track}) (increase({C.REQUESTS.name}{errors}{window})) "
        f"or sum by ({track}) (increase({C.REQUESTS.name}{requests}{window})) * 0",
        "p99": f"histogram_quantile(0.99, sum by ({track}, le) "
        f"(rate({C.REQUEST_SECONDS.name}{requests}{window})))",
        "labels": f"sum by ({track}, label) "
        f"(increase({C.PREDICTIONS.name}{_selector(namespace, model)}{window}))",
    }


def _value(sample: Mapping[str, Any]) -> float | None:
    try:
        value = float(sample["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return None if math.isnan(value) or math.isinf(value) else value


def collect(results: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, TrackMetrics]:
    """Per track, the numbers of the query results (keyed as :func:`queries` names them)."""
    found: dict[str, dict[str, Any]] = {track: {"labels": {}} for track in TRACKS}
    for key in ("requests", "errors", "p99"):
        for sample in results.get(key, ()):
            track = str((sample.get("metric") or {}).get(SERIES_LABEL_TRACK, ""))
            value = _value(sample)
            if track in found and value is not None:
                found[track]["p99_seconds" if key == "p99" else key] = value
    for sample in results.get("labels", ()):
        metric = sample.get("metric") or {}
        track, label = str(metric.get(SERIES_LABEL_TRACK, "")), metric.get("label")
        value = _value(sample)
        if track in found and label is not None and value is not None:
            found[track]["labels"][str(label)] = value
    return {track: TrackMetrics(**values) for track, values in found.items()}


async def analyse(
    source: MetricsSource, namespace: str, model: str, spec: AnalysisSpec, window_seconds: float
) -> Analysis:
    """Query the window's numbers and evaluate them; Prometheus unavailable is NoData, saying why."""
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        for key, promql in queries(namespace, model, window_seconds).items():
            results[key] = await source.query(promql)
    except MetricsUnavailable as exc:
        return Analysis(Verdict.NO_DATA, f"no data: Prometheus did not answer: {exc}", window_seconds)
    return evaluate(collect(results), spec, window_seconds)


# --- the verdict -------------------------------------------------------------------------------------------


def _error_check(canary: TrackMetrics, stable: TrackMetrics, spec: AnalysisSpec) -> Check:
    def percent(side: TrackMetrics) -> float | None:
        return 100.0 * side.errors / side.requests if side.requests > 0 else None

    value = percent(canary)
    return Check(
        CheckName.ERROR_RATE,
        "%",
        spec.max_error_percent,
        value,
        percent(stable),
        None if value is None else value <= spec.max_error_percent,
    )


def _latency_check(canary: TrackMetrics, stable: TrackMetrics, spec: AnalysisSpec) -> Check:
    def ms(side: TrackMetrics) -> float | None:
        return None if side.p99_seconds is None else side.p99_seconds * 1000.0

    value = ms(canary)
    return Check(
        CheckName.P99_LATENCY,
        "ms",
        spec.max_p99_latency_ms,
        value,
        ms(stable),
        None if value is None else value <= spec.max_p99_latency_ms,
    )


def _shares(labels: Mapping[str, float]) -> dict[str, float] | None:
    total = sum(labels.values())
    return {label: 100.0 * count / total for label, count in labels.items()} if total > 0 else None


def _label_check(canary: TrackMetrics, stable: TrackMetrics, spec: AnalysisSpec) -> Check:
    ours, theirs = _shares(canary.labels), _shares(stable.labels)
    if ours is None or theirs is None:
        return Check(CheckName.LABEL_SHIFT, "pp", spec.max_label_shift_percent, None, None, None)
    shifts = {label: abs(ours.get(label, 0.0) - theirs.get(label, 0.0)) for label in ours.keys() | theirs}
    worst = max(sorted(shifts), key=lambda label: shifts[label])
    detail = (
        f"{worst} is {ours.get(worst, 0.0):.1f}% of the canary's answers, "
        f"{theirs.get(worst, 0.0):.1f}% of the stable's"
    )
    return Check(
        CheckName.LABEL_SHIFT,
        "pp",
        spec.max_label_shift_percent,
        shifts[worst],
        None,
        shifts[worst] <= spec.max_label_shift_percent,
        detail,
    )


def evaluate(metrics: Mapping[str, TrackMetrics], spec: AnalysisSpec, window_seconds: float) -> Analysis:
    """The verdict of one window (pure): see the module docstring."""
    stable, canary = metrics.get(TRACK_STABLE, TrackMetrics()), metrics.get(TRACK_CANARY, TrackMetrics())
    samples = {TRACK_STABLE: round(stable.requests), TRACK_CANARY: round(canary.requests)}
    short = [f"{track} {count}" for track, count in samples.items() if count < spec.min_samples]
    if short:
        message = (
            f"no data: predict requests answered in the last {window_seconds:g}s: {', '.join(short)} "
            f"(minSamples {spec.min_samples} per side)"
        )
        return Analysis(Verdict.NO_DATA, message, window_seconds, samples)
    checks = (
        _error_check(canary, stable, spec),
        _latency_check(canary, stable, spec),
        _label_check(canary, stable, spec),
    )
    failed = [check for check in checks if check.passed is False]
    if failed:
        verdict, message = Verdict.FAILED, "; ".join(check.describe() for check in failed)
    elif any(check.passed is None for check in checks):
        missing = ", ".join(check.name for check in checks if check.passed is None)
        verdict, message = Verdict.NO_DATA, f"no data for {missing}"
    else:
        verdict, message = Verdict.PASSED, "; ".join(check.describe() for check in checks)
    return Analysis(verdict, message, window_seconds, samples, checks)
