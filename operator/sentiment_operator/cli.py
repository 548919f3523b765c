"""``sentiment-operator``: ``run`` the operator, or ``render`` what it would create for SentimentModels."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from .builders import build_children
from .names import API_VERSION, KIND
from .spec import InvalidSpecError, parse_spec

EXIT_INVALID = 2


class RenderError(Exception):
    """Input that cannot be rendered; the message names the file (and the object, if any)."""


def _documents(path: str) -> Iterator[tuple[int, Any]]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RenderError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise RenderError(f"{path}: not valid YAML: {exc}") from None
    for index, doc in enumerate(docs):
        if doc is not None:
            yield index, doc


def render_documents(
    paths: Sequence[str], default_namespace: str = "default", *, keda: bool | None = None
) -> list[dict[str, Any]]:
    """Every object the operator would create for the SentimentModels in ``paths``, in apply order, on a
    cluster that serves Istio's VirtualService and (``keda``) KEDA's ScaledObject; None: KEDA only for the
    models that cannot run without it (scale to zero)."""
    objects: list[dict[str, Any]] = []
    for path in paths:
        for index, doc in _documents(path):
            where = f"{path}: document {index + 1}"
            if not isinstance(doc, dict):
                raise RenderError(f"{where}: expected a SentimentModel object, got {type(doc).__name__}")
            api_version, kind = doc.get("apiVersion"), doc.get("kind")
            if api_version != API_VERSION or kind != KIND:
                raise RenderError(
                    f"{where}: {kind or '?'} ({api_version or 'no apiVersion'}) is not a SentimentModel; "
                    f"expected apiVersion: {API_VERSION}, kind: {KIND}"
                )
            metadata = doc.get("metadata") or {}
            name = metadata.get("name")
            if not isinstance(name, str) or not name:
                raise RenderError(f"{where}: SentimentModel without metadata.name")
            namespace = metadata.get("namespace") or default_namespace
            try:
                spec = parse_spec(name, doc.get("spec"))
                with_keda = spec.autoscaling.scales_to_zero if keda is None else keda
                children = build_children(name, namespace, spec, keda=with_keda)
            except InvalidSpecError as exc:
                raise RenderError(
                    f"{path}: SentimentModel {namespace}/{name}: {exc.field}: {exc.message}"
                ) from None
            objects += children.objects()
    return objects


class _Dumper(yaml.SafeDumper):
    """Plain YAML for kubectl: no &anchors/*aliases even if a structure repeats."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(objects: Sequence[dict[str, Any]], stream: TextIO) -> None:
    """Write ``objects`` as multi-document YAML, keys in build order."""
    yaml.dump_all(
        objects, stream, Dumper=_Dumper, sort_keys=False, default_flow_style=False, explicit_start=True
    )


def _render(args: argparse.Namespace) -> int:
    try:
        objects = render_documents(args.filename, args.namespace, keda=args.keda or None)
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        dump(objects, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. `| head`: not an error worth a traceback
        sys.stderr.close()
    return 0


def _run(args: argparse.Namespace) -> int:
    # Imported lazily: `render` must work without kopf and the Kubernetes client.
    runner = importlib.import_module("sentiment_operator.runner")
    result: int = runner.run(args)
    return result


def _first_command(argv: Sequence[str]) -> str | None:
    return next((arg for arg in argv if not arg.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The CLI; ``argv`` decides whether the ``run`` options (which import kopf) are added."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="sentiment-operator", description="Kubernetes operator for SentimentModel resources."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    render = commands.add_parser(
        "render",
        help="print every object the operator would create, with no cluster",
        description="Print, as multi-document YAML, every object the operator would create for the "
        "SentimentModels in the given files (no cluster needed). The Redis Secret is shown without data. "
        "With routing.provider auto the route is Istio's VirtualService (on a cluster, the operator asks "
        "discovery and writes a Gateway API HTTPRoute where only Gateway API is served).",
    )
    render.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE",
        help="SentimentModel YAML ('-' = stdin)",
    )
    render.add_argument(
        "-n", "--namespace", default="default", help="namespace for objects without metadata.namespace"
    )
    render.add_argument(
        "--keda",
        action="store_true",
        help="as on a cluster with KEDA: load metrics (queueDepth, inFlight) become a ScaledObject instead "
        "of an HPA Pods metric (without it, only models with minReplicas 0 are rendered for KEDA)",
    )
    render.set_defaults(handler=_render)

    run = commands.add_parser(
        "run",
        help="run the operator against the current cluster (kopf)",
        description="Reconcile SentimentModels, using the current kubeconfig or the in-cluster config.",
    )
    if _first_command(argv) == "run":
        # Only `run` pays for importing kopf and the Kubernetes client; `render` works without them.
        runner = importlib.import_module("sentiment_operator.runner")
        runner.add_run_arguments(run)
    run.set_defaults(handler=_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    handler: Any = args.handler
    result: int = handler(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
