"""RBAC authorization and the OwnerReferencesPermissionEnforcement admission plugin, as kube-apiserver has
them.

https://kubernetes.io/docs/reference/access-authn-authz/rbac/ : a request (verb, API group, resource with its
subresource, name, namespace) is allowed when a rule of a ClusterRole bound by a ClusterRoleBinding, or of a
Role or ClusterRole bound by a RoleBinding in the request's namespace, matches it. Rules match by apiGroups,
resources (``plural/subresource``), verbs and, when given, resourceNames; ``*`` matches anything. Denied: 403
with the API server's message ("... is forbidden: User ... cannot VERB resource ... in API group ...").

The admission controllers page, "OwnerReferencesPermissionEnforcement"
(https://kubernetes.io/docs/reference/access-authn-authz/admission-controllers/): a create or update that
sets ``blockOwnerDeletion: true`` on an ownerReference is refused unless the user may ``update`` the owner's
``finalizers`` subresource.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Attributes:
    """What RBAC decides on (the authorizer's request attributes)."""

    verb: str
    group: str
    resource: str
    subresource: str = ""
    name: str = ""
    namespace: str = ""


def _matches(rule: dict[str, Any], attrs: Attributes) -> bool:
    groups = rule.get("apiGroups") or []
    resources = rule.get("resources") or []
    verbs = rule.get("verbs") or []
    names = rule.get("resourceNames") or []
    full = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    return bool(
        ("*" in groups or attrs.group in groups)
        and (
            "*" in resources
            or full in resources
            or (attrs.subresource and f"*/{attrs.subresource}" in resources)
        )
        and ("*" in verbs or attrs.verb in verbs)
        and (not names or attrs.name in names)
    )


@dataclass
class Authorizer:
    """The rules that apply to one user, from RBAC objects."""

    user: str
    cluster_rules: list[dict[str, Any]]
    namespaced_rules: dict[str, list[dict[str, Any]]]

    @classmethod
    def for_service_account(
        cls, documents: Iterable[dict[str, Any]], namespace: str, name: str
    ) -> Authorizer:
        docs = [d for d in documents if isinstance(d, dict)]
        roles = {
            (d["kind"], (d["metadata"].get("namespace") or ""), d["metadata"]["name"]): d.get("rules") or []
            for d in docs
            if d.get("kind") in ("Role", "ClusterRole")
        }

        def bound(binding: dict[str, Any]) -> bool:
            return any(
                s.get("kind") == "ServiceAccount"
                and s.get("name") == name
                and (s.get("namespace") or binding["metadata"].get("namespace")) == namespace
                for s in binding.get("subjects") or []
            )

        cluster_rules: list[dict[str, Any]] = []
        namespaced: dict[str, list[dict[str, Any]]] = {}
        for doc in docs:
            if doc.get("kind") not in ("ClusterRoleBinding", "RoleBinding") or not bound(doc):
                continue
            ref = doc["roleRef"]
            role_ns = doc["metadata"].get("namespace") or "" if ref["kind"] == "Role" else ""
            rules = roles.get((ref["kind"], role_ns, ref["name"]), [])
            if doc["kind"] == "ClusterRoleBinding":
                cluster_rules += rules
            else:
                namespaced.setdefault(doc["metadata"].get("namespace") or "", []).extend(rules)
        return cls(f"system:serviceaccount:{namespace}:{name}", cluster_rules, namespaced)

    def allowed(self, attrs: Attributes) -> bool:
        rules = list(self.cluster_rules)
        if attrs.namespace:
            rules += self.namespaced_rules.get(attrs.namespace, [])
        return any(_matches(rule, attrs) for rule in rules)

    def forbidden_message(self, attrs: Attributes) -> str:
        resource = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
        subject = f'{resource} "{attrs.name}"' if attrs.name else resource
        what = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        where = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
        return (
            f'{subject} is forbidden: User "{self.user}" cannot {attrs.verb} resource "{what}" '
            f'in API group "{attrs.group}" {where}'
        )


def without_resource(documents: Iterable[dict[str, Any]], resource: str) -> list[dict[str, Any]]:
    """RBAC documents with every role rule that names ``resource`` removed (to test what it grants)."""
    return [
        {
            **doc,
            "rules": [rule for rule in doc.get("rules") or [] if resource not in rule.get("resources", [])],
        }
        if doc.get("kind") in ("Role", "ClusterRole")
        else doc
        for doc in documents
    ]


def verb_of(method: str, *, named: bool, watch: bool) -> str:
    """The RBAC verb of an HTTP request (https://kubernetes.io/docs/reference/access-authn-authz/authorization/#determine-the-request-verb)."""
    if method == "GET":
        return "watch" if watch else "get" if named else "list"
    return {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if named else "deletecollection",
    }[method]


def owner_reference_violations(
    authorizer: Authorizer,
    obj: dict[str, Any],
    previous: dict[str, Any] | None,
    plural_of: dict[tuple[str, str], str],
) -> list[tuple[Attributes, str]]:
    """OwnerReferencesPermissionEnforcement: the blockOwnerDeletion references the user may not set (the
    permission missing and the API server's message for each)."""
    before = {
        (ref.get("uid"), bool(ref.get("blockOwnerDeletion")))
        for ref in ((previous or {}).get("metadata") or {}).get("ownerReferences") or []
    }
    out = []
    namespace = (obj.get("metadata") or {}).get("namespace") or ""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if not ref.get("blockOwnerDeletion") or (ref.get("uid"), True) in before:
            continue
        group = ref.get("apiVersion", "").rpartition("/")[0]
        plural = plural_of.get((group, ref.get("kind", "")), ref.get("kind", "").lower() + "s")
        attrs = Attributes("update", group, plural, "finalizers", ref.get("name", ""), namespace)
        if not authorizer.allowed(attrs):
            out.append(
                (
                    attrs,
                    "cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set "
                    f"finalizers on: {authorizer.forbidden_message(attrs)}, {ref}",
                )
            )
    return out
