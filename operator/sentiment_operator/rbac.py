"""Every Kubernetes API permission the operator uses: the source for a least-privilege ClusterRole.

(group, resource, verb) triples; "" is the core group; subresources are written "resource/subresource".
The runtime tests record every request the operator makes against the emulated API server and check that it
is covered here, and a deploy test can compare the shipped ClusterRole with :func:`cluster_role_rules`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Final

from sentiment_operator import kinds

Permission = tuple[str, str, str]

# What the operator needs beyond its children (whose rules come from the kinds registry).
_OWN_PERMISSIONS: Final[frozenset[Permission]] = frozenset(
    {
        # The custom resource: kopf lists/watches it and patches its annotations (progress, diff-base) and,
        # while handlers exist, its finalizer; the reconciler reads it and writes status via the subresource.
        ("serving.sentiment.dev", "sentimentmodels", "get"),
        ("serving.sentiment.dev", "sentimentmodels", "list"),
        ("serving.sentiment.dev", "sentimentmodels", "watch"),
        ("serving.sentiment.dev", "sentimentmodels", "patch"),
        ("serving.sentiment.dev", "sentimentmodels/status", "patch"),
        # Not a request the operator makes: every child's ownerReference sets blockOwnerDeletion, which
        # the OwnerReferencesPermissionEnforcement admission plugin (OpenShift, hardened clusters) allows
        # only to a user who may update the owner's finalizers; without it every child create is a 403.
        ("serving.sentiment.dev", "sentimentmodels/finalizers", "update"),
        # Events on SentimentModels (kopf.event / kopf.warn).
        ("", "events", "create"),
        # kopf's cluster scanning: which namespaces exist and whether CRDs (ours, Istio's) appear or vanish.
        ("", "namespaces", "list"),
        ("", "namespaces", "watch"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    }
)


def required_permissions() -> frozenset[Permission]:
    """Every permission ``run`` needs: its own, and each child kind's from :data:`kinds.CHILD_KINDS` (read,
    server-side apply, prune; watched kinds also list and watch; the Secret only get/create/delete, since
    listing Secrets would expose every Secret in the namespace). An apply that creates the object is
    authorized as patch and as create."""
    return _OWN_PERMISSIONS | frozenset(kinds.child_permissions())


REQUIRED_PERMISSIONS: Final = required_permissions()

# Only with --peering (several operator replicas, one active): kopf's peering objects (kopf.dev CRDs).
PEERING_PERMISSIONS: Final[frozenset[Permission]] = frozenset(
    ("kopf.dev", resource, verb)
    for resource in ("clusterkopfpeerings", "kopfpeerings")
    for verb in ("get", "list", "watch", "patch")
)


def cluster_role_rules(permissions: frozenset[Permission] | None = None) -> list[dict[str, list[str]]]:
    """ClusterRole ``rules``: one rule per (group, resource), sorted verbs, deterministic, no wildcards."""
    if permissions is None:
        permissions = required_permissions()
    verbs: dict[tuple[str, str], set[str]] = defaultdict(set)
    for group, resource, verb in permissions:
        verbs[group, resource].add(verb)
    return [
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs[group, resource])}
        for group, resource in sorted(verbs)
    ]
