"""The canary rollout's state machine, pure: every transition, its Events and the traffic split it routes, and
a state that survives being written to status and read back (an operator restart resumes at the same step)."""

from __future__ import annotations

from typing import Any

import pytest
from sentiment_operator.analysis import Analysis, Verdict
from sentiment_operator.rollout import (
    Decision,
    Observed,
    Phase,
    State,
    advance,
    seconds_until_due,
    wants_analysis,
)
from sentiment_operator.spec import parse_spec
from sentiment_operator.status import Reason
from sentiment_operator.traffic import TrafficSplit, plan

RAW: dict[str, Any] = {
    "routing": {"enabled": True},
    "monitoring": {"interval": "1s"},
    "rollout": {
        "strategy": "Canary",
        "steps": [10, 50],
        "interval": "10s",
        "progressDeadline": "60s",
        "analysis": {"failureThreshold": 2, "noDataTimeout": "30s"},
    },
}
SPEC = parse_spec("m", RAW).rollout
PASSED = Analysis(Verdict.PASSED, "errorRate 0% <= 1%", 10)
FAILED = Analysis(Verdict.FAILED, "errorRate 12.5% > 1% (stable 0%)", 10)
NO_DATA = Analysis(Verdict.NO_DATA, "no data: predict requests answered in the last 10s: canary 3", 10)
READY = "the canary runs the revision being rolled out"
NOT_READY = "the canary is not available yet"


def with_template(image: str) -> dict[str, Any]:
    return {**RAW, "image": image}


class Walk:
    """Drives the machine as the reconciler does, writing each state to status and reading it back."""

    def __init__(self, raw: dict[str, Any] | None = None) -> None:
        self.raw = raw or RAW
        self.revision = "r1"
        self.now = 1000.0
        self.status: dict[str, Any] | None = None
        self.decisions: list[Decision] = []
        self.step(NOT_READY)  # the first reconcile of a Canary spec: the stable is what runs

    @property
    def state(self) -> State:
        state = State.from_status(self.status)
        assert state is not None
        return state

    def change(self, revision: str, raw: dict[str, Any] | None = None) -> None:
        self.revision = revision
        self.raw = raw or with_template(revision)

    def step(
        self,
        canary: str = READY,
        *,
        stable_rolled_out: bool = False,
        after: float = 0.0,
        analysis: Analysis | None = None,
        action: str | None = None,
    ) -> Decision:
        self.now += after
        spec = parse_spec("m", self.raw).rollout
        previous = State.from_status(self.status)
        observed = Observed(
            canary=self.revision if canary == READY else None,
            stable=self.revision if stable_rolled_out else "r0",
        )
        # As the reconciler does: decide, and when a step is due, decide again with its analysis.
        inputs: dict[str, Any] = {
            "spec": spec,
            "raw_spec": self.raw,
            "revision": self.revision,
            "now": self.now,
            "observed": observed,
            "action": action,
        }
        decision = advance(previous, **inputs)
        if analysis is not None:
            assert wants_analysis(decision.state, spec, self.now), "the analysis is not due"
            decision = advance(previous, **inputs, analysis=analysis)
        self.status = decision.state.to_status(spec) if decision.state is not None else None
        assert State.from_status(self.status) == decision.state, "status does not hold the whole state"
        self.decisions.append(decision)
        return decision

    def reasons(self, decision: Decision) -> list[tuple[str, str]]:
        return [(event.type, event.reason) for event in decision.events]


def progressing() -> Walk:
    """A rollout of revision r2 whose canary just became available: at its first step."""
    walk = Walk()
    walk.change("r2")
    walk.step(NOT_READY)
    walk.step(READY)
    return walk


def test_the_first_reconcile_records_the_stable_and_starts_nothing() -> None:
    walk = Walk()
    first = walk.decisions[0]
    assert (first.state and first.state.phase, first.split, first.canary) == (
        Phase.STABLE,
        TrafficSplit(),
        "none",
    )
    assert walk.status is not None
    assert (walk.status["stableRevision"], walk.status["stableSpec"]) == ("r1", RAW)
    assert walk.status["summary"] == "Stable"
    assert walk.status["reason"] == Reason.STABLE
    assert first.events == []


def test_a_good_canary_goes_through_every_step_and_is_promoted() -> None:
    walk = Walk()
    walk.change("r2")
    started = walk.step(NOT_READY)
    assert started.state is not None
    assert started.state.phase == Phase.INITIALIZING
    assert (started.canary, started.split, started.stable_spec) == ("serving", TrafficSplit(), RAW)
    assert walk.reasons(started) == [("Normal", "RolloutStarted")]
    assert walk.step(NOT_READY, after=5).state == started.state  # the canary is not available yet

    step1 = walk.step(READY, after=1)
    assert step1.split == TrafficSplit(90, 10)
    assert walk.status is not None
    assert (walk.status["step"], walk.status["steps"], walk.status["summary"]) == (
        1,
        2,
        "Progressing 1/2 canary 10%",
    )
    assert walk.reasons(step1) == [("Normal", "RolloutAdvanced")]
    assert seconds_until_due(walk.state, SPEC, walk.now) == 10
    assert not wants_analysis(walk.state, SPEC, walk.now + 9.9)

    step2 = walk.step(after=10, analysis=PASSED)
    assert step2.split == TrafficSplit(50, 50)
    assert walk.status["lastAnalysis"]["verdict"] == "Passed"

    promoting = walk.step(after=10, analysis=PASSED)
    assert promoting.state is not None
    assert promoting.state.phase == Phase.PROMOTING
    # The stable takes the new template; the canary keeps its weight until the stable has rolled it out.
    assert (promoting.stable_spec, promoting.split, promoting.canary) == (
        with_template("r2"),
        TrafficSplit(50, 50),
        "serving",
    )
    assert walk.status["stableRevision"] == "r2"
    assert walk.step(after=3).state == promoting.state

    done = walk.step(stable_rolled_out=True, after=3)
    assert done.state is not None
    assert done.state.phase == Phase.STABLE
    assert (done.split, done.canary, done.outcome) == (TrafficSplit(), "none", "promoted")
    assert walk.reasons(done) == [("Normal", "RolloutPromoted")]
    assert walk.status["summary"] == "Stable"
    assert walk.status["lastAnalysis"]["verdict"] == "Passed"


def test_failed_analyses_use_the_budget_then_roll_back_once() -> None:
    walk = progressing()
    first = walk.step(after=10, analysis=FAILED)
    assert first.state is not None
    assert first.state.phase == Phase.PROGRESSING
    assert first.state.step == 0
    assert walk.reasons(first) == [("Normal", "AnalysisCheckFailed")]
    assert "analysis failed 1/2 (one more rolls back)" in first.state.message
    assert seconds_until_due(walk.state, SPEC, walk.now) == 10  # the step is analysed again after an interval

    second = walk.step(after=10, analysis=FAILED)
    assert second.state is not None
    assert second.state.phase == Phase.ROLLED_BACK
    assert (second.split, second.canary, second.outcome) == (TrafficSplit(), "scaled-down", "rolled_back")
    assert second.stable_spec == RAW  # the stable is untouched
    assert walk.reasons(second) == [("Warning", Reason.ANALYSIS_FAILED)]
    assert second.state.reason == Reason.ANALYSIS_FAILED
    assert "errorRate 12.5% > 1%" in second.state.message
    assert "analysis failed 2/2" in second.state.message

    # Nothing more happens while the spec stays as it is: no second Warning, no second start.
    for _ in range(3):
        again = walk.step(READY, after=10)
        assert again.events == []
        assert again.state == second.state
    # A new spec change starts a new rollout.
    walk.change("r3")
    restarted = walk.step(NOT_READY)
    assert restarted.state is not None
    assert restarted.state.phase == Phase.INITIALIZING
    assert (restarted.state.canary_revision, restarted.state.failed_checks) == ("r3", 0)


def test_a_passed_analysis_between_failures_keeps_the_count() -> None:
    walk = progressing()
    walk.step(after=10, analysis=FAILED)
    passed = walk.step(after=10, analysis=PASSED)
    assert passed.state is not None
    assert passed.state.step == 1
    assert passed.state.failed_checks == 1
    rolled_back = walk.step(after=10, analysis=FAILED)
    assert rolled_back.state is not None
    assert rolled_back.state.phase == Phase.ROLLED_BACK


def test_no_data_holds_the_step_and_rolls_back_after_the_timeout() -> None:
    walk = progressing()
    held = walk.step(after=10, analysis=NO_DATA)
    assert held.state is not None
    assert held.state.phase == Phase.PROGRESSING
    assert held.state.step == 0
    assert held.state.reason == Reason.NO_DATA
    assert "canary 3" in held.state.message
    assert held.split == TrafficSplit(90, 10)  # never promoted blind
    assert walk.reasons(held) == [("Normal", "RolloutHeld")]
    still = walk.step(after=10, analysis=NO_DATA)
    assert still.events == []
    assert still.state is not None
    assert still.state.phase == Phase.PROGRESSING
    timed_out = walk.step(after=10, analysis=NO_DATA)  # 30 s without data since the step began
    assert timed_out.state is not None
    assert timed_out.state.phase == Phase.ROLLED_BACK
    assert timed_out.state.reason == Reason.NO_DATA_TIMEOUT
    assert walk.reasons(timed_out) == [("Warning", Reason.NO_DATA_TIMEOUT)]


def test_data_coming_back_ends_the_hold() -> None:
    walk = progressing()
    walk.step(after=10, analysis=NO_DATA)
    moved = walk.step(after=10, analysis=PASSED)
    assert moved.state is not None
    assert moved.state.step == 1
    assert moved.state.no_data_since is None
    walk.step(after=10, analysis=NO_DATA)  # a new hold counts from its own step
    kept = walk.step(after=10, analysis=NO_DATA)
    assert kept.state is not None
    assert kept.state.phase == Phase.PROGRESSING


def test_a_canary_that_never_becomes_available_rolls_back_at_the_deadline() -> None:
    walk = Walk()
    walk.change("r2")
    walk.step(NOT_READY)
    assert walk.step(NOT_READY, after=59).state is not None
    late = walk.step(NOT_READY, after=1)
    assert late.state is not None
    assert late.state.phase == Phase.ROLLED_BACK
    assert late.state.reason == Reason.CANARY_NOT_AVAILABLE
    assert "within 60s" in late.state.message
    assert walk.reasons(late) == [("Warning", Reason.CANARY_NOT_AVAILABLE)]


def test_a_spec_change_during_the_rollout_restarts_it_and_back_to_stable_cancels_it() -> None:
    walk = progressing()
    walk.step(after=10, analysis=PASSED)
    walk.change("r3")
    restarted = walk.step(NOT_READY)
    assert restarted.state is not None
    assert restarted.state.phase == Phase.INITIALIZING
    assert (restarted.state.canary_revision, restarted.split) == ("r3", TrafficSplit())
    assert walk.reasons(restarted) == [("Normal", "RolloutRestarted")]
    walk.change("r1", RAW)
    cancelled = walk.step(NOT_READY)
    assert cancelled.state is not None
    assert cancelled.state.phase == Phase.STABLE
    assert (cancelled.canary, cancelled.outcome) == ("none", "cancelled")
    assert walk.reasons(cancelled) == [("Normal", "RolloutCancelled")]


def test_a_spec_change_during_the_promotion_finishes_it_and_starts_the_next() -> None:
    walk = progressing()
    walk.step(after=10, analysis=PASSED)
    walk.step(after=10, analysis=PASSED)
    assert walk.state.phase == Phase.PROMOTING
    walk.change("r3")
    next_one = walk.step(NOT_READY)
    assert next_one.state is not None
    assert next_one.state.phase == Phase.INITIALIZING
    assert (next_one.state.stable_revision, next_one.state.canary_revision) == ("r2", "r3")
    assert next_one.stable_spec == with_template("r2")
    assert next_one.outcome == "promoted"
    assert walk.reasons(next_one) == [("Normal", "RolloutPromoted"), ("Normal", "RolloutStarted")]


def test_changes_outside_the_template_follow_the_spec_at_once() -> None:
    walk = Walk()
    bigger = {**RAW, "replicas": 3}
    walk.change("r1", bigger)  # the same template revision
    decision = walk.step(NOT_READY)
    assert decision.state is not None
    assert decision.state.phase == Phase.STABLE
    assert decision.events == []
    assert decision.stable_spec == bigger


def test_a_mirrored_step_comes_first() -> None:
    raw = {**RAW, "rollout": {**RAW["rollout"], "mirrorPercent": 50}}
    assert plan([10, 50], 50) == (TrafficSplit(mirror=50), TrafficSplit(90, 10), TrafficSplit(50, 50))
    walk = Walk(raw)
    walk.change("r2", {**raw, "image": "r2"})
    walk.step(NOT_READY)
    mirrored = walk.step(READY)
    assert mirrored.split == TrafficSplit(100, 0, 50)
    assert mirrored.canary == "serving"
    assert walk.status is not None
    assert walk.status["summary"] == "Progressing 1/3 mirror 50%"
    assert walk.status["mirrorWeight"] == 50
    assert walk.step(after=10, analysis=PASSED).split == TrafficSplit(90, 10)


@pytest.mark.parametrize("phase_steps", [0, 1])
def test_abort_rolls_back_in_flight_with_one_warning(phase_steps: int) -> None:
    walk = Walk()
    walk.change("r2")
    walk.step(NOT_READY)
    if phase_steps:
        walk.step(READY)
    aborted = walk.step(READY, action="abort")
    assert aborted.state is not None
    assert aborted.state.phase == Phase.ROLLED_BACK
    assert (aborted.state.reason, aborted.outcome, aborted.action_done) == (Reason.ABORTED, "aborted", True)
    assert walk.reasons(aborted) == [("Warning", Reason.ABORTED)]
    ignored = walk.step(READY, action="abort")
    assert walk.reasons(ignored) == [("Normal", "RolloutActionIgnored")]
    assert ignored.action_done


def test_promote_now_skips_the_remaining_analysis() -> None:
    walk = progressing()
    promoted = walk.step(READY, action="Promote")
    assert promoted.state is not None
    assert promoted.state.phase == Phase.PROMOTING
    assert promoted.stable_spec == with_template("r2")
    assert walk.reasons(promoted) == [("Normal", "RolloutPromoting")]
    assert "promoted by request" in promoted.state.message


def test_promote_takes_a_rolled_back_revision_when_asked() -> None:
    walk = Walk()
    walk.change("r2")
    walk.step(NOT_READY)
    walk.step(READY, action="abort")
    promoted = walk.step(READY, action="promote")
    assert promoted.state is not None
    assert promoted.state.phase == Phase.PROMOTING


def test_pause_holds_every_move_and_resume_gives_the_step_a_whole_interval() -> None:
    walk = progressing()
    paused = walk.step(READY, after=5, action="pause")
    assert paused.state is not None
    assert paused.state.paused
    assert paused.state.reason == Reason.PAUSED
    assert walk.status is not None
    assert walk.status["summary"] == "Progressing 1/2 canary 10% (paused)"
    assert walk.reasons(paused) == [("Normal", "RolloutPaused")]
    assert not wants_analysis(walk.state, SPEC, walk.now + 100)
    assert seconds_until_due(walk.state, SPEC, walk.now) is None
    resumed = walk.step(READY, after=100, action="resume")
    assert resumed.state is not None
    assert not resumed.state.paused
    assert resumed.state.reason == Reason.PROGRESSING
    assert walk.reasons(resumed) == [("Normal", "RolloutResumed")]
    assert seconds_until_due(walk.state, SPEC, walk.now) == 10


def test_paused_before_a_rollout_holds_it_before_any_traffic_moves() -> None:
    walk = Walk()
    walk.step(NOT_READY, action="pause")
    walk.change("r2")
    held = walk.step(READY)
    assert held.state is not None
    assert held.state.phase == Phase.INITIALIZING
    assert held.split == TrafficSplit()
    assert walk.step(READY, after=120).state == held.state  # not even the canary deadline while paused
    moved = walk.step(READY, action="resume")
    assert moved.state is not None
    assert moved.state.phase == Phase.PROGRESSING


def test_an_unknown_action_is_refused_with_a_warning_and_consumed() -> None:
    walk = Walk()
    decision = walk.step(NOT_READY, action="rollback please")
    assert walk.reasons(decision) == [("Warning", "InvalidRolloutAction")]
    assert decision.action_done
    assert "use pause, resume, abort, promote" in decision.events[0].message


def test_immediate_keeps_no_state_and_switching_to_it_ends_a_rollout() -> None:
    immediate = {**RAW, "rollout": {"strategy": "Immediate"}}
    decision = advance(
        None,
        spec=parse_spec("m", immediate).rollout,
        raw_spec=immediate,
        revision="r1",
        now=0,
        observed=READY,
    )
    assert (decision.state, decision.canary, decision.stable_spec, decision.split) == (
        None,
        "none",
        None,
        TrafficSplit(),
    )
    walk = Walk()
    walk.change("r2")
    walk.step(NOT_READY)
    walk.raw = {**with_template("r2"), "rollout": {"strategy": "Immediate"}}
    ended = walk.step(READY)
    assert (ended.state, ended.canary, ended.stable_spec) == (None, "none", None)


def test_unreadable_status_starts_afresh() -> None:
    assert State.from_status(None) is None
    assert State.from_status({"phase": "Progressing"}) is None
    assert State.from_status({"phase": "Nonsense", "stableRevision": "r", "stableSpec": {}}) is None


def test_the_metrics_know_every_outcome() -> None:
    from typing import get_args

    from sentiment_operator import metrics, rollout

    assert set(get_args(rollout.Outcome)) == set(metrics.ROLLOUT_OUTCOMES)
