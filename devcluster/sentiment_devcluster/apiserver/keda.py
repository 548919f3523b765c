"""KEDA's validating admission webhook for ScaledObjects (``vscaledobject.kb.io``), the rule the operator's
switch between an HPA and a ScaledObject must respect: a ScaledObject whose workload an HPA already scales is
refused, unless that HPA is the ScaledObject's own (kedacore/keda apis/keda/v1alpha1/scaledobject_webhook.go,
``verifyHpas``), or the HPA opts out (``validations.keda.sh/hpa-ownership: "false"``), or the ScaledObject
takes it over by name (``scaledobject.keda.sh/transfer-hpa-ownership: "true"`` with
``spec.advanced.horizontalPodAutoscalerConfig.name``).

kube-apiserver answers a webhook's denial with the webhook's code (controller-runtime's ``Denied``: 403
Forbidden) and the message ``admission webhook "vscaledobject.kb.io" denied the request: <reason>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

WEBHOOK: Final = "vscaledobject.kb.io"
GROUP: Final = "keda.sh"
HPA_OWNERSHIP_ANNOTATION: Final = "validations.keda.sh/hpa-ownership"
TRANSFER_ANNOTATION: Final = "scaledobject.keda.sh/transfer-hpa-ownership"


def _gvk(ref: Mapping[str, Any]) -> str:
    """KEDA's GVKString of a scaleTargetRef ("apps/v1.Deployment"; KEDA defaults to apps/v1 Deployment)."""
    api_version = str(ref.get("apiVersion") or "apps/v1")
    kind = str(ref.get("kind") or "Deployment")
    group, _, version = api_version.rpartition("/")
    return f"{group}/{version}.{kind}"


def denial(scaled_object: Mapping[str, Any], hpas: Iterable[Mapping[str, Any]]) -> str | None:
    """Why KEDA's webhook refuses ``scaled_object`` given the HPAs of its namespace, or None."""
    meta = scaled_object.get("metadata") or {}
    spec = scaled_object.get("spec") or {}
    target = spec.get("scaleTargetRef") or {}
    name = str(target.get("name") or "")
    for hpa in hpas:
        hpa_meta = hpa.get("metadata") or {}
        if (hpa_meta.get("annotations") or {}).get(HPA_OWNERSHIP_ANNOTATION) == "false":
            continue
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        if ref.get("name") != name or _gvk(ref) != _gvk(target):
            continue
        owned = any(
            owner.get("kind") == "ScaledObject" and owner.get("name") == meta.get("name")
            for owner in hpa_meta.get("ownerReferences") or []
        )
        if owned:
            continue
        hpa_name = hpa_meta.get("name")
        if (meta.get("annotations") or {}).get(TRANSFER_ANNOTATION) == "true":
            config = ((spec.get("advanced") or {}).get("horizontalPodAutoscalerConfig")) or {}
            if config.get("name") == hpa_name:
                continue
            return (
                f"the existing hpa '{hpa_name}' for workload '{name}' of type '{_gvk(target)}' must be "
                "specified by name in advanced settings to enable ownership transfer"
            )
        return f"the workload '{name}' of type '{_gvk(target)}' is already managed by the hpa '{hpa_name}'"
    return None


def message(reason: str) -> str:
    """The API server's wording of the webhook's denial."""
    return f'admission webhook "{WEBHOOK}" denied the request: {reason}'
