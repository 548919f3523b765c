"""A checker for the Kubernetes "restricted" Pod Security Standard (as of v1.30), applied to pod specs.

Used by the spec validation (user init containers) and by the tests on every rendered pod template. It follows
https://kubernetes.io/docs/concepts/security/pod-security-standards/ (baseline + restricted controls).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ALLOWED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
ALLOWED_ADDED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
ALLOWED_SECCOMP = frozenset({"RuntimeDefault", "Localhost"})
ALLOWED_SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)

# What the operator puts on every container of a restricted pod (user init containers may add to it).
RESTRICTED_CONTAINER_CONTEXT: Mapping[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
}


def restricted_pod_context(uid: int) -> dict[str, Any]:
    """The pod-level securityContext of a restricted pod running as ``uid``."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        # Skip the recursive chown of large model volumes (PVC source) when the root already matches.
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _get(obj: Mapping[str, Any] | None, *path: str) -> Any:
    value: Any = obj
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def container_violations(
    container: Mapping[str, Any], pod_context: Mapping[str, Any] | None = None, where: str = "container"
) -> list[str]:
    """Restricted-PSS violations of one container, given the pod-level securityContext it inherits."""
    pod_context = pod_context or {}
    ctx: Mapping[str, Any] = container.get("securityContext") or {}
    out: list[str] = []
    if ctx.get("privileged") is True:
        out.append(f"{where}: privileged must not be true")
    if ctx.get("allowPrivilegeEscalation") is not False:
        out.append(f"{where}: allowPrivilegeEscalation must be false")
    drop = _get(ctx, "capabilities", "drop") or []
    if "ALL" not in drop:
        out.append(f"{where}: capabilities.drop must include ALL")
    added = set(_get(ctx, "capabilities", "add") or [])
    if added - ALLOWED_ADDED_CAPABILITIES:
        out.append(f"{where}: capabilities.add may only contain NET_BIND_SERVICE, not {sorted(added)}")
    run_as_non_root = ctx.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
    if run_as_non_root is not True:
        out.append(f"{where}: runAsNonRoot must be true (on the container or the pod)")
    if ctx.get("runAsUser", pod_context.get("runAsUser")) == 0:
        out.append(f"{where}: runAsUser must not be 0")
    seccomp = _get(ctx, "seccompProfile", "type") or _get(pod_context, "seccompProfile", "type")
    if seccomp not in ALLOWED_SECCOMP:
        out.append(f"{where}: seccompProfile.type must be RuntimeDefault or Localhost (got {seccomp!r})")
    if ctx.get("procMount") not in (None, "Default"):
        out.append(f"{where}: procMount must be Default")
    if ctx.get("windowsOptions", {}).get("hostProcess") is True:
        out.append(f"{where}: windowsOptions.hostProcess must not be true")
    out += _selinux(ctx.get("seLinuxOptions"), where)
    apparmor = _get(ctx, "appArmorProfile", "type")
    if apparmor not in (None, "RuntimeDefault", "Localhost"):
        out.append(f"{where}: appArmorProfile.type must be RuntimeDefault or Localhost")
    for port in container.get("ports") or []:
        if port.get("hostPort") not in (None, 0):
            out.append(f"{where}: hostPort {port['hostPort']} is not allowed")
    return out


def _selinux(options: Mapping[str, Any] | None, where: str) -> list[str]:
    if not options:
        return []
    out = []
    if options.get("type", "") not in ALLOWED_SELINUX_TYPES:
        out.append(f"{where}: seLinuxOptions.type {options['type']!r} is not allowed")
    if options.get("user") or options.get("role"):
        out.append(f"{where}: seLinuxOptions.user/role must not be set")
    return out


def restricted_violations(pod_spec: Mapping[str, Any]) -> list[str]:
    """Every way ``pod_spec`` breaks the restricted Pod Security Standard; empty when it complies."""
    out: list[str] = []
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(flag) is True:
            out.append(f"pod: {flag} must not be true")
    pod_context: Mapping[str, Any] = pod_spec.get("securityContext") or {}
    out += _selinux(pod_context.get("seLinuxOptions"), "pod")
    if _get(pod_context, "seccompProfile", "type") not in (None, *ALLOWED_SECCOMP):
        out.append("pod: seccompProfile.type must be RuntimeDefault or Localhost")
    if pod_context.get("runAsUser") == 0:
        out.append("pod: runAsUser must not be 0")
    for sysctl in pod_context.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            out.append(f"pod: sysctl {sysctl.get('name')!r} is not allowed")
    for volume in pod_spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            out.append(
                f"volume {volume.get('name')!r}: type {sorted(kinds - ALLOWED_VOLUME_TYPES)} is not allowed"
            )
    groups: Sequence[tuple[str, str]] = (
        ("initContainers", "init container"),
        ("containers", "container"),
        ("ephemeralContainers", "ephemeral container"),
    )
    for key, label in groups:
        for container in pod_spec.get(key) or []:
            out += container_violations(container, pod_context, f"{label} {container.get('name')!r}")
    return out
