"""Gateway API's HTTPRoute as an implementation carries it out: the gateway stand-in's half for HTTPRoutes
(which rule a request takes, its rewrite, backend and mirrors) and the controller's half (the route's
``status.parents``), following the API reference of ``gateway.networking.k8s.io/v1`` (``HTTPRouteRule``,
``HTTPPathModifier``, ``HTTPRequestMirrorFilter``, ``HTTPBackendRef``, ``RouteParentStatus``).

- Matching: across every accepted route, the match of highest precedence wins: an Exact path, then the
  longest PathPrefix, then one with a method, then the most header matches, then the most query parameter
  matches; ties go to the oldest route, then the first by "namespace/name", then the route's first rule.
  PathPrefix compares whole path elements, a trailing ``/`` ignored (``/project`` matches ``/project``,
  ``/project/`` and ``/project/x``, never ``/projects``). RegularExpression (implementation-specific) must
  match the whole path and comes after every prefix. No match in any route (nor VirtualService): 404.
- URLRewrite: ``ReplacePrefixMatch`` swaps exactly the matched elements (the API's table of examples is a
  test), ``ReplaceFullPath`` the whole path, ``hostname`` the Host.
- backendRefs: one picked at random by weight (unset: 1; weight 0 gets nothing). A request that falls to a
  backend that does not resolve, or to no backend, is answered 500, as the API requires.
- RequestMirror: each such filter copies ``percent`` (or ``fraction``; neither: every request) of the
  requests, as rewritten, to its backendRef and discards the answers. The copy keeps the request's Host: Envoy
  Gateway (the implementation the README installs) turns Envoy's ``-shadow`` Host suffix off
  (``DisableShadowHostSuffixAppend``, since v1.6), so a server cannot tell a copy from a request. (Istio's
  Gateway API implementation keeps Envoy's default and appends ``-shadow``, as its VirtualService mirrors do.)
- Status: for every parentRef of kind Gateway, one ``status.parents[]`` entry under :data:`CONTROLLER_NAME`
  with ``Accepted`` and ``ResolvedRefs`` carrying the route's ``metadata.generation`` as
  ``observedGeneration``, written by read-modify-write through the status subresource (a PUT with the
  resourceVersion read; a conflict waits for the next pass); other controllers' entries are kept, ours are
  rebuilt from the spec (a parent no longer referenced loses its entry). ``lastTransitionTime`` changes only
  when a condition's status does.

What only a real implementation does: Gateways, GatewayClasses and listeners (every Gateway parentRef is taken
as one this controller runs, and accepted: no ``allowedRoutes``, ``sectionName``, port or listener hostname
checks), ReferenceGrants (not served: a backendRef to another namespace is ``RefNotPermitted``), the route's
``hostnames`` (not matched), the filters other than URLRewrite and RequestMirror and backendRef filters (a
route using one is not accepted, ``UnsupportedValue``, and not served), retries, timeouts, TLS, session
persistence and telemetry.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

JSON = dict[str, Any]
GROUP = "gateway.networking.k8s.io"
# The controllerName of this implementation's status entries (Gateway API's DOMAIN "/" PATH form).
CONTROLLER_NAME = "devcluster.sentiment.dev/gateway-stand-in"
SUPPORTED_FILTERS = ("URLRewrite", "RequestMirror")
_DEFAULT_MATCH: JSON = {"path": {"type": "PathPrefix", "value": "/"}}

# --- which rule a request takes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """What matching looks at: the method, the path, the headers (names lowercase) and the query (the first
    value of each parameter)."""

    method: str
    path: str
    headers: Mapping[str, str]
    query: Mapping[str, str]


@dataclass(frozen=True)
class Selected:
    """The rule a request takes, and the request as its URLRewrite filter leaves it."""

    route: JSON
    rule: JSON
    path: str
    hostname: str | None  # the Host to send (None: the request's own)

    @property
    def namespace(self) -> str:
        return str(self.route["metadata"]["namespace"])


def _prefix(value: str) -> str:
    """A PathPrefix value without its trailing ``/`` (``/`` becomes "", which matches every path)."""
    return value.rstrip("/")


def path_matches(path_match: Mapping[str, Any], path: str) -> bool:
    kind = path_match.get("type", "PathPrefix")
    value = str(path_match.get("value", "/"))
    if kind == "Exact":
        return path == value
    if kind == "PathPrefix":
        prefix = _prefix(value)
        return not prefix or path == prefix or path.startswith(prefix + "/")
    return kind == "RegularExpression" and re.fullmatch(value, path) is not None


def _value_matches(match: Mapping[str, Any], actual: str | None) -> bool:
    if actual is None:
        return False
    if match.get("type", "Exact") == "RegularExpression":
        return re.fullmatch(str(match["value"]), actual) is not None
    return actual == str(match["value"])


def match_fits(match: Mapping[str, Any], request: Request) -> bool:
    """Whether one HTTPRouteMatch fits: every condition it names holds (header names are case-insensitive,
    query parameter names are not)."""
    if not path_matches(match.get("path") or _DEFAULT_MATCH["path"], request.path):
        return False
    if "method" in match and match["method"] != request.method:
        return False
    if not all(
        _value_matches(h, request.headers.get(str(h["name"]).lower())) for h in match.get("headers") or []
    ):
        return False
    return all(_value_matches(q, request.query.get(str(q["name"]))) for q in match.get("queryParams") or [])


def _precedence(route: Mapping[str, Any], rule_index: int, match: Mapping[str, Any]) -> tuple[Any, ...]:
    """The sort key of a fitting match: lower wins (the order of the API's precedence rules)."""
    path = match.get("path") or _DEFAULT_MATCH["path"]
    kind = path.get("type", "PathPrefix")
    rank = {"Exact": 0, "PathPrefix": 1}.get(kind, 2)
    length = len(_prefix(str(path.get("value", "/")))) if kind == "PathPrefix" else 0
    meta = route["metadata"]
    return (
        rank,
        -length,
        0 if "method" in match else 1,
        -len(match.get("headers") or []),
        -len(match.get("queryParams") or []),
        str(meta.get("creationTimestamp") or ""),
        f"{meta['namespace']}/{meta['name']}",
        rule_index,
    )


def replace_prefix(path: str, prefix: str, replacement: str) -> str:
    """``path``, which PathPrefix ``prefix`` matched, with those elements replaced (ReplacePrefixMatch)."""
    rest = path[len(_prefix(prefix)) :]
    return (_prefix(replacement) + rest) or "/"


def _rewrite(rule: Mapping[str, Any], match: Mapping[str, Any], path: str) -> tuple[str, str | None]:
    for flt in rule.get("filters") or []:
        if flt.get("type") != "URLRewrite":
            continue
        rewrite = flt.get("urlRewrite") or {}
        modifier = rewrite.get("path") or {}
        if modifier.get("type") == "ReplacePrefixMatch":
            prefix = str((match.get("path") or _DEFAULT_MATCH["path"]).get("value", "/"))
            path = replace_prefix(path, prefix, str(modifier.get("replacePrefixMatch", "")))
        elif modifier.get("type") == "ReplaceFullPath":
            path = str(modifier["replaceFullPath"])
        return path, rewrite.get("hostname")
    return path, None


def select(routes: Sequence[Mapping[str, Any]], request: Request) -> Selected | None:
    """The rule of highest precedence whose match fits ``request``, across ``routes`` (those this
    implementation cannot carry out are skipped: they are not accepted)."""
    best: tuple[tuple[Any, ...], Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]] | None = None
    for route in routes:
        if unsupported(route) is not None:
            continue
        for index, rule in enumerate((route.get("spec") or {}).get("rules") or [{}]):
            for match in rule.get("matches") or [_DEFAULT_MATCH]:
                if match_fits(match, request):
                    key = _precedence(route, index, match)
                    if best is None or key < best[0]:
                        best = (key, route, rule, match)
    if best is None:
        return None
    _, route, rule, match = best
    path, hostname = _rewrite(rule, match, request.path)
    return Selected(dict(route), dict(rule), path, hostname)


# --- backends and mirrors -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """A backendRef (of a rule or of a RequestMirror filter) with the API's defaults filled in."""

    group: str
    kind: str
    namespace: str
    name: str
    port: int | None
    weight: int

    @classmethod
    def of(cls, ref: Mapping[str, Any], route_namespace: str) -> Backend:
        return cls(
            group=str(ref.get("group") or ""),
            kind=str(ref.get("kind") or "Service"),
            namespace=str(ref.get("namespace") or route_namespace),
            name=str(ref["name"]),
            port=int(ref["port"]) if ref.get("port") is not None else None,
            weight=int(ref.get("weight", 1)),
        )

    def problem(
        self, route_namespace: str, service_exists: Callable[[str, str], bool]
    ) -> tuple[str, str] | None:
        """Why this reference does not resolve, as (ResolvedRefs reason, message); None: it resolves."""
        if (self.group, self.kind) != ("", "Service"):
            return (
                "InvalidKind",
                f"backendRef {self.name}: kind {self.group or 'core'}/{self.kind} is not supported",
            )
        if self.namespace != route_namespace:
            return (
                "RefNotPermitted",
                f"backendRef {self.namespace}/{self.name}: no ReferenceGrant allows a reference to another "
                "namespace (ReferenceGrants are not served here)",
            )
        if not service_exists(self.namespace, self.name):
            return "BackendNotFound", f"Service {self.namespace}/{self.name} not found"
        return None


def backends(rule: Mapping[str, Any], route_namespace: str) -> list[Backend]:
    return [Backend.of(ref, route_namespace) for ref in rule.get("backendRefs") or []]


def pick(candidates: Sequence[Backend], roll: float) -> Backend | None:
    """The backend a request goes to, by weight, for a uniform ``roll`` in [0, 1); None: no weight at all."""
    total = sum(max(b.weight, 0) for b in candidates)
    if total <= 0:
        return None
    point = roll * total
    for backend in candidates:
        if backend.weight <= 0:
            continue
        if point < backend.weight:
            return backend
        point -= backend.weight
    return next(b for b in reversed(candidates) if b.weight > 0)


def mirrors(rule: Mapping[str, Any], route_namespace: str) -> list[tuple[Backend, float]]:
    """Each RequestMirror filter's backend and the percent of requests it copies."""
    out = []
    for flt in rule.get("filters") or []:
        if flt.get("type") != "RequestMirror":
            continue
        mirror = flt.get("requestMirror") or {}
        if mirror.get("percent") is not None:
            percent = float(mirror["percent"])
        elif mirror.get("fraction") is not None:
            fraction = mirror["fraction"]
            percent = 100.0 * float(fraction["numerator"]) / float(fraction.get("denominator", 100))
        else:
            percent = 100.0
        out.append((Backend.of(mirror["backendRef"], route_namespace), percent))
    return out


# --- the controller's verdict ---------------------------------------------------------------------------


def unsupported(route: Mapping[str, Any]) -> str | None:
    """Why this implementation cannot carry ``route`` out (its Accepted=False message), or None."""
    for index, rule in enumerate((route.get("spec") or {}).get("rules") or []):
        for flt in rule.get("filters") or []:
            if flt.get("type") not in SUPPORTED_FILTERS:
                return f"rules[{index}]: filter {flt.get('type')} is not supported by the gateway stand-in"
            modifier = (flt.get("urlRewrite") or {}).get("path") or {}
            if modifier and modifier.get("type") not in ("ReplacePrefixMatch", "ReplaceFullPath"):
                return f"rules[{index}]: path modifier {modifier.get('type')} is not supported"
        if any(ref.get("filters") for ref in rule.get("backendRefs") or []):
            return f"rules[{index}]: backendRef filters are not supported by the gateway stand-in"
        for match in rule.get("matches") or []:
            kind = (match.get("path") or {}).get("type", "PathPrefix")
            if kind not in ("Exact", "PathPrefix", "RegularExpression"):
                return f"rules[{index}]: path match type {kind} is not supported"
    return None


def unresolved(route: Mapping[str, Any], service_exists: Callable[[str, str], bool]) -> list[tuple[str, str]]:
    """Every backendRef of ``route`` (rules' and mirrors') that does not resolve: (reason, message)."""
    namespace = str(route["metadata"]["namespace"])
    found: list[tuple[str, str]] = []
    for rule in (route.get("spec") or {}).get("rules") or []:
        refs = backends(rule, namespace) + [backend for backend, _ in mirrors(rule, namespace)]
        for backend in refs:
            problem = backend.problem(namespace, service_exists)
            if problem is not None and problem not in found:
                found.append(problem)
    return found


def _condition(ctype: str, ok: bool, reason: str, message: str, generation: int) -> JSON:
    return {
        "type": ctype,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def conditions(route: Mapping[str, Any], service_exists: Callable[[str, str], bool]) -> list[JSON]:
    """Accepted and ResolvedRefs for ``route`` as it is now (lastTransitionTime not yet set)."""
    generation = int(route["metadata"].get("generation") or 1)
    why = unsupported(route)
    accepted = (
        _condition("Accepted", False, "UnsupportedValue", why, generation)
        if why is not None
        else _condition("Accepted", True, "Accepted", "Route is accepted", generation)
    )
    problems = unresolved(route, service_exists)
    resolved = (
        _condition("ResolvedRefs", False, problems[0][0], "; ".join(m for _, m in problems), generation)
        if problems
        else _condition(
            "ResolvedRefs", True, "ResolvedRefs", "Resolved all the Object references", generation
        )
    )
    return [accepted, resolved]


def _is_gateway(ref: Mapping[str, Any]) -> bool:
    return (ref.get("group") if ref.get("group") is not None else GROUP) == GROUP and (
        ref.get("kind") or "Gateway"
    ) == "Gateway"


def _ref_key(ref: Mapping[str, Any], namespace: str) -> tuple[Any, ...]:
    return (ref.get("namespace") or namespace, ref.get("name"), ref.get("sectionName"), ref.get("port"))


def parents_status(
    route: Mapping[str, Any], service_exists: Callable[[str, str], bool], now: str
) -> list[JSON]:
    """``status.parents`` after this controller's report: the other controllers' entries as they are, then
    one entry per Gateway parentRef, a condition's ``lastTransitionTime`` kept while its status stays."""
    namespace = str(route["metadata"]["namespace"])
    live = [e for e in (route.get("status") or {}).get("parents") or [] if isinstance(e, Mapping)]
    ours = {
        _ref_key(e.get("parentRef") or {}, namespace): e
        for e in live
        if e.get("controllerName") == CONTROLLER_NAME
    }
    fresh = conditions(route, service_exists)
    entries = [dict(e) for e in live if e.get("controllerName") != CONTROLLER_NAME]
    for ref in (route.get("spec") or {}).get("parentRefs") or []:
        if not _is_gateway(ref):
            continue  # a Service (mesh) parent: another kind of controller's
        before = {
            c.get("type"): c for c in (ours.get(_ref_key(ref, namespace)) or {}).get("conditions") or []
        }
        reported = []
        for cond in fresh:
            previous = before.get(cond["type"]) or {}
            since = previous.get("lastTransitionTime") if previous.get("status") == cond["status"] else None
            reported.append({**cond, "lastTransitionTime": since or now})
        entries.append({"parentRef": dict(ref), "controllerName": CONTROLLER_NAME, "conditions": reported})
    return entries


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class HTTPRouteController:
    """The Gateway API controller of the embedded cluster: each pass lists the HTTPRoutes and the Services
    from the API server at ``api_url`` and writes each route's verdict to its status, through the status
    subresource, when it changed. ``run`` makes a pass every ``interval``; ``async with`` opens the client
    for single passes (``sync``)."""

    def __init__(self, api_url: str, *, version: str = "v1", interval: float = 0.5) -> None:
        self.api_url = api_url.rstrip("/")
        self.version = version
        self.interval = interval
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HTTPRouteController:
        timeout = aiohttp.ClientTimeout(total=10)
        headers = {"User-Agent": "devcluster-gateway-controller"}
        self._session = aiohttp.ClientSession(timeout=timeout, headers=headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _list(self, path: str) -> list[JSON] | None:
        """The items of a list (None: the resource is not served)."""
        assert self._session is not None
        async with self._session.get(self.api_url + path) as response:
            if response.status == 404:
                return None
            response.raise_for_status()
            items: list[JSON] = (await response.json())["items"]
            return items

    async def sync(self) -> int:
        """One pass; the number of routes whose status was written."""
        routes = await self._list(f"/apis/{GROUP}/{self.version}/httproutes")
        if not routes:
            return 0
        listed = await self._list("/api/v1/services") or []
        services = {(s["metadata"]["namespace"], s["metadata"]["name"]) for s in listed}
        written = 0
        for route in routes:
            parents = parents_status(route, lambda ns, name: (ns, name) in services, _now())
            if parents != ((route.get("status") or {}).get("parents") or []):
                written += await self._write(route, parents)
        return written

    async def _write(self, route: JSON, parents: list[JSON]) -> int:
        """A read-modify-write of the status (the resourceVersion read is the precondition): 1 if written."""
        assert self._session is not None
        meta = route["metadata"]
        url = (
            f"{self.api_url}/apis/{GROUP}/{self.version}/namespaces/{meta['namespace']}"
            f"/httproutes/{meta['name']}/status"
        )
        body = {**route, "status": {**(route.get("status") or {}), "parents": parents}}
        headers = {"Content-Type": "application/json"}
        async with self._session.put(url, data=json.dumps(body), headers=headers) as response:
            if response.status < 300:
                return 1
            # 409: written meanwhile (by the operator or another controller), 404: deleted meanwhile; the next
            # pass reads it again.
            if response.status not in (404, 409):
                log.warning(
                    "status of HTTPRoute %s/%s: HTTP %s %s",
                    meta["namespace"],
                    meta["name"],
                    response.status,
                    await response.text(),
                )
            return 0

    async def run(self, stop: asyncio.Event) -> None:
        async with self:
            while not stop.is_set():
                try:
                    await self.sync()
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    log.warning("HTTPRoute status: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.interval)
