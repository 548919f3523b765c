"""The three PATCH content types kube-apiserver accepts besides apply, applied as it applies them.

- ``application/merge-patch+json``: RFC 7386. Objects merge, ``null`` deletes, anything else (lists included)
  replaces.
- ``application/json-patch+json``: RFC 6902 (add, remove, replace, move, copy, test); a failed ``test`` or a
  missing path is an error (422 from the API server).
- ``application/strategic-merge-patch+json``: built-in kinds only. Like a merge patch, except lists with
  a ``patchMergeKey`` merge element by element on that key and primitive lists with the merge strategy are
  unions; the directives ``$patch: delete|replace|merge``, ``$retainKeys``,
  ``$deleteFromPrimitiveList/<field>`` and ``$setElementOrder/<field>`` are honoured
  (https://github.com/kubernetes/community/blob/master/contributors/devel/sig-api-machinery/strategic-merge-patch.md).
"""

from __future__ import annotations

import copy
from typing import Any

from sentiment_devcluster.apiserver.schema import Path, TypeInfo

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


class PatchError(ValueError):
    """The patch cannot be applied (the API server answers 422 Unprocessable Entity)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 section 2, MergePatch(Target, Patch)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# ------------------------------------------------------------------------------------------------ RFC 6902


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer {path!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _walk(doc: Any, parts: list[str], path: str) -> Any:
    node = doc
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise PatchError(f"path {path!r} does not exist")
    return node


def _parent(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    return _walk(doc, parts[:-1], path), parts[-1]


def _get(doc: Any, path: str) -> Any:
    return _walk(doc, _pointer(path), path)


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return copy.deepcopy(value)
    parent, last = _parent(doc, parts, path)
    if isinstance(parent, dict):
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        index = len(parent) if last == "-" else int(last) if last.isdigit() else -1
        if not 0 <= index <= len(parent):
            raise PatchError(f"index {last!r} out of range at {path!r}")
        parent.insert(index, copy.deepcopy(value))
    else:
        raise PatchError(f"path {path!r} does not exist")
    return doc


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent, last = _parent(doc, parts, path)
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        del parent[int(last)]
    else:
        raise PatchError(f"path {path!r} does not exist")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 section 4, applied to a copy; raises PatchError like the API server's 422."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch is a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"malformed JSON patch operation {op!r}")
        name, path = op["op"], op["path"]
        if name == "add":
            doc = _add(doc, path, op["value"])
        elif name == "remove":
            doc = _remove(doc, path)
        elif name == "replace":
            _get(doc, path)
            doc = (
                _add(_remove(doc, path), path, op["value"]) if _pointer(path) else copy.deepcopy(op["value"])
            )
        elif name == "move":
            value = copy.deepcopy(_get(doc, op["from"]))
            doc = _add(_remove(doc, op["from"]), path, value)
        elif name == "copy":
            doc = _add(doc, path, _get(doc, op["from"]))
        elif name == "test":
            if _get(doc, path) != op["value"]:
                raise PatchError(f"test failed at {path!r}")
        else:
            raise PatchError(f"unknown JSON patch operation {name!r}")
    return doc


# ---------------------------------------------------------------------------------- strategic merge patch


def strategic_merge_patch(target: Any, patch: Any, info: TypeInfo) -> Any:
    """Apply a strategic merge patch to a built-in kind (``PatchError`` for a custom resource: 415)."""
    if not info.builtin:
        raise PatchError("strategic merge patch is not supported for custom resources")
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch is a JSON object")
    return _smp_map(target if isinstance(target, dict) else {}, patch, info, ())


def _smp_map(target: dict[str, Any], patch: dict[str, Any], info: TypeInfo, path: Path) -> dict[str, Any]:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return {}
    out = copy.deepcopy(target)
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            out[field] = [item for item in out.get(field) or [] if item not in value]
            continue
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            base: dict[str, Any] = out[key] if isinstance(out.get(key), dict) else {}
            merged = _smp_map(base, value, info, (*path, key))
            if value.get("$patch") == "delete":
                out.pop(key, None)
            else:
                out[key] = merged
        elif isinstance(value, list):
            items: list[Any] = out[key] if isinstance(out.get(key), list) else []
            out[key] = _smp_list(items, value, info, (*path, key))
        else:
            out[key] = copy.deepcopy(value)
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    return out


def _smp_list(target: list[Any], patch: list[Any], info: TypeInfo, path: Path) -> list[Any]:
    kind = info.list_type(path)
    if kind.is_set and kind.merge_key is not None:
        return [*target, *(item for item in patch if item not in target)]
    key = kind.merge_key
    if not key:
        if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
            return [
                copy.deepcopy(item) for item in patch if not isinstance(item, dict) or "$patch" not in item
            ]
        return copy.deepcopy(patch)
    out = copy.deepcopy(target)
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"{'.'.join(path)}: list elements merge by {key!r} and must be objects")
        if item.get("$patch") == "replace":
            return [copy.deepcopy(i) for i in patch if i.get("$patch") != "replace"]
        if key not in item:
            raise PatchError(f"{'.'.join(path)}: an element has no merge key {key!r}")
        index = next((i for i, have in enumerate(out) if have.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del out[index]
            continue
        if index is None:
            out.append(_smp_map({}, item, info, (*path, "*")))
        else:
            out[index] = _smp_map(out[index], item, info, (*path, "*"))
    return out
