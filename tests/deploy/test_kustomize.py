"""deploy/ (kustomize): every overlay builds with kubectl, validates, is least-privilege and restricted."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from sentiment_operator.cli import build_parser
from sentiment_operator.podsecurity import restricted_violations

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = Path(sys.executable).parent / "kubectl"
NAMESPACE = "sentiment-system"
SERVICE_ACCOUNT = "sentiment-operator"
OVERLAYS = ["dev", "prod"]
# The Kubernetes versions the manifests must be valid for: the oldest we document and the newest known.
K8S_VERSIONS = ["1.30.0", kubernetes_validate.utils.latest_version()]

# sentiment_operator.rbac.REQUIRED_PERMISSIONS covers every way the operator can run; the shipped Deployment
# runs one of them, and its ClusterRole grants exactly what that mode uses:
# - kopf lists/watches namespaces only when it serves namespace patterns (kopf/_core/reactor/observation.py:
#   the namespace list/watch run only if not clusterwide); with --all-namespaces it never asks (a clusterwide
#   run against the emulated API server makes no namespace request).
NAMESPACE_SCANNING = frozenset({("", "namespaces", "list"), ("", "namespaces", "watch")})
# - cluster-wide peering (--peering, --all-namespaces) uses ClusterKopfPeering only: it watches the peering
#   object (list+watch) and patches it (keep-alives, removal of dead peers); kopf/_core/engines/peering.py.
CLUSTER_PEERING = frozenset(("kopf.dev", "clusterkopfpeerings", verb) for verb in ("list", "watch", "patch"))

Triple = tuple[str, str, str]


def kustomize(directory: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [str(KUBECTL), "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"kubectl kustomize {directory.relative_to(ROOT)} failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc is not None]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    name: str = request.param
    return name, kustomize(ROOT / "deploy" / "overlays" / name)


def one(objects: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    obj: dict[str, Any] = found[0]
    return obj


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = one(objects, "Deployment", "sentiment-operator")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = container
    return result


def operator_argv(container: dict[str, Any]) -> list[str]:
    """The operator's command line as the container would run it (through the shell where prod uses one)."""
    command = container.get("command")
    if command is None:
        return list(container["args"])
    assert command == ["/bin/sh", "-c"], command
    (script,) = container["args"]
    assert script.startswith("exec sentiment-operator "), script
    # Run the real script with printf standing in for the operator, to see the argv it would get.
    probe = script.replace("exec sentiment-operator ", "exec printf '%s\\n' ", 1)
    proc = subprocess.run(["/bin/sh", "-c", probe], capture_output=True, text=True, timeout=10, check=True)
    return proc.stdout.splitlines()


def parse_operator_args(argv: list[str]) -> Any:
    """The operator's real CLI parser (it adds the `run` options only when the command is `run`)."""
    return build_parser(argv).parse_args(argv)


def rbac_triples(objects: list[dict[str, Any]]) -> set[Triple]:
    """Every (group, resource, verb) granted to the operator's ServiceAccount by the output."""
    bound_cluster_roles: set[str] = set()
    for binding in (o for o in objects if o["kind"] in {"ClusterRoleBinding", "RoleBinding"}):
        assert binding["kind"] == "ClusterRoleBinding", (
            "the operator is cluster-wide: only ClusterRoleBindings"
        )
        subjects = binding["subjects"]
        assert subjects == [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}]
        assert binding["roleRef"]["kind"] == "ClusterRole"
        bound_cluster_roles.add(binding["roleRef"]["name"])
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] in {"ClusterRole", "Role"}}
    assert set(roles) == bound_cluster_roles, "every role is bound, every binding's role exists"
    triples: set[Triple] = set()
    for role in roles.values():
        for rule in role["rules"]:
            assert set(rule) == {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for value in (group, resource, verb):
                            assert "*" not in value, f"wildcard in ClusterRole {role['metadata']['name']}"
                        triples.add((group, resource, verb))
    return triples


def test_every_kustomization_builds() -> None:
    for directory in ["crds", "deploy/base", *(f"deploy/overlays/{o}" for o in OVERLAYS)]:
        objects = kustomize(ROOT / directory)
        assert objects, directory
        one(objects, "CustomResourceDefinition", "sentimentmodels.serving.sentiment.dev")


def test_output_includes_the_committed_crd_unchanged(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = overlay
    committed = yaml.safe_load((ROOT / "crds" / "sentimentmodel.yaml").read_text(encoding="utf-8"))
    built = one(objects, "CustomResourceDefinition", committed["metadata"]["name"])
    assert built["spec"] == committed["spec"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates(overlay: tuple[str, list[dict[str, Any]]], version: str) -> None:
    _, objects = overlay
    crds = {
        (crd["spec"]["group"], crd["spec"]["names"]["kind"]): crd
        for crd in objects
        if crd["kind"] == "CustomResourceDefinition"
    }
    for obj in objects:
        group = obj["apiVersion"].rpartition("/")[0]
        crd = crds.get((group, obj["kind"]))
        if crd is not None:
            # A custom resource of a CRD shipped alongside: validate against that CRD's schema.
            served = {v["name"]: v for v in crd["spec"]["versions"]}
            schema = served[obj["apiVersion"].rpartition("/")[2]]["schema"]["openAPIV3Schema"]
            jsonschema.validate(obj, schema)
            continue
        kubernetes_validate.validate(obj, version, strict=True)


def test_namespaced_objects_live_in_the_operator_namespace(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = overlay
    cluster_scoped = {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterKopfPeering",
    }
    for obj in objects:
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in obj["metadata"], obj["metadata"]
        else:
            assert obj["metadata"]["namespace"] == NAMESPACE, f"{obj['kind']} {obj['metadata']['name']}"
    namespace = one(objects, "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    deployment = one(objects, "Deployment", "sentiment-operator")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == SERVICE_ACCOUNT
    one(objects, "ServiceAccount", SERVICE_ACCOUNT)


def test_rbac_is_exactly_what_the_operator_uses(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = overlay
    from sentiment_operator.rbac import PEERING_PERMISSIONS, REQUIRED_PERMISSIONS

    assert CLUSTER_PEERING <= PEERING_PERMISSIONS
    args = parse_operator_args(operator_argv(operator_container(objects)))
    expected = set(REQUIRED_PERMISSIONS)
    if args.all_namespaces:
        expected -= NAMESPACE_SCANNING
    if args.peering:
        expected |= CLUSTER_PEERING
    granted = rbac_triples(objects)
    assert not granted - expected, f"{name}: granted but never used: {sorted(granted - expected)}"
    assert not expected - granted, f"{name}: used but not granted: {sorted(expected - granted)}"


def test_operator_pod_meets_the_restricted_pod_security_standard(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = overlay
    pod_spec = one(objects, "Deployment", "sentiment-operator")["spec"]["template"]["spec"]
    assert restricted_violations(pod_spec) == []
    container = operator_container(objects)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod_spec["securityContext"]["runAsUser"] != 0
    # A read-only root needs a writable /tmp.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    for key in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][key])


def test_operator_command_line_parses_and_serves_the_liveness_probe(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = overlay
    container = operator_container(objects)
    args = parse_operator_args(operator_argv(container))
    assert args.command == "run"
    assert args.all_namespaces is True, "the ClusterRole and the CRD watch are cluster-wide"
    liveness = urlsplit(args.liveness)
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == liveness.path
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports[probe["port"]] == liveness.port
    assert liveness.hostname == "0.0.0.0", "the kubelet probes the pod IP, not loopback"


def test_dev_overlay_runs_one_standalone_replica_of_the_local_image() -> None:
    objects = kustomize(ROOT / "deploy" / "overlays" / "dev")
    deployment = one(objects, "Deployment", "sentiment-operator")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    container = operator_container(objects)
    assert container["image"] == "sentiment-operator:dev"
    assert container["imagePullPolicy"] in {"Never", "IfNotPresent"}
    args = parse_operator_args(operator_argv(container))
    assert args.standalone is True
    assert not [o for o in objects if o["kind"] == "PodDisruptionBudget"]


def test_prod_overlay_runs_two_peered_replicas_with_a_disruption_budget() -> None:
    objects = kustomize(ROOT / "deploy" / "overlays" / "prod")
    deployment = one(objects, "Deployment", "sentiment-operator")
    replicas = deployment["spec"]["replicas"]
    assert replicas == 2
    container = operator_container(objects)
    assert re.fullmatch(r"ghcr\.io/sentiment-operator/operator:\d+\.\d+\.\d+", container["image"])

    args = parse_operator_args(operator_argv(container))
    assert args.standalone is False
    peering = one(objects, "ClusterKopfPeering", args.peering)
    assert peering["apiVersion"] == "kopf.dev/v1"
    one(objects, "CustomResourceDefinition", "clusterkopfpeerings.kopf.dev")
    # Replicas with equal priorities would all pause: each draws its own.
    priorities = {parse_operator_args(operator_argv(container)).priority for _ in range(4)}
    assert all(0 <= p <= 65535 for p in priorities)
    assert len(priorities) > 1

    pdb = one(objects, "PodDisruptionBudget", "sentiment-operator")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert 1 <= pdb["spec"]["minAvailable"] < replicas
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_shell_probe_reproduces_plain_args() -> None:
    # Guard for operator_argv(): the printf stand-in keeps quoting intact.
    container = {
        "command": ["/bin/sh", "-c"],
        "args": ["exec sentiment-operator run --x='a b' --y=\"$((1+1))\""],
    }
    assert operator_argv(container) == shlex.split("run '--x=a b' --y=2")
