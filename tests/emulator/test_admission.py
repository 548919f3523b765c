"""RBAC, OwnerReferencesPermissionEnforcement and Pod Security admission (apiserver/rbac.py,
podsecurity.py), against the documents they cite, and through the test API server over HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import pytest
import yaml
from sentiment_devcluster.apiserver import podsecurity
from sentiment_devcluster.apiserver.rbac import (
    Attributes,
    Authorizer,
    owner_reference_violations,
    verb_of,
    without_resource,
)
from sentiment_devcluster.apiserver.server import ApiServer, project_crd_schemas

ROOT = Path(__file__).resolve().parents[2]
RBAC_DOCS = list(yaml.safe_load_all((ROOT / "deploy" / "base" / "rbac.yaml").read_text()))
OPERATOR_SA = ("sentiment-system", "sentiment-operator")


def operator_authorizer() -> Authorizer:
    return Authorizer.for_service_account(RBAC_DOCS, *OPERATOR_SA)


# ---------------------------------------------------------------------------------------------------- RBAC


def test_rbac_allows_exactly_what_the_bound_cluster_role_lists() -> None:
    """RBAC docs, "Role and ClusterRole" / "ClusterRoleBinding": rules of the bound role, nothing else."""
    authorizer = operator_authorizer()
    assert authorizer.user == "system:serviceaccount:sentiment-system:sentiment-operator"
    assert authorizer.allowed(Attributes("patch", "apps", "deployments", name="d", namespace="default"))
    assert authorizer.allowed(
        Attributes("patch", "serving.sentiment.dev", "sentimentmodels", "status", "m", "x")
    )
    assert not authorizer.allowed(Attributes("update", "serving.sentiment.dev", "sentimentmodels", "status"))
    assert not authorizer.allowed(Attributes("list", "", "secrets", namespace="default"))
    assert not authorizer.allowed(Attributes("get", "", "configmaps", namespace="default"))


def test_an_unbound_service_account_may_do_nothing() -> None:
    nobody = Authorizer.for_service_account(RBAC_DOCS, "default", "default")
    assert not nobody.allowed(Attributes("get", "apps", "deployments", name="d", namespace="default"))


def test_role_bindings_grant_only_in_their_namespace_and_resource_names_narrow() -> None:
    docs = [
        {
            "kind": "Role",
            "metadata": {"name": "r", "namespace": "a"},
            "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": ["one"]}
            ],
        },
        {
            "kind": "RoleBinding",
            "metadata": {"name": "b", "namespace": "a"},
            "roleRef": {"kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa"}],
        },
    ]
    sa = Authorizer.for_service_account(docs, "a", "sa")
    assert sa.allowed(Attributes("get", "", "configmaps", name="one", namespace="a"))
    assert not sa.allowed(Attributes("get", "", "configmaps", name="two", namespace="a"))
    assert not sa.allowed(Attributes("get", "", "configmaps", name="one", namespace="b"))


def test_the_forbidden_message_is_the_api_servers() -> None:
    attrs = Attributes("create", "apps", "deployments", namespace="default")
    assert operator_authorizer().forbidden_message(Attributes("get", "", "configmaps", "", "x", "ns")) == (
        'configmaps "x" is forbidden: User "system:serviceaccount:sentiment-system:sentiment-operator" '
        'cannot get resource "configmaps" in API group "" in the namespace "ns"'
    )
    assert "at the cluster scope" in operator_authorizer().forbidden_message(Attributes("list", "", "nodes"))
    assert attrs.verb == "create"


def test_request_verbs() -> None:
    """Authorization overview, "Determine the Request Verb"."""
    assert verb_of("GET", named=False, watch=True) == "watch"
    assert verb_of("GET", named=False, watch=False) == "list"
    assert verb_of("GET", named=True, watch=False) == "get"
    assert verb_of("PUT", named=True, watch=False) == "update"
    assert verb_of("DELETE", named=False, watch=False) == "deletecollection"


def test_block_owner_deletion_needs_update_on_the_owners_finalizers() -> None:
    """OwnerReferencesPermissionEnforcement: blockOwnerDeletion=true needs update on <owner>/finalizers."""
    child = {
        "metadata": {
            "namespace": "default",
            "ownerReferences": [
                {
                    "apiVersion": "serving.sentiment.dev/v1alpha1",
                    "kind": "SentimentModel",
                    "name": "m",
                    "uid": "u",
                    "blockOwnerDeletion": True,
                }
            ],
        }
    }
    plural_of = {("serving.sentiment.dev", "SentimentModel"): "sentimentmodels"}
    lacking = Authorizer.for_service_account(
        without_resource(RBAC_DOCS, "sentimentmodels/finalizers"), *OPERATOR_SA
    )
    ((missing, problem),) = owner_reference_violations(lacking, child, None, plural_of)
    assert (missing.verb, missing.resource, missing.subresource) == (
        "update",
        "sentimentmodels",
        "finalizers",
    )
    assert "cannot set blockOwnerDeletion" in problem
    assert 'cannot update resource "sentimentmodels/finalizers"' in problem
    # The shipped role has the rule (Real-cluster correctness #4).
    assert owner_reference_violations(operator_authorizer(), child, None, plural_of) == []
    child["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] = False
    assert owner_reference_violations(lacking, child, None, plural_of) == []


# ------------------------------------------------------------------------------------------- Pod Security


RESTRICTED_CONTAINER = {
    "name": "app",
    "image": "app:1",
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    },
}


def test_a_restricted_pod_passes_every_level() -> None:
    spec = {"containers": [RESTRICTED_CONTAINER], "volumes": [{"name": "tmp", "emptyDir": {}}]}
    for level in podsecurity.LEVELS:
        assert podsecurity.violations(level, spec) == [], level


@pytest.mark.parametrize(
    ("change", "level", "needle"),
    [
        (lambda s: s.update(hostNetwork=True), "baseline", "host namespaces"),
        (lambda s: s["containers"][0]["securityContext"].update(privileged=True), "baseline", "privileged"),
        (
            lambda s: s["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
            "baseline",
            "non-default capabilities",
        ),
        (
            lambda s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
            "baseline",
            "hostPath volumes",
        ),
        (
            lambda s: s["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 80}]),
            "baseline",
            "hostPort",
        ),
        (
            lambda s: s["containers"][0]["securityContext"].update(seccompProfile={"type": "Unconfined"}),
            "baseline",
            "seccompProfile",
        ),
        (
            lambda s: s["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
            "restricted",
            "allowPrivilegeEscalation != false",
        ),
        (
            lambda s: s["containers"][0]["securityContext"].pop("runAsNonRoot"),
            "restricted",
            "runAsNonRoot != true",
        ),
        (lambda s: s["containers"][0]["securityContext"].update(runAsUser=0), "restricted", "runAsUser=0"),
        (
            lambda s: s["containers"][0]["securityContext"].pop("capabilities"),
            "restricted",
            "unrestricted capabilities",
        ),
        (
            lambda s: s["containers"][0]["securityContext"].pop("seccompProfile"),
            "restricted",
            "seccompProfile",
        ),
        (
            lambda s: s["volumes"].append({"name": "n", "nfs": {"server": "x", "path": "/"}}),
            "restricted",
            "restricted volume types",
        ),
    ],
)
def test_each_control_of_the_standard_is_checked(change: Any, level: str, needle: str) -> None:
    """Pod Security Standards, the Baseline and Restricted tables: one control broken at a time."""
    spec = {
        "containers": [json.loads(json.dumps(RESTRICTED_CONTAINER))],
        "volumes": [{"name": "t", "emptyDir": {}}],
    }
    change(spec)
    found = podsecurity.violations(level, spec)
    assert any(needle in f for f in found), found
    if level == "restricted":
        assert podsecurity.violations("baseline", spec) == []


def test_pod_level_settings_cover_every_container() -> None:
    container = {
        **RESTRICTED_CONTAINER,
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    spec = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
    }
    assert podsecurity.violations("restricted", spec) == []


# --------------------------------------------------------------------------------------- through the server


@pytest.fixture
async def server() -> AsyncIterator[tuple[ApiServer, str]]:
    async with ApiServer(crd_schemas=project_crd_schemas()) as api, kmock.Server(api) as http:
        api.register()
        yield api, str(http.url).rstrip("/")


async def _call(
    url: str, method: str, path: str, body: Any = None, agent: str = "test-client"
) -> tuple[int, Any, Any]:
    headers = {"Content-Type": "application/json", "User-Agent": agent}
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, url + path, data=None if body is None else json.dumps(body), headers=headers
        ) as resp,
    ):
        return resp.status, await resp.json(content_type=None), resp.headers.getall("Warning", [])


async def test_rbac_is_enforced_for_the_operators_requests_only(server: tuple[ApiServer, str]) -> None:
    api, url = server
    api.authorizer = operator_authorizer()
    status, body, _ = await _call(url, "GET", "/api/v1/namespaces/default/configmaps", agent="kopf/1.45")
    assert status == 403  # authorization comes first, whether or not the resource is served
    status, body, _ = await _call(
        url, "GET", "/api/v1/namespaces/default/secrets", agent="sentiment-operator/0.1"
    )
    assert status == 403
    assert body["reason"] == "Forbidden"
    assert 'cannot list resource "secrets" in API group "" in the namespace "default"' in body["message"]
    status, _, _ = await _call(url, "GET", "/api/v1/namespaces/default/secrets", agent="test-client")
    assert status == 200
    status, _, _ = await _call(url, "GET", "/apis/apps/v1/namespaces/default/deployments", agent="kopf/1.45")
    assert status == 200


async def test_block_owner_deletion_is_refused_without_finalizers_permission(
    server: tuple[ApiServer, str],
) -> None:
    api, url = server
    api.authorizer = Authorizer.for_service_account(
        without_resource(RBAC_DOCS, "sentimentmodels/finalizers"), *OPERATOR_SA
    )
    _, owner, _ = await _call(
        url,
        "POST",
        "/apis/serving.sentiment.dev/v1alpha1/namespaces/default/sentimentmodels",
        {
            "apiVersion": "serving.sentiment.dev/v1alpha1",
            "kind": "SentimentModel",
            "metadata": {"name": "m"},
            "spec": {},
        },
    )
    ref = {
        "apiVersion": "serving.sentiment.dev/v1alpha1",
        "kind": "SentimentModel",
        "name": "m",
        "uid": owner["metadata"]["uid"],
        "blockOwnerDeletion": True,
    }
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "ownerReferences": [ref]}}
    status, body, _ = await _call(
        url, "POST", "/api/v1/namespaces/default/secrets", secret, agent="sentiment-operator"
    )
    assert status == 403
    assert "cannot set blockOwnerDeletion" in body["message"]
    ref["blockOwnerDeletion"] = False
    status, _, _ = await _call(
        url, "POST", "/api/v1/namespaces/default/secrets", secret, agent="sentiment-operator"
    )
    assert status == 201


async def test_pod_security_refuses_pods_and_warns_for_deployments(server: tuple[ApiServer, str]) -> None:
    """Pod Security admission: enforce refuses Pods (403) and warns for workload templates."""
    api, url = server
    api.register((("v1/pods", "Pod", True, ("status",)),))
    await _call(
        url,
        "POST",
        "/api/v1/namespaces",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "locked", "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
        },
    )
    loose = {"name": "app", "image": "app:1"}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [loose]}}
    status, body, _ = await _call(url, "POST", "/api/v1/namespaces/locked/pods", pod)
    assert status == 403
    assert 'violates PodSecurity "restricted:latest"' in body["message"]
    pod["spec"]["containers"] = [RESTRICTED_CONTAINER]
    status, _, _ = await _call(url, "POST", "/api/v1/namespaces/locked/pods", pod)
    assert status == 201
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [loose]}},
        },
    }
    status, _, warnings = await _call(url, "POST", "/apis/apps/v1/namespaces/locked/deployments", deployment)
    assert status == 201
    assert warnings
    # RFC 7234 warn-text: a quoted string, inner quotes escaped, as the API server sends it.
    assert warnings[0].startswith('299 - "would violate PodSecurity \\"restricted:latest\\": ')
    assert api.warnings


async def test_an_apply_that_creates_needs_create_too(server: tuple[ApiServer, str]) -> None:
    """Server-side apply docs, "Permissions": creating an object by apply needs create besides patch."""
    api, url = server
    patch_only = [
        {
            "kind": "ClusterRole",
            "metadata": {"name": "p"},
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch"]}],
        },
        {
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "p"},
            "roleRef": {"kind": "ClusterRole", "name": "p"},
            "subjects": [{"kind": "ServiceAccount", "name": OPERATOR_SA[1], "namespace": OPERATOR_SA[0]}],
        },
    ]
    api.authorizer = Authorizer.for_service_account(patch_only, *OPERATOR_SA)
    body = json.dumps({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}})
    headers = {"Content-Type": "application/apply-patch+yaml", "User-Agent": "sentiment-operator"}
    async with (
        aiohttp.ClientSession() as session,
        session.patch(
            url + "/apis/apps/v1/namespaces/default/deployments/d",
            data=body,
            headers=headers,
            params={"fieldManager": "op"},
        ) as resp,
    ):
        assert resp.status == 403
        assert 'cannot create resource "deployments"' in (await resp.json())["message"]
