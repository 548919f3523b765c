"""Shared helpers for the builder tests: the example files, rendering them, and the pod templates inside."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from sentiment_operator.builders import Children, Release, build_children
from sentiment_operator.spec import parse_spec

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
GOLDEN = Path(__file__).resolve().parent / "golden"
CRD_FILE = REPO / "crds" / "sentimentmodel.yaml"


def example_files() -> list[Path]:
    """Every SentimentModel example (examples/*.yaml); each one is a test input."""
    return sorted(EXAMPLES.glob("*.yaml"))


def load_models(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def children_of(
    doc: dict[str, Any],
    uid: str | None = None,
    release: Release | None = None,
    *,
    keda: bool | None = None,
) -> Children:
    """The children on a cluster with Istio and (``keda``) KEDA; None: KEDA only where the model needs it
    (scale to zero), as ``sentiment-operator render`` does."""
    meta = doc["metadata"]
    spec = parse_spec(meta["name"], doc.get("spec"))
    with_keda = spec.autoscaling.scales_to_zero if keda is None else keda
    return build_children(
        meta["name"], meta.get("namespace", "default"), spec, uid=uid, keda=with_keda, release=release
    )


def all_example_objects() -> Iterator[tuple[str, dict[str, Any]]]:
    """(example file name, object) for every object rendered from every example."""
    for path in example_files():
        for doc in load_models(path):
            for obj in children_of(doc, uid="0b9a7c43-5d1e-4d47-9d1c-2b7a1c1f0e11").objects():
                yield path.name, obj


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(Deployment name, pod spec) of every Deployment among ``objects``."""
    for obj in objects:
        if obj["kind"] == "Deployment":
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def model(name: str = "demo", namespace: str = "default", **spec: Any) -> dict[str, Any]:
    """A SentimentModel document with ``spec`` (keys as in YAML)."""
    return {
        "apiVersion": "serving.sentiment.dev/v1alpha1",
        "kind": "SentimentModel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
