"""Which Kubernetes Events a reconcile posts on its SentimentModel: pure decisions beside the status.

Events mark changes, never repeat themselves: a child created, updated or deleted; Ready turning True, or
False after it was True; a clash with someone else's object or an invalid spec, each announced once until
its message changes; a routing problem (no routing API served, a route the gateways refuse) once when it
appears. The handler layer posts what these functions return.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from sentiment_operator.status import ROUTING_WARNINGS, Condition, Reason, condition_of, ready_of

EventType = Literal["Normal", "Warning"]


class EventReason(StrEnum):
    """Reasons of the Events that are not condition reasons."""

    CREATED = "Created"
    UPDATED = "Updated"
    DELETED = "Deleted"
    RECONCILE_RETRYING = "ReconcileRetrying"
    RECONCILE_FAILED = "ReconcileFailed"
    # A canary rollout's progress (its rollback is a Warning with the Rollout condition's reason).
    ROLLOUT_STARTED = "RolloutStarted"
    ROLLOUT_RESTARTED = "RolloutRestarted"
    ROLLOUT_CANCELLED = "RolloutCancelled"
    ROLLOUT_ADVANCED = "RolloutAdvanced"
    ROLLOUT_HELD = "RolloutHeld"
    ANALYSIS_CHECK_FAILED = "AnalysisCheckFailed"
    ROLLOUT_PROMOTING = "RolloutPromoting"
    ROLLOUT_PROMOTED = "RolloutPromoted"
    # The user's commands (the rollout-action annotation).
    ROLLOUT_PAUSED = "RolloutPaused"
    ROLLOUT_RESUMED = "RolloutResumed"
    ROLLOUT_ACTION_IGNORED = "RolloutActionIgnored"
    INVALID_ROLLOUT_ACTION = "InvalidRolloutAction"


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the SentimentModel (the handler layer posts it)."""

    type: EventType
    reason: str
    message: str


def invalid_spec_events(previous: Mapping[str, Any], message: str) -> list[Event]:
    """One Warning for an invalid spec, unless status already reports the same one."""
    before = ready_of(previous)
    if before is not None and (before.get("reason"), before.get("message")) == (Reason.INVALID_SPEC, message):
        return []
    return [Event("Warning", Reason.INVALID_SPEC, message)]


def change_events(
    *,
    applied: Mapping[str, str],
    deleted: Iterable[str],
    previous: Mapping[str, Any],
    new_status: Mapping[str, Any],
    routing_enabled: bool,
) -> list[Event]:
    """The Events of one reconcile of a valid spec: what it wrote, and how its status changed."""
    events: list[Event] = []
    for what, outcome in applied.items():
        if outcome == "created":
            events.append(Event("Normal", EventReason.CREATED, f"Created {what}"))
        elif outcome == "updated":
            events.append(Event("Normal", EventReason.UPDATED, f"Updated {what}"))
    for what in deleted:
        events.append(Event("Normal", EventReason.DELETED, f"Deleted {what} (disabled in the spec)"))
    before, after = ready_of(previous), ready_of(new_status)
    if after is not None and after.get("reason") == Reason.CHILD_NOT_OWNED:
        if before is None or (before.get("reason"), before.get("message")) != (
            after["reason"],
            after.get("message"),
        ):
            events.append(Event("Warning", Reason.CHILD_NOT_OWNED, str(after.get("message"))))
    elif after is not None and (before is None or before.get("status") != after.get("status")):
        if after.get("status") == "True":
            events.append(Event("Normal", Reason.READY, str(after.get("message"))))
        elif before is not None and before.get("status") == "True":
            events.append(Event("Warning", str(after.get("reason")), str(after.get("message"))))
    routing = condition_of(new_status, Condition.ROUTING)
    old_routing = condition_of(previous, Condition.ROUTING)
    if (
        routing_enabled
        and routing is not None
        and routing.get("reason") in ROUTING_WARNINGS
        and (old_routing is None or old_routing.get("reason") != routing.get("reason"))
    ):
        events.append(Event("Warning", str(routing.get("reason")), str(routing.get("message"))))
    return events
