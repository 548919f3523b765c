"""Reading a route the operator wrote back as a traffic split, whichever provider wrote it: the backends
(Service, weight as written: None where a single backend carries no weight) and the mirror (Service,
percent), from an Istio VirtualService's first http route or a Gateway API HTTPRoute's first rule."""

from __future__ import annotations

from typing import Any

Backends = list[tuple[str, int | None]]
Mirror = tuple[str, float] | None


def split_of(route: dict[str, Any]) -> tuple[Backends, Mirror]:
    if route["kind"] == "VirtualService":
        http = route["spec"]["http"][0]
        backends = [(d["destination"]["host"].split(".")[0], d.get("weight")) for d in http["route"]]
        if "mirror" not in http:
            return backends, None
        return backends, (http["mirror"]["host"].split(".")[0], float(http["mirrorPercentage"]["value"]))
    rule = route["spec"]["rules"][0]
    backends = [(ref["name"], ref.get("weight")) for ref in rule["backendRefs"]]
    mirrors = [f["requestMirror"] for f in rule.get("filters") or [] if f["type"] == "RequestMirror"]
    assert len(mirrors) <= 1, mirrors
    if not mirrors:
        return backends, None
    return backends, (mirrors[0]["backendRef"]["name"], float(mirrors[0]["percent"]))
