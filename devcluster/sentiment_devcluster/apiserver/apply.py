"""Server-side apply and field ownership (``metadata.managedFields``), as kube-apiserver does them.

https://kubernetes.io/docs/reference/using-api/server-side-apply/ :

- An apply (``PATCH``, ``application/apply-patch+yaml``, ``fieldManager``) creates the object if missing.
- The applier owns exactly the fields of its configuration. Fields it owned before and no longer sends are
  removed, unless another manager owns them too ("Field management", "Merge strategy").
- Lists merge as their schema says (``apiserver.schema``): list-maps element by element on their keys, sets by
  value, atomic lists as one value.
- A field another manager owns with a different value is a conflict: 409 with the conflicting managers and
  fields, unless ``force=true``, which moves ownership to the applier ("Conflicts").
- Writes that are not applies (create, update, merge/JSON/strategic patches) are recorded as ``Update``
  entries: their manager owns the fields it changed, which other managers then lose ("Using Server-Side Apply
  in a controller"; client-go's csaupgrade reads these entries to migrate to apply).

A field set is a set of paths in the ``fieldsV1`` notation: ``f:<field>``, ``k:<json keys>`` for a list-map
element, ``v:<json value>`` for a set element; an element's own path stands for the element itself (the ``.``
of ``fieldsV1``).
"""

from __future__ import annotations

import copy
import datetime
import json
from dataclasses import dataclass
from typing import Any

from sentiment_devcluster.apiserver.schema import ListType, Path, TypeInfo

FieldPath = tuple[str, ...]
FieldSet = frozenset[FieldPath]

# Never owned: identity and server-set metadata (server-side-apply "Field management": these are reset).
_UNOWNED_META = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
        "generateName",
    }
)


class ApplyConflict(Exception):
    """409: fields owned by other managers with other values."""

    def __init__(self, conflicts: list[tuple[str, str]], api_version: str) -> None:
        self.conflicts = conflicts
        lines = [f'conflict with "{manager}" using {api_version}: {field}' for manager, field in conflicts]
        super().__init__(
            f"Apply failed with {len(conflicts)} conflict{'s' if len(conflicts) != 1 else ''}: "
            + "\n".join(lines)
        )


def _element_key(item: Any, keys: tuple[str, ...]) -> str:
    return "k:" + json.dumps(
        {k: item.get(k) for k in keys if k in item}, sort_keys=True, separators=(",", ":")
    )


def _value_key(item: Any) -> str:
    return "v:" + json.dumps(item, sort_keys=True, separators=(",", ":"))


def field_set(obj: dict[str, Any], info: TypeInfo, *, status: bool | None = None) -> FieldSet:
    """The fields ``obj`` sets. ``status``: True only status, False everything but status, None all."""
    out: set[FieldPath] = set()
    for key, value in obj.items():
        if key in ("apiVersion", "kind") or value is None:
            continue
        if status is not None and (key == "status") != status:
            continue
        if key == "metadata" and isinstance(value, dict):
            meta = {k: v for k, v in value.items() if k not in _UNOWNED_META}
            _walk(meta, info, ("metadata",), ("f:metadata",), out)
            continue
        _walk_value(value, info, (key,), (f"f:{key}",), out)
    return frozenset(out)


def _walk(node: dict[str, Any], info: TypeInfo, path: Path, fpath: FieldPath, out: set[FieldPath]) -> None:
    for key, value in node.items():
        if value is None:
            continue
        _walk_value(value, info, (*path, key), (*fpath, f"f:{key}"), out)


def _walk_value(value: Any, info: TypeInfo, path: Path, fpath: FieldPath, out: set[FieldPath]) -> None:
    if isinstance(value, dict) and value:
        _walk(value, info, path, fpath, out)
    elif isinstance(value, list) and value and not info.list_type(path).atomic:
        kind = info.list_type(path)
        for item in value:
            if kind.is_set:
                out.add((*fpath, _value_key(item)))
            else:
                element = (*fpath, _element_key(item, kind.keys))
                out.add(element)
                if isinstance(item, dict):
                    _walk(item, info, (*path, "*"), element, out)
    else:
        out.add(fpath)


# ------------------------------------------------------------------------------------ reading and writing


def _find(items: list[Any], step: str) -> int | None:
    if step.startswith("v:"):
        wanted = json.loads(step[2:])
        return next((i for i, item in enumerate(items) if item == wanted), None)
    keys = json.loads(step[2:])
    return next(
        (
            i
            for i, item in enumerate(items)
            if isinstance(item, dict) and all(item.get(k) == v for k, v in keys.items())
        ),
        None,
    )


_MISSING = object()


def get(obj: Any, fpath: FieldPath) -> Any:
    node = obj
    for step in fpath:
        if step.startswith("f:") and isinstance(node, dict):
            node = node.get(step[2:], _MISSING)
        elif isinstance(node, list):
            index = _find(node, step)
            node = _MISSING if index is None else node[index]
        else:
            return _MISSING
        if node is _MISSING:
            return _MISSING
    return node


def _remove(obj: dict[str, Any], fpath: FieldPath) -> None:
    """Remove the field or element at ``fpath``, then the maps/lists that removal left empty."""
    chain: list[Any] = [obj]
    node: Any = obj
    for step in fpath[:-1]:
        node = get(node, (step,))
        if node is _MISSING or not isinstance(node, dict | list):
            return
        chain.append(node)
    parent, last = chain[-1], fpath[-1]
    if isinstance(parent, dict) and last.startswith("f:"):
        parent.pop(last[2:], None)
    elif isinstance(parent, list):
        index = _find(parent, last)
        if index is not None:
            del parent[index]
    for depth in range(len(chain) - 1, 0, -1):
        if chain[depth]:
            break
        holder, step = chain[depth - 1], fpath[depth - 1]
        if isinstance(holder, dict):
            holder.pop(step[2:], None)
        elif isinstance(holder, list):
            index = _find(holder, step)
            if index is not None:
                del holder[index]


def merge(live: Any, config: Any, info: TypeInfo, path: Path = ()) -> Any:
    """``config`` merged into ``live`` by the schema's merge strategy (maps by key, list-maps by keys)."""
    if isinstance(config, dict) and isinstance(live, dict):
        out = copy.deepcopy(live)
        for key, value in config.items():
            if value is None:
                continue
            out[key] = merge(live.get(key), value, info, (*path, key))
        return out
    if isinstance(config, list) and isinstance(live, list):
        kind: ListType = info.list_type(path)
        if kind.is_set:
            return [*copy.deepcopy(config), *(item for item in live if item not in config)]
        if kind.keys:
            out_list = []
            for item in config:
                match = _find(live, _element_key(item, kind.keys))
                base = live[match] if match is not None else {}
                out_list.append(merge(base, item, info, (*path, "*")))
            seen = {_element_key(item, kind.keys) for item in config}
            out_list += [copy.deepcopy(i) for i in live if _element_key(i, kind.keys) not in seen]
            return out_list
    return copy.deepcopy(config)


# ----------------------------------------------------------------------------------------- managedFields


@dataclass
class Entry:
    manager: str
    operation: str  # "Apply" or "Update"
    api_version: str
    fields: FieldSet
    subresource: str = ""
    time: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(self.fields),
        }
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def to_fields_v1(fields: FieldSet) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for fpath in sorted(fields):
        node = tree
        for step in fpath:
            node = node.setdefault(step, {})
        if fpath[-1].startswith("k:"):
            node["."] = {}
    return tree


def from_fields_v1(tree: dict[str, Any], prefix: FieldPath = ()) -> FieldSet:
    out: set[FieldPath] = set()
    for step, sub in tree.items():
        if step == ".":
            out.add(prefix)
            continue
        path = (*prefix, step)
        if sub:
            out |= from_fields_v1(sub, path)
            if step.startswith("v:"):
                out.add(path)
        else:
            out.add(path)
    return frozenset(out)


def read_entries(obj: dict[str, Any]) -> list[Entry]:
    entries = []
    for raw in (obj.get("metadata") or {}).get("managedFields") or []:
        entries.append(
            Entry(
                manager=raw.get("manager", ""),
                operation=raw.get("operation", "Update"),
                api_version=raw.get("apiVersion", ""),
                fields=from_fields_v1(raw.get("fieldsV1") or {}),
                subresource=raw.get("subresource", ""),
                time=raw.get("time", ""),
            )
        )
    return entries


def write_entries(obj: dict[str, Any], entries: list[Entry]) -> None:
    kept = [e for e in entries if e.fields]
    meta = obj.setdefault("metadata", {})
    if kept:
        meta["managedFields"] = [e.to_json() for e in kept]
    else:
        meta.pop("managedFields", None)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _owned(fpath: FieldPath, fields: FieldSet) -> bool:
    """Whether ``fields`` owns ``fpath`` or anything below it."""
    n = len(fpath)
    return any(f[:n] == fpath for f in fields)


def apply(
    live: dict[str, Any] | None,
    config: dict[str, Any],
    info: TypeInfo,
    *,
    manager: str,
    force: bool = False,
    subresource: str = "",
) -> dict[str, Any]:
    """The object after ``manager`` applies ``config`` to ``live`` (None: create). Raises ApplyConflict."""
    api_version = config.get("apiVersion", "")
    status_only = subresource == "status"
    scope = True if status_only else (False if info.has_status else None)
    base = copy.deepcopy(live) if live is not None else {}
    entries = read_entries(base)
    applied = field_set(config, info, status=scope)
    mine = next(
        (
            e
            for e in entries
            if e.manager == manager and e.operation == "Apply" and e.subresource == subresource
        ),
        None,
    )
    others = [e for e in entries if e is not mine]

    conflicts: list[tuple[str, str]] = []
    taken: dict[int, set[FieldPath]] = {}
    for index, entry in enumerate(others):
        for fpath in sorted(applied & entry.fields):
            if fpath[-1].startswith(("k:", "v:")):
                continue  # owning an element together is never a conflict, only its values can be
            if get(base, fpath) != get(config, fpath):
                conflicts.append((entry.manager, "." + ".".join(s[2:] for s in fpath)))
                taken.setdefault(index, set()).add(fpath)
    if conflicts and not force:
        raise ApplyConflict(conflicts, api_version)
    # Forced: the conflicting fields move to the applier; fields applied with the same value stay shared.
    for index, fpaths in taken.items():
        others[index].fields = others[index].fields - fpaths

    scoped = {
        k: v
        for k, v in config.items()
        if scope is None or k in ("apiVersion", "kind", "metadata") or (k == "status") == scope
    }
    result: dict[str, Any] = merge(base, scoped, info)
    previous = mine.fields if mine is not None else frozenset()
    still_owned = frozenset().union(*(e.fields for e in others)) if others else frozenset()
    for fpath in sorted(previous - applied, key=len):
        if not _owned(fpath, applied) and not _owned(fpath, still_owned):
            _remove(result, fpath)

    if mine is None:
        mine = Entry(manager, "Apply", api_version, applied, subresource)
        entries.append(mine)
    mine.fields, mine.api_version, mine.time = applied, api_version, _now()
    write_entries(result, entries)
    return result


def record_update(
    before: dict[str, Any] | None,
    after: dict[str, Any],
    info: TypeInfo,
    *,
    manager: str,
    subresource: str = "",
) -> None:
    """Record a non-apply write in ``after``'s managedFields: ``manager`` owns what changed (Update)."""
    entries = read_entries(before) if before is not None else []
    scope = True if subresource == "status" else (False if info.has_status else None)
    now = field_set(after, info, status=scope)
    was = field_set(before, info, status=scope) if before is not None else frozenset()
    changed = frozenset(f for f in now if f not in was or get(before, f) != get(after, f))
    gone = was - now
    for entry in entries:
        entry.fields = entry.fields - changed - gone
    if changed:
        mine = next(
            (
                e
                for e in entries
                if e.manager == manager and e.operation == "Update" and e.subresource == subresource
            ),
            None,
        )
        api_version = after.get("apiVersion", "")
        if mine is None:
            entries.append(Entry(manager, "Update", api_version, changed, subresource, _now()))
        else:
            mine.fields, mine.time = mine.fields | changed, _now()
    write_entries(after, entries)


def manager_from_user_agent(user_agent: str) -> str:
    """The default manager of a non-apply write: the user agent's first token (as the API server does)."""
    return user_agent.split("/", 1)[0].strip() or "unknown"
