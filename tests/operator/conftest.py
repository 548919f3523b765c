"""Fixtures for the operator tests: an emulated API server on 127.0.0.1, the real operator in-process."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import kmock
import pytest
from operator_emulator import NAMESPACE, Cluster, OperatorHandle
from sentiment_devcluster.apiserver.server import ApiServer, project_crd_schemas
from sentiment_operator.rbac import REQUIRED_PERMISSIONS


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with ApiServer(crd_schemas=project_crd_schemas()) as api, kmock.Server(api) as server:
        api.register()
        api.objects["v1/namespaces", None, NAMESPACE] = {"metadata": {"name": NAMESPACE}}
        c = Cluster(api=api, url=str(server.url).rstrip("/"))
        try:
            yield c
        finally:
            for handle in c.operators:
                await handle.stop()
        # Least privilege: everything the operator did is covered by the RBAC constant the deploy files use.
        used = api.operator_permissions()
        assert used or not c.operators, "the operator's requests should have been recorded"
        unlisted = used - REQUIRED_PERMISSIONS
        assert not unlisted, (
            f"API calls not in sentiment_operator.rbac.REQUIRED_PERMISSIONS: {sorted(unlisted)}"
        )


@pytest.fixture
async def operator(cluster: Cluster) -> OperatorHandle:
    return await cluster.start_operator()


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every log record (DEBUG and up) of kopf, the operator and the client libraries."""
    caplog.set_level(logging.DEBUG)
    return caplog
