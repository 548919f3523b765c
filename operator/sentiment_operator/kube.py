"""Storage layer: the only module that talks to the Kubernetes API for the reconciler.

It uses the official synchronous ``kubernetes`` client, run in worker threads: it already knows every way of
loading credentials (in-cluster service account with token refresh, kubeconfig with exec/auth plugins), and we
only need a handful of generic REST calls, which are built with its ``ApiClient`` and parsed here.
Client exceptions are converted at this boundary into the typed errors below; nothing above sees
``ApiException`` or urllib3.

Children are written with server-side apply (``application/apply-patch+yaml``) as one field manager with
``force``, for built-in kinds and custom resources (VirtualService, HTTPRoute) alike: what we stop rendering
is removed, what others own is kept, and the API server decides what changed. Status is a JSON merge patch of
the status subresource.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import kubernetes.client
import kubernetes.config
import urllib3.exceptions

from sentiment_operator.kinds import SECRET, Kind, known_kinds
from sentiment_operator.names import FIELD_MANAGER, LABEL_MANAGED_BY, MANAGED_BY

logger = logging.getLogger(__name__)

Outcome = Literal["created", "updated", "unchanged"]

JSONObj = dict[str, Any]


@dataclass(frozen=True)
class Applied:
    """What ``create_or_update`` did, and the object as the API server holds it afterwards."""

    outcome: Outcome
    live: JSONObj


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


class NotOwned(KubeError):
    """An object with a child's name exists and is not ours (no ownerReference to our owner's uid)."""


class Transient(KubeError):
    """5xx, 429, timeouts, broken connections: worth retrying with a backoff."""


def kind_of(api_version: str, kind: str) -> Kind:
    try:
        return known_kinds()[api_version, kind]
    except KeyError:
        raise ValueError(f"The operator does not manage {kind} ({api_version})") from None


def kind_for(obj: Mapping[str, Any]) -> Kind:
    return kind_of(str(obj["apiVersion"]), str(obj["kind"]))


def describe(obj: Mapping[str, Any]) -> str:
    """``Deployment default/demo`` — for log lines that read like Kubernetes events."""
    meta = obj.get("metadata", {})
    return f"{obj.get('kind')} {meta.get('namespace')}/{meta.get('name')}"


# --- server-side apply -----------------------------------------------------------------------------------

# The one field manager the operator applies children as (https://kubernetes.io/docs/reference/using-api/
# server-side-apply/#using-server-side-apply-in-a-controller: one manager, force on conflicts).
APPLY_PATCH: Final = "application/apply-patch+yaml"
JSON_PATCH: Final = "application/json-patch+json"


def _merge_fields(into: JSONObj, extra: Mapping[str, Any]) -> JSONObj:
    """The union of two FieldsV1 trees."""
    out = dict(into)
    for key, value in extra.items():
        out[key] = _merge_fields(out.get(key) or {}, value) if value else out.get(key, {})
    return out


def managed_fields_upgrade(live: Mapping[str, Any]) -> list[JSONObj] | None:
    """The JSON patch that hands our ``Update`` entries' fields to our ``Apply`` entry (None: nothing to do).

    Earlier versions of the operator wrote children with create and merge patches, which the API server
    records as ``Update`` entries of our manager. A first apply cannot remove the fields those entries own,
    so fields we no longer render would stay forever; this moves them into the applier's entry first, as
    client-go's csaupgrade does, guarded by the object's resourceVersion.
    """
    meta = live.get("metadata") or {}
    entries: list[JSONObj] = list(meta.get("managedFields") or [])
    updates = [
        e
        for e in entries
        if e.get("manager") == FIELD_MANAGER and e.get("operation") == "Update" and not e.get("subresource")
    ]
    if not updates:
        return None
    applied = next(
        (
            e
            for e in entries
            if e.get("manager") == FIELD_MANAGER
            and e.get("operation") == "Apply"
            and not e.get("subresource")
        ),
        None,
    )
    fields: JSONObj = dict((applied or {}).get("fieldsV1") or {})
    for entry in updates:
        fields = _merge_fields(fields, entry.get("fieldsV1") or {})
    kept = [e for e in entries if e not in updates and e is not applied]
    kept.append(
        {
            "manager": FIELD_MANAGER,
            "operation": "Apply",
            "apiVersion": (applied or updates[-1]).get("apiVersion") or live.get("apiVersion"),
            "time": updates[-1].get("time"),
            "fieldsType": "FieldsV1",
            "fieldsV1": fields,
        }
    )
    return [
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta.get("resourceVersion")},
        {"op": "replace", "path": "/metadata/managedFields", "value": kept},
    ]


def is_owned_by(obj: Mapping[str, Any], owner_uid: str | None) -> bool:
    """Whether an object carries our labels and (when the owner's uid is known) an ownerReference to it."""
    meta = obj.get("metadata", {})
    labels = meta.get("labels") or {}
    if labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
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
        # Called with (method, HTTP status; 0: no answer) after every request (the operator's metrics).
        self.on_request: Callable[[str, int], None] | None = None
        # object path -> (digest of what we applied, fingerprint of what the apply left): a reconcile that
        # would apply the same object to an object whose spec and metadata nobody touched since (its status
        # may have moved: a controller's business) skips the request.
        self._applied: dict[str, tuple[str, str]] = {}

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
            self._count(method, int(exc.status or 0))
            raise Transient(f"{method} {path}: {exc.reason}", status=int(exc.status or 0)) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self._count(method, 0)
            raise Transient(
                f"{method} {path}: {type(exc).__name__}", status=0, reason="Unreachable"
            ) from None
        status = int(response.status)
        self._count(method, status)
        if 200 <= status < 300:
            return json.loads(raw) if raw else None
        raise _classify(method, path, status, raw)

    def _count(self, method: str, status: int) -> None:
        if self.on_request is not None:
            self.on_request(method, status)

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
        except NotFound as missing:
            # A missing object of a served kind is a NotFound Status; an unserved kind's path is answered
            # like any unknown URL (no Status). Only an answer that is neither asks discovery.
            if missing.reason != "NotFound" and not await self.serves(kind):
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
        self._applied.pop(kind.object_path(namespace, name), None)
        try:
            await self.request("DELETE", kind.object_path(namespace, name), body=body)
        except NotFound:
            return False
        return True

    # Reconciler building blocks -----------------------------------------------------------------------------

    async def apply(self, desired: Mapping[str, Any]) -> JSONObj:
        """Server-side apply of ``desired`` as our field manager, taking over conflicting fields."""
        kind = kind_for(desired)
        meta = desired["metadata"]
        try:
            result = await self.request(
                "PATCH",
                kind.object_path(meta.get("namespace"), meta["name"]),
                body=json.dumps(dict(desired)),  # JSON is YAML: the body apply-patch+yaml expects
                query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                content_type=APPLY_PATCH,
            )
        except NotFound:
            raise KindMissing(f"{kind.kind} ({kind.api_version}) is not served", status=404) from None
        return dict(result)

    async def create_or_update(self, desired: Mapping[str, Any]) -> Applied:
        """Make the live object exactly what we render: server-side apply, and report what changed.

        An existing object that is not ours (none of its ownerReferences is our controller's uid) is never
        adopted or overwritten: NotOwned, for the reconciler to report.

        Fields we rendered before and no longer render are removed by the API server (our manager owned them);
        fields other actors own (the HPA's replicas, a Service's clusterIP, others' labels) are left alone. A
        write that changes nothing is a no-op on the server, so "unchanged" is decided by the resourceVersion,
        which also makes values the server drops or defaults no difference. Objects written by earlier
        versions with merge patches are migrated first (:func:`managed_fields_upgrade`).
        """
        kind = kind_for(desired)
        meta = desired["metadata"]
        namespace, name = meta.get("namespace"), meta["name"]
        live = await self.get(kind, namespace, name)
        path = kind.object_path(namespace, name)
        digest = hashlib.sha256(json.dumps(desired, sort_keys=True).encode()).hexdigest()
        version = None
        if live is not None:
            owner_uids = {
                ref.get("uid") for ref in meta.get("ownerReferences") or [] if ref.get("controller")
            }
            refs = live.get("metadata", {}).get("ownerReferences") or []
            if owner_uids and not any(ref.get("uid") in owner_uids for ref in refs):
                owners = ", ".join(f"{r.get('kind')} {r.get('name')}" for r in refs) or "nothing"
                raise NotOwned(
                    f"{describe(desired)} already exists and belongs to {owners}, not to this "
                    "SentimentModel: rename the SentimentModel or remove that object",
                    status=409,
                    reason="NotOwned",
                )
            if self._applied.get(path) == (digest, _fingerprint(live)):
                return Applied("unchanged", live)  # we applied exactly this; only its status changed since
            version = live.get("metadata", {}).get("resourceVersion")
            upgrade = managed_fields_upgrade(live)
            if upgrade is not None:
                try:
                    migrated = await self.request("PATCH", path, body=upgrade, content_type=JSON_PATCH)
                except Invalid as exc:  # the resourceVersion test failed: someone wrote in between
                    raise Transient(
                        f"{describe(desired)} changed while migrating its fields", status=409
                    ) from exc
                version = (migrated or {}).get("metadata", {}).get("resourceVersion")
                logger.info("Migrated %s to server-side apply", describe(desired))
        # The resourceVersion we read (and checked ownership at) is the apply's precondition: an object
        # replaced or changed in between fails with 409 Conflict, and the retry reads it again.
        result = await self.apply(
            desired if version is None else {**desired, "metadata": {**meta, "resourceVersion": version}}
        )
        self._applied[path] = (digest, _fingerprint(result))
        if live is None:
            logger.info("Created %s", describe(desired))
            return Applied("created", result)
        if result.get("metadata", {}).get("resourceVersion") == version:
            return Applied("unchanged", result)
        logger.info("Updated %s", describe(desired))
        return Applied("updated", result)

    def only_status_changed(self, live: Mapping[str, Any]) -> bool:
        """Whether ``live`` is what our last apply of it left, apart from its status (and resourceVersion):
        a change to it then needs a status refresh, not a reconcile of the children."""
        meta = live.get("metadata") or {}
        try:
            kind = kind_for(live)
        except (KeyError, ValueError):
            return False
        recorded = self._applied.get(kind.object_path(meta.get("namespace"), str(meta.get("name"))))
        return recorded is not None and recorded[1] == _fingerprint(live)

    async def ensure_secret(
        self, template: Mapping[str, Any], data_for: Callable[[str], Mapping[str, str]]
    ) -> tuple[Outcome, str | None]:
        """Create a Secret holding a generated password once; never update or log its value.

        ``template`` is the Secret without data (name, namespace, labels, ownerReferences); ``data_for``
        maps a fresh password to the Secret's keys. If the live Secret lacks one of those keys (hand-edited,
        or written by an older operator), it is deleted and re-created with a fresh password. Returns the
        outcome and the live Secret's uid (pod templates carry it, so a regenerated password rolls the pods).
        """
        meta = template["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        keys = set(data_for(""))
        live = await self.get(SECRET, namespace, name)
        missing = keys - {k for k, v in (live or {}).get("data", {}).items() if v}
        if live is not None and not missing:
            return "unchanged", live.get("metadata", {}).get("uid")
        if live is not None:
            logger.warning(
                "Secret %s/%s lacks %s; regenerating it", namespace, name, ", ".join(sorted(missing))
            )
            await self.delete(SECRET, namespace, name)
        secret = dict(template)
        secret["type"] = "Opaque"
        secret["data"] = {key: _encode(value) for key, value in data_for(generate_password()).items()}
        try:
            created = await self.create(secret)
        except Conflict:  # created concurrently; that one's password stands
            live = await self.get(SECRET, namespace, name)
            return "unchanged", (live or {}).get("metadata", {}).get("uid")
        logger.info("Created Secret %s/%s", namespace, name)
        return "created", created.get("metadata", {}).get("uid")


def _fingerprint(obj: Mapping[str, Any]) -> str:
    """A digest of an object without its status and the metadata every write (a status write too) changes."""
    meta = {
        k: v for k, v in (obj.get("metadata") or {}).items() if k not in ("resourceVersion", "managedFields")
    }
    rest = {k: v for k, v in obj.items() if k not in ("status", "metadata")}
    return hashlib.sha256(json.dumps([meta, rest], sort_keys=True).encode()).hexdigest()


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
