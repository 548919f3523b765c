"""What the test API server exposes in today's apply layer (sentiment_operator.kube) that kmock forgave:
each test states what must hold on a real cluster and is xfail(strict) until "Real-cluster correctness"
fixes it, so it turns into a failure (XPASS) the moment the behaviour changes."""

from __future__ import annotations

from typing import Any

import pytest
from operator_emulator import NAMESPACE, Cluster
from sentiment_operator.kube import Kube


@pytest.fixture
def client(cluster: Cluster) -> Kube:
    return Kube.for_server(cluster.url, timeout=2.0)


def deployment(env: list[dict[str, Any]], **pod: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "demo", "namespace": NAMESPACE, "labels": {"app": "demo"}},
        "spec": {
            "selector": {"matchLabels": {"app": "demo"}},
            "template": {
                "metadata": {"labels": {"app": "demo"}},
                "spec": {"containers": [{"name": "server", "image": "img:1", "env": env}], **pod},
            },
        },
    }


async def test_an_empty_value_the_server_drops_is_not_a_difference_when_nothing_else_is(
    cluster: Cluster, client: Kube
) -> None:
    """Control for the next test: without an empty value, a second apply of the same object writes nothing."""
    assert await client.create_or_update(deployment([{"name": "PREFIX", "value": "/m"}])) == "created"
    assert await client.create_or_update(deployment([{"name": "PREFIX", "value": "/m"}])) == "unchanged"


@pytest.mark.xfail(
    strict=True,
    reason='Real-cluster correctness #2: the API server drops `value: ""` (omitempty), so the live object '
    "never equals what was sent and every resync patches and emits an Updated Event",
)
async def test_an_empty_env_value_causes_no_perpetual_write(cluster: Cluster, client: Kube) -> None:
    assert await client.create_or_update(deployment([{"name": "PREFIX", "value": ""}])) == "created"
    assert await client.create_or_update(deployment([{"name": "PREFIX", "value": ""}])) == "unchanged"


@pytest.mark.xfail(
    strict=True,
    reason="Real-cluster correctness #1: a merge patch of what is rendered never removes a map the "
    "builders stopped rendering (nodeSelector stays on the live Deployment)",
)
async def test_a_field_no_longer_rendered_leaves_the_live_object(cluster: Cluster, client: Kube) -> None:
    env = [{"name": "A", "value": "1"}]
    assert await client.create_or_update(deployment(env, nodeSelector={"pool": "cpu"})) == "created"
    await client.create_or_update(deployment(env))
    live = cluster.api.live("apps/v1/deployments", NAMESPACE, "demo")
    assert live is not None
    assert "nodeSelector" not in live["spec"]["template"]["spec"]
