"""The one place the operator and the server meet: the ``SENTIMENT_*`` environment the operator renders.

The packages never import each other (import-linter enforces it); this test imports both and checks that every
variable the operator sets on any container is a setting the server reads, and that the literal values it
renders are values the server accepts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from sentiment_inference.settings import ENV_PREFIX, Settings
from sentiment_operator.builders import build_children
from sentiment_operator.spec import SERVER_ENV_NAMES, parse_spec

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))
SERVER_NAMES = {ENV_PREFIX + name.upper() for name in Settings.model_fields}


def _models(path: Path) -> list[dict[str, Any]]:
    return [
        doc for doc in yaml.safe_load_all(path.read_text()) if doc and doc.get("kind") == "SentimentModel"
    ]


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    pod = obj["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def test_examples_exist() -> None:
    assert len(EXAMPLES) >= 5, EXAMPLES


def test_operator_declares_only_names_the_server_reads() -> None:
    assert SERVER_ENV_NAMES <= SERVER_NAMES, sorted(SERVER_ENV_NAMES - SERVER_NAMES)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_rendered_environment_is_understood_by_the_server(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = _models(path)
    assert models, f"{path.name} holds no SentimentModel"
    for model in models:
        name = model["metadata"]["name"]
        children = build_children(name, "ns", parse_spec(name, model.get("spec")))
        deployments = [obj for obj in children.objects() if obj["kind"] == "Deployment"]
        inference = [
            d for d in deployments if d["metadata"]["labels"]["app.kubernetes.io/component"] != "cache"
        ]
        assert inference
        for deployment in inference:
            for container in _containers(deployment):
                env = [e for e in container.get("env", []) if e["name"].startswith(ENV_PREFIX)]
                unknown = {e["name"] for e in env} - SERVER_NAMES
                assert not unknown, f"{name}/{container['name']} sets unknown {sorted(unknown)}"
                if container["name"] != "server":
                    continue
                # Literal values must parse: instantiate the server's settings from exactly that environment.
                for key in list(os.environ):
                    if key.startswith(ENV_PREFIX):
                        monkeypatch.delenv(key)
                for e in env:
                    monkeypatch.setenv(e["name"], e.get("value", "from-secret"))
                settings = Settings()  # raises ValidationError on any value the server would refuse
                literal = {e["name"]: e["value"] for e in env if "value" in e}
                assert settings.api_prefix == literal["SENTIMENT_API_PREFIX"].rstrip("/")
                assert str(settings.port) == literal["SENTIMENT_PORT"]
