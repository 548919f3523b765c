"""One write as kube-apiserver admits it: the object it stores after a create, update (PUT) or patch.

The order is the API server's: decode the body by content type and compute the new object (``patch``,
``apply``), keep what the write may not touch (the status subresource rules, the object's identity),
record field ownership, then drop omitempty values and default (``defaults``) or prune, default and
validate a custom resource (``structural``), bump ``metadata.generation`` when anything but metadata and
status changed (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#status-subresource)
and ``resourceVersion`` on every real change. A write that changes nothing is not written: the API server
returns the stored object with its old resourceVersion and sends no watch event.
"""

from __future__ import annotations

import copy
import datetime
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from sentiment_devcluster.apiserver import apply as ssa
from sentiment_devcluster.apiserver import defaults, patch, structural
from sentiment_devcluster.apiserver.schema import TypeInfo


class ApiError(Exception):
    """An answer other than 2xx, as a metav1.Status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


@dataclass
class Write:
    verb: str  # "create", "update" (PUT) or "patch"
    body: Any
    namespace: str | None
    name: str | None
    content_type: str = "application/json"
    subresource: str = ""
    manager: str = ""
    force: bool = False


def write_for(
    method: str,
    body: Any,
    *,
    namespace: str | None,
    name: str | None,
    subresource: str,
    content_type: str,
    params: Mapping[str, str],
    user_agent: str,
) -> Write:
    """The write an HTTP request asks for. Its field manager: ``fieldManager`` (required for an apply), else
    derived from the user agent as the API server does."""
    if method == "POST" and isinstance(body, dict):
        name = (body.get("metadata") or {}).get("name")
    if content_type.startswith(patch.APPLY):
        manager = params.get("fieldManager", "")
    else:
        manager = params.get("fieldManager") or ssa.manager_from_user_agent(user_agent)
    return Write(
        verb={"POST": "create", "PUT": "update", "PATCH": "patch"}[method],
        body=body,
        namespace=namespace,
        name=name,
        content_type=content_type,
        subresource=subresource,
        manager=manager,
        force=params.get("force") == "true",
    )


def _scope(info: TypeInfo, live: dict[str, Any], new: dict[str, Any], subresource: str) -> dict[str, Any]:
    """Status subresource rules: a main-resource write keeps the stored status; a /status write changes only
    status."""
    if not info.has_status:
        return new
    if subresource == "status":
        out = copy.deepcopy(live)
        if "status" in new:
            out["status"] = new["status"]
        else:
            out.pop("status", None)
        return out
    out = {k: v for k, v in new.items() if k != "status"}
    if "status" in live:
        out["status"] = copy.deepcopy(live["status"])
    return out


def _body(write: Write) -> Any:
    if isinstance(write.body, str):
        try:
            return yaml.safe_load(write.body)
        except yaml.YAMLError as exc:
            raise ApiError(400, "BadRequest", f"error decoding YAML: {exc}") from exc
    return write.body


def _check_precondition(
    info: TypeInfo, live: dict[str, Any] | None, body: dict[str, Any], write: Write
) -> None:
    sent_rv = (body.get("metadata") or {}).get("resourceVersion")
    if not sent_rv:
        return
    if live is None:
        raise ApiError(404, "NotFound", f'{info.kind.lower()}s "{write.name}" not found')
    if sent_rv != live["metadata"].get("resourceVersion"):
        raise ApiError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {info.kind.lower()}s "{write.name}": the object has been '
            "modified; please apply your changes to the latest version and try again",
        )


def _compute(info: TypeInfo, live: dict[str, Any] | None, write: Write) -> dict[str, Any]:
    body = _body(write)
    if write.verb == "create":
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of a create must be an object")
        new = _scope(info, {}, copy.deepcopy(body), "")
        ssa.record_update(None, new, info, manager=write.manager)
        return new
    ctype = write.content_type.split(";")[0].strip()
    if write.verb == "patch" and ctype == patch.APPLY:
        if not write.manager:
            raise ApiError(400, "BadRequest", "PATCH, application/apply-patch+yaml: fieldManager is required")
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "an apply configuration must be an object")
        # A resourceVersion in the configuration is an optimistic-concurrency precondition ("Server-Side
        # Apply": "Using Server-Side Apply in a controller"), checked like an update's.
        _check_precondition(info, live, body, write)
        try:
            return ssa.apply(
                live, body, info, manager=write.manager, force=write.force, subresource=write.subresource
            )
        except ssa.ApplyConflict as exc:
            raise ApiError(409, "Conflict", str(exc)) from exc
    assert live is not None
    if write.verb == "update":
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of an update must be an object")
        _check_precondition(info, live, body, write)
        new = copy.deepcopy(body)
    else:
        try:
            if ctype == patch.MERGE:
                new = patch.merge_patch(live, body)
            elif ctype == patch.STRATEGIC:
                if not info.builtin:
                    raise ApiError(
                        415,
                        "UnsupportedMediaType",
                        f"the body of the request was in an unknown format "
                        f"- accepted media types include: {patch.JSON_PATCH}, {patch.MERGE}, {patch.APPLY}",
                    )
                new = patch.strategic_merge_patch(live, body, info)
            elif ctype == patch.JSON_PATCH:
                new = patch.json_patch(live, body)
            else:
                raise ApiError(415, "UnsupportedMediaType", f"unknown patch content type {ctype!r}")
        except patch.PatchError as exc:
            raise ApiError(422, "Invalid", str(exc)) from exc
        if not isinstance(new, dict):
            raise ApiError(422, "Invalid", "the patched object is not an object")
    new = _scope(info, live, new, write.subresource)
    new_meta = new.setdefault("metadata", {})
    live_fields = (live.get("metadata") or {}).get("managedFields")
    if "managedFields" not in new_meta and live_fields:
        new_meta["managedFields"] = copy.deepcopy(live_fields)  # left out of an update: unchanged
    sent_fields = new_meta.get("managedFields")
    if sent_fields != live_fields:
        # A write that sets managedFields itself is taken as it is ("Clearing managedFields" in the
        # server-side apply docs; client-go's csaupgrade migrates managers this way); [{}] clears them.
        if sent_fields == [{}]:
            new["metadata"].pop("managedFields", None)
        return new
    ssa.record_update(live, new, info, manager=write.manager, subresource=write.subresource)
    return new


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _generation_part(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _without_volatile(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    meta = out.get("metadata") or {}
    meta.pop("resourceVersion", None)
    for entry in meta.get("managedFields") or []:
        entry.pop("time", None)
    return out


def admit(
    info: TypeInfo,
    live: dict[str, Any] | None,
    write: Write,
    *,
    next_resource_version: Callable[[], str],
    crd_schema: dict[str, Any] | None = None,
    validate: bool = True,
) -> tuple[dict[str, Any], bool]:
    """The object stored after ``write``, and whether anything changed (False: a no-op, nothing written)."""
    if live is None and not (write.verb == "create" or write.content_type.startswith(patch.APPLY)):
        raise ApiError(404, "NotFound", f'{info.kind.lower()}s "{write.name}" not found')
    if live is not None and write.verb == "create":
        raise ApiError(409, "AlreadyExists", f'{info.kind.lower()}s "{write.name}" already exists')
    if live is None and write.subresource:
        raise ApiError(404, "NotFound", f'{info.kind.lower()}s "{write.name}" not found')
    new = _compute(info, live, write)
    meta = new.setdefault("metadata", {})
    if live is None:
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        if write.name and meta.get("name") not in (None, write.name):
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        meta["name"] = meta.get("name") or write.name
        if not meta.get("name"):
            raise ApiError(422, "Invalid", "metadata.name: Required value: name or generateName is required")
        if write.namespace:
            meta["namespace"] = write.namespace
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta.pop("resourceVersion", None)
        meta.pop("deletionTimestamp", None)
    else:
        for key in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "generation"):
            if key in live["metadata"]:
                meta[key] = live["metadata"][key]
            else:
                meta.pop(key, None)
        # Finalizers can only be removed once deletion started, never added.
        if live["metadata"].get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(live["metadata"].get("finalizers") or [])
            if added:
                raise ApiError(
                    422, "Forbidden", "no new finalizers can be added if the object is being deleted"
                )
    new.setdefault("apiVersion", (live or {}).get("apiVersion"))
    new.setdefault("kind", info.kind)

    if info.builtin:
        new = defaults.normalize(info.kind, new, live)
    else:
        try:
            schema = crd_schema or {"x-kubernetes-preserve-unknown-fields": True}
            new = structural.store(new, schema, old=live, validate=validate)
        except structural.Invalid as exc:
            raise ApiError(
                422, "Invalid", f'{info.kind} "{new["metadata"].get("name")}" is invalid: {exc}'
            ) from exc
    meta = new["metadata"]
    if "spec" in new or "generation" in meta or not info.builtin:
        if live is None:
            meta["generation"] = 1
        elif _generation_part(new) != _generation_part(live):
            meta["generation"] = int(live["metadata"].get("generation") or 1) + 1
    if live is not None and _without_volatile(new) == _without_volatile(live):
        return live, False
    meta["resourceVersion"] = next_resource_version()
    return new, True
