"""``sentiment-operator run``: kopf underneath, configured from the command line."""

from __future__ import annotations

import argparse
import logging
import sys

import kopf
import prometheus_client

from sentiment_operator.handlers import OperatorConfig, register
from sentiment_operator.names import DEFAULT_CLUSTER_DOMAIN


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``sentiment-operator run`` (cli.py calls this for its ``run`` subparser)."""
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        dest="namespaces",
        default=[],
        metavar="NS",
        help="serve SentimentModels in this namespace (repeatable; kopf glob patterns allowed)",
    )
    scope.add_argument(
        "--all-namespaces", "-A", action="store_true", help="serve SentimentModels in every namespace"
    )
    parser.add_argument(
        "--liveness",
        metavar="URL",
        default=None,
        help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz",
    )
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument(
        "--peering",
        metavar="NAME",
        default=None,
        help="kopf peering object name for HA (replicas pause while a higher-priority peer runs)",
    )
    peering.add_argument(
        "--standalone", action="store_true", help="no peering: assume this is the only operator instance"
    )
    parser.add_argument("--priority", type=int, default=0, help="peering priority of this instance")
    parser.add_argument(
        "--resync-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how often every SentimentModel is reconciled even without changes (drift safety net)",
    )
    parser.add_argument(
        "--cluster-domain",
        default=DEFAULT_CLUSTER_DOMAIN,
        help="the cluster's DNS domain (kubelet --cluster-domain), used in Service hosts and status.url",
    )
    parser.add_argument(
        "--prometheus-url",
        metavar="URL",
        default=None,
        help="the Prometheus canary rollouts query (a SentimentModel may name another in "
        "spec.rollout.analysis.prometheusURL), e.g. http://prometheus.monitoring.svc:9090",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve the operator's own Prometheus metrics at http://ADDRESS:PORT/metrics",
    )
    parser.add_argument(
        "--metrics-address", default="0.0.0.0", metavar="ADDRESS", help="address of --metrics-port"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")


def config_from(args: argparse.Namespace) -> OperatorConfig:
    """The handlers' runtime knobs from ``run``'s command line."""
    return OperatorConfig(
        timer_interval=float(getattr(args, "resync_interval", 60.0)),
        cluster_domain=str(getattr(args, "cluster_domain", DEFAULT_CLUSTER_DOMAIN)),
        prometheus_url=getattr(args, "prometheus_url", None),
    )


def run(args: argparse.Namespace) -> int:
    """Run the operator until SIGINT/SIGTERM; credentials from the in-cluster account or the kubeconfig."""
    namespaces: list[str] = list(getattr(args, "namespaces", None) or [])
    all_namespaces = bool(getattr(args, "all_namespaces", False))
    if not namespaces and not all_namespaces:
        print("error: pass --namespace NS (repeatable) or --all-namespaces", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    registry = kopf.OperatorRegistry()
    config = config_from(args)
    register(registry, config)
    port = getattr(args, "metrics_port", None)
    if port is not None:
        # A daemon thread beside kopf's loop: scrapes never wait for a reconcile.
        prometheus_client.start_http_server(
            port, addr=str(getattr(args, "metrics_address", "0.0.0.0")), registry=config.metrics.registry
        )
    kopf.run(
        registry=registry,
        clusterwide=all_namespaces,
        namespaces=namespaces,
        liveness_endpoint=getattr(args, "liveness", None),
        peering_name=getattr(args, "peering", None),
        standalone=bool(getattr(args, "standalone", False)) or None,
        priority=int(getattr(args, "priority", 0)),
    )
    return 0
