"""The traffic split between the stable and the canary version: provider-neutral, decided by pure functions,
rendered by the routing builders (an Istio VirtualService or a Gateway API HTTPRoute)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TrafficSplit:
    """Percent of the routed requests each version answers, and the percent copied to the canary on top
    (mirrored: the copy's answer is discarded)."""

    stable: int = 100
    canary: int = 0
    mirror: int = 0

    def __post_init__(self) -> None:
        if self.stable + self.canary != 100 or min(self.stable, self.canary) < 0:
            raise ValueError(f"weights {self.stable}/{self.canary} must be non-negative and add up to 100")
        if not 0 <= self.mirror <= 100:
            raise ValueError(f"mirror {self.mirror} must be between 0 and 100")

    @classmethod
    def to_canary(cls, weight: int) -> TrafficSplit:
        return cls(stable=100 - weight, canary=weight)

    @property
    def uses_canary(self) -> bool:
        return self.canary > 0 or self.mirror > 0

    def describe(self) -> str:
        text = f"stable {self.stable}% / canary {self.canary}%"
        return f"{text}, {self.mirror}% mirrored to the canary" if self.mirror else text


ALL_STABLE = TrafficSplit()


def plan(steps: Sequence[int], mirror_percent: int) -> tuple[TrafficSplit, ...]:
    """The splits a canary rollout goes through: an optional mirrored step, then each canary weight."""
    mirrored = (TrafficSplit(mirror=mirror_percent),) if mirror_percent > 0 else ()
    return mirrored + tuple(TrafficSplit.to_canary(weight) for weight in steps)
