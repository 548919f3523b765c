"""The service layer: one idempotent, level-triggered reconcile of one SentimentModel.

Read everything, write everything, every time; never branch on "was this a create or an update". The kopf
handlers only call :meth:`Reconciler.reconcile` and translate its errors; this module has no kopf import, so
it is tested with a fake or an emulated API server alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, get_args

from sentiment_operator import builders, events, kinds, names, rollout, status
from sentiment_operator.analysis import MetricsSource, Verdict, analyse
from sentiment_operator.events import Event, EventReason
from sentiment_operator.kinds import DEPLOYMENT, SENTIMENT_MODEL
from sentiment_operator.kube import (
    Forbidden,
    Invalid,
    JSONObj,
    KindMissing,
    Kube,
    NotOwned,
    Outcome,
    describe,
    is_owned_by,
    kind_of,
)
from sentiment_operator.metrics import MIRROR_TRACK, OperatorMetrics
from sentiment_operator.prometheus import PrometheusClient
from sentiment_operator.spec import InvalidSpecError, RoutingProvider, SentimentModelSpec, parse_spec

logger = logging.getLogger(__name__)

# Optional child kind (a CRD an add-on installs) -> the apiVersion the cluster serves it as (API discovery),
# None where it serves none.
Served = Mapping[str, str | None]
AUTOSCALER_KIND_NAMES: Final = frozenset(kind.kind for kind in kinds.AUTOSCALER_KINDS)


@dataclass
class Result:
    """What one reconcile did."""

    owner: JSONObj  # the SentimentModel as read at the start (for event references)
    status: JSONObj | None = None  # the status patch written, if any
    events: list[Event] = field(default_factory=list)
    applied: dict[str, Outcome] = field(default_factory=dict)  # "Deployment ns/name" -> outcome
    deleted: list[str] = field(default_factory=list)
    invalid: InvalidSpecError | None = None
    not_owned: list[str] = field(default_factory=list)  # children left alone: someone else's object is there
    rollout_decision: rollout.Decision | None = None  # what the rollout decided (status.rollout, Events)


def _now() -> str:
    return status.now_rfc3339()


class Reconciler:
    """Makes the children and status of SentimentModels match their specs. Safe to call at any time."""

    def __init__(
        self,
        kube: Kube,
        *,
        clock: Callable[[], str] = _now,
        cluster_domain: str = names.DEFAULT_CLUSTER_DOMAIN,
        prometheus_url: str | None = None,
        metrics_source: Callable[[str], MetricsSource] = PrometheusClient,
        wall_clock: Callable[[], float] = time.time,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        """``clock`` stamps conditions; ``wall_clock`` (epoch seconds) times rollout steps;
        ``prometheus_url`` is the Prometheus a rollout's analysis queries unless its spec names another,
        through ``metrics_source`` (one per URL, kept)."""
        self.kube = kube
        self.clock = clock
        self.cluster_domain = cluster_domain
        self.prometheus_url = prometheus_url
        self.wall_clock = wall_clock
        self.metrics = metrics or OperatorMetrics()
        self._metrics_source = metrics_source
        self._sources: dict[str, MetricsSource] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def close(self) -> None:
        """Close the Prometheus clients (their HTTP sessions)."""
        for source in self._sources.values():
            closer = getattr(source, "close", None)
            if closer is not None:
                await closer()
        self._sources.clear()

    def lock(self, namespace: str, name: str) -> asyncio.Lock:
        """One reconcile per SentimentModel at a time (handlers, timers and child watches all call in)."""
        return self._locks.setdefault((namespace, name), asyncio.Lock())

    def busy(self, namespace: str, name: str) -> bool:
        return self.lock(namespace, name).locked()

    async def reconcile(
        self, namespace: str, name: str, *, unless: Callable[[], bool] | None = None
    ) -> Result | None:
        """Reconcile one SentimentModel; None if it is gone or being deleted (ownerReferences clean up).

        ``unless`` is checked once the per-object lock is held: a true result skips this reconcile.

        Raises the kube module's typed errors (Transient, Conflict, Forbidden, Invalid) for the caller.
        """
        async with self.lock(namespace, name):
            body = await self._owner(namespace, name, unless)
            if body is None:
                return None
            try:
                result = await self._reconcile(body)
            except Exception:
                self.metrics.reconciles.labels("error").inc()
                raise
            self.metrics.reconciles.labels("invalid" if result.invalid else "ok").inc()
            return result

    async def _owner(self, namespace: str, name: str, unless: Callable[[], bool] | None) -> JSONObj | None:
        """The SentimentModel to work on (lock held), or None: ``unless`` says skip, or it is gone/going."""
        if unless is not None and unless():
            return None
        body = await self.kube.get(SENTIMENT_MODEL, namespace, name)
        if body is None or body.get("metadata", {}).get("deletionTimestamp"):
            self.metrics.forget(namespace, name)
            return None
        return body

    async def _reconcile(self, body: JSONObj) -> Result:
        meta = body.get("metadata", {})
        namespace, name = str(meta["namespace"]), str(meta["name"])
        uid = meta.get("uid")
        generation = meta.get("generation")
        previous: Mapping[str, Any] = body.get("status") or {}
        result = Result(owner=body)

        # One discovery per reconcile: the add-ons' kinds the cluster serves (routes, KEDA, the Prometheus
        # operator) decide the build, the apply and the prune alike.
        served: Served = {}
        keda = False
        try:
            spec = parse_spec(name, body.get("spec"))
            self._check_settings(spec)
            served = await self._served()
            keda = _keda(spec, served)
            builders.check_cluster(spec, served=_providers(served), keda=keda)
        except InvalidSpecError as error:
            await self._invalid(result, error, generation, previous)
            return result

        # The managed Redis password Secret comes first: the pod templates carry its uid.
        auth_version: str | None = None
        secret = builders.redis_auth_secret(name, namespace, spec, uid)
        if secret is not None:
            outcome, auth_version = await self.kube.ensure_secret(secret, builders.redis_auth_data)
            result.applied[describe(secret)] = outcome
        result.rollout_decision = await self._rollout(body, spec)
        children = builders.build_children(
            name,
            namespace,
            spec,
            uid=uid,
            redis_auth_version=auth_version,
            cluster_domain=self.cluster_domain,
            served=_providers(served),
            keda=keda,
            release=self._release(name, spec, result.rollout_decision),
        )

        # One autoscaler per Deployment: the kind no longer wanted goes before its replacement is applied.
        leaving = await self._clear_autoscalers(namespace, name, uid, children, result)
        live: dict[tuple[str, str], JSONObj] = {}  # (kind, name) -> the child as the API server returned it
        for desired in children.objects():
            if desired["kind"] == "Secret":
                continue  # handled above; never patched
            if leaving is not None and desired["kind"] in AUTOSCALER_KIND_NAMES:
                continue  # the other kind is still being deleted; its deletion event reconciles again
            if kinds.child_kind(desired["kind"]).optional:
                version = served.get(desired["kind"])
                if version is None:
                    continue  # the cluster does not serve the kind (the Prometheus operator missing)
                desired = {**desired, "apiVersion": version}
            try:
                applied = await self.kube.create_or_update(desired)
            except NotOwned as clash:
                result.not_owned.append(str(clash))
                continue  # nothing was written: neither an outcome nor a live object of ours to report
            except (Forbidden, Invalid) as refused:
                # Retrying the same request will not help: say so in status before the caller reports it.
                failed = status.failed_status(
                    message=f"{describe(desired)} was refused: {refused}",
                    generation=generation,
                    previous=previous,
                    now=self.clock(),
                )
                await self._write_status(namespace, name, previous, failed, result)
                raise
            result.applied[describe(desired)] = applied.outcome
            live[desired["kind"], desired["metadata"]["name"]] = applied.live

        await self._prune(namespace, name, uid, children, result, served)

        # Status from what the writes returned; an object we did not write (someone else's) is read.
        observed = await self._observe(namespace, name, spec, children, served, live, keda=keda)
        if leaving is not None:
            observed = dataclasses.replace(observed, autoscaler_leaving=leaving)
        await self._report(result, spec, generation, observed)
        if result.rollout_decision.action_done:
            await self._consume_action(namespace, name)
        return result

    async def _invalid(
        self, result: Result, error: InvalidSpecError, generation: int | None, previous: Mapping[str, Any]
    ) -> None:
        """Report a spec that cannot be carried out: Ready=False/InvalidSpec, one Warning Event."""
        meta = result.owner.get("metadata", {})
        namespace, name = str(meta["namespace"]), str(meta["name"])
        result.invalid = error
        new_status = status.invalid_status(
            error=error, generation=generation, previous=previous, now=self.clock()
        )
        result.events += events.invalid_spec_events(previous, f"{error.field}: {error.message}")
        self.metrics.ready.labels(namespace, name).set(0)
        await self._write_status(namespace, name, previous, new_status, result)

    def _check_settings(self, spec: SentimentModelSpec) -> None:
        """What only the operator's own settings can decide about a spec."""
        if spec.rollout.canary and not (spec.rollout.analysis.prometheus_url or self.prometheus_url):
            raise InvalidSpecError(
                "spec.rollout.analysis.prometheusURL",
                "strategy Canary analyses every step in Prometheus: set its URL here, or start the operator "
                "with --prometheus-url",
            )

    async def _rollout(self, body: JSONObj, spec: SentimentModelSpec) -> rollout.Decision:
        """The canary rollout's next state (strategy Canary): from the state in status, the spec's pod
        template revision, the live Deployments, the action annotation and, when a step is due, its analysis
        in Prometheus."""
        meta = body.get("metadata", {})
        namespace, name = str(meta["namespace"]), str(meta["name"])
        raw_spec = dict(body.get("spec") or {})
        previous = rollout.State.from_status((body.get("status") or {}).get("rollout"))
        action = (meta.get("annotations") or {}).get(names.ANNOTATION_ROLLOUT_ACTION)
        if not spec.rollout.canary:
            decision = rollout.advance(
                None, spec=spec.rollout, raw_spec=raw_spec, revision="", now=0, observed=rollout.Observed()
            )
            if action is not None:
                decision.events.append(
                    Event(
                        "Normal",
                        EventReason.ROLLOUT_ACTION_IGNORED,
                        f"no rollout to {action}: spec.rollout.strategy is Immediate",
                    )
                )
            return decision
        inputs: dict[str, Any] = {
            "spec": spec.rollout,
            "raw_spec": raw_spec,
            "revision": builders.template_revision(name, namespace, spec),
            "now": self.wall_clock(),
            "observed": await self._rollout_observed(namespace, name),
            "action": action,
        }
        decision = rollout.advance(previous, **inputs)
        if rollout.wants_analysis(decision.state, spec.rollout, inputs["now"]):
            url = spec.rollout.analysis.prometheus_url or self.prometheus_url
            assert url is not None  # _check_settings
            if url not in self._sources:
                self._sources[url] = self._metrics_source(url)
            window = spec.rollout.interval_seconds
            result = await analyse(self._sources[url], namespace, name, spec.rollout.analysis, window)
            self.metrics.analyses.labels(namespace, name, result.verdict.value).inc()
            decision = rollout.advance(previous, **inputs, analysis=result)
        if decision.outcome is not None:
            self.metrics.rollouts.labels(namespace, name, decision.outcome).inc()
        for event in decision.events:
            logger.info(
                "Rollout of SentimentModel %s/%s: %s: %s", namespace, name, event.reason, event.message
            )
        return decision

    async def _rollout_observed(self, namespace: str, name: str) -> rollout.Observed:
        """The revision each inference Deployment runs everywhere, available (as the last apply left them)."""
        stable = await self.kube.get(DEPLOYMENT, namespace, name)
        canary = await self.kube.get(DEPLOYMENT, namespace, names.canary_name(name))
        return rollout.Observed(
            canary=status.rolled_out_revision(canary), stable=status.rolled_out_revision(stable)
        )

    def _release(
        self, name: str, spec: SentimentModelSpec, decision: rollout.Decision
    ) -> builders.Release | None:
        """The builders' view of the rollout: the stable's template spec, the canary, the split."""
        if decision.state is None:
            return None
        stable_spec = spec
        if decision.stable_spec is not None:
            try:
                stable_spec = parse_spec(name, decision.stable_spec)
            except InvalidSpecError as error:
                # A spec this operator version no longer accepts cannot be rendered: the stable takes the
                # current one (as strategy Immediate would).
                logger.warning("The stable spec of SentimentModel %s cannot be rendered: %s", name, error)
        return builders.Release(stable_spec=stable_spec, canary=decision.canary, split=decision.split)

    async def _consume_action(self, namespace: str, name: str) -> None:
        """Remove the rollout-action annotation once its command was carried out (or refused): a command
        runs once. Its Event and the status saying what it did were written before."""
        patch = {"metadata": {"annotations": {names.ANNOTATION_ROLLOUT_ACTION: None}}}
        await self.kube.patch(SENTIMENT_MODEL, namespace, name, patch)

    def seconds_until_due(self, body: Mapping[str, Any]) -> float | None:
        """When the SentimentModel's rollout next needs a decision that only time brings (a step's analysis,
        the canary's deadline), from the body kopf holds; None when none is pending."""
        meta = body.get("metadata") or {}
        try:
            spec = parse_spec(str(meta.get("name")), body.get("spec"))
        except InvalidSpecError:
            return None
        if not spec.rollout.canary:
            return None
        state = rollout.State.from_status((body.get("status") or {}).get("rollout"))
        return rollout.seconds_until_due(state, spec.rollout, self.wall_clock())

    async def refresh_status(
        self, namespace: str, name: str, *, unless: Callable[[], bool] | None = None
    ) -> Result | None:
        """Recompute the SentimentModel's status after only a child's status changed: read the children
        status is made of and write the status, without applying or pruning any child.

        A full reconcile runs instead when the last one did not end with the spec carried out (no status
        yet, a new generation, an invalid spec, a child in the way, a refused write): those need more than
        the children's status to resolve. ``unless`` as for :meth:`reconcile`.
        """
        async with self.lock(namespace, name):
            body = await self._owner(namespace, name, unless)
            if body is None:
                return None
            meta = body.get("metadata", {})
            previous: Mapping[str, Any] = body.get("status") or {}
            ready = status.ready_of(previous)
            if (
                ready is None
                or ready.get("reason") in status.UNRESOLVED_REASONS
                or previous.get("observedGeneration") != meta.get("generation")
                # A canary coming up or a promotion rolling out: the Deployments' progress moves the rollout.
                or (previous.get("rollout") or {}).get("phase") in rollout.WAITING_ON_DEPLOYMENTS
            ):
                return await self._reconcile(body)
            try:
                spec = parse_spec(name, body.get("spec"))
                state = rollout.State.from_status(previous.get("rollout")) if spec.rollout.canary else None
                # Only what this spec's status depends on: its route kinds and KEDA's ScaledObject.
                served = await self._served(_status_kinds(spec))
                keda = _keda(spec, served)
                children = builders.build_children(
                    name,
                    namespace,
                    spec,
                    uid=meta.get("uid"),
                    cluster_domain=self.cluster_domain,
                    served=_providers(served),
                    keda=keda,
                    release=builders.Release(canary=rollout.canary_mode(state))
                    if state is not None
                    else None,
                )
            except InvalidSpecError:
                return await self._reconcile(body)
            result = Result(owner=body)
            observed = await self._observe(namespace, name, spec, children, served, {}, keda=keda)
            await self._report(result, spec, meta.get("generation"), observed, keep_rollout=True)
            return result

    async def _report(
        self,
        result: Result,
        spec: SentimentModelSpec,
        generation: int | None,
        observed: status.Observed,
        *,
        keep_rollout: bool = False,
    ) -> None:
        """Compute the status of a valid spec from what was observed, decide its Events, write it.
        ``keep_rollout``: status.rollout stays as the last reconcile wrote it (a status refresh)."""
        meta = result.owner.get("metadata", {})
        namespace, name = str(meta["namespace"]), str(meta["name"])
        previous: Mapping[str, Any] = result.owner.get("status") or {}
        rollout_status: Mapping[str, Any] | None = None
        if keep_rollout:
            rollout_status = previous.get("rollout") if spec.rollout.canary else None
        elif result.rollout_decision is not None and result.rollout_decision.state is not None:
            rollout_status = result.rollout_decision.state.to_status(spec.rollout)
        new_status = status.compute_status(
            name=name,
            url=builders.inference_url(name, namespace, spec, self.cluster_domain),
            generation=generation,
            spec=spec,
            observed=observed,
            previous=previous,
            now=self.clock(),
            not_owned=result.not_owned,
            rollout=rollout_status,
        )
        result.events += events.change_events(
            applied=result.applied,
            deleted=result.deleted,
            previous=previous,
            new_status=new_status,
            routing_enabled=spec.routing.enabled,
        )
        if result.rollout_decision is not None:
            result.events += result.rollout_decision.events
        ready = status.ready_of(new_status)
        weights = (rollout_status or {}) if spec.rollout.canary else {}
        self.metrics.model(
            namespace,
            name,
            ready=ready is not None and ready.get("status") == "True",
            weights={
                names.TRACK_STABLE: int(weights.get("stableWeight", 100)),
                names.TRACK_CANARY: int(weights.get("canaryWeight", 0)),
                MIRROR_TRACK: int(weights.get("mirrorWeight", 0)),
            },
            outcomes=get_args(rollout.Outcome),
            verdicts=tuple(Verdict),
        )
        await self._write_status(namespace, name, previous, new_status, result)

    async def _observe(
        self,
        namespace: str,
        name: str,
        spec: SentimentModelSpec,
        children: builders.Children,
        served: Served,
        live: Mapping[tuple[str, str], JSONObj],
        *,
        keda: bool,
    ) -> status.Observed:
        """The children status is computed from: taken from ``live`` (kind, name) where given, else read;
        for an HPA on a load metric, whether the custom metrics API serves that metric (discovery)."""

        async def child(wanted: JSONObj | None) -> JSONObj | None:
            if wanted is None:
                return None
            key = (str(wanted["kind"]), str(wanted["metadata"]["name"]))
            if key in live:
                return live[key]
            return await self._get(str(wanted["apiVersion"]), key[0], namespace, key[1])

        route = children.route
        routing: status.RoutingState = "disabled"
        if spec.routing.enabled:
            routing = "not-served" if route is None else "applied"
        metric_served: bool | None = None
        if children.hpa is not None and spec.autoscaling.load_metric:
            metric_served = False
            for kind in kinds.pods_metric(spec.autoscaling.load_series):
                metric_served = metric_served or await self.kube.serves(kind)
        return status.Observed(
            inference=await child(children.deployment),
            canary=await child(children.canary_deployment),
            redis=await child(children.redis_deployment),
            hpa=await child(children.hpa),
            scaled_object=await child(children.scaled_object),
            keda=keda,
            routing=routing,
            routing_provider=children.routing_provider,
            route=None if route is None else _ours(await child(_served_as(route, served)), route),
            metric_served=metric_served,
        )

    async def _clear_autoscalers(
        self, namespace: str, name: str, uid: str | None, children: builders.Children, result: Result
    ) -> str | None:
        """Delete our autoscalers (HPA, ScaledObject) the spec no longer wants, before the wanted one is
        applied: KEDA's admission webhook refuses a ScaledObject whose Deployment has an HPA, and two
        autoscalers would fight over one Deployment. Returns the first one still there after its deletion
        (a finalizer, e.g. KEDA's, holds it): the wanted one must wait until it is gone."""
        wanted = children.keys()
        leaving: str | None = None
        for kind in kinds.AUTOSCALER_KINDS:
            try:
                candidates = await self.kube.list(kind, namespace, names.instance_selector(name))
            except KindMissing:
                continue  # the kind is not served: nothing of it can exist
            for obj in candidates:
                meta = obj.get("metadata", {})
                obj_name = str(meta.get("name"))
                if (kind.api_version, kind.kind, obj_name) in wanted or not is_owned_by(obj, uid):
                    continue
                what = f"{kind.kind} {namespace}/{obj_name}"
                if not meta.get("deletionTimestamp") and await self.kube.delete(kind, namespace, obj_name):
                    logger.info("Deleted %s", what)
                    result.deleted.append(what)
                if leaving is None and await self.kube.get(kind, namespace, obj_name) is not None:
                    leaving = what
        return leaving

    async def _served(self, only: Collection[kinds.Kind] | None = None) -> dict[str, str | None]:
        """Per optional child kind (ScaledObject, ServiceMonitor, VirtualService, HTTPRoute), or only those
        in ``only``, the newest apiVersion the cluster serves (discovery), or None where its add-on is not
        installed."""
        served: dict[str, str | None] = {}
        for child in kinds.CHILD_KINDS:
            if child.optional and (only is None or child.kind in only):
                served[child.kind.kind] = None
                for kind in child.versions:
                    if await self.kube.serves(kind):
                        served[child.kind.kind] = kind.api_version
                        break
        return served

    async def _get(self, api_version: str, kind: str, namespace: str, name: str) -> JSONObj | None:
        return await self.kube.get(kind_of(api_version, kind), namespace, name)

    async def _prune(
        self,
        namespace: str,
        name: str,
        uid: str | None,
        children: builders.Children,
        result: Result,
        served: Mapping[str, str | None],
    ) -> None:
        """Delete objects with our labels and ownerReference that the spec no longer wants, the route of a
        provider no longer chosen included (``served``: the version of each optional kind the cluster serves,
        None where it serves none). Autoscalers are cleared before the apply (:meth:`_clear_autoscalers`)."""
        wanted = children.keys()
        selector = names.instance_selector(name)
        for child in kinds.CHILD_KINDS:
            kind = child.kind
            api_version, kind_name = kind.api_version, kind.kind
            if kind in kinds.AUTOSCALER_KINDS:
                continue  # cleared before the apply (_clear_autoscalers)
            candidates: list[JSONObj] = []
            if not child.watched:
                for obj_name in (named(name) for named in child.named):
                    if (api_version, kind_name, obj_name) not in wanted:
                        live = await self.kube.get(kind, namespace, obj_name)
                        candidates += [live] if live is not None else []
            else:
                if child.optional:
                    version = served.get(kind_name)
                    if version is None:
                        continue  # its add-on is not installed: nothing of that kind can exist
                    kind = kind_of(version, kind_name)
                try:
                    candidates = await self.kube.list(kind, namespace, selector)
                except KindMissing:
                    continue  # the kind is not served: nothing of it can exist
            for obj in candidates:
                obj_name = obj.get("metadata", {}).get("name")
                if (api_version, kind_name, obj_name) in wanted or not is_owned_by(obj, uid):
                    continue
                if await self.kube.delete(kind, namespace, str(obj_name)):
                    logger.info("Deleted %s %s/%s", kind_name, namespace, obj_name)
                    result.deleted.append(f"{kind_name} {namespace}/{obj_name}")

    async def _write_status(
        self,
        namespace: str,
        name: str,
        previous: Mapping[str, Any],
        new_status: JSONObj,
        result: Result,
    ) -> None:
        if not status.status_changed(previous, new_status):
            return
        patch = {"status": status.merge_patch(previous, new_status)}
        await self.kube.patch(SENTIMENT_MODEL, namespace, name, patch, subresource="status")
        result.status = new_status


def _providers(served: Served) -> set[RoutingProvider]:
    """The routing providers whose route kind the cluster serves."""
    return {provider for provider, kind in builders.ROUTE_KINDS.items() if served.get(kind.kind)}


def _keda(spec: SentimentModelSpec, served: Served) -> bool:
    """Whether KEDA scales this model: it scales on a load metric and the cluster serves the ScaledObject."""
    load = spec.autoscaling.enabled and spec.autoscaling.load_metric
    return bool(load and served.get(kinds.SCALED_OBJECT.kind))


def _status_kinds(spec: SentimentModelSpec) -> set[kinds.Kind]:
    """The optional kinds the status of ``spec`` depends on: the route's, and KEDA's for a load metric."""
    wanted: set[kinds.Kind] = set(builders.ROUTE_KINDS.values()) if spec.routing.enabled else set()
    if spec.autoscaling.enabled and spec.autoscaling.load_metric:
        wanted.add(kinds.SCALED_OBJECT)
    return wanted


def _served_as(route: JSONObj, served: Served) -> JSONObj:
    """The route as the apiVersion the cluster serves its kind as (the builders render the newest)."""
    return {**route, "apiVersion": served[str(route["kind"])] or route["apiVersion"]}


def _ours(live: JSONObj | None, desired: JSONObj) -> JSONObj | None:
    """``live`` if it is the object we render ``desired`` as (our labels and owner), else None: the status of
    someone else's object with our child's name says nothing about ours."""
    owners = [ref.get("uid") for ref in desired["metadata"].get("ownerReferences") or []]
    return live if live is not None and is_owned_by(live, owners[0] if owners else None) else None
