"""Thin kopf handlers: every trigger runs the same level-triggered reconcile.

create / update / resume of a SentimentModel, a periodic timer, and any change of a child we own (found by
our labels) all end in :meth:`Reconciler.reconcile`. Handlers return nothing (no handler results in status);
errors become kopf's TemporaryError (retried with backoff) or PermanentError (the timer retries later), each
with a Warning Event. kopf's own bookkeeping lives under the serving.sentiment.dev domain.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, cast

import kopf

from sentiment_operator import kinds
from sentiment_operator import kube as kube_mod
from sentiment_operator.events import EventReason
from sentiment_operator.kube import Kube, KubeError
from sentiment_operator.metrics import OperatorMetrics
from sentiment_operator.names import (
    CHILD_SELECTOR,
    DEFAULT_CLUSTER_DOMAIN,
    GROUP,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    PLURAL,
    VERSION,
)
from sentiment_operator.reconciler import Reconciler, Result
from sentiment_operator.spec import CANARY_STRATEGY

logger = logging.getLogger(__name__)

DOMAIN: Final = GROUP  # kopf's annotations and finalizer live under our API group
FINALIZER: Final = f"{DOMAIN}/finalizer"
HANDLER_ID: Final = "reconcile"


def default_kube() -> Kube:
    """A client from the in-cluster service account or the current kubeconfig context."""
    return Kube(kube_mod.load_configuration())


@dataclass
class OperatorConfig:
    """Knobs of the operator's runtime (the tests shorten the intervals)."""

    kube_factory: Callable[[], Kube] = field(default_factory=lambda: default_kube)
    timer_interval: float = 60.0  # level-triggered safety net: drift nobody told us about
    timer_initial_delay: float = 30.0
    retry_base: float = 2.0  # TemporaryError delay = base * 2**retry, capped
    retry_max: float = 120.0
    child_debounce: float = 0.2  # coalesce bursts of child events into one reconcile
    watch_server_timeout: float = 290.0  # re-list at least every ~5 minutes
    request_timeout: float = 60.0
    reporting_instance: str = field(default_factory=socket.gethostname)
    cluster_domain: str = (
        DEFAULT_CLUSTER_DOMAIN  # the cluster's DNS domain, for fully qualified Service hosts
    )
    prometheus_url: str | None = None  # what rollouts query unless their spec names another Prometheus
    rollout_poll: float = 1.0  # how often the rollout clock looks at a model's (in-memory) state
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    # Last word on kopf's settings (e.g. tests shorten kopf's worker exit timeouts).
    settings_hook: Callable[[kopf.OperatorSettings], None] | None = None


def retry_delay(config: OperatorConfig, retry: int) -> float:
    """Exponential backoff for TemporaryError retries."""
    return float(min(config.retry_max, config.retry_base * (2 ** min(retry, 16))))


class Runtime:
    """What the handlers share (kept in kopf's memo): the reconciler and the child-event coalescer."""

    def __init__(self, reconciler: Reconciler, config: OperatorConfig) -> None:
        self.reconciler = reconciler
        self.config = config
        # Owners with a reconcile scheduled -> whether every child event since touched only a status.
        self._pending: dict[tuple[str, str], bool] = {}
        # Owners whose kopf handler is waiting to retry: child events must not bypass that backoff.
        self._backoff_until: dict[tuple[str, str], float] = {}

    def backing_off(self, namespace: str, name: str) -> bool:
        until = self._backoff_until.get((namespace, name))
        return until is not None and time.monotonic() < until

    def set_backoff(self, namespace: str, name: str, delay: float | None) -> None:
        if delay is None:
            self._backoff_until.pop((namespace, name), None)
        else:
            self._backoff_until[namespace, name] = time.monotonic() + delay

    async def child_changed(self, namespace: str, name: str, *, status_only: bool = False) -> None:
        """Reconcile an owner after a child changed; a burst of child events results in one reconcile.

        ``status_only``: the child is as our last apply left it apart from its status (a rollout's progress,
        the HPA's metrics); if every event of the burst is such, only the owner's status is recomputed.
        Awaited inside kopf's event handler (kopf owns and cancels the task); no free-floating tasks.
        """
        key = (namespace, name)
        if key in self._pending:
            self._pending[key] = self._pending[key] and status_only
            return  # a reconcile that will see this change is already scheduled
        self._pending[key] = status_only
        try:
            await asyncio.sleep(self.config.child_debounce)
        finally:
            status_only = self._pending.pop(key, False)
        # Checked under the owner's lock: a handler may have failed while we waited for it, and kopf's retry
        # of that handler (with its backoff) is what converges then.
        unless = lambda: self.backing_off(namespace, name)  # noqa: E731
        try:
            if status_only:
                result = await self.reconciler.refresh_status(namespace, name, unless=unless)
            else:
                result = await self.reconciler.reconcile(namespace, name, unless=unless)
        except KubeError as exc:
            # The timer and kopf's retries of the owner's handlers converge later.
            logger.warning(
                "Reconcile of SentimentModel %s/%s after a child change failed: %s", namespace, name, exc
            )
            return
        if result is not None:
            post_events(result)

    async def timed_reconcile(self, namespace: str, name: str) -> None:
        """A reconcile the rollout clock asks for; errors wait for the next tick (or kopf's retries)."""
        try:
            result = await self.reconciler.reconcile(
                namespace, name, unless=lambda: self.backing_off(namespace, name)
            )
        except KubeError as exc:
            logger.warning("Rollout step of SentimentModel %s/%s failed: %s", namespace, name, exc)
            return
        if result is not None:
            post_events(result)

    def close(self) -> None:
        self.reconciler.kube.close()


def post_events(result: Result) -> None:
    for event in result.events:
        kopf.event(
            kopf.Body(cast("kopf.RawBody", result.owner)),
            type=event.type,
            reason=event.reason,
            message=event.message,
        )


def connection_info(configuration: Any) -> kopf.ConnectionInfo:
    """kopf's credentials from the same client configuration the reconciler uses (one source of truth)."""
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    parts = header.split(" ", 1) if header else []
    scheme, token = (
        (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    )
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


def configure_settings(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=DOMAIN)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=DOMAIN)
    settings.posting.reporting_component = "sentiment-operator"
    settings.posting.reporting_instance = config.reporting_instance
    settings.posting.event_name_prefix = "sentiment-operator-"
    settings.posting.loggers = False  # only our explicit kopf.event() calls become Events
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = config.watch_server_timeout
    settings.watching.client_timeout = config.watch_server_timeout + 30
    settings.watching.connect_timeout = 30
    settings.watching.reconnect_backoff = 1.0
    settings.networking.request_timeout = config.request_timeout
    settings.networking.connect_timeout = 30
    # The children's lists and watches are filtered by the API server: the operator never receives (nor holds
    # in memory) the cluster's other Deployments, Services, HPAs, PDBs and NetworkPolicies.
    for group, version, plural in kinds.watched_resources():
        settings.watching.label_selectors[group, version, plural] = CHILD_SELECTOR
    if config.settings_hook is not None:
        config.settings_hook(settings)


def _runtime(memo: Any) -> Runtime:
    runtime: Runtime = memo.sentiment_runtime
    return runtime


def register(registry: kopf.OperatorRegistry, config: OperatorConfig | None = None) -> None:
    """Register every handler on ``registry`` (a fresh registry per operator; tests run several)."""
    cfg = config or OperatorConfig()
    resource = (GROUP, VERSION, PLURAL)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
        configure_settings(settings, cfg)
        kube = cfg.kube_factory()
        kube.on_request = lambda method, code: cfg.metrics.api_requests.labels(method, str(code)).inc()
        reconciler = Reconciler(
            kube, cluster_domain=cfg.cluster_domain, prometheus_url=cfg.prometheus_url, metrics=cfg.metrics
        )
        memo.sentiment_runtime = Runtime(reconciler, cfg)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: Any, **_: Any) -> None:
        runtime = getattr(memo, "sentiment_runtime", None)
        if runtime is not None:
            await runtime.reconciler.close()
            runtime.close()

    @kopf.on.login(registry=registry)
    def login(memo: Any, **_: Any) -> kopf.ConnectionInfo:
        return connection_info(_runtime(memo).reconciler.kube.configuration)

    @kopf.on.resume(*resource, id=HANDLER_ID, registry=registry)
    @kopf.on.create(*resource, id=HANDLER_ID, registry=registry)
    @kopf.on.update(*resource, id=HANDLER_ID, registry=registry)
    async def reconcile(body: kopf.Body, name: str, namespace: str | None, memo: Any, **kwargs: Any) -> None:
        await _reconcile_or_raise(_runtime(memo), body, namespace or "", name, int(kwargs.get("retry") or 0))

    @kopf.on.timer(
        *resource,
        id="resync",
        interval=cfg.timer_interval,
        initial_delay=cfg.timer_initial_delay,
        registry=registry,
    )
    async def resync(body: kopf.Body, name: str, namespace: str | None, memo: Any, **kwargs: Any) -> None:
        await _reconcile_or_raise(_runtime(memo), body, namespace or "", name, int(kwargs.get("retry") or 0))

    def _canary(spec: kopf.Spec, **_: Any) -> bool:
        rollout = spec.get("rollout") or {}
        return bool(rollout.get("strategy") == CANARY_STRATEGY)

    # Only SentimentModels with strategy Canary have a clock (kopf starts and stops it as the spec changes).
    @kopf.daemon(*resource, id="rollout-clock", when=_canary, cancellation_timeout=5.0, registry=registry)
    async def rollout_clock(
        stopped: kopf.DaemonStopped, body: kopf.Body, name: str, namespace: str | None, memo: Any, **_: Any
    ) -> None:
        """A canary rollout's clock: reconcile when a step's analysis (or the canary's deadline) is due.
        Its state is in status (kopf keeps ``body`` current): a restart or a peering hand-over resumes it."""
        runtime = _runtime(memo)
        while not stopped:
            due = runtime.reconciler.seconds_until_due(body)
            if due is not None and due <= 0:
                await runtime.timed_reconcile(namespace or "", name)
                # The status this reconcile wrote reaches ``body`` through the watch a moment later.
                await stopped.wait(cfg.rollout_poll)
            else:
                await stopped.wait(cfg.rollout_poll if due is None else min(due, cfg.rollout_poll))

    def _owned(labels: kopf.Labels, **_: Any) -> bool:
        return labels.get(LABEL_MANAGED_BY) == MANAGED_BY and bool(labels.get(LABEL_INSTANCE))

    # Children whose changes (deleted, hand-edited, readiness) trigger a reconcile of their owner.
    for group, version, plural in kinds.watched_resources():

        @kopf.on.event(group, version, plural, id=f"owner-of-{plural}", when=_owned, registry=registry)
        async def child_changed(
            body: kopf.Body, type: str | None, labels: kopf.Labels, namespace: str | None, memo: Any, **_: Any
        ) -> None:
            owner = labels.get(LABEL_INSTANCE)
            if namespace and owner:
                runtime = _runtime(memo)
                # Our own creates come back as ADDED, the controllers' status writes as MODIFIED: if the
                # object is still what we applied, only the owner's status needs recomputing. Anything else
                # (a restart's initial listing, a deletion, someone's edit) gets a full reconcile.
                status_only = type in ("ADDED", "MODIFIED") and runtime.reconciler.kube.only_status_changed(
                    dict(body)
                )
                await runtime.child_changed(namespace, owner, status_only=status_only)


async def _reconcile_or_raise(
    runtime: Runtime, body: kopf.Body, namespace: str, name: str, retry: int
) -> None:
    try:
        result = await runtime.reconciler.reconcile(namespace, name)
    except (kube_mod.Transient, kube_mod.Conflict) as exc:
        delay = retry_delay(runtime.config, retry)
        runtime.set_backoff(namespace, name, delay)
        kopf.warn(body, reason=EventReason.RECONCILE_RETRYING, message=f"{exc}; retrying in {delay:.0f}s")
        raise kopf.TemporaryError(str(exc), delay=delay) from None
    except KubeError as exc:
        runtime.set_backoff(namespace, name, None)
        kopf.warn(body, reason=EventReason.RECONCILE_FAILED, message=str(exc))
        raise kopf.PermanentError(str(exc)) from None
    runtime.set_backoff(namespace, name, None)
    if result is not None:
        post_events(result)
