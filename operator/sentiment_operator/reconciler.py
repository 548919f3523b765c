"""The service layer: one idempotent, level-triggered reconcile of one SentimentModel.

Read everything, write everything, every time; never branch on "was this a create or an update". The kopf
handlers only call :meth:`Reconciler.reconcile` and translate its errors; this module has no kopf import, so
it is tested with a fake or an emulated API server alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sentiment_operator import builders, events, kinds, names, status
from sentiment_operator.events import Event
from sentiment_operator.kinds import SENTIMENT_MODEL
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
from sentiment_operator.spec import InvalidSpecError, RoutingProvider, SentimentModelSpec, parse_spec

logger = logging.getLogger(__name__)

# The kinds a route is written as, one per provider.
ROUTE_KIND_NAMES: Final = frozenset(kind.kind for kind in builders.ROUTE_KINDS.values())
# Route kind -> the apiVersion the cluster serves it as (API discovery); a kind not served is absent.
RouteVersions = Mapping[str, str]
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
    ) -> None:
        self.kube = kube
        self.clock = clock
        self.cluster_domain = cluster_domain
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

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
            return None if body is None else await self._reconcile(body)

    async def _owner(self, namespace: str, name: str, unless: Callable[[], bool] | None) -> JSONObj | None:
        """The SentimentModel to work on (lock held), or None: ``unless`` says skip, or it is gone/going."""
        if unless is not None and unless():
            return None
        body = await self.kube.get(SENTIMENT_MODEL, namespace, name)
        if body is None or body.get("metadata", {}).get("deletionTimestamp"):
            return None
        return body

    async def _reconcile(self, body: JSONObj) -> Result:
        meta = body.get("metadata", {})
        namespace, name = str(meta["namespace"]), str(meta["name"])
        uid = meta.get("uid")
        generation = meta.get("generation")
        previous: Mapping[str, Any] = body.get("status") or {}
        result = Result(owner=body)

        # One discovery per reconcile: the route's provider, its apply and the prune use the same answer.
        route_versions: RouteVersions = {}
        keda = False
        try:
            spec = parse_spec(name, body.get("spec"))
            route_versions = await self._route_versions()
            keda = await self._serves_keda(spec)
            builders.check_cluster(spec, served=_providers(route_versions), keda=keda)
        except InvalidSpecError as error:
            await self._invalid(result, error, generation, previous)
            return result

        # The managed Redis password Secret comes first: the pod templates carry its uid.
        auth_version: str | None = None
        secret = builders.redis_auth_secret(name, namespace, spec, uid)
        if secret is not None:
            outcome, auth_version = await self.kube.ensure_secret(secret, builders.redis_auth_data)
            result.applied[describe(secret)] = outcome
        children = builders.build_children(
            name,
            namespace,
            spec,
            uid=uid,
            redis_auth_version=auth_version,
            cluster_domain=self.cluster_domain,
            served=_providers(route_versions),
            keda=keda,
        )

        # One autoscaler per Deployment: the kind no longer wanted goes before its replacement is applied.
        leaving = await self._clear_autoscalers(namespace, name, uid, children, result)
        live: dict[tuple[str, str], JSONObj] = {}  # (kind, name) -> the child as the API server returned it
        for desired in children.objects():
            if desired["kind"] == "Secret":
                continue  # handled above; never patched
            if leaving is not None and desired["kind"] in AUTOSCALER_KIND_NAMES:
                continue  # the other kind is still being deleted; its deletion event reconciles again
            if desired["kind"] in ROUTE_KIND_NAMES:
                desired = _served_as(desired, route_versions)
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

        await self._prune(namespace, name, uid, children, result, route_versions)

        # Status from what the writes returned; an object we did not write (someone else's) is read.
        observed = await self._observe(namespace, name, spec, children, route_versions, live, keda=keda)
        if leaving is not None:
            observed = dataclasses.replace(observed, autoscaler_leaving=leaving)
        await self._report(result, spec, generation, observed)
        return result

    async def _invalid(
        self, result: Result, error: InvalidSpecError, generation: int | None, previous: Mapping[str, Any]
    ) -> None:
        """Report a spec that cannot be carried out: Ready=False/InvalidSpec, one Warning Event."""
        meta = result.owner.get("metadata", {})
        result.invalid = error
        new_status = status.invalid_status(
            error=error, generation=generation, previous=previous, now=self.clock()
        )
        result.events += events.invalid_spec_events(previous, f"{error.field}: {error.message}")
        await self._write_status(str(meta["namespace"]), str(meta["name"]), previous, new_status, result)

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
            ):
                return await self._reconcile(body)
            try:
                spec = parse_spec(name, body.get("spec"))
                route_versions = await self._route_versions() if spec.routing.enabled else {}
                keda = await self._serves_keda(spec)
                children = builders.build_children(
                    name,
                    namespace,
                    spec,
                    uid=meta.get("uid"),
                    cluster_domain=self.cluster_domain,
                    served=_providers(route_versions),
                    keda=keda,
                )
            except InvalidSpecError:
                return await self._reconcile(body)
            result = Result(owner=body)
            observed = await self._observe(namespace, name, spec, children, route_versions, {}, keda=keda)
            await self._report(result, spec, meta.get("generation"), observed)
            return result

    async def _report(
        self, result: Result, spec: SentimentModelSpec, generation: int | None, observed: status.Observed
    ) -> None:
        """Compute the status of a valid spec from what was observed, decide its Events, write it."""
        meta = result.owner.get("metadata", {})
        namespace, name = str(meta["namespace"]), str(meta["name"])
        previous: Mapping[str, Any] = result.owner.get("status") or {}
        new_status = status.compute_status(
            name=name,
            url=builders.inference_url(name, namespace, spec, self.cluster_domain),
            generation=generation,
            spec=spec,
            observed=observed,
            previous=previous,
            now=self.clock(),
            not_owned=result.not_owned,
        )
        result.events += events.change_events(
            applied=result.applied,
            deleted=result.deleted,
            previous=previous,
            new_status=new_status,
            routing_enabled=spec.routing.enabled,
        )
        await self._write_status(namespace, name, previous, new_status, result)

    async def _observe(
        self,
        namespace: str,
        name: str,
        spec: SentimentModelSpec,
        children: builders.Children,
        route_versions: RouteVersions,
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
            route=None if route is None else _ours(await child(_served_as(route, route_versions)), route),
            metric_served=metric_served,
        )

    async def _serves_keda(self, spec: SentimentModelSpec) -> bool:
        """Whether KEDA's ScaledObject is served (discovery), asked only when the spec scales on load."""
        if not (spec.autoscaling.enabled and spec.autoscaling.load_metric):
            return False
        return await self.kube.serves(kinds.SCALED_OBJECT)

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

    async def _route_versions(self) -> RouteVersions:
        """For each route kind the cluster serves (discovery), the newest apiVersion it serves it as."""
        served: dict[str, str] = {}
        for kind in builders.ROUTE_KINDS.values():
            for version in kinds.child_kind(kind.kind).versions:
                if await self.kube.serves(version):
                    served[kind.kind] = version.api_version
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
        route_versions: RouteVersions,
    ) -> None:
        """Delete objects with our labels and ownerReference that the spec no longer wants, the route of a
        provider no longer chosen included (``route_versions``: the route kinds the cluster serves)."""
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
                if kind_name in ROUTE_KIND_NAMES:
                    if kind_name not in route_versions:
                        continue  # its API is not installed: nothing of that kind can exist
                    kind = kind_of(route_versions[kind_name], kind_name)
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
        await self.kube.patch(SENTIMENT_MODEL, namespace, name, {"status": new_status}, subresource="status")
        result.status = new_status


def _providers(route_versions: RouteVersions) -> set[RoutingProvider]:
    """The routing providers whose route kind the cluster serves."""
    return {provider for provider, kind in builders.ROUTE_KINDS.items() if kind.kind in route_versions}


def _served_as(route: JSONObj, route_versions: RouteVersions) -> JSONObj:
    """The route as the apiVersion the cluster serves its kind as (the builders render the newest)."""
    return {**route, "apiVersion": route_versions[str(route["kind"])]}


def _ours(live: JSONObj | None, desired: JSONObj) -> JSONObj | None:
    """``live`` if it is the object we render ``desired`` as (our labels and owner), else None: the status of
    someone else's object with our child's name says nothing about ours."""
    owners = [ref.get("uid") for ref in desired["metadata"].get("ownerReferences") or []]
    return live if live is not None and is_owned_by(live, owners[0] if owners else None) else None
