"""The top tier: the embedded cluster (``python -m sentiment_devcluster up``: the API server, the node agent,
the Service proxy) running the real operator process, which configures the real inference server and a real
redis-server; driven with the real kubectl, as a user would. One cluster per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import DevCluster, running_cluster


@pytest.fixture(scope="module")
def devcluster(tmp_path_factory: pytest.TempPathFactory, trained_model_dir: Path) -> Iterator[DevCluster]:
    with running_cluster(tmp_path_factory.mktemp("devcluster"), trained_model_dir) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def devcluster_with_keda(
    tmp_path_factory: pytest.TempPathFactory, trained_model_dir: Path
) -> Iterator[DevCluster]:
    """The cluster serving KEDA's ScaledObject as well (no KEDA controller runs)."""
    with running_cluster(
        tmp_path_factory.mktemp("devcluster-keda"), trained_model_dir, "--serve", "keda"
    ) as c:
        yield c
