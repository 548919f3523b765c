"""How a change of the server's pod template reaches the users: at once, or as an analysed canary."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .base import SpecFieldError, _Spec
from .quantities import Duration, parse_duration

Strategy = Literal["Immediate", "Canary"]
CANARY_STRATEGY = "Canary"

# A window needs two scrapes of each pod for a rate; fewer is never enough data.
SCRAPES_PER_WINDOW = 2


class AnalysisSpec(_Spec):
    """The checks every step must pass: the canary against its thresholds and against the stable version,
    over the step's interval, from the server metrics in Prometheus."""

    prometheus_url: str | None = Field(
        None,
        alias="prometheusURL",
        description="Prometheus to query (default: the operator's --prometheus-url).",
        json_schema_extra={"pattern": r"^https?://"},
    )
    max_error_percent: float = Field(
        1.0,
        ge=0,
        le=100,
        description="Most canary predict requests answered with a 5xx or a timeout (408), in percent.",
    )
    max_p99_latency_ms: int = Field(
        2000,
        ge=1,
        alias="maxP99LatencyMs",
        description="Highest p99 latency of the canary's predict requests.",
    )
    max_label_shift_percent: float = Field(
        10.0,
        ge=0,
        le=100,
        description="Most the share of any predicted label may differ between the canary and the stable "
        "version over the same window, in percentage points (the model check).",
    )
    min_samples: int = Field(
        50,
        ge=1,
        description="Predict requests each side must have answered in a window; below it the window has no "
        "data (the rollout holds, never passes).",
    )
    failure_threshold: int = Field(
        2, ge=1, description="Failed analyses of one rollout that roll the canary back."
    )
    no_data_timeout: Duration = Field(
        "5m",
        description="How long a step may go without data (no traffic, Prometheus unreachable) before the "
        "rollout rolls back.",
    )

    @field_validator("prometheus_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @property
    def no_data_timeout_seconds(self) -> float:
        return parse_duration(self.no_data_timeout)


class RolloutSpec(_Spec):
    """Immediate: a new pod template rolls out at once (a Deployment rolling update). Canary: the stable
    Deployment keeps the old template, the new one comes up as the canary, and the gateway weight moves
    through ``steps``, each lasting ``interval`` and passing only when its analysis passes; the last step
    promotes, a failed analysis rolls back."""

    strategy: Strategy = Field(
        "Immediate",
        description="Immediate (a rolling update) or Canary (analysed steps; needs routing and Prometheus).",
    )
    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        [10, 25, 50],
        min_length=1,
        max_length=20,
        description="Canary weights in percent of the routed traffic, increasing; each lasts one interval.",
    )
    interval: Duration = Field("1m", description="How long each step lasts; its analysis covers that window.")
    mirror_percent: int = Field(
        0,
        ge=0,
        le=100,
        description="Before any user traffic moves, mirror this percent of requests to the canary for one "
        "interval (answers discarded, not cached); 0: no mirrored step.",
    )
    progress_deadline: Duration = Field(
        "10m", description="How long the canary may take to become available before the rollout rolls back."
    )
    analysis: AnalysisSpec = Field(AnalysisSpec(), description="The checks of every step.")

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: list[int]) -> list[int]:
        for index, weight in enumerate(value):
            if index and weight <= value[index - 1]:
                raise SpecFieldError(
                    f"[{index}]", f"{weight} must be above the step before ({value[index - 1]})"
                )
        return value

    @model_validator(mode="after")
    def _no_data_timeout(self) -> RolloutSpec:
        if self.analysis.no_data_timeout_seconds < self.interval_seconds:
            raise SpecFieldError(
                "analysis.noDataTimeout",
                f"{self.analysis.no_data_timeout} is shorter than one interval ({self.interval})",
            )
        return self

    @property
    def canary(self) -> bool:
        return self.strategy == CANARY_STRATEGY

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)

    @property
    def progress_deadline_seconds(self) -> float:
        return parse_duration(self.progress_deadline)
