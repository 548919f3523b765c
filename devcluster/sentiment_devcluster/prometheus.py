"""A real Prometheus (Debian's ``prometheus``) on a loopback port, for the embedded cluster and the tests.

Targets come from file-based service discovery (``file_sd_configs``): whoever knows the endpoints writes them
with :meth:`Prometheus.set_targets` (a list of target groups, each with its ``targets`` and ``labels``), and
Prometheus picks the file up on its own within ``refresh`` seconds, as it would a discovery update on a
cluster. There is one scrape job by default; :meth:`Prometheus.set_jobs` replaces the jobs (each with its
interval, path and relabelling, as the Prometheus operator generates one per ServiceMonitor endpoint) and
reloads the configuration when they changed.
Rule files (alerts and recording rules) are loaded from ``rule_files`` and reloaded with :meth:`reload`.

Every wait is bounded; the process is in its own process group and dies with its parent (``PR_SET_PDEATHSIG``
on Linux), so nothing is left running.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentiment_devcluster.localserver import LocalServer
from sentiment_devcluster.nodeagent import die_with_parent

JSON = dict[str, Any]


class PrometheusError(RuntimeError):
    """Prometheus could not be started, or a query failed."""


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# Prometheus is always on a loopback address: a proxy from the environment (HTTP_PROXY) never applies.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _duration(seconds: float) -> str:
    """A Prometheus duration ("1500ms")."""
    return f"{int(seconds * 1000)}ms"


@dataclass(frozen=True)
class Job:
    """One scrape job fed by its own file of discovered targets."""

    name: str
    scrape_interval: float = 1.0
    metrics_path: str = "/metrics"
    relabel_configs: tuple[Mapping[str, Any], ...] = ()
    honor_labels: bool = False


class Prometheus(LocalServer):
    """One Prometheus server: ``.url``, ``.set_targets()``, ``.query()``, ``.reload()``, ``.stop()``.

    ``scrape_interval`` and ``evaluation_interval`` are short (tests and the demo need answers in seconds);
    ``relabel_configs`` are added to the one file-SD scrape job, as a ServiceMonitor's relabelings would be.
    """

    JOB = "sentiment"

    def __init__(
        self,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        scrape_interval: float = 1.0,
        evaluation_interval: float = 1.0,
        refresh: float = 1.0,
        relabel_configs: Sequence[Mapping[str, Any]] = (),
        rule_files: Sequence[Path] = (),
    ) -> None:
        binary = prometheus_binary()
        if binary is None:
            raise PrometheusError("prometheus is not installed (make install apt-installs it)")
        self.binary = binary
        self.workdir = workdir
        self.host = host
        self.port = port or _free_port(host)
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.refresh = refresh
        self.jobs = [Job(self.JOB, scrape_interval, relabel_configs=tuple(dict(r) for r in relabel_configs))]
        self.rule_files = list(rule_files)
        self.targets_file = self.targets_path(self.JOB)
        self.config_file = workdir / "prometheus.yml"
        self.log_file = workdir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def targets_path(self, job: str) -> Path:
        """The file-SD file of a job (its name made file-safe)."""
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in job)
        return self.workdir / f"targets-{safe}.json"

    def _job_config(self, job: Job) -> JSON:
        out: JSON = {
            "job_name": job.name,
            "scrape_interval": _duration(job.scrape_interval),
            "scrape_timeout": _duration(min(job.scrape_interval, 10.0)),
            "metrics_path": job.metrics_path,
            "honor_labels": job.honor_labels,
            "file_sd_configs": [
                {"files": [str(self.targets_path(job.name))], "refresh_interval": _duration(self.refresh)}
            ],
        }
        if job.relabel_configs:
            out["relabel_configs"] = [dict(r) for r in job.relabel_configs]
        return out

    def config(self) -> JSON:
        """The configuration file's content (JSON is YAML)."""
        return {
            "global": {
                "scrape_interval": _duration(self.scrape_interval),
                "evaluation_interval": _duration(self.evaluation_interval),
            },
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [self._job_config(job) for job in self.jobs],
        }

    def set_jobs(self, jobs: Sequence[Job]) -> bool:
        """Replace the scrape jobs; a running Prometheus reloads when they changed. Whether they did."""
        wanted = list(jobs)
        if wanted == self.jobs:
            return False
        self.jobs = wanted
        for job in wanted:
            if not self.targets_path(job.name).exists():
                self.set_targets([], job=job.name)
        if self.process is not None:
            self.reload()
        return True

    def set_targets(self, groups: Sequence[Mapping[str, Any]], *, job: str = JOB) -> None:
        """Replace a job's discovered targets (``[{"targets": ["host:port"], "labels": {...}}]``), atomically;
        an unchanged list is not rewritten."""
        path = self.targets_path(job)
        text = json.dumps([dict(g) for g in groups], indent=1, sort_keys=True)
        if path.exists() and path.read_text() == text:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        staged = path.with_suffix(".tmp")
        staged.write_text(text)
        staged.replace(path)

    def start(self, timeout: float = 60.0) -> None:
        """Start it and wait (at most ``timeout`` seconds) until ``/-/ready`` answers 200."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for job in self.jobs:
            if not self.targets_path(job.name).exists():
                self.set_targets([], job=job.name)
        self.config_file.write_text(json.dumps(self.config(), indent=1))
        args = [
            self.binary,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ]
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusError(f"prometheus exited: {self.log_file.read_text()[-2000:]}")
            try:
                with _OPENER.open(f"{self.url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise PrometheusError(f"prometheus on {self.url} was not ready within {timeout}s")

    def reload(self) -> None:
        """Rewrite the configuration (e.g. new rule files) and ask Prometheus to load it."""
        self.config_file.write_text(json.dumps(self.config(), indent=1))
        self._request("POST", "/-/reload")

    def _request(self, method: str, path: str, params: Mapping[str, str] | None = None) -> JSON:
        url = f"{self.url}{path}"
        data = urllib.parse.urlencode(params or {}).encode() if method == "POST" and params else None
        if method == "GET" and params:
            url += "?" + urllib.parse.urlencode(params)
        request = urllib.request.Request(url, data=data, method=method)
        try:
            with _OPENER.open(request, timeout=10) as answer:
                body = answer.read()
        except urllib.error.HTTPError as exc:
            raise PrometheusError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise PrometheusError(f"{method} {path}: {exc}") from None
        if not body:
            return {}
        parsed: JSON = json.loads(body)
        return parsed

    def query(self, promql: str) -> list[JSON]:
        """An instant query's result vector (``[{"metric": {...}, "value": [ts, "v"]}]``)."""
        answer = self._request("GET", "/api/v1/query", {"query": promql})
        if answer.get("status") != "success":
            raise PrometheusError(f"query {promql!r} failed: {answer}")
        result: list[JSON] = answer["data"]["result"]
        return result

    def targets(self) -> list[JSON]:
        """The active scrape targets with their labels and health."""
        answer = self._request("GET", "/api/v1/targets", {"state": "active"})
        targets: list[JSON] = answer["data"]["activeTargets"]
        return targets

    def rules(self) -> list[JSON]:
        """The loaded rule groups with their rules' state (alerts: inactive, pending, firing)."""
        answer = self._request("GET", "/api/v1/rules")
        groups: list[JSON] = answer["data"]["groups"]
        return groups
