"""The gateway stand-in's Gateway API half (``sentiment_devcluster.httproutes``): HTTPRoute matching and its
precedence, the URLRewrite filter, weighted backendRefs and RequestMirror as the API reference defines them,
carried out on real connections; and the controller's half, status.parents per parent with the route's
generation, written through the status subresource of the real test API server and read back by the
operator's own Routing logic."""

from __future__ import annotations

import asyncio
import collections
import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiohttp.web
import kmock
import pytest
from polling import eventually
from sentiment_devcluster.apiserver.server import ApiServer, Fault, matcher
from sentiment_devcluster.gateway import Gateway
from sentiment_devcluster.httproutes import (
    CONTROLLER_NAME,
    Backend,
    HTTPRouteController,
    Request,
    parents_status,
    pick,
    replace_prefix,
    select,
)
from sentiment_operator import status
from sentiment_operator.builders.routing import http_route, route_intent
from sentiment_operator.spec import parse_spec
from sentiment_operator.traffic import TrafficSplit

NS = "ns"
ROUTES = f"/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes"
# The Gateway API example's shape: /v1/feedback on the gateway, /feedback on the server.
SPEC = {
    "server": {"pathPrefix": "/feedback"},
    "routing": {
        "enabled": True,
        "provider": "gatewayAPI",
        "gateways": ["infra/public", "internal"],
        "pathPrefix": "/v1/feedback",
    },
}


def operator_route(split: TrafficSplit | None = None) -> dict[str, Any]:
    """The HTTPRoute the operator renders for model "feedback" in NS, as the API server stores it."""
    spec = parse_spec("feedback", SPEC)
    route = http_route(route_intent("feedback", NS, spec, split or TrafficSplit(80, 20)), uid=None)
    route["metadata"].update(namespace=NS, generation=1, creationTimestamp="2026-01-01T00:00:00Z")
    return route


def route(name: str, *rules: dict[str, Any], created: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": NS, "generation": 1, "creationTimestamp": created},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": list(rules)},
    }


def rule(*matches: dict[str, Any], to: str = "svc", **extra: Any) -> dict[str, Any]:
    return {"matches": list(matches), "backendRefs": [{"name": to, "port": 8000}], **extra}


def prefix(value: str, **extra: Any) -> dict[str, Any]:
    return {"path": {"type": "PathPrefix", "value": value}, **extra}


def get(path: str, method: str = "GET", headers: dict[str, str] | None = None, **query: str) -> Request:
    return Request(method, path, headers or {}, query)


def taken(routes: list[dict[str, Any]], request: Request) -> str | None:
    """Which backend the selected rule sends to ("route/backend"), or None."""
    found = select(routes, request)
    return (
        None if found is None else f"{found.route['metadata']['name']}/{found.rule['backendRefs'][0]['name']}"
    )


# --- matching -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["/project", "/project/"])
def test_path_prefix_matches_whole_path_elements(value: str) -> None:
    """PathPrefix: element by element, a trailing "/" ignored; "/abcd" never matches "/abc"."""
    routes = [route("r", rule(prefix(value)))]
    for path in ("/project", "/project/", "/project/predict", "/project/a/b"):
        assert taken(routes, get(path)) == "r/svc", path
    for path in ("/projects", "/projectx/predict", "/", "/other/project"):
        assert taken(routes, get(path)) is None, path
    everything = [route("r", rule(prefix("/")))]
    assert taken(everything, get("/anything/at/all")) == "r/svc"


def test_exact_and_regular_expression_paths_match_the_whole_path() -> None:
    exact = [route("r", rule({"path": {"type": "Exact", "value": "/abc"}}))]
    assert taken(exact, get("/abc")) == "r/svc"
    assert [taken(exact, get(p)) for p in ("/abc/", "/Abc", "/abcd")] == [None, None, None]
    regex = [route("r", rule({"path": {"type": "RegularExpression", "value": "/v[0-9]+/predict"}}))]
    assert taken(regex, get("/v2/predict")) == "r/svc"
    assert taken(regex, get("/v2/predict/x")) is None


def test_method_header_and_query_matches_must_all_hold() -> None:
    match = prefix(
        "/api",
        method="POST",
        headers=[{"name": "X-Track", "value": "canary"}],
        queryParams=[{"type": "RegularExpression", "name": "v", "value": "[0-9]+"}],
    )
    routes = [route("r", rule(match))]
    assert taken(routes, get("/api/x", "POST", {"x-track": "canary"}, v="2")) == "r/svc"
    assert taken(routes, get("/api/x", "GET", {"x-track": "canary"}, v="2")) is None
    assert taken(routes, get("/api/x", "POST", {"x-track": "stable"}, v="2")) is None
    assert taken(routes, get("/api/x", "POST", {"x-track": "canary"}, v="two")) is None
    assert taken(routes, get("/api/x", "POST", {"x-track": "canary"})) is None


def test_precedence_across_routes_follows_the_api() -> None:
    """Exact, then the longest prefix, a method, more headers, more query params; then the oldest route, then
    namespace/name, then the first rule."""
    routes = [
        route("a-short", rule(prefix("/v1"), to="short")),
        route("b-long", rule(prefix("/v1/feedback"), to="long"), created="2026-02-01T00:00:00Z"),
        route("c-exact", rule({"path": {"type": "Exact", "value": "/v1/feedback/predict"}}, to="exact")),
        route("d-method", rule(prefix("/v1/feedback", method="POST"), to="method")),
        route(
            "e-header",
            rule(prefix("/v1/feedback", method="POST", headers=[{"name": "h", "value": "1"}]), to="hdr"),
        ),
    ]
    assert taken(routes, get("/v1/feedback/predict", "POST", {"h": "1"})) == "c-exact/exact"
    assert taken(routes, get("/v1/feedback/batch", "POST", {"h": "1"})) == "e-header/hdr"
    assert taken(routes, get("/v1/feedback/batch", "POST")) == "d-method/method"
    assert taken(routes, get("/v1/feedback/batch")) == "b-long/long"
    assert taken(routes, get("/v1/other")) == "a-short/short"
    # Ties: the oldest route, then namespace/name, then the route's first matching rule.
    older = route("z", rule(prefix("/t"), to="older"), created="2025-01-01T00:00:00Z")
    tied = [route("y", rule(prefix("/t"), to="newer"), created="2026-01-01T00:00:00Z"), older]
    assert taken(tied, get("/t")) == "z/older"
    same_time = [route("n", rule(prefix("/t"), to="n")), route("m", rule(prefix("/t"), to="m"))]
    assert taken(same_time, get("/t")) == "m/m"
    two_rules = [route("r", rule(prefix("/t"), to="first"), rule(prefix("/t"), to="second"))]
    assert taken(two_rules, get("/t")) == "r/first"


@pytest.mark.parametrize(
    ("request_path", "matched", "replacement", "modified"),
    [  # the table of HTTPPathModifier.ReplacePrefixMatch in the API reference, row by row
        ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
        ("/foo", "/foo", "/xyz", "/xyz"),
        ("/foo/", "/foo", "/xyz", "/xyz/"),
        ("/foo/bar", "/foo", "", "/bar"),
        ("/foo/", "/foo", "", "/"),
        ("/foo", "/foo", "", "/"),
        ("/foo/", "/foo", "/", "/"),
        ("/foo", "/foo", "/", "/"),
    ],
)
def test_replace_prefix_match_follows_the_apis_table(
    request_path: str, matched: str, replacement: str, modified: str
) -> None:
    assert replace_prefix(request_path, matched, replacement) == modified
    rewrite = {
        "type": "URLRewrite",
        "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": replacement}},
    }
    found = select([route("r", rule(prefix(matched), filters=[rewrite]))], get(request_path))
    assert found is not None
    assert found.path == modified


def test_the_operators_route_sends_the_gateway_prefix_to_the_servers_prefix() -> None:
    routes = [operator_route()]
    found = select(routes, get("/v1/feedback/predict", "POST"))
    assert found is not None
    assert (found.path, found.hostname) == ("/feedback/predict", None)
    assert select(routes, get("/v1/feedback", "POST")).path == "/feedback"  # type: ignore[union-attr]
    assert select(routes, get("/v1/feedbacks/predict", "POST")) is None
    assert select(routes, get("/feedback/predict", "POST")) is None
    full = {
        "type": "URLRewrite",
        "urlRewrite": {
            "hostname": "internal.example",
            "path": {"type": "ReplaceFullPath", "replaceFullPath": "/health"},
        },
    }
    other = select([route("r", rule(prefix("/x"), filters=[full]))], get("/x/y"))
    assert other is not None
    assert (other.path, other.hostname) == ("/health", "internal.example")


# --- backends and mirrors -----------------------------------------------------------------------------


def test_weights_pick_in_proportion_and_weight_zero_gets_nothing() -> None:
    def backend(name: str, weight: int | None) -> Backend:
        ref: dict[str, Any] = {"name": name, "port": 8000}
        if weight is not None:
            ref["weight"] = weight
        return Backend.of(ref, NS)

    rolls = [i / 1000 for i in range(1000)]
    split = collections.Counter(pick([backend("stable", 80), backend("canary", 20)], r).name for r in rolls)  # type: ignore[union-attr]
    assert split == {"stable": 800, "canary": 200}
    zero = collections.Counter(pick([backend("stable", 100), backend("canary", 0)], r).name for r in rolls)  # type: ignore[union-attr]
    assert zero == {"stable": 1000}
    unset = collections.Counter(pick([backend("a", None), backend("b", None)], r).name for r in rolls)  # type: ignore[union-attr]
    assert unset == {"a": 500, "b": 500}  # weight defaults to 1
    assert pick([backend("a", 0), backend("b", 0)], 0.5) is None
    assert pick([], 0.5) is None


class Upstreams:
    """Two loopback HTTP servers standing in for Services "feedback" and "feedback-canary" (same port on
    different addresses, as Services are); each counts requests by the Host header it saw."""

    def __init__(self) -> None:
        self.seen: dict[str, collections.Counter[str]] = {}
        self.paths: set[str] = set()
        self.runners: list[aiohttp.web.AppRunner] = []
        self.port = 0

    async def start(self, *names: str) -> None:
        for index, name in enumerate(names):
            self.seen[name] = collections.Counter()

            async def handle(request: aiohttp.web.Request, name: str = name) -> aiohttp.web.Response:
                self.seen[name][request.host] += 1
                self.paths.add(request.path)
                return aiohttp.web.json_response({"from": name})

            app = aiohttp.web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            runner = aiohttp.web.AppRunner(app)
            await runner.setup()
            await aiohttp.web.TCPSite(runner, f"127.0.0.{index + 1}", self.port).start()
            self.port = self.port or int(runner.addresses[0][1])
            self.runners.append(runner)

    def address(self, namespace: str, name: str) -> str | None:
        names = list(self.seen)
        return f"127.0.0.{names.index(name) + 1}" if namespace == NS and name in names else None

    async def close(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


@pytest.fixture
async def upstreams() -> AsyncIterator[Upstreams]:
    servers = Upstreams()
    await servers.start("feedback", "feedback-canary")
    yield servers
    await servers.close()


def with_port(obj: dict[str, Any], port: int) -> dict[str, Any]:
    """``obj`` with every backendRef port (rules' and mirrors') set to ``port``."""
    text = json.dumps(obj).replace('"port": 8000', f'"port": {port}')
    out: dict[str, Any] = json.loads(text)
    return out


async def test_the_gateway_splits_by_the_http_routes_weights_and_mirrors_keeping_the_host(
    upstreams: Upstreams,
) -> None:
    served = with_port(operator_route(TrafficSplit(70, 30, mirror=50)), upstreams.port)
    gateway = Gateway(list, upstreams.address, http_routes=lambda: [served])
    await gateway.start()
    answered: collections.Counter[str] = collections.Counter()
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(400):
                url = f"{gateway.url}/v1/feedback/predict"
                async with session.post(
                    url, json={"text": ["x"]}, headers={"Host": "api.example"}
                ) as response:
                    assert response.status == 200
                    answered[(await response.json())["from"]] += 1
            async with session.get(f"{gateway.url}/v1/feedbacks") as response:
                assert response.status == 404
        await eventually(lambda: gateway.copies_in_flight == 0, what="the last mirrored copies")
    finally:
        await gateway.close()
    assert upstreams.paths == {"/feedback/predict"}  # rewritten, for the copies too
    assert 0.2 < answered["feedback-canary"] / 400 < 0.4
    canary = upstreams.seen["feedback-canary"]["api.example"]
    copies = canary - answered["feedback-canary"]
    assert 0.35 < copies / 400 < 0.65  # half the requests, with the Host unchanged (Envoy Gateway's copies)
    assert set(upstreams.seen["feedback-canary"]) == {"api.example"}  # no "-shadow" host
    assert upstreams.seen["feedback"]["api.example"] == answered["feedback"]


async def test_an_unresolved_or_weightless_backend_answers_500_and_both_apis_share_the_port(
    upstreams: Upstreams,
) -> None:
    split = with_port(operator_route(TrafficSplit(50, 50)), upstreams.port)
    split["spec"]["rules"][0]["backendRefs"][1]["name"] = "feedback-gone"  # no such Service
    nothing = route("nothing", rule(prefix("/zero")))
    nothing["spec"]["rules"][0]["backendRefs"][0]["weight"] = 0
    virtual_service = {
        "metadata": {"name": "lab", "namespace": NS},
        "spec": {
            "http": [
                {
                    "match": [{"uri": {"prefix": "/lab/"}}],
                    "route": [
                        {
                            "destination": {
                                "host": f"feedback.{NS}.svc.cluster.local",
                                "port": {"number": upstreams.port},
                            }
                        }
                    ],
                }
            ]
        },
    }
    gateway = Gateway(lambda: [virtual_service], upstreams.address, http_routes=lambda: [split, nothing])
    await gateway.start()
    statuses: collections.Counter[int] = collections.Counter()
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                async with session.post(f"{gateway.url}/v1/feedback/predict", json={}) as response:
                    statuses[response.status] += 1
            async with session.get(f"{gateway.url}/zero/x") as response:
                assert response.status == 500
            async with session.get(f"{gateway.url}/lab/predict") as response:
                assert (response.status, (await response.json())["from"]) == (200, "feedback")
    finally:
        await gateway.close()
    assert set(statuses) == {200, 500}
    assert 0.35 < statuses[500] / 200 < 0.65  # the invalid backend's share, as the API requires


async def test_a_request_on_a_connection_the_upstream_closed_is_sent_again_once() -> None:
    """A pod that begins to stop closes its kept-alive connections; a request the gateway sent on one as it
    closed goes out once more on a new connection. A second hang-up is the upstream's answer: 503."""
    connections: list[int] = []
    hang_ups = 1

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections))
        await reader.readuntil(b"\r\n\r\n")
        if len(connections) <= hang_ups:  # read the request, then close without an answer
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    served = route("feedback", rule(prefix("/feedback")))
    served["spec"]["rules"][0]["backendRefs"][0]["port"] = port
    gateway = Gateway(list, lambda namespace, name: "127.0.0.1", http_routes=lambda: [served])
    await gateway.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{gateway.url}/feedback/predict", json={"text": "x"}) as response:
                assert (response.status, await response.text()) == (200, "ok")
            assert len(connections) == 2  # the hang-up and the one more try
            hang_ups = 4  # the next request's two tries are both hung up on
            async with session.post(f"{gateway.url}/feedback/predict", json={"text": "x"}) as response:
                assert response.status == 503, connections
            assert len(connections) == 4  # never a third try
    finally:
        await gateway.close()
        server.close()
        await server.wait_closed()


# --- the controller -----------------------------------------------------------------------------------


def services(*names: str) -> Any:
    return lambda namespace, name: namespace == NS and name in names


def verdicts(parents: list[dict[str, Any]]) -> list[tuple[str, str, str, str, int]]:
    return [
        (p["parentRef"]["name"], c["type"], c["status"], c["reason"], c["observedGeneration"])
        for p in parents
        for c in p["conditions"]
    ]


def test_each_gateway_parent_gets_accepted_and_resolved_refs_for_the_routes_generation() -> None:
    served = operator_route(TrafficSplit(90, 10, mirror=20))
    served["metadata"]["generation"] = 4
    parents = parents_status(served, services("feedback", "feedback-canary"), "2026-01-02T00:00:00Z")
    assert verdicts(parents) == [
        ("public", "Accepted", "True", "Accepted", 4),
        ("public", "ResolvedRefs", "True", "ResolvedRefs", 4),
        ("internal", "Accepted", "True", "Accepted", 4),
        ("internal", "ResolvedRefs", "True", "ResolvedRefs", 4),
    ]
    assert [p["parentRef"] for p in parents] == served["spec"]["parentRefs"]
    assert {p["controllerName"] for p in parents} == {CONTROLLER_NAME}
    # The operator's Routing logic, reading this status: accepted for the current generation.
    written = {**served, "status": {"parents": parents}}
    routing = status.http_route_condition(written, "feedback", "/v1/feedback", 1)
    assert (routing["status"], routing["reason"]) == ("True", "HTTPRouteAccepted")


def test_unresolved_references_and_unsupported_filters_are_reported() -> None:
    served = operator_route(TrafficSplit(90, 10, mirror=20))
    missing = parents_status(served, services("feedback"), "t")
    resolved = next(c for c in missing[0]["conditions"] if c["type"] == "ResolvedRefs")
    assert (resolved["status"], resolved["reason"]) == ("False", "BackendNotFound")
    assert (
        resolved["message"] == f"Service {NS}/feedback-canary not found"
    )  # the backend and the mirror: once
    elsewhere = copy.deepcopy(served)
    elsewhere["spec"]["rules"][0]["backendRefs"][0]["namespace"] = "other"
    refused = parents_status(elsewhere, services("feedback", "feedback-canary"), "t")
    assert verdicts(refused)[1][2:4] == ("False", "RefNotPermitted")
    wrong_kind = copy.deepcopy(served)
    wrong_kind["spec"]["rules"][0]["backendRefs"][0].update(group="example.com", kind="Bucket")
    assert verdicts(parents_status(wrong_kind, services("feedback", "feedback-canary"), "t"))[1][2:4] == (
        "False",
        "InvalidKind",
    )
    redirect = copy.deepcopy(served)
    redirect["spec"]["rules"][0]["filters"] = [{"type": "RequestHeaderModifier", "requestHeaderModifier": {}}]
    accepted = parents_status(redirect, services("feedback", "feedback-canary"), "t")[0]["conditions"][0]
    assert (accepted["status"], accepted["reason"]) == ("False", "UnsupportedValue")
    assert "RequestHeaderModifier" in accepted["message"]
    assert select([redirect], get("/v1/feedback/predict")) is None  # not accepted: not served
    reported = {**redirect, "status": {"parents": parents_status(redirect, services("feedback"), "t")}}
    assert status.http_route_condition(reported, "feedback", "/", 1)["reason"] == "HTTPRouteNotAccepted"


def test_other_controllers_entries_stay_and_transition_times_change_only_with_the_status() -> None:
    served = operator_route()
    theirs = {
        "parentRef": {"name": "mesh", "kind": "Service", "group": ""},
        "controllerName": "example.com/mesh",
        "conditions": [],
    }
    served["spec"]["parentRefs"].append({"name": "mesh", "kind": "Service", "group": ""})
    first = parents_status(
        {**served, "status": {"parents": [theirs]}}, services("feedback", "feedback-canary"), "t1"
    )
    assert first[0] == theirs
    assert [p["parentRef"]["name"] for p in first] == [
        "mesh",
        "public",
        "internal",
    ]  # no entry for a Service parent
    served["metadata"]["generation"] = 2
    again = parents_status(
        {**served, "status": {"parents": first}}, services("feedback", "feedback-canary"), "t2"
    )
    assert {c["lastTransitionTime"] for p in again[1:] for c in p["conditions"]} == {"t1"}
    assert {c["observedGeneration"] for p in again[1:] for c in p["conditions"]} == {2}
    gone = parents_status({**served, "status": {"parents": again}}, services("feedback"), "t3")
    times = {
        (p["parentRef"]["name"], c["type"]): c["lastTransitionTime"]
        for p in gone[1:]
        for c in p["conditions"]
    }
    assert times == {
        ("public", "Accepted"): "t1",
        ("public", "ResolvedRefs"): "t3",
        ("internal", "Accepted"): "t1",
        ("internal", "ResolvedRefs"): "t3",
    }
    served["spec"]["parentRefs"] = served["spec"]["parentRefs"][:1]  # a parent dropped: its entry goes
    assert [
        p["parentRef"]["name"]
        for p in parents_status({**served, "status": {"parents": gone}}, services(), "t4")
    ] == ["mesh", "public"]


@pytest.fixture
async def api() -> AsyncIterator[tuple[ApiServer, str]]:
    async with ApiServer() as server, kmock.Server(server) as http:
        server.register()
        server.install_gateway_api()
        yield server, str(http.url).rstrip("/")


async def call(url: str, method: str, path: str, body: Any = None, ctype: str = "application/json") -> Any:
    headers = {"Content-Type": ctype}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url + path, data=json.dumps(body), headers=headers) as response,
    ):
        assert response.status < 300, await response.text()
        return await response.json()


async def test_the_controller_writes_status_through_the_subresource_for_each_generation(
    api: tuple[ApiServer, str],
) -> None:
    server, url = api
    for name in ("feedback", "feedback-canary"):
        service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {}}
        await call(url, "POST", f"/api/v1/namespaces/{NS}/services", service)
    created = operator_route(TrafficSplit(80, 20))
    for key in ("generation", "creationTimestamp"):
        del created["metadata"][key]
    await call(url, "POST", ROUTES, created)
    conflict = server.inject(Fault(matcher("PUT", "httproutes", subresource="status"), status=409))
    async with HTTPRouteController(url) as controller:
        assert await controller.sync() == 0  # a conflict (written meanwhile): nothing, until the next pass
        assert len(conflict.hits) == 1
        assert await controller.sync() == 1
        first = await call(url, "GET", f"{ROUTES}/feedback")
        assert {c["observedGeneration"] for p in first["status"]["parents"] for c in p["conditions"]} == {1}
        assert status.http_route_condition(first, "feedback", "/", 1)["reason"] == "HTTPRouteAccepted"
        managers = {(e["manager"], e.get("subresource")) for e in first["metadata"]["managedFields"]}
        assert ("devcluster-gateway-controller", "status") in managers
        assert await controller.sync() == 0  # nothing changed: nothing written

        # A rollout's next step: the operator's spec change bumps the generation; the verdict follows it, and
        # the operator does not count the stale one meanwhile.
        patch = {"spec": operator_route(TrafficSplit(50, 50))["spec"]}
        stale = await call(url, "PATCH", f"{ROUTES}/feedback", patch, "application/merge-patch+json")
        assert stale["metadata"]["generation"] == 2
        assert status.http_route_condition(stale, "feedback", "/", 2)["reason"] == "HTTPRoutePending"
        assert await controller.sync() == 1
        second = await call(url, "GET", f"{ROUTES}/feedback")
        assert {c["observedGeneration"] for p in second["status"]["parents"] for c in p["conditions"]} == {2}
        assert second["spec"]["rules"][0]["backendRefs"][1]["weight"] == 50
        assert status.http_route_condition(second, "feedback", "/", 2)["reason"] == "HTTPRouteAccepted"

        # The canary's Service goes: its reference no longer resolves.
        await call(url, "DELETE", f"/api/v1/namespaces/{NS}/services/feedback-canary")
        assert await controller.sync() == 1
        third = await call(url, "GET", f"{ROUTES}/feedback")
    routing = status.http_route_condition(third, "feedback", "/", 2)
    assert routing["reason"] == "HTTPRouteRefsNotResolved"
    assert f"Service {NS}/feedback-canary not found" in routing["message"]
