"""Every pod the operator creates meets the "restricted" Pod Security Standard, and the checker that says so
catches each kind of violation."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from builders_support import all_example_objects, children_of, model, pod_specs
from sentiment_operator.podsecurity import container_violations, restricted_violations

EXAMPLE_PODS = [
    (f"{example}:{name}", pod) for example, obj in all_example_objects() for name, pod in pod_specs([obj])
]
VARIANT_PODS = [
    (f"variant:{name}", pod)
    for doc in [
        model(model={"source": {"download": {}}}, initContainers=[{"name": "warm", "image": "busybox"}]),
        model(model={"source": {"pvc": {"claimName": "models"}}}, routing={"enabled": True, "canary": {}}),
        model(cache={"external": {"urlSecretRef": {"name": "r", "key": "url"}}}),
    ]
    for name, pod in pod_specs(children_of(doc).objects())
]


def test_every_kind_of_pod_is_covered() -> None:
    names = {label.split(":")[1] for label, _ in EXAMPLE_PODS + VARIANT_PODS}
    assert {"sentiment", "sentiment-redis", "reviews-canary", "pvc-model", "downloaded", "demo"} <= names


@pytest.mark.parametrize(
    ("label", "pod"), EXAMPLE_PODS + VARIANT_PODS, ids=[p[0] for p in EXAMPLE_PODS + VARIANT_PODS]
)
def test_pod_is_restricted(label: str, pod: dict[str, Any]) -> None:
    assert restricted_violations(pod) == []
    # Beyond the standard: what this project promises for every container.
    assert pod["automountServiceAccountToken"] is False
    for container in pod.get("initContainers", []) + pod["containers"]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, container["name"]
        if container["name"] != "warm":  # the user's own init container keeps the user's resources
            assert container["resources"]["limits"]["memory"], f"{container['name']} needs a memory limit"


def test_baseline_opt_out_is_not_restricted() -> None:
    (_, pod), (_, redis_pod) = sorted(
        pod_specs(children_of(model(podSecurity="baseline")).objects()), key=lambda item: item[0]
    )
    assert restricted_violations(pod), "podSecurity: baseline must really drop the restricted settings"
    assert restricted_violations(redis_pod) == [], "the managed Redis stays restricted"


def _good_pod() -> dict[str, Any]:
    (_, pod), *_ = pod_specs([children_of(model(name="good")).deployment])
    assert restricted_violations(pod) == []
    return copy.deepcopy(pod)


def _server(pod: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = pod["containers"][0]
    return container


VIOLATIONS = [
    ("hostNetwork", lambda p: p.update(hostNetwork=True), "hostNetwork"),
    ("hostPID", lambda p: p.update(hostPID=True), "hostPID"),
    ("hostPath volume", lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath"),
    ("privileged", lambda p: _server(p)["securityContext"].update(privileged=True), "privileged"),
    (
        "privilege escalation",
        lambda p: _server(p)["securityContext"].update(allowPrivilegeEscalation=True),
        "allowPrivilegeEscalation",
    ),
    (
        "escalation not set",
        lambda p: _server(p)["securityContext"].pop("allowPrivilegeEscalation"),
        "allowPrivilegeEscalation",
    ),
    (
        "capabilities kept",
        lambda p: _server(p)["securityContext"].pop("capabilities"),
        "drop must include ALL",
    ),
    (
        "capability added",
        lambda p: _server(p)["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
        "NET_BIND_SERVICE",
    ),
    (
        "root allowed",
        lambda p: (
            p["securityContext"].pop("runAsNonRoot"),
            _server(p)["securityContext"].pop("runAsNonRoot"),
        ),
        "runAsNonRoot",
    ),
    ("runs as root", lambda p: p["securityContext"].update(runAsUser=0), "runAsUser"),
    (
        "unconfined seccomp",
        lambda p: p["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        "seccompProfile",
    ),
    ("no seccomp", lambda p: p["securityContext"].pop("seccompProfile"), "seccompProfile"),
    ("hostPort", lambda p: _server(p)["ports"][0].update(hostPort=8000), "hostPort"),
    (
        "unsafe sysctl",
        lambda p: p["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
        "sysctl",
    ),
    (
        "bad init container",
        lambda p: p["initContainers"].append({"name": "x", "image": "x"}),
        "init container 'x'",
    ),
    (
        "selinux user",
        lambda p: _server(p)["securityContext"].update(seLinuxOptions={"user": "root"}),
        "seLinuxOptions",
    ),
    ("proc mount", lambda p: _server(p)["securityContext"].update(procMount="Unmasked"), "procMount"),
]


@pytest.mark.parametrize(("what", "mutate", "fragment"), VIOLATIONS, ids=[v[0] for v in VIOLATIONS])
def test_checker_catches(what: str, mutate: Any, fragment: str) -> None:
    pod = _good_pod()
    mutate(pod)
    problems = restricted_violations(pod)
    assert any(fragment in problem for problem in problems), problems


def test_net_bind_service_may_be_added() -> None:
    pod = _good_pod()
    _server(pod)["securityContext"]["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    assert restricted_violations(pod) == []


def test_container_level_settings_can_satisfy_the_rules() -> None:
    context = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"},
    }
    assert container_violations({"name": "c", "securityContext": context}, {}) == []
