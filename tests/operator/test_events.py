"""The Event decisions, pure: what a reconcile announces, and that nothing is announced twice."""

from __future__ import annotations

from typing import Any

from sentiment_operator.events import Event, change_events, invalid_spec_events


def ready(status: str, reason: str, message: str = "m") -> dict[str, Any]:
    return {"conditions": [{"type": "Ready", "status": status, "reason": reason, "message": message}]}


def test_writes_are_announced() -> None:
    events = change_events(
        applied={"Deployment ns/a": "created", "Service ns/a": "updated", "HPA ns/a": "unchanged"},
        deleted=["VirtualService ns/a"],
        previous={},
        new_status={},
        routing_enabled=False,
    )
    assert events == [
        Event("Normal", "Created", "Created Deployment ns/a"),
        Event("Normal", "Updated", "Updated Service ns/a"),
        Event("Normal", "Deleted", "Deleted VirtualService ns/a (disabled in the spec)"),
    ]


def test_ready_transitions_are_announced_once() -> None:
    quiet: dict[str, Any] = {"applied": {}, "deleted": [], "routing_enabled": False}
    up = change_events(
        previous=ready("False", "Progressing"), new_status=ready("True", "Ready", "1/1"), **quiet
    )
    assert up == [Event("Normal", "Ready", "1/1")]
    assert change_events(previous=ready("True", "Ready"), new_status=ready("True", "Ready"), **quiet) == []
    down = change_events(
        previous=ready("True", "Ready"), new_status=ready("False", "CacheNotReady", "x"), **quiet
    )
    assert down == [Event("Warning", "CacheNotReady", "x")]
    # Never ready before: progressing is not news.
    assert change_events(previous={}, new_status=ready("False", "Progressing"), **quiet) == []


def test_a_clash_is_announced_again_only_when_its_message_changes() -> None:
    quiet: dict[str, Any] = {"applied": {}, "deleted": [], "routing_enabled": False}
    clash = ready("False", "ChildNotOwned", "Deployment ns/a belongs to someone")
    assert change_events(previous={}, new_status=clash, **quiet) == [
        Event("Warning", "ChildNotOwned", "Deployment ns/a belongs to someone")
    ]
    assert change_events(previous=clash, new_status=clash, **quiet) == []
    other = ready("False", "ChildNotOwned", "Service ns/a belongs to someone")
    assert len(change_events(previous=clash, new_status=other, **quiet)) == 1


def test_missing_istio_is_announced_once_and_only_when_routing_is_wanted() -> None:
    missing = {
        "conditions": [{"type": "Routing", "status": "False", "reason": "IstioNotInstalled", "message": "no"}]
    }
    first = change_events(applied={}, deleted=[], previous={}, new_status=missing, routing_enabled=True)
    assert first == [Event("Warning", "IstioNotInstalled", "no")]
    assert (
        change_events(applied={}, deleted=[], previous=missing, new_status=missing, routing_enabled=True)
        == []
    )
    assert change_events(applied={}, deleted=[], previous={}, new_status=missing, routing_enabled=False) == []


def test_an_invalid_spec_is_announced_once_per_message() -> None:
    assert invalid_spec_events({}, "spec.replicas: bad") == [
        Event("Warning", "InvalidSpec", "spec.replicas: bad")
    ]
    said = ready("False", "InvalidSpec", "spec.replicas: bad")
    assert invalid_spec_events(said, "spec.replicas: bad") == []
    assert len(invalid_spec_events(said, "spec.image: bad")) == 1
