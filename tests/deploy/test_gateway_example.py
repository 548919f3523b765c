"""examples/istio/gateway.yaml: valid for Istio's CRD schema (tests/istio_schema.py), and the gateway the
examples route through."""

from __future__ import annotations

import istio_schema
import yaml
from deploy_support import ROOT
from sentiment_operator.cli import render_documents


def test_istio_gateway_example_is_the_one_the_examples_route_through() -> None:
    gateway = yaml.safe_load((ROOT / "examples" / "istio" / "gateway.yaml").read_text(encoding="utf-8"))
    istio_schema.validate(gateway)
    reference = f"{gateway['metadata']['namespace']}/{gateway['metadata']['name']}"
    examples = [str(ROOT / "examples" / name) for name in ("project.yaml", "lab.yaml")]
    services = [o for o in render_documents(examples) if o["kind"] == "VirtualService"]
    assert {o["metadata"]["name"] for o in services} == {"project", "lab"}
    for virtual_service in services:
        assert virtual_service["spec"]["gateways"] == [reference]
