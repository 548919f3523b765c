"""Storage layer: the only module that talks to the Kubernetes API for the reconciler.

It uses the official synchronous ``kubernetes`` client, run in worker threads: it already knows every way of
loading credentials (in-cluster service account with token refresh, kubeconfig with exec/auth plugins), and we
only need a handful of generic REST calls, which are built with its ``ApiClient`` and parsed here.
Client exceptions are converted at this boundary into the typed errors below; nothing above sees
``ApiException`` or urllib3.

Updates are JSON merge patches (``application/merge-patch+json``): they work for built-in kinds and for
custom resources (VirtualService) alike, and replace lists wholesale, so containers, env and volumes end up
exactly as desired.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import kubernetes.client
import kubernetes.config
import urllib3.exceptions

from sentiment_operator.spec import parse_quantity

logger = logging.getLogger(__name__)

Outcome = Literal["created", "updated", "unchanged"]
JSONObj = dict[str, Any]

MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
INSTANCE_LABEL: Final = "app.kubernetes.io/instance"
MANAGED_BY: Final = "sentiment-operator"
REDIS_PASSWORD_KEY: Final = "password"


class KubeError(Exception):
    """A failed Kubernetes API call, already classified."""

    def __init__(self, message: str, *, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class NotFound(KubeError):
    """The object does not exist."""


class KindMissing(KubeError):
    """The API group/resource itself is not served (e.g. Istio's CRDs are not installed)."""


class Conflict(KubeError):
    """409: the object already exists, or a concurrent modification happened."""


class Forbidden(KubeError):
    """401/403: the operator lacks credentials or RBAC permissions; retrying soon will not help."""


class Invalid(KubeError):
    """400/422: the API server rejected the object as invalid; retrying the same request will not help."""


class Transient(KubeError):
    """5xx, 429, timeouts, broken connections: worth retrying with a backoff."""


@dataclass(frozen=True)
class Kind:
    """Where a kind lives in the REST API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    def collection_path(self, namespace: str | None) -> str:
        base = f"/apis/{self.api_version}" if self.group else f"/api/{self.api_version}"
        if self.namespaced and namespace is not None:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"

    def object_path(self, namespace: str | None, name: str, subresource: str | None = None) -> str:
        path = f"{self.collection_path(namespace)}/{name}"
        return f"{path}/{subresource}" if subresource else path

    @property
    def group_version_path(self) -> str:
        return f"/apis/{self.api_version}" if self.group else f"/api/{self.api_version}"


_KINDS: Final[tuple[Kind, ...]] = (
    Kind("v1", "Service", "services"),
    Kind("v1", "Secret", "secrets"),
    Kind("v1", "Event", "events"),
    Kind("apps/v1", "Deployment", "deployments"),
    Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    Kind("networking.istio.io/v1", "VirtualService", "virtualservices"),
    Kind("networking.istio.io/v1beta1", "VirtualService", "virtualservices"),
    Kind("networking.istio.io/v1alpha3", "VirtualService", "virtualservices"),
    Kind("serving.sentiment.dev/v1alpha1", "SentimentModel", "sentimentmodels"),
)
KINDS: Final[Mapping[tuple[str, str], Kind]] = {(k.api_version, k.kind): k for k in _KINDS}
SENTIMENT_MODEL: Final = KINDS["serving.sentiment.dev/v1alpha1", "SentimentModel"]
SECRET: Final = KINDS["v1", "Secret"]


def kind_of(api_version: str, kind: str) -> Kind:
    try:
        return KINDS[api_version, kind]
    except KeyError:
        raise ValueError(f"The operator does not manage {kind} ({api_version})") from None


def kind_for(obj: Mapping[str, Any]) -> Kind:
    return kind_of(str(obj["apiVersion"]), str(obj["kind"]))


def describe(obj: Mapping[str, Any]) -> str:
    """``Deployment default/demo`` — for log lines that read like Kubernetes events."""
    meta = obj.get("metadata", {})
    return f"{obj.get('kind')} {meta.get('namespace')}/{meta.get('name')}"


# --- comparing what we own -------------------------------------------------------------------------------


_QUANTITY_MAPS: Final = frozenset({"requests", "limits"})


def _same_quantity(desired: Any, live: Any) -> bool:
    """The API server canonicalizes quantities ("0.5" -> "500m", 1 -> "1"): compare their values."""
    try:
        return parse_quantity(desired) == parse_quantity(live)
    except (ValueError, TypeError):
        return False


def is_subset(desired: Any, live: Any, *, _key: str = "") -> bool:
    """True if every field we set in ``desired`` has the same value in ``live``.

    Dicts: every key of desired must match (live may have more: server defaults, other controllers' fields).
    Lists: same length and element-wise subset (order matters, as in the API).
    Scalars: equal; resource quantities by value. ``None`` in desired means "we don't care"; an empty list or
    dict in desired matches an absent field (the API server drops empty collections).
    """
    if desired is None:
        return True
    if isinstance(desired, Mapping):
        if live is None and not desired:
            return True
        if not isinstance(live, Mapping):
            return False
        if _key in _QUANTITY_MAPS:
            return all(
                value is None or (live.get(key) is not None and _same_quantity(value, live.get(key)))
                for key, value in desired.items()
            )
        return all(is_subset(value, live.get(key), _key=str(key)) for key, value in desired.items())
    if isinstance(desired, list | tuple):
        if live is None and not desired:
            return True
        if not isinstance(live, list | tuple) or len(desired) != len(live):
            return False
        return all(is_subset(d, lv) for d, lv in zip(desired, live, strict=True))
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is live
    if isinstance(desired, int | float) and isinstance(live, int | float):
        return desired == live
    return bool(desired == live)


# The parts of an object that we own and compare: everything we set except status and server-side metadata.
_SERVER_METADATA: Final = frozenset(
    {
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
        "selfLink",
        "deletionTimestamp",
    }
)


def owned_projection(desired: Mapping[str, Any]) -> JSONObj:
    """The fields of a desired object that the operator owns: no status, no server-assigned metadata."""
    projection = {k: v for k, v in desired.items() if k not in ("status", "apiVersion", "kind")}
    meta = {k: v for k, v in desired.get("metadata", {}).items() if k not in _SERVER_METADATA}
    meta.pop("name", None)
    meta.pop("namespace", None)
    projection["metadata"] = meta
    return projection


def needs_update(desired: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    return not is_subset(owned_projection(desired), live)


def is_owned_by(obj: Mapping[str, Any], owner_uid: str | None) -> bool:
    """Whether an object carries our labels and (when the owner's uid is known) an ownerReference to it."""
    meta = obj.get("metadata", {})
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
        return False
    if owner_uid is None:
        return True
    return any(ref.get("uid") == owner_uid for ref in meta.get("ownerReferences") or [])


# --- the client -------------------------------------------------------------------------------------------


def load_configuration() -> kubernetes.client.Configuration:
    """In-cluster service account if present, else the current kubeconfig context ($KUBECONFIG honoured)."""
    config = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubeconfig = os.environ.get("KUBECONFIG") or None
        paths = kubeconfig.split(os.pathsep)[0] if kubeconfig else None
        kubernetes.config.load_kube_config(config_file=paths, client_configuration=config)  # type: ignore[no-untyped-call]
    return config


class Kube:
    """Async facade over the synchronous client; every call runs in a worker thread."""

    def __init__(self, configuration: kubernetes.client.Configuration, *, timeout: float = 15.0) -> None:
        # No hidden urllib3 retries: a timeout surfaces as Transient after ``timeout`` seconds, and the
        # reconciler's caller retries with a visible backoff (and a Warning Event).
        configuration.retries = False
        self._api = kubernetes.client.ApiClient(configuration)
        self._api.user_agent = "sentiment-operator"
        self.timeout = timeout

    @classmethod
    def for_server(cls, url: str, *, timeout: float = 15.0) -> Kube:
        """A client for an unauthenticated API server URL (tests, ``kubectl proxy``)."""
        config = kubernetes.client.Configuration(host=url.rstrip("/"))
        return cls(config, timeout=timeout)

    @property
    def configuration(self) -> kubernetes.client.Configuration:
        config: kubernetes.client.Configuration = self._api.configuration
        return config

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]

    # Generic REST -----------------------------------------------------------------------------------------

    def _request_sync(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Sequence[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            _, url, headers, body, _ = self._api.param_serialize(
                method=method,
                resource_path=path,
                query_params=list(query) if query else None,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self._api.call_api(
                method, url, header_params=headers, body=body, _request_timeout=self.timeout
            )
            raw = response.read()  # type: ignore[no-untyped-call]
        except kubernetes.client.ApiException as exc:  # raised for TLS errors and unusable requests
            raise Transient(f"{method} {path}: {exc.reason}", status=int(exc.status or 0)) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Transient(
                f"{method} {path}: {type(exc).__name__}", status=0, reason="Unreachable"
            ) from None
        status = int(response.status)
        if 200 <= status < 300:
            return json.loads(raw) if raw else None
        raise _classify(method, path, status, raw)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Sequence[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        return await asyncio.to_thread(
            self._request_sync, method, path, body=body, query=query, content_type=content_type
        )

    # Typed operations ---------------------------------------------------------------------------------------

    async def get(self, kind: Kind, namespace: str | None, name: str) -> JSONObj | None:
        """The live object, or None if it does not exist. KindMissing if the resource type is not served."""
        try:
            obj = await self.request("GET", kind.object_path(namespace, name))
        except NotFound:
            if not await self.serves(kind):
                raise KindMissing(f"{kind.kind} ({kind.api_version}) is not served", status=404) from None
            return None
        return dict(obj)

    async def list(self, kind: Kind, namespace: str, labels: Mapping[str, str]) -> list[JSONObj]:
        """Objects of a kind in a namespace with all the given labels (also filtered here, defensively)."""
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        try:
            result = await self.request(
                "GET", kind.collection_path(namespace), query=[("labelSelector", selector)]
            )
        except NotFound:
            raise KindMissing(f"{kind.kind} ({kind.api_version}) is not served", status=404) from None
        items: list[JSONObj] = list((result or {}).get("items") or [])
        return [
            item
            for item in items
            if all((item.get("metadata", {}).get("labels") or {}).get(k) == v for k, v in labels.items())
        ]

    async def serves(self, kind: Kind) -> bool:
        """API discovery: whether the server serves this group/version and resource."""
        try:
            result = await self.request("GET", kind.group_version_path)
        except NotFound:
            return False
        resources = (result or {}).get("resources") or []
        return any(r.get("name") == kind.plural for r in resources)

    async def create(self, obj: Mapping[str, Any]) -> JSONObj:
        kind = kind_for(obj)
        namespace = obj.get("metadata", {}).get("namespace")
        try:
            return dict(await self.request("POST", kind.collection_path(namespace), body=dict(obj)))
        except NotFound:
            raise KindMissing(f"{kind.kind} ({kind.api_version}) is not served", status=404) from None

    async def patch(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> JSONObj:
        path = kind.object_path(namespace, name, subresource)
        result = await self.request(
            "PATCH", path, body=dict(patch), content_type="application/merge-patch+json"
        )
        return dict(result)

    async def delete(self, kind: Kind, namespace: str | None, name: str) -> bool:
        """Delete with background propagation; False if it was already gone."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        try:
            await self.request("DELETE", kind.object_path(namespace, name), body=body)
        except NotFound:
            return False
        return True

    # Reconciler building blocks -----------------------------------------------------------------------------

    async def create_or_update(self, desired: Mapping[str, Any]) -> Outcome:
        """Make the live object match the fields we own: create it, merge-patch it, or leave it alone.

        A 409 on create means someone (an earlier incarnation of us, a racing replica) created it between our
        read and our create: re-read it and adopt it by patching our fields (labels, ownerReferences, spec).
        """
        kind = kind_for(desired)
        meta = desired["metadata"]
        namespace, name = meta.get("namespace"), meta["name"]
        live = await self.get(kind, namespace, name)
        if live is None:
            try:
                await self.create(desired)
            except Conflict:
                live = await self.get(kind, namespace, name)
                if live is None:  # created and deleted again in between: let the next pass decide
                    raise Transient(f"{describe(desired)} vanished after a conflict", status=409) from None
                logger.info("Adopting existing %s", describe(desired))
            else:
                logger.info("Created %s", describe(desired))
                return "created"
        if not needs_update(desired, live):
            return "unchanged"
        await self.patch(kind, namespace, name, owned_projection(desired))
        logger.info("Updated %s", describe(desired))
        return "updated"

    async def ensure_secret(self, template: Mapping[str, Any]) -> tuple[Outcome, str | None]:
        """Create the generated Redis password Secret once; never update or log its value.

        ``template`` is the Secret without data (name, namespace, labels, ownerReferences). If the live Secret
        lost its password key (hand-edited), it is deleted and re-created with a fresh password. Returns the
        outcome and the live Secret's uid (pod templates carry it, so a regenerated password rolls the pods).
        """
        meta = template["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        live = await self.get(SECRET, namespace, name)
        if live is not None and (live.get("data") or {}).get(REDIS_PASSWORD_KEY):
            return "unchanged", live.get("metadata", {}).get("uid")
        if live is not None:
            logger.warning("Secret %s/%s has no %r key; regenerating it", namespace, name, REDIS_PASSWORD_KEY)
            await self.delete(SECRET, namespace, name)
        secret = dict(template)
        secret["type"] = "Opaque"
        secret["data"] = {REDIS_PASSWORD_KEY: _encode(generate_password())}
        try:
            created = await self.create(secret)
        except Conflict:  # created concurrently; that one's password stands
            live = await self.get(SECRET, namespace, name)
            return "unchanged", (live or {}).get("metadata", {}).get("uid")
        logger.info("Created Secret %s/%s", namespace, name)
        return "created", created.get("metadata", {}).get("uid")


def generate_password() -> str:
    """A URL-safe random password (256 bits) for the managed Redis."""
    return secrets.token_urlsafe(32)


def _encode(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _classify(method: str, path: str, status: int, raw: bytes) -> KubeError:
    reason, message = "", ""
    try:
        payload = json.loads(raw) if raw else {}
        if isinstance(payload, dict):
            reason = str(payload.get("reason") or "")
            message = str(payload.get("message") or "")
    except ValueError:
        message = raw[:200].decode(errors="replace")
    text = f"{method} {path} -> {status} {reason}: {message}".rstrip(": ")
    if status == 404:
        return NotFound(text, status=status, reason=reason)
    if status == 409:
        return Conflict(text, status=status, reason=reason)
    if status in (401, 403):
        return Forbidden(text, status=status, reason=reason)
    if status in (400, 422):
        return Invalid(text, status=status, reason=reason)
    return Transient(text, status=status, reason=reason)
