"""A canary rollout as a small state machine whose whole state lives in ``status.rollout``.

Stable --(the spec renders a new pod template)--> Initializing --(the canary is available)--> Progressing,
one step per interval, each decided by its analysis: passed -> the next step, or Promoting after the last one;
failed -> a failed check, RolledBack once ``failureThreshold`` is reached; no data -> hold, RolledBack after
``noDataTimeout``. Promoting: the stable Deployment takes the new template; once it has rolled out: Stable.
RolledBack: weight 0, canary at zero replicas, the stable untouched, until the spec renders another template.

:func:`advance` is pure: the reconciler reads the previous state from status, observes the Deployments,
asks :func:`wants_analysis` whether a step is due, runs the analysis if so, and writes what comes back. The
same inputs always give the same state, so an operator restart (or a peering hand-over) resumes where the
last one stopped. The traffic split is provider-neutral (:mod:`sentiment_operator.traffic`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

from sentiment_operator.analysis import Analysis, Verdict
from sentiment_operator.events import Event, EventReason
from sentiment_operator.spec import RolloutSpec
from sentiment_operator.status import Reason, epoch_of, rfc3339
from sentiment_operator.traffic import ALL_STABLE, TrafficSplit, plan

JSONObj = dict[str, Any]
CanaryMode = Literal["none", "serving", "scaled-down"]
Outcome = Literal["promoted", "rolled_back", "aborted", "cancelled"]


class Phase(StrEnum):
    """``status.rollout.phase`` (three share their name with the Rollout condition's reason)."""

    STABLE = Reason.STABLE.value  # the spec's pod template serves all traffic; no canary
    INITIALIZING = "Initializing"  # the canary Deployment is coming up; no traffic yet
    PROGRESSING = Reason.PROGRESSING.value  # the canary takes a step's traffic (or a mirrored copy), analysed
    PROMOTING = Reason.PROMOTING.value  # the stable rolls out the promoted template; the canary still serves
    ROLLED_BACK = "RolledBack"  # the canary at zero replicas and no traffic; the stable untouched


IN_FLIGHT = frozenset({Phase.INITIALIZING, Phase.PROGRESSING, Phase.PROMOTING})
# Phases that a Deployment's progress moves on (the canary coming up, the promoted stable rolling out).
WAITING_ON_DEPLOYMENTS = frozenset({Phase.INITIALIZING, Phase.PROMOTING})


class Action(StrEnum):
    """A user's command, given as the annotation ``names.ANNOTATION_ROLLOUT_ACTION``."""

    PAUSE = "pause"
    RESUME = "resume"
    ABORT = "abort"
    PROMOTE = "promote"


@dataclass(frozen=True)
class Observed:
    """The pod template revision each Deployment runs on every replica, available; None while it rolls,
    is missing or is unavailable."""

    canary: str | None = None
    stable: str | None = None


@dataclass(frozen=True)
class State:
    """``status.rollout`` (see :meth:`to_status`)."""

    phase: Phase
    stable_revision: str
    stable_spec: JSONObj  # the spec (as written) whose pod template the stable Deployment runs
    reason: Reason
    message: str
    canary_revision: str | None = None
    step: int = 0  # index into the plan of splits
    started_at: float | None = None
    step_started_at: float | None = None
    failed_checks: int = 0
    no_data_since: float | None = None
    paused: bool = False
    last_analysis: JSONObj | None = None

    def to_status(self, spec: RolloutSpec) -> JSONObj:
        """The JSON of ``status.rollout``: the state, the weights it routes and a one-line summary."""
        splits = plan(spec.steps, spec.mirror_percent)
        weights = split_of(self, spec)
        out: JSONObj = {
            "phase": self.phase.value,
            "summary": summary(self, spec),
            # 1-based; 0 until a step began (and again once stable).
            "step": self.step + 1 if self.step_started_at is not None else 0,
            "steps": len(splits),
            "stableWeight": weights.stable,
            "canaryWeight": weights.canary,
            "mirrorWeight": weights.mirror,
            "paused": self.paused,
            "failedChecks": self.failed_checks,
            "stableRevision": self.stable_revision,
            "canaryRevision": self.canary_revision,
            "startedAt": _time(self.started_at),
            "stepStartedAt": _time(self.step_started_at),
            "noDataSince": _time(self.no_data_since),
            "reason": self.reason.value,
            "message": self.message,
            "lastAnalysis": copy.deepcopy(self.last_analysis),
            "stableSpec": copy.deepcopy(self.stable_spec),
        }
        return {key: value for key, value in out.items() if value is not None}

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None) -> State | None:
        """The state a previous reconcile wrote, or None (none yet, or unreadable: start afresh)."""
        if not status or not status.get("stableRevision") or not isinstance(status.get("stableSpec"), dict):
            return None
        try:
            return cls(
                phase=Phase(status["phase"]),
                stable_revision=str(status["stableRevision"]),
                stable_spec=copy.deepcopy(dict(status["stableSpec"])),
                reason=Reason(status.get("reason") or Reason.STABLE),
                message=str(status.get("message") or ""),
                canary_revision=status.get("canaryRevision"),
                step=max(0, int(status.get("step") or 1) - 1),
                started_at=_epoch(status.get("startedAt")),
                step_started_at=_epoch(status.get("stepStartedAt")),
                failed_checks=int(status.get("failedChecks") or 0),
                no_data_since=_epoch(status.get("noDataSince")),
                paused=bool(status.get("paused")),
                last_analysis=copy.deepcopy(status.get("lastAnalysis")),
            )
        except (KeyError, ValueError, TypeError):
            return None


def _time(epoch: float | None) -> str | None:
    return None if epoch is None else rfc3339(epoch)


def _epoch(text: Any) -> float | None:
    return epoch_of(text) if isinstance(text, str) and text else None


def summary(state: State, spec: RolloutSpec) -> str:
    """One line for ``kubectl get sm``: "Stable", "Progressing 2/4 canary 25%", "Progressing 1/4 mirror 50%
    (paused)", "RolledBack"."""
    text = state.phase.value
    if state.phase in (Phase.PROGRESSING, Phase.PROMOTING):
        steps = len(plan(spec.steps, spec.mirror_percent))
        weights = split_of(state, spec)
        text += f" {min(state.step + 1, steps)}/{steps}"
        text += f" mirror {weights.mirror}%" if weights.canary == 0 else f" canary {weights.canary}%"
    return f"{text} (paused)" if state.paused and state.phase in IN_FLIGHT else text


def split_of(state: State | None, spec: RolloutSpec) -> TrafficSplit:
    """The split a state routes: its step's while the canary is analysed or promoted, else all stable."""
    if state is None or state.phase not in (Phase.PROGRESSING, Phase.PROMOTING):
        return ALL_STABLE
    splits = plan(spec.steps, spec.mirror_percent)
    # Clamped: a spec edit may have shortened the plan since the step began.
    return splits[min(state.step, len(splits) - 1)]


def canary_mode(state: State | None) -> CanaryMode:
    """Whether the canary Deployment runs (in flight), is kept at zero replicas (rolled back) or is gone."""
    if state is None or state.phase == Phase.STABLE:
        return "none"
    return "scaled-down" if state.phase == Phase.ROLLED_BACK else "serving"


def wants_analysis(state: State | None, spec: RolloutSpec, now: float) -> bool:
    """Whether the state's step is due for its analysis: progressing, not paused, one interval elapsed."""
    if state is None or state.phase != Phase.PROGRESSING or state.paused or state.step_started_at is None:
        return False
    return now >= state.step_started_at + spec.interval_seconds


def seconds_until_due(state: State | None, spec: RolloutSpec, now: float) -> float | None:
    """When the next decision that only time brings is due (a step's analysis, the canary's deadline), or
    None when only an event can move the rollout (a spec change, a Deployment's progress)."""
    if state is None or state.paused:
        return None
    if state.phase == Phase.PROGRESSING and state.step_started_at is not None:
        return max(0.0, state.step_started_at + spec.interval_seconds - now)
    if state.phase == Phase.INITIALIZING and state.started_at is not None:
        return max(0.0, state.started_at + spec.progress_deadline_seconds - now)
    return None


@dataclass
class Decision:
    """What one reconcile does about the rollout."""

    state: State | None
    split: TrafficSplit
    canary: CanaryMode
    stable_spec: JSONObj | None  # the spec whose pod template the stable Deployment runs (None: the spec's)
    events: list[Event] = field(default_factory=list)
    outcome: Outcome | None = None  # a rollout ended this reconcile
    action_done: bool = False  # the action annotation was read (carried out, or refused with an Event)


def _stable(revision: str, raw_spec: JSONObj, *, paused: bool = False, message: str = "") -> State:
    return State(
        phase=Phase.STABLE,
        stable_revision=revision,
        stable_spec=copy.deepcopy(raw_spec),
        reason=Reason.STABLE,
        message=message or f"revision {revision} serves all traffic",
        paused=paused,
    )


def _start(previous: State, revision: str, now: float, spec: RolloutSpec) -> State:
    return replace(
        previous,
        phase=Phase.INITIALIZING,
        canary_revision=revision,
        step=0,
        started_at=now,
        step_started_at=None,
        failed_checks=0,
        no_data_since=None,
        last_analysis=None,
        reason=Reason.PAUSED if previous.paused else Reason.WAITING_FOR_CANARY,
        message=f"revision {revision} is coming up as the canary (the stable runs "
        f"{previous.stable_revision}; deadline {spec.progress_deadline})",
    )


def _rolled_back(state: State, reason: Reason, message: str) -> State:
    return replace(state, phase=Phase.ROLLED_BACK, reason=reason, message=message, no_data_since=None)


def _analysis_record(analysis: Analysis, now: float) -> JSONObj:
    return {
        "time": rfc3339(now),
        "verdict": analysis.verdict.value,
        "message": analysis.message,
        "windowSeconds": analysis.window_seconds,
        "samples": dict(analysis.samples),
        "checks": [
            {
                key: value
                for key, value in {
                    "name": check.name.value,
                    "canary": check.canary,
                    "stable": check.stable,
                    "threshold": check.threshold,
                    "unit": check.unit,
                    "passed": check.passed,
                }.items()
                if value is not None
            }
            for check in analysis.checks
        ],
    }


class _Step:
    """One reconcile's walk through the machine: the state so far and what it announced."""

    def __init__(self, state: State, spec: RolloutSpec, now: float) -> None:
        self.state = state
        self.spec = spec
        self.now = now
        self.events: list[Event] = []
        self.outcome: Outcome | None = None

    def say(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.events.append(Event("Warning" if warning else "Normal", reason, message))

    def roll_back(self, reason: Reason, message: str, outcome: Outcome = "rolled_back") -> None:
        self.state = _rolled_back(self.state, reason, message)
        self.outcome = outcome
        self.say(reason, f"rolled back revision {self.state.canary_revision}: {message}", warning=True)

    def progress(self, step: int) -> None:
        """Enter ``step`` of the plan (its interval starts now)."""
        splits = plan(self.spec.steps, self.spec.mirror_percent)
        self.state = replace(
            self.state,
            phase=Phase.PROGRESSING,
            step=step,
            step_started_at=self.now,
            no_data_since=None,
            reason=Reason.PAUSED if self.state.paused else Reason.PROGRESSING,
            message=f"step {step + 1}/{len(splits)}: {splits[step].describe()} for {self.spec.interval}, "
            "then an analysis",
        )

    def promote(self, raw_spec: JSONObj, why: str) -> None:
        revision = str(self.state.canary_revision)
        self.state = replace(
            self.state,
            phase=Phase.PROMOTING,
            stable_revision=revision,
            stable_spec=copy.deepcopy(raw_spec),
            reason=Reason.PROMOTING,
            message=f"{why}: the stable Deployment rolls out revision {revision}; the canary keeps its "
            "weight until it has",
        )
        self.say(EventReason.ROLLOUT_PROMOTING, self.state.message)


def advance(
    previous: State | None,
    *,
    spec: RolloutSpec,
    raw_spec: Mapping[str, Any],
    revision: str,
    now: float,
    observed: Observed,
    analysis: Analysis | None = None,
    action: str | None = None,
) -> Decision:
    """The rollout's next state from the previous one, the spec (``raw_spec`` as written, and its pod
    template's ``revision``), the time, the Deployments, a due step's ``analysis`` and a user ``action``."""
    raw = copy.deepcopy(dict(raw_spec))
    if not spec.canary:
        # Immediate: the spec's template rolls out at once; nothing to remember.
        return Decision(None, ALL_STABLE, "none", None, action_done=action is not None)
    if previous is None:
        state = _stable(revision, raw)
        return Decision(state, ALL_STABLE, "none", None, action_done=action is not None)

    walk = _Step(previous, spec, now)
    action_done = action is not None
    if action is not None:
        _act(walk, action, raw, revision)
    _follow_spec(walk, raw, revision)
    _progress(walk, raw, observed, analysis)
    state = walk.state
    mode = canary_mode(state)
    return Decision(
        state=state,
        split=split_of(state, spec),
        canary=mode,
        stable_spec=state.stable_spec,
        events=walk.events,
        outcome=walk.outcome,
        action_done=action_done,
    )


def _act(walk: _Step, action: str, raw: JSONObj, revision: str) -> None:
    """Carry out a user's command, each with an Event."""
    state = walk.state
    try:
        wanted = Action(action.strip().lower())
    except ValueError:
        walk.say(
            EventReason.INVALID_ROLLOUT_ACTION,
            f"unknown rollout action {action!r}: use {', '.join(a.value for a in Action)}",
            warning=True,
        )
        return
    in_flight = state.phase in IN_FLIGHT
    if wanted == Action.PAUSE:
        walk.state = replace(state, paused=True, reason=Reason.PAUSED if in_flight else state.reason)
        where = f"at {summary(walk.state, walk.spec)}"
        walk.say(EventReason.ROLLOUT_PAUSED, f"paused {where if in_flight else 'before the next rollout'}")
    elif wanted == Action.RESUME:
        resumed = replace(state, paused=False)
        if state.phase == Phase.PROGRESSING:
            # The step gets a whole interval of traffic after the pause, not whatever was left of it.
            resumed = replace(resumed, step_started_at=walk.now, reason=Reason.PROGRESSING)
        elif state.phase == Phase.INITIALIZING:
            resumed = replace(resumed, reason=Reason.WAITING_FOR_CANARY)
        walk.state = resumed
        walk.say(EventReason.ROLLOUT_RESUMED, "resumed" if state.paused else "resumed (it was not paused)")
    elif wanted == Action.ABORT:
        if state.phase in (Phase.INITIALIZING, Phase.PROGRESSING):
            walk.roll_back(Reason.ABORTED, "aborted by request", outcome="aborted")
        else:
            walk.say(
                EventReason.ROLLOUT_ACTION_IGNORED, f"nothing to abort: the rollout is {state.phase.value}"
            )
    elif wanted == Action.PROMOTE:
        rolled_back_here = state.phase == Phase.ROLLED_BACK and revision == state.canary_revision
        if state.phase in (Phase.INITIALIZING, Phase.PROGRESSING) or rolled_back_here:
            walk.state = replace(state, paused=False)
            walk.promote(raw, "promoted by request, skipping the remaining analysis")
        else:
            walk.say(
                EventReason.ROLLOUT_ACTION_IGNORED, f"nothing to promote: the rollout is {state.phase.value}"
            )


def _follow_spec(walk: _Step, raw: JSONObj, revision: str) -> None:
    """Start, restart or cancel a rollout when the spec's pod template is not the one being rolled out."""
    state = walk.state
    if state.phase in (Phase.STABLE, Phase.ROLLED_BACK):
        if revision == state.stable_revision:
            if state.phase == Phase.ROLLED_BACK:
                walk.say(
                    EventReason.ROLLOUT_CANCELLED,
                    f"the spec is back at the stable revision {revision}; the canary is removed",
                )
            # The template is the stable's; the rest of the spec (replicas, routing) applies as it is now.
            walk.state = _stable(revision, raw, paused=state.paused)
        elif state.phase == Phase.STABLE or revision != state.canary_revision:
            walk.state = _start(state, revision, walk.now, walk.spec)
            walk.say(EventReason.ROLLOUT_STARTED, walk.state.message)
        return
    if revision == state.canary_revision:
        return
    if state.phase == Phase.PROMOTING:
        # The promotion is under way (the stable takes the promoted template): a newer one is the next canary.
        walk.outcome = "promoted"
        walk.say(
            EventReason.ROLLOUT_PROMOTED,
            f"revision {state.stable_revision} promoted (the stable Deployment is still rolling it out)",
        )
        walk.state = _start(state, revision, walk.now, walk.spec)
        walk.say(EventReason.ROLLOUT_STARTED, walk.state.message)
    elif revision == state.stable_revision:
        walk.outcome = "cancelled"
        walk.state = _stable(revision, raw, paused=state.paused)
        walk.say(
            EventReason.ROLLOUT_CANCELLED,
            f"the spec is back at the stable revision {revision}: all traffic to the stable, canary removed",
        )
    else:
        walk.state = _start(state, revision, walk.now, walk.spec)
        walk.say(
            EventReason.ROLLOUT_RESTARTED,
            f"the spec changed during the rollout of {state.canary_revision}: {walk.state.message}",
        )


def _progress(walk: _Step, raw: JSONObj, observed: Observed, analysis: Analysis | None) -> None:
    """Move the in-flight phases on: the canary up, a step's verdict, the promotion's end."""
    state, spec, now = walk.state, walk.spec, walk.now
    if state.phase == Phase.INITIALIZING:
        if state.paused:
            return
        if observed.canary is not None and observed.canary == state.canary_revision:
            walk.progress(0)
            walk.say(EventReason.ROLLOUT_ADVANCED, f"the canary is available; {walk.state.message}")
        elif state.started_at is not None and now - state.started_at >= spec.progress_deadline_seconds:
            walk.roll_back(
                Reason.CANARY_NOT_AVAILABLE,
                f"the canary Deployment did not become available within {spec.progress_deadline}",
            )
    elif state.phase == Phase.PROGRESSING:
        if state.paused or analysis is None:
            return
        _decide(walk, raw, analysis)
    elif state.phase == Phase.PROMOTING and observed.stable == state.stable_revision:
        walk.outcome = "promoted"
        walk.state = _stable(
            state.stable_revision,
            state.stable_spec,
            paused=state.paused,
            message=f"revision {state.stable_revision} promoted: the stable Deployment runs it, all traffic "
            "goes to it and the canary is removed",
        )
        walk.state = replace(walk.state, last_analysis=state.last_analysis)
        walk.say(EventReason.ROLLOUT_PROMOTED, walk.state.message)


def _decide(walk: _Step, raw: JSONObj, analysis: Analysis) -> None:
    """One step's verdict: the next step (or promotion), a failed check (or the rollback), or a hold."""
    state, spec, now = walk.state, walk.spec, walk.now
    record = _analysis_record(analysis, now)
    walk.state = state = replace(state, last_analysis=record)
    splits = plan(spec.steps, spec.mirror_percent)
    budget = spec.analysis.failure_threshold
    if analysis.verdict == Verdict.PASSED:
        if state.step + 1 < len(splits):
            walk.progress(state.step + 1)
            walk.say(
                EventReason.ROLLOUT_ADVANCED, f"analysis passed ({analysis.message}); {walk.state.message}"
            )
        else:
            walk.promote(raw, f"analysis passed at every step ({analysis.message})")
    elif analysis.verdict == Verdict.FAILED:
        failed = state.failed_checks + 1
        walk.state = replace(state, failed_checks=failed, no_data_since=None)
        if failed >= budget:
            walk.roll_back(Reason.ANALYSIS_FAILED, f"analysis failed {failed}/{budget}: {analysis.message}")
        else:
            walk.state = replace(
                walk.state,
                step_started_at=now,
                message=f"analysis failed {failed}/{budget} (one more rolls back): {analysis.message}; "
                f"step {state.step + 1}/{len(splits)} is analysed again after {spec.interval}",
            )
            walk.say(EventReason.ANALYSIS_CHECK_FAILED, walk.state.message)
    else:
        since = state.no_data_since if state.no_data_since is not None else state.step_started_at or now
        timeout = spec.analysis.no_data_timeout_seconds
        if now - since >= timeout:
            walk.roll_back(
                Reason.NO_DATA_TIMEOUT, f"no data for {spec.analysis.no_data_timeout}: {analysis.message}"
            )
            return
        walk.state = replace(
            state,
            no_data_since=since,
            step_started_at=now,
            reason=Reason.NO_DATA,
            message=f"holding at step {state.step + 1}/{len(splits)}: {analysis.message} "
            f"(rolls back after {spec.analysis.no_data_timeout} without data)",
        )
        if state.no_data_since is None:
            walk.say(EventReason.ROLLOUT_HELD, walk.state.message)
