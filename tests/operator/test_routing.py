"""The route, provider by provider: one intent (path prefix, rewrite, weighted backends, a mirror) rendered
as an Istio VirtualService or a Gateway API HTTPRoute that send the same requests to the same place; choosing
the provider from what the cluster serves; the NetworkPolicy admitting each provider's data plane."""

from __future__ import annotations

from typing import Any

import pytest
from sentiment_operator.builders import build_children, routing
from sentiment_operator.spec import PROVIDERS, parse_spec
from sentiment_operator.spec.routing import DEFAULT_GATEWAY_PEERS, NetworkPolicySpec
from sentiment_operator.traffic import TrafficSplit

NAME, NS = "demo", "ns"


def spec_of(**routing_fields: Any) -> Any:
    return parse_spec(NAME, {"routing": {"enabled": True, **routing_fields}})


def intent(server: str | None = None, **routing_fields: Any) -> routing.RouteIntent:
    raw: dict[str, Any] = {"routing": {"enabled": True, **routing_fields}}
    if server is not None:
        raw["server"] = {"pathPrefix": server}
    return routing.route_intent(NAME, NS, parse_spec(NAME, raw))


def http_route(**routing_fields: Any) -> dict[str, Any]:
    return routing.http_route(intent(**routing_fields), "uid-1")


def rule_of(route: dict[str, Any]) -> dict[str, Any]:
    (rule,) = route["spec"]["rules"]
    assert isinstance(rule, dict)
    return rule


# --- the intent -----------------------------------------------------------------------------------------


def test_the_intent_splits_between_stable_and_canary_and_leaves_out_an_empty_share() -> None:
    assert intent(canary={"weight": 30}).backends == (
        routing.Backend("demo", 70),
        routing.Backend("demo-canary", 30),
    )
    assert intent().backends == (routing.Backend("demo", 100),)
    assert intent(canary={"weight": 0}).backends == (routing.Backend("demo", 100),)
    assert intent(canary={"weight": 100}).backends == (routing.Backend("demo-canary", 100),)


def test_the_split_and_the_mirror_are_inputs_the_manual_canary_only_defaults() -> None:
    """A traffic decision made elsewhere (a rollout's step) plugs in as numbers."""
    spec = parse_spec(NAME, {"routing": {"enabled": True, "canary": {"weight": 10}}})
    decided = routing.route_intent(NAME, NS, spec, TrafficSplit(mirror=50))
    assert decided.backends == (routing.Backend("demo", 100),)
    assert decided.mirror == routing.Mirror("demo-canary", 50)
    assert routing.route_intent(NAME, NS, spec, TrafficSplit.to_canary(60)).backends[1] == routing.Backend(
        "demo-canary", 60
    )
    # A rollout's canary is no routing.canary: its split reaches the route all the same.
    rollout = routing.route_intent(NAME, NS, spec_of(), TrafficSplit.to_canary(25))
    assert rollout.backends == (routing.Backend("demo", 75), routing.Backend("demo-canary", 25))


@pytest.mark.parametrize(
    ("shares", "problem"),
    [
        ({"stable": 100, "canary": 1}, "add up to 100"),
        ({"stable": 101, "canary": -1}, "non-negative"),
        ({"mirror": 101}, "between 0 and 100"),
        ({"mirror": -1}, "between 0 and 100"),
    ],
)
def test_impossible_traffic_cannot_be_asked_for(shares: dict[str, int], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        TrafficSplit(**shares)


# --- the HTTPRoute ---------------------------------------------------------------------------------------


def test_an_http_route_attaches_to_the_gateways_and_matches_one_path_prefix() -> None:
    route = http_route(provider="gatewayAPI", gateways=["infra/shared", "local-gw"])
    assert (route["apiVersion"], route["kind"]) == ("gateway.networking.k8s.io/v1", "HTTPRoute")
    assert route["metadata"]["name"] == NAME
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "infra", "name": "shared"},
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "local-gw"},
    ]
    assert "hostnames" not in route["spec"], '"*" is any host: Gateway API says so by listing none'
    rule = rule_of(route)
    # Gateway API's PathPrefix matches path elements: "/demo" never matches "/demos", one match suffices.
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/demo"}}]
    assert "filters" not in rule
    assert rule["backendRefs"] == [{"name": "demo", "port": 8000}]


def test_hostnames_are_the_hosts_unless_any_host_is_asked_for() -> None:
    assert http_route(hosts=["api.example.com", "*.example.org"])["spec"]["hostnames"] == [
        "api.example.com",
        "*.example.org",
    ]
    assert "hostnames" not in http_route(hosts=["api.example.com", "*"])["spec"]


@pytest.mark.parametrize(
    ("gateway", "server", "replacement"),
    [("/public", None, "/demo"), ("/public", "/", "/"), ("/", None, "/demo"), ("/v1/demo", "/demo", "/demo")],
)
def test_a_gateway_prefix_other_than_the_servers_is_rewritten(
    gateway: str, server: str | None, replacement: str
) -> None:
    rule = rule_of(routing.http_route(intent(server, pathPrefix=gateway), None))
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": gateway}}]
    assert rule["filters"] == [
        {
            "type": "URLRewrite",
            "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": replacement}},
        }
    ]


def test_a_split_is_written_as_weighted_backend_refs() -> None:
    rule = rule_of(http_route(canary={"weight": 25}))
    assert rule["backendRefs"] == [
        {"name": "demo", "port": 8000, "weight": 75},
        {"name": "demo-canary", "port": 8000, "weight": 25},
    ]


def test_a_mirror_is_a_request_mirror_filter_on_the_http_route_and_a_mirror_on_the_virtual_service() -> None:
    spec = spec_of(pathPrefix="/p", canary={"weight": 10})
    mirrored = routing.route_intent(NAME, NS, spec, TrafficSplit(stable=90, canary=10, mirror=30))
    rule = rule_of(routing.http_route(mirrored, None))
    assert rule["filters"][-1] == {
        "type": "RequestMirror",
        "requestMirror": {"backendRef": {"name": "demo-canary", "port": 8000}, "percent": 30},
    }
    service = routing.virtual_service(mirrored, None, "cluster.local")
    for http in service["spec"]["http"]:
        assert http["mirror"] == {"host": "demo-canary.ns.svc.cluster.local", "port": {"number": 8000}}
        assert http["mirrorPercentage"] == {"value": 30.0}
    plain = routing.route_intent(NAME, NS, spec)
    assert all(
        f["type"] != "RequestMirror" for f in rule_of(routing.http_route(plain, None)).get("filters", [])
    )
    assert all("mirror" not in h for h in routing.virtual_service(plain, None, "c")["spec"]["http"])


# Rendered HTTPRoutes, checked against the CEL rules of Gateway API's CRD that the npm schema does not carry.
CASES = [
    {"pathPrefix": pp, "canary": canary, "server": server}
    for pp in (None, "/", "/public", "/v1/demo")
    for server in (None, "/", "/demo")
    for canary in (None, {"weight": 40})
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_http_routes_keep_the_crds_cel_rules(case: dict[str, Any]) -> None:
    fields: dict[str, Any] = {k: v for k, v in case.items() if k != "server" and v is not None}
    built = routing.route_intent(
        NAME,
        NS,
        parse_spec(NAME, {"routing": {"enabled": True, **fields}, "server": {"pathPrefix": case["server"]}}),
        TrafficSplit(stable=60, canary=40, mirror=20) if case["canary"] else None,
    )
    route = routing.http_route(built, None)
    for rule in route["spec"]["rules"]:
        filters = rule.get("filters", [])
        for kind in ("URLRewrite", "RequestMirror"):
            assert len([f for f in filters if f["type"] == kind]) <= 1, f"{kind} filter cannot be repeated"
        if any(f.get("urlRewrite", {}).get("path", {}).get("type") == "ReplacePrefixMatch" for f in filters):
            # "When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match must
            # be specified"
            assert [m["path"]["type"] for m in rule["matches"]] == ["PathPrefix"]
        for f in filters:
            if f["type"] == "RequestMirror":
                assert not ("percent" in f["requestMirror"] and "fraction" in f["requestMirror"])
                assert "port" in f["requestMirror"]["backendRef"], "Must have port for Service reference"
        assert all("port" in ref for ref in rule["backendRefs"]), "Must have port for Service reference"
    refs = [tuple(sorted(r.items())) for r in route["spec"]["parentRefs"]]
    assert len(refs) == len(set(refs)), "sectionName must be specified when parentRefs repeat a parent"


# --- both providers route the same requests the same way ----------------------------------------------------


def istio_upstream(service: dict[str, Any], path: str) -> str | None:
    """Where a VirtualService sends ``path`` (Istio: the first matching http route; exact or string prefix;
    a rewrite replaces the matched part), or None when nothing matches."""
    for http in service["spec"]["http"]:
        for match in http["match"]:
            uri = match["uri"]
            if uri.get("exact") == path or ("prefix" in uri and path.startswith(uri["prefix"])):
                matched = uri.get("exact") or uri["prefix"]
                rewrite = (http.get("rewrite") or {}).get("uri")
                return path if rewrite is None else rewrite + path[len(matched) :]
    return None


def gateway_api_upstream(route: dict[str, Any], path: str) -> str | None:
    """Where an HTTPRoute sends ``path``, by Gateway API's documented semantics: PathPrefix matches whole
    path elements (a trailing "/" of the prefix ignored); ReplacePrefixMatch swaps the matched elements (the
    table in HTTPPathModifier's reference: "/foo/bar" with "/foo" and "/xyz" -> "/xyz/bar", with "" or
    "/" -> "/bar"; "/foo" with "" -> "/")."""
    for rule in route["spec"]["rules"]:
        for match in rule["matches"]:
            prefix = match["path"]["value"].rstrip("/")
            if not (path == prefix or path.startswith(prefix + "/") or prefix == ""):
                continue
            rewrites = [f["urlRewrite"]["path"] for f in rule.get("filters", []) if f["type"] == "URLRewrite"]
            if not rewrites:
                return path
            rest = path[len(prefix) :]
            return (rewrites[0]["replacePrefixMatch"].rstrip("/") + rest) or "/"
    return None


REQUESTS = ["/", "/predict", "/demo", "/demo/", "/demo/predict", "/demos", "/public", "/public/predict",
            "/publicity", "/v1/demo/predict", "/v1/demos"]  # fmt: skip


@pytest.mark.parametrize(("gateway", "server"), [(g, s) for g in (None, "/", "/public", "/v1/demo") for s in
                                                 (None, "/", "/demo")])  # fmt: skip
def test_both_providers_send_every_request_to_the_same_upstream_path(
    gateway: str | None, server: str | None
) -> None:
    fields = {} if gateway is None else {"pathPrefix": gateway}
    built = intent(server, **fields)
    service = routing.virtual_service(built, None, "cluster.local")
    route = routing.http_route(built, None)
    for path in REQUESTS:
        assert gateway_api_upstream(route, path) == istio_upstream(service, path), path
    server_prefix = built.server_prefix
    gateway_prefix = built.gateway_prefix
    expected = server_prefix.rstrip("/") + "/predict"
    assert gateway_api_upstream(route, gateway_prefix.rstrip("/") + "/predict") == expected


# --- choosing the provider --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "served", "chosen"),
    [
        ("auto", {"istio", "gatewayAPI"}, "istio"),
        ("auto", {"gatewayAPI"}, "gatewayAPI"),
        ("auto", {"istio"}, "istio"),
        ("auto", set(), None),
        ("istio", {"gatewayAPI"}, None),
        ("istio", {"istio", "gatewayAPI"}, "istio"),
        ("gatewayAPI", {"istio", "gatewayAPI"}, "gatewayAPI"),
        ("gatewayAPI", {"istio"}, None),
        ("auto", None, "istio"),
        ("gatewayAPI", None, "gatewayAPI"),
    ],
)
def test_the_provider_is_the_one_asked_for_or_for_auto_the_first_served(
    asked: str, served: set[str] | None, chosen: str | None
) -> None:
    spec = spec_of(provider=asked)
    assert spec.routing.choose_provider(served) == chosen
    children = build_children(NAME, NS, spec, served=served)  # type: ignore[arg-type]
    assert children.routing_provider == chosen
    if chosen is None:
        assert children.route is None
    else:
        assert children.route is not None
        assert children.route["kind"] == routing.ROUTE_KINDS[chosen].kind  # type: ignore[index]
    assert PROVIDERS[0] == "istio", "auto tries Istio first"


# --- the gateway's data plane in the NetworkPolicy ------------------------------------------------------


def server_peers(raw: dict[str, Any], served: set[str] | None = None) -> list[dict[str, Any]]:
    children = build_children(NAME, NS, parse_spec(NAME, raw), served=served)  # type: ignore[arg-type]
    policy = children.network_policies[-1]
    assert policy["metadata"]["name"] == NAME
    (rule,) = policy["spec"]["ingress"]
    peers: list[dict[str, Any]] = rule["from"][1:]  # the first one: this model's own pods
    return peers


def test_each_provider_admits_its_default_data_plane() -> None:
    assert server_peers({"routing": {"enabled": True, "provider": "istio"}}) == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "istio-ingress"}}}
    ]
    # Envoy Gateway runs its proxies in its own namespace, not in the Gateway's.
    assert server_peers({"routing": {"enabled": True, "provider": "gatewayAPI"}}) == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "envoy-gateway-system"}},
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "envoy",
                    "app.kubernetes.io/component": "proxy",
                    "app.kubernetes.io/managed-by": "envoy-gateway",
                }
            },
        }
    ]


def test_auto_admits_the_data_plane_of_the_provider_discovery_chose() -> None:
    auto = {"routing": {"enabled": True}}
    assert server_peers(auto, {"gatewayAPI"})[0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "envoy-gateway-system"
    }
    assert server_peers(auto, {"istio", "gatewayAPI"})[0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "istio-ingress"
    }


def test_no_data_plane_is_admitted_while_no_route_is_written() -> None:
    assert server_peers({}) == []
    assert server_peers({"routing": {"enabled": True}}, served=set()) == []


def test_the_data_plane_selectors_come_from_the_spec_when_given() -> None:
    raw = {
        "routing": {"enabled": True, "provider": "gatewayAPI"},
        "networkPolicy": {
            "gateway": {
                "namespaceSelector": {"matchExpressions": [{"key": "gateway", "operator": "Exists"}]},
                "podSelector": {"matchLabels": {"app": "proxy"}},
            },
            "allowFrom": [{"namespace": "monitoring"}],
        },
    }
    assert server_peers(raw) == [
        {
            "namespaceSelector": {"matchExpressions": [{"key": "gateway", "operator": "Exists"}]},
            "podSelector": {"matchLabels": {"app": "proxy"}},
        },
        {
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["monitoring"]}
                ]
            }
        },
    ]
    # Only pods: the data plane runs in the model's own namespace (e.g. beside a Gateway there).
    only_pods = {**raw, "networkPolicy": {"gateway": {"podSelector": {"matchLabels": {"app": "proxy"}}}}}
    assert server_peers(only_pods) == [{"podSelector": {"matchLabels": {"app": "proxy"}}}]


def test_the_defaults_per_provider_are_documented_in_the_field() -> None:
    description = NetworkPolicySpec.model_fields["gateway"].description or ""
    for provider in PROVIDERS:
        assert f"{provider}: {DEFAULT_GATEWAY_PEERS[provider].describe()}" in description
    assert "envoy-gateway-system" in description
    assert "istio-ingress" in description


# --- spec rules for routes any provider may write ------------------------------------------------------


def test_istio_only_host_forms_need_provider_istio() -> None:
    assert parse_spec(NAME, {"routing": {"provider": "istio", "hosts": ["API.example.com:80"]}})
    assert parse_spec(NAME, {"routing": {"hosts": ["*", "*.example.com", "a.b"]}})
