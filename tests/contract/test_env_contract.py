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
import sentiment_contract as contract
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


def _pod_environment(deployment: dict[str, Any], container: dict[str, Any], root: Path) -> dict[str, str]:
    """The container's SENTIMENT_* environment as its process would see it, kubelet-style: Secret-backed env
    vars get a placeholder and every Secret item of a mounted volume becomes a file under ``root``, with each
    variable naming a path in such a mount pointed at that file."""
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"].get("volumes", [])}
    moved: dict[str, Path] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        sources = volume.get("projected", {}).get("sources", [])
        if "secret" in volume:
            sources = [{"secret": {"name": volume["secret"]["secretName"], **volume["secret"]}}]
        if not sources:
            continue
        local = root / mount["mountPath"].lstrip("/")
        local.mkdir(parents=True, exist_ok=True)
        for source in sources:
            for item in source["secret"].get("items", []):
                (local / item["path"]).write_text(f"from-secret {source['secret']['name']}/{item['key']}\n")
        moved[mount["mountPath"]] = local
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if not item["name"].startswith(ENV_PREFIX):
            continue
        value = item.get("value", "from-secret")
        for path, local in moved.items():
            if value.startswith(path + "/"):
                value = str(local) + value[len(path) :]
        env[item["name"]] = value
    return env


def _use_environment(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_examples_exist() -> None:
    assert len(EXAMPLES) >= 5, EXAMPLES


def test_operator_declares_only_names_the_server_reads() -> None:
    assert SERVER_ENV_NAMES <= SERVER_NAMES, sorted(SERVER_ENV_NAMES - SERVER_NAMES)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_rendered_environment_is_understood_by_the_server(
    path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    models = _models(path)
    assert models, f"{path.name} holds no SentimentModel"
    for model in models:
        name = model["metadata"]["name"]
        spec = parse_spec(name, model.get("spec"))
        children = build_children(name, "ns", spec, keda=spec.autoscaling.scales_to_zero)
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
                # Literal values must parse: instantiate the server's settings from exactly that environment
                # (the wait-redis containers read the same settings class).
                root = tmp_path / deployment["metadata"]["name"] / container["name"]
                _use_environment(_pod_environment(deployment, container, root), monkeypatch)
                settings = Settings()  # raises ValidationError on any value the server would refuse
                if container["name"] != "server":
                    continue
                literal = {e["name"]: e["value"] for e in env if "value" in e}
                assert settings.api_prefix == literal["SENTIMENT_API_PREFIX"].rstrip("/")
                assert str(settings.port) == literal["SENTIMENT_PORT"]
                if children.redis_deployment is not None:
                    assert settings.redis_password is not None
                    assert (
                        settings.redis_password.get_secret_value()
                        == f"from-secret {name}-redis-auth/password"
                    )


# Each spec field that becomes a server setting: (path under spec, the variable it renders).
SPEC_TO_ENV: list[tuple[tuple[str, ...], str]] = [
    (("server", "port"), "SENTIMENT_PORT"),
    (("server", "torchThreads"), "SENTIMENT_TORCH_THREADS"),
    (("server", "modelWorkers"), "SENTIMENT_MODEL_WORKERS"),
    (("server", "batching", "maxBatchSize"), "SENTIMENT_MAX_BATCH_SIZE"),
    (("server", "batching", "maxBatchTokens"), "SENTIMENT_MAX_BATCH_TOKENS"),
    (("server", "batching", "maxWaitMs"), "SENTIMENT_MAX_WAIT_MS"),
    (("server", "batching", "maxQueue"), "SENTIMENT_MAX_QUEUE"),
    (("server", "limits", "maxTextsPerRequest"), "SENTIMENT_MAX_TEXTS_PER_REQUEST"),
    (("server", "limits", "maxTextChars"), "SENTIMENT_MAX_TEXT_CHARS"),
    (("server", "limits", "maxBodyBytes"), "SENTIMENT_MAX_BODY_BYTES"),
    (("model", "maxSequenceLength"), "SENTIMENT_MAX_LENGTH"),
    (("cache", "ttlSeconds"), "SENTIMENT_CACHE_TTL_SECONDS"),
]


def test_every_shared_setting_has_a_spec_field_tried_at_its_bounds() -> None:
    assert sorted(variable for _, variable in SPEC_TO_ENV) == sorted(s.env for s in contract.SERVER_SETTINGS)


@pytest.mark.parametrize("setting", contract.SERVER_SETTINGS, ids=lambda s: s.env)
def test_the_server_takes_default_and_bounds_from_the_shared_contract(
    setting: contract.ServerSetting,
) -> None:
    field = Settings.model_fields[setting.name]
    assert field.default == setting.default
    bounds = {type(m).__name__: m for m in field.metadata}
    assert (bounds["Ge"].ge if "Ge" in bounds else None) == setting.ge
    assert (bounds["Le"].le if "Le" in bounds else None) == setting.le


def test_the_spec_may_narrow_a_shared_bound_but_never_widen_it() -> None:
    assert contract.PORT.narrowed(ge=1024) == (1024, 65535)
    with pytest.raises(
        ValueError, match="SENTIMENT_MAX_BODY_BYTES: a lower bound of 1 is below the server's 64"
    ):
        contract.MAX_BODY_BYTES.narrowed(ge=1)
    with pytest.raises(ValueError, match="SENTIMENT_MAX_LENGTH: an upper bound of 9000 is above"):
        contract.MAX_LENGTH.narrowed(le=9000)


def test_both_packages_derive_the_batch_token_budget_from_the_contract() -> None:
    spec = parse_spec("demo", {"model": {"maxSequenceLength": 128}})
    assert spec.effective_max_batch_tokens() == contract.batch_token_budget(None, 128) == 512
    long = parse_spec("demo", {"model": {"maxSequenceLength": 2048}})
    assert long.effective_max_batch_tokens() == Settings(max_length=2048).effective_max_batch_tokens == 2048


# Fields whose own bound collides with another field's default (a rule the spec checks across fields): the
# other field is moved along, so that each bound is tried in a spec the operator accepts.
COMPANIONS: dict[tuple[str, ...], list[tuple[tuple[str, ...], Any]]] = {
    ("server", "batching", "maxBatchTokens"): [(("model", "maxSequenceLength"), lambda v: min(v, 512))],
    ("server", "batching", "maxQueue"): [(("server", "limits", "maxTextsPerRequest"), lambda v: min(v, 64))],
    ("server", "limits", "maxTextsPerRequest"): [(("server", "batching", "maxQueue"), lambda v: max(v, 512))],
}


def _crd_node(path: tuple[str, ...]) -> dict[str, Any]:
    crd = yaml.safe_load((Path(__file__).parents[2] / "crds" / "sentimentmodel.yaml").read_text())
    node: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for step in path:
        node = node["properties"][step]
    return node


def _values(path: tuple[str, ...]) -> list[tuple[str, int]]:
    """The field's minimum, maximum and default as the CRD (generated from the spec) declares them."""
    node = _crd_node(path)
    out = [
        (kind, int(node[key]))
        for kind, key in (("minimum", "minimum"), ("maximum", "maximum"), ("default", "default"))
        if key in node
    ]
    assert any(kind == "minimum" for kind, _ in out), f"spec.{'.'.join(path)} has no minimum"
    return out


def _set(spec: dict[str, Any], path: tuple[str, ...], value: int) -> dict[str, Any]:
    node = spec
    for step in path[:-1]:
        node = node.setdefault(step, {})
    node[path[-1]] = value
    return spec


@pytest.mark.parametrize(
    ("path", "variable", "kind", "value"),
    [(path, variable, kind, value) for path, variable in SPEC_TO_ENV for kind, value in _values(path)],
    ids=lambda v: ".".join(v) if isinstance(v, tuple) else str(v),
)
def test_every_bound_the_spec_accepts_boots_the_server(
    path: tuple[str, ...],
    variable: str,
    kind: str,
    value: int,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Real-cluster correctness #9: a spec the API server and the operator accept never renders a setting the
    server refuses at start (a crash loop). Each bound is tried alone, the rest of the spec at its defaults;
    a combination the spec itself refuses (InvalidSpec) is fine: that never reaches a pod."""
    from sentiment_operator.spec import InvalidSpecError

    spec = _set({"autoscaling": {"enabled": False}}, path, value)
    for companion, choose in COMPANIONS.get(path, []):
        spec = _set(spec, companion, choose(value))
    try:
        parsed = parse_spec("demo", spec)
    except InvalidSpecError:
        pytest.fail(f"spec.{'.'.join(path)} = {value} (its CRD {kind}) is refused by the operator's own spec")
    children = build_children("demo", "ns", parsed)
    (server,) = [c for c in _containers(children.deployment) if c["name"] == "server"]
    env = _pod_environment(children.deployment, server, tmp_path)
    assert env[variable] == str(value) or variable == "SENTIMENT_MAX_BATCH_TOKENS"
    _use_environment(env, monkeypatch)
    Settings()  # raises ValidationError for a value the server would refuse at start
