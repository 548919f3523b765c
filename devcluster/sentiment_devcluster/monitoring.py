"""The embedded cluster's monitoring add-on: Prometheus configured from the ServiceMonitors and
PrometheusRules in the API, as the Prometheus operator would configure it.

Each ServiceMonitor endpoint becomes one scrape job (``serviceMonitor/<namespace>/<name>/<index>``, its
``interval`` and ``path``), fed by file-based discovery with the targets Kubernetes' ``endpoints`` discovery
would give it: one per ready pod of each Service the monitor selects, with the ``__meta_kubernetes_*`` labels
(namespace, Service name and labels, pod, port name). The job's relabelling is the Prometheus operator's own
(keep the selected Services and the named port; ``namespace``, ``service``, ``pod``, ``container``,
``endpoint`` and ``job`` labels) followed by the monitor's ``relabelings``, translated field by field. So the
series get their labels the way the monitor declares them, never from a hand-written list. Each
PrometheusRule's groups become a rule file Prometheus evaluates (reloaded when they change).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sentiment_operator.spec import parse_duration

from sentiment_devcluster.prometheus import Job, Prometheus

log = logging.getLogger(__name__)

JSON = dict[str, Any]
SERVICE_MONITORS = "monitoring.coreos.com/v1/servicemonitors"
PROMETHEUS_RULES = "monitoring.coreos.com/v1/prometheusrules"

# ServiceMonitor relabeling fields (camelCase) -> Prometheus relabel_config fields.
_RELABEL_FIELDS = {
    "sourceLabels": "source_labels",
    "separator": "separator",
    "targetLabel": "target_label",
    "regex": "regex",
    "modulus": "modulus",
    "replacement": "replacement",
}


@dataclass(frozen=True)
class Endpoint:
    """A ready pod behind a Service port: what Kubernetes' endpoints discovery reports for it."""

    pod: str
    address: str
    port: int
    container: str


def meta_label(prefix: str, name: str) -> str:
    """A discovery meta label, with the label name sanitized as Prometheus does (``app.kubernetes.io/x`` ->
    ``app_kubernetes_io_x``)."""
    return prefix + re.sub(r"[^a-zA-Z0-9_]", "_", name)


def relabel_config(relabeling: Mapping[str, Any]) -> JSON:
    """A ServiceMonitor relabeling as a Prometheus relabel_config (the action lower-cased, as Prometheus
    spells it)."""
    out: JSON = {_RELABEL_FIELDS[key]: value for key, value in relabeling.items() if key in _RELABEL_FIELDS}
    unknown = set(relabeling) - set(_RELABEL_FIELDS) - {"action"}
    if unknown:
        raise ValueError(f"relabeling fields this translation does not know: {sorted(unknown)}")
    out["action"] = str(relabeling.get("action", "replace")).lower()
    return out


def job_name(monitor: Mapping[str, Any], index: int) -> str:
    meta = monitor["metadata"]
    return f"serviceMonitor/{meta['namespace']}/{meta['name']}/{index}"


def _operator_relabelings(monitor: Mapping[str, Any], endpoint: Mapping[str, Any]) -> list[JSON]:
    """What the Prometheus operator puts before a monitor's own relabelings."""
    selector = (monitor["spec"].get("selector") or {}).get("matchLabels") or {}
    keep = [
        {
            "action": "keep",
            "source_labels": [meta_label("__meta_kubernetes_service_label_", key)],
            "regex": re.escape(value),
        }
        for key, value in sorted(selector.items())
    ]
    keep.append(
        {
            "action": "keep",
            "source_labels": ["__meta_kubernetes_endpoint_port_name"],
            "regex": endpoint["port"],
        }
    )
    copy = [
        ("__meta_kubernetes_namespace", "namespace"),
        ("__meta_kubernetes_service_name", "service"),
        ("__meta_kubernetes_pod_name", "pod"),
        ("__meta_kubernetes_pod_container_name", "container"),
        ("__meta_kubernetes_service_name", "job"),
    ]
    return [
        *keep,
        *({"source_labels": [source], "target_label": target} for source, target in copy),
        {"target_label": "endpoint", "replacement": str(endpoint["port"])},
    ]


def _namespaces(monitor: Mapping[str, Any]) -> set[str] | None:
    """The namespaces a monitor selects Services in; None: any."""
    selector = monitor["spec"].get("namespaceSelector") or {}
    if selector.get("any"):
        return None
    return set(selector.get("matchNames") or [monitor["metadata"]["namespace"]])


def scrape_jobs(
    monitors: Iterable[Mapping[str, Any]],
    services: Iterable[Mapping[str, Any]],
    endpoints: Callable[[str, str, Mapping[str, Any]], Sequence[Endpoint]],
) -> list[tuple[Job, list[JSON]]]:
    """The scrape jobs and their target groups for ``monitors`` (``endpoints(namespace, service, port)``:
    the ready pods behind a Service port)."""
    out: list[tuple[Job, list[JSON]]] = []
    services = list(services)
    for monitor in sorted(monitors, key=lambda m: (m["metadata"]["namespace"], m["metadata"]["name"])):
        namespaces = _namespaces(monitor)
        selector = (monitor["spec"].get("selector") or {}).get("matchLabels") or {}
        for index, endpoint in enumerate(monitor["spec"].get("endpoints") or []):
            relabelings = [
                *_operator_relabelings(monitor, endpoint),
                *(relabel_config(r) for r in endpoint.get("relabelings") or []),
            ]
            job = Job(
                job_name(monitor, index),
                scrape_interval=parse_duration(endpoint.get("interval", "30s")),
                metrics_path=endpoint.get("path", "/metrics"),
                relabel_configs=tuple(relabelings),
                honor_labels=bool(endpoint.get("honorLabels", False)),
            )
            groups: list[JSON] = []
            for service in services:
                meta = service["metadata"]
                labels = meta.get("labels") or {}
                if namespaces is not None and meta["namespace"] not in namespaces:
                    continue
                if any(labels.get(key) != value for key, value in selector.items()):
                    continue  # (the job's keep rules would drop it too)
                for port in (service.get("spec") or {}).get("ports") or []:
                    for pod in endpoints(meta["namespace"], meta["name"], port):
                        groups.append(
                            {
                                "targets": [f"{pod.address}:{pod.port}"],
                                "labels": {
                                    "__meta_kubernetes_namespace": meta["namespace"],
                                    "__meta_kubernetes_service_name": meta["name"],
                                    **{
                                        meta_label("__meta_kubernetes_service_label_", k): v
                                        for k, v in labels.items()
                                    },
                                    "__meta_kubernetes_endpoint_port_name": str(port.get("name", "")),
                                    "__meta_kubernetes_endpoint_ready": "true",
                                    "__meta_kubernetes_pod_name": pod.pod,
                                    "__meta_kubernetes_pod_container_name": pod.container,
                                },
                            }
                        )
            out.append((job, groups))
    return out


class MonitoringAddon:
    """Keeps a Prometheus' jobs and targets in line with the ServiceMonitors and the ready pods; also scrapes
    static ``extra`` jobs (the operator's own metrics)."""

    def __init__(
        self,
        prometheus: Prometheus,
        monitors: Callable[[], list[JSON]],
        services: Callable[[], list[JSON]],
        endpoints: Callable[[str, str, Mapping[str, Any]], Sequence[Endpoint]],
        extra: Sequence[tuple[Job, list[JSON]]] = (),
        interval: float = 0.5,
        rules: Callable[[], list[JSON]] = list,
    ) -> None:
        self.prometheus = prometheus
        self.monitors = monitors
        self.services = services
        self.endpoints = endpoints
        self.extra = list(extra)
        self.interval = interval
        self.rules = rules

    def sync(self) -> None:
        wanted = scrape_jobs(self.monitors(), self.services(), self.endpoints) + self.extra
        changed = self.prometheus.set_jobs([job for job, _ in wanted] or [Job(Prometheus.JOB)])
        for job, groups in wanted:
            self.prometheus.set_targets(groups, job=job.name)
        if changed:
            log.info("Prometheus scrapes %s", ", ".join(job.name for job, _ in wanted) or "nothing")
        self._sync_rules()

    def _sync_rules(self) -> None:
        """A rule file per PrometheusRule (its groups as written); Prometheus reloads when the set changes."""
        directory = self.prometheus.workdir / "rules"
        directory.mkdir(parents=True, exist_ok=True)
        files = []
        for rule in self.rules():
            meta = rule["metadata"]
            path = directory / f"{meta['namespace']}-{meta['name']}.json"
            text = json.dumps({"groups": (rule.get("spec") or {}).get("groups") or []}, sort_keys=True)
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                files.append((path, True))
            else:
                files.append((path, False))
        paths = [path for path, _ in files]
        for stale in set(directory.glob("*.json")) - set(paths):
            stale.unlink()
        if paths != self.prometheus.rule_files or any(changed for _, changed in files):
            self.prometheus.rule_files = paths
            if self.prometheus.process is not None:
                self.prometheus.reload()
                log.info(
                    "Prometheus evaluates the rules of %s", ", ".join(p.stem for p in paths) or "nothing"
                )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                self.sync()
            except Exception:  # a bad monitor must not stop discovery for the others
                log.exception("Prometheus discovery failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
