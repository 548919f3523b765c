"""Pod Security admission, written from the Pod Security Standards, independently of the operator's own check.

https://kubernetes.io/docs/concepts/security/pod-security-standards/ (the "latest" version of each level) and
https://kubernetes.io/docs/concepts/security/pod-security-admission/ : a namespace labelled
``pod-security.kubernetes.io/enforce: <level>`` refuses Pods that violate the level (403); for workload
resources (a Deployment's pod template) the enforce and warn labels only produce a warning
("Warning: would violate PodSecurity ..."); the ``warn`` label also warns for Pods.
"""

from __future__ import annotations

from typing import Any

_BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
_SAFE_SYSCTLS = frozenset(
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
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
_RESTRICTED_VOLUMES = frozenset(
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
LEVELS = ("privileged", "baseline", "restricted")


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        *(spec.get("initContainers") or []),
        *(spec.get("containers") or []),
        *(spec.get("ephemeralContainers") or []),
    ]


def _names(containers: list[dict[str, Any]]) -> str:
    return ", ".join(f'"{c.get("name")}"' for c in containers)


def _baseline(spec: dict[str, Any]) -> list[str]:
    out = []
    containers = _containers(spec)
    pod_sc = spec.get("securityContext") or {}
    host = [f"{k}={str(True).lower()}" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)]
    if host:
        out.append(f"host namespaces ({', '.join(host)})")
    privileged = [c for c in containers if (c.get("securityContext") or {}).get("privileged")]
    if privileged:
        out.append(
            f"privileged (containers {_names(privileged)} must not set securityContext.privileged=true)"
        )
    added = {
        cap
        for c in containers
        for cap in ((c.get("securityContext") or {}).get("capabilities") or {}).get("add") or []
        if cap not in _BASELINE_CAPABILITIES
    }
    if added:
        out.append(f"non-default capabilities (capabilities {sorted(added)} must not be added)")
    host_path = [v.get("name") for v in spec.get("volumes") or [] if "hostPath" in v]
    if host_path:
        out.append(f"hostPath volumes (volumes {host_path})")
    ports = [c for c in containers if any(p.get("hostPort") for p in c.get("ports") or [])]
    if ports:
        out.append(f"hostPort (containers {_names(ports)} must not set hostPort)")
    contexts = [pod_sc, *((c.get("securityContext") or {}) for c in containers)]
    if any((sc.get("seLinuxOptions") or {}).get("type", "") not in _SELINUX_TYPES for sc in contexts) or any(
        (sc.get("seLinuxOptions") or {}).get(k) for sc in contexts for k in ("user", "role")
    ):
        out.append("seLinuxOptions (forbidden type, user or role)")
    if any((c.get("securityContext") or {}).get("procMount", "Default") != "Default" for c in containers):
        out.append("procMount (must be Default)")
    if any((sc.get("seccompProfile") or {}).get("type") == "Unconfined" for sc in contexts):
        out.append('seccompProfile (must not be "Unconfined")')
    if any((sc.get("windowsOptions") or {}).get("hostProcess") for sc in contexts):
        out.append("hostProcess (must not be true)")
    unsafe = [s.get("name") for s in pod_sc.get("sysctls") or [] if s.get("name") not in _SAFE_SYSCTLS]
    if unsafe:
        out.append(f"forbidden sysctls ({', '.join(unsafe)})")
    return out


def _restricted(spec: dict[str, Any]) -> list[str]:
    out = []
    containers = _containers(spec)
    pod_sc = spec.get("securityContext") or {}
    kinds = {
        key
        for volume in spec.get("volumes") or []
        for key in volume
        if key != "name" and key not in _RESTRICTED_VOLUMES
    }
    if kinds:
        out.append(f"restricted volume types (volume types {sorted(kinds)} are not allowed)")
    escalating = [
        c for c in containers if (c.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False
    ]
    if escalating:
        out.append(
            f"allowPrivilegeEscalation != false (containers {_names(escalating)} must set "
            "securityContext.allowPrivilegeEscalation=false)"
        )
    non_root_pod = pod_sc.get("runAsNonRoot") is True
    root_able = [
        c
        for c in containers
        if (c.get("securityContext") or {}).get("runAsNonRoot") is False
        or (not non_root_pod and (c.get("securityContext") or {}).get("runAsNonRoot") is not True)
    ]
    if root_able:
        out.append(
            f"runAsNonRoot != true (containers {_names(root_able)} must set "
            "securityContext.runAsNonRoot=true)"
        )
    if pod_sc.get("runAsUser") == 0 or any(
        (c.get("securityContext") or {}).get("runAsUser") == 0 for c in containers
    ):
        out.append("runAsUser=0 (pod and containers must not set runAsUser=0)")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    no_seccomp = [
        c
        for c in containers
        if ((c.get("securityContext") or {}).get("seccompProfile") or {}).get("type", pod_seccomp)
        not in ("RuntimeDefault", "Localhost")
    ]
    if no_seccomp:
        out.append(
            f"seccompProfile (pod or containers {_names(no_seccomp)} must set "
            'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'
        )
    caps = [
        c
        for c in containers
        if "ALL" not in (((c.get("securityContext") or {}).get("capabilities") or {}).get("drop") or [])
        or set(((c.get("securityContext") or {}).get("capabilities") or {}).get("add") or [])
        - {"NET_BIND_SERVICE"}
    ]
    if caps:
        out.append(
            f"unrestricted capabilities (containers {_names(caps)} must set "
            'securityContext.capabilities.drop=["ALL"])'
        )
    return out


def violations(level: str, pod_spec: dict[str, Any]) -> list[str]:
    """What in ``pod_spec`` violates ``level`` (empty: allowed)."""
    if level == "privileged":
        return []
    found = _baseline(pod_spec)
    if level == "restricted":
        found += _restricted(pod_spec)
    return found


def message(level: str, found: list[str], *, would: bool = False) -> str:
    verb = "would violate" if would else "violates"
    return f'{verb} PodSecurity "{level}:latest": ' + ", ".join(found)


def pod_spec_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec a Pod carries, or a workload's pod template (None for other kinds)."""
    if obj.get("kind") == "Pod":
        return dict(obj.get("spec") or {})
    template = (obj.get("spec") or {}).get("template")
    if isinstance(template, dict) and obj.get("kind") in (
        "Deployment",
        "ReplicaSet",
        "StatefulSet",
        "DaemonSet",
        "Job",
    ):
        return dict(template.get("spec") or {})
    if obj.get("kind") == "CronJob":
        job = ((obj.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}
        return dict((job.get("template") or {}).get("spec") or {})
    return None
