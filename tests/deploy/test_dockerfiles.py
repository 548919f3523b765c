"""Invariants of Dockerfile.inference and Dockerfile.operator, checked without a Docker engine.

Every step that runs inside an image is a project command; the model-download step is run here for real
(against a local source instead of the hub).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import lockfile
import pytest
from dockerfile_parser import Dockerfile, Stage, dockerignore_excludes, parse, substitute
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]
MODEL_DIR = "/opt/sentiment/model"

INFERENCE = parse(ROOT / "Dockerfile.inference")
OPERATOR = parse(ROOT / "Dockerfile.operator")
BOTH = pytest.mark.parametrize("dockerfile", [INFERENCE, OPERATOR], ids=["inference", "operator"])

# A pinned image: an explicit version tag (not latest / a moving major) and a sha256 manifest digest.
PINNED = re.compile(r"^[\w.\-/:]+:(?P<tag>\d+\.\d+\.\d+[\w.\-]*)@sha256:[0-9a-f]{64}$")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _runs(stage: Stage) -> str:
    return "\n".join(inst.args for inst in stage.all("RUN"))


def _copied_from(stage: Stage) -> dict[str, str]:
    """destination -> source stage for every COPY --from in ``stage``."""
    out: dict[str, str] = {}
    for inst in stage.all("COPY"):
        match = re.match(r"--from=(\S+)\s+(\S+)\s+(\S+)$", inst.args)
        if match:
            out[match.group(3)] = match.group(1)
    return out


@BOTH
def test_is_multi_stage_and_final_stage_builds_from_a_clean_base(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) >= 2, f"{dockerfile.path.name} must be multi-stage"
    stage_names = {s.name for s in dockerfile.stages if s.name}
    final = dockerfile.final
    assert final.base not in stage_names, "the final stage must start from the slim base, not a build stage"
    # Nothing is built in the final stage: no pip, no apt, no compilers; artifacts come from build stages.
    runs = _runs(final)
    for forbidden in ("pip ", "apt-get", "apk ", "gcc", "build-essential", "make "):
        assert forbidden not in runs, f"final stage of {dockerfile.path.name} runs {forbidden.strip()!r}"
    assert "/opt/venv" in _copied_from(final)


@BOTH
def test_base_images_are_pinned_by_version_and_digest(dockerfile: Dockerfile) -> None:
    earlier: set[str] = set()
    for stage in dockerfile.stages:
        if stage.base in earlier:
            continue  # FROM a previous stage
        match = PINNED.match(stage.base)
        assert match, f"{dockerfile.path.name} stage {stage.index}: base {stage.base!r} is not pinned"
        assert stage.base.startswith("python:3.11."), "the images run the Python the project targets"
        if stage.name:
            earlier.add(stage.name)


@BOTH
def test_final_stage_runs_as_a_numeric_non_root_user(dockerfile: Dockerfile) -> None:
    final = dockerfile.final
    user = final.last("USER")
    assert user is not None, f"{dockerfile.path.name}: final stage has no USER"
    uid, _, gid = user.args.partition(":")
    assert uid.isdigit(), f"USER must be numeric so runAsNonRoot can verify it, got {user.args!r}"
    assert int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)
    entrypoint = final.last("ENTRYPOINT")
    assert entrypoint is not None
    assert user.line < entrypoint.line
    # The uid the operator's pods run as (runAsUser) is the one the image is built for.
    from sentiment_operator.builders import APP_UID

    assert int(uid) == APP_UID


@BOTH
def test_pip_keeps_no_cache(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        if "pip install" in _runs(stage):
            env = {**dockerfile.stages[0].env(), **stage.env()}
            assert env.get("PIP_NO_CACHE_DIR") == "1" or "--no-cache-dir" in _runs(stage)


def test_inference_entrypoint_is_the_declared_server_script() -> None:
    entrypoint = INFERENCE.final.last("ENTRYPOINT")
    assert entrypoint is not None
    argv = entrypoint.exec_form()
    assert argv == ["sentiment-serve"]
    assert SCRIPTS["sentiment-serve"] == "sentiment_inference.cli:main"


def test_operator_entrypoint_and_cmd_parse_with_the_real_cli() -> None:
    final = OPERATOR.final
    entrypoint, cmd = final.last("ENTRYPOINT"), final.last("CMD")
    assert entrypoint is not None
    assert cmd is not None
    argv = entrypoint.exec_form()
    assert argv == ["sentiment-operator"]
    assert SCRIPTS["sentiment-operator"] == "sentiment_operator.cli:main"
    from sentiment_operator.cli import build_parser

    args = build_parser(cmd.exec_form()).parse_args(cmd.exec_form())
    assert args.command == "run"
    assert args.all_namespaces is True
    # The liveness endpoint matches the port the image exposes.
    expose = final.last("EXPOSE")
    assert expose is not None
    assert f":{expose.args}/" in args.liveness


LOCKED_INSTALL = re.compile(r"pip install --require-hashes --no-deps (?:--extra-index-url (\S+) )?-r (\S+)$")
PROJECT_INSTALL = "pip install --no-deps --no-build-isolation ."


def _pip_installs(stage: Stage) -> list[str]:
    """Each ``pip install`` command of the stage's RUNs, whitespace (line continuations) collapsed."""
    return [
        " ".join(cmd.split())
        for inst in stage.all("RUN")
        for cmd in inst.args.split("&&")
        if "pip install" in cmd
    ]


@pytest.mark.parametrize(
    ("dockerfile", "lock"), [(INFERENCE, "inference"), (OPERATOR, "operator")], ids=["inference", "operator"]
)
def test_image_installs_only_from_its_lock_with_hashes_required(dockerfile: Dockerfile, lock: str) -> None:
    """Every pip install in the image is the hashed lock (nothing resolved) or the project with --no-deps."""
    builder = dockerfile.stage("builder")
    installs = _pip_installs(builder)
    assert len(installs) == 2, installs
    locked = LOCKED_INSTALL.match(installs[0])
    assert locked, f"{dockerfile.path.name}: the first pip install is not from a lock: {installs[0]!r}"
    assert locked.group(2) == f"requirements/{lock}.txt"
    assert (ROOT / locked.group(2)).is_file()
    assert installs[1] == PROJECT_INSTALL
    # The lock is copied in before it is installed and before the sources (a code change reuses the layer).
    copies = [inst.args for inst in builder.all("COPY")]
    assert copies[0] == f"requirements/{lock}.txt requirements/{lock}.txt", copies
    for stage in dockerfile.stages:
        for inst in stage.all("RUN"):
            assert "--index-url" not in inst.args.replace("--extra-index-url", ""), "PyPI stays the index"


def test_inference_image_takes_cpu_torch_from_the_cpu_index_by_the_locks_hash() -> None:
    locked = LOCKED_INSTALL.match(_pip_installs(INFERENCE.stage("builder"))[0])
    assert locked
    assert locked.group(1) == CPU_INDEX
    pins = lockfile.read_pins(lockfile.INFERENCE.path)
    assert str(pins["torch"]) == "2.13.0+cpu"
    assert len(lockfile.read_hashes(lockfile.INFERENCE.path)["torch"]) == 1, "one file, the CPU build"
    # The library range in pyproject and the lock agree on the release.
    torch_pin = next(Requirement(r) for r in EXTRAS["inference"] if Requirement(r).name == "torch")
    assert torch_pin.specifier.contains(pins["torch"])


def test_inference_image_bakes_the_model_and_runs_offline() -> None:
    final = INFERENCE.final
    assert _copied_from(final)[MODEL_DIR] == "model"
    env = final.env()
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["SENTIMENT_MODEL_PATH"] == MODEL_DIR
    assert env["SENTIMENT_MODEL_ID"] == "${MODEL_ID}"
    # Same default model id in the build stage, the final stage and the server's own default.
    from sentiment_inference.settings import Settings

    defaults = {name: f.default for name, f in Settings.model_fields.items()}
    assert INFERENCE.stage("model").arg_defaults()["MODEL_ID"] == defaults["model_id"]
    assert final.arg_defaults()["MODEL_ID"] == defaults["model_id"]
    assert defaults["model_path"] == MODEL_DIR
    expose = final.last("EXPOSE")
    assert expose is not None
    assert int(expose.args) == defaults["port"]


def test_operator_image_installs_no_torch() -> None:
    text = "\n".join(_runs(stage) for stage in OPERATOR.stages)
    for heavy in ("torch", "transformers", "[inference]", "[dev]", "inference.txt"):
        assert heavy not in text, f"Dockerfile.operator mentions {heavy}"
    # ...and nothing in the operator's lock is torch, a model library or a CUDA runtime.
    pins = lockfile.read_pins(lockfile.OPERATOR.path)
    assert {"kopf", "kubernetes", "pydantic"} <= set(pins)
    heavy = {
        name for name in pins if name in {"torch", "transformers", "tokenizers"} or name.startswith("nvidia-")
    }
    assert not heavy, sorted(heavy)


@BOTH
def test_build_context_is_an_allowlist_that_covers_every_copy(dockerfile: Dockerfile) -> None:
    patterns = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    for stage in dockerfile.stages:
        for inst in stage.all("COPY"):
            if inst.args.startswith("--from="):
                continue
            *sources, _dest = inst.args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY source {source} does not exist"
                assert not dockerignore_excludes(patterns, source), f".dockerignore excludes {source}"
                if (ROOT / source).is_dir():
                    for py in (ROOT / source).rglob("*.py"):
                        rel = py.relative_to(ROOT).as_posix()
                        if "__pycache__" not in rel:
                            assert not dockerignore_excludes(patterns, rel), rel
    for private in (".venv/bin/python", ".git/config", ".cache/demo/model.safetensors", "tests/conftest.py"):
        assert dockerignore_excludes(patterns, private), f".dockerignore lets {private} into the context"


def test_model_stage_command_fetches_a_loadable_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The model stage's RUN, with its ARG defaults, run for real against a local source (not the hub)."""
    model = INFERENCE.stage("model")
    (command,) = [inst.args for inst in model.all("RUN")]
    fetch_cmd = command.split("&&")[0].strip()
    argv = shlex.split(substitute(fetch_cmd, model.arg_defaults()))
    assert argv[0] == "sentiment-fetch-model"
    assert "sentiment-fetch-model" in SCRIPTS
    assert argv[argv.index("--out") + 1] == MODEL_DIR
    out = tmp_path / "opt-sentiment-model"
    argv[argv.index("--out") + 1] = str(out)
    argv += ["--source", str(tiny_model_dir)]
    proc = subprocess.run(
        [str(Path(sys.executable).parent / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={
            "PATH": str(Path(sys.executable).parent),
            "HF_HUB_OFFLINE": "1",
            "HF_HOME": str(tmp_path / "hf"),
        },
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "MODEL_ID").read_text(encoding="utf-8").strip() == model.arg_defaults()["MODEL_ID"]
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert set(config["id2label"].values()) == {"NEGATIVE", "POSITIVE"}


def _inference_containers() -> list[tuple[str, dict[str, Any]]]:
    """(where, container) for each container the operator runs from the inference image, over all examples."""
    from sentiment_operator.cli import render_documents

    out: list[tuple[str, dict[str, Any]]] = []
    examples = [str(p) for p in sorted((ROOT / "examples").glob("*.yaml"))]
    for obj in render_documents(examples):
        if obj["kind"] != "Deployment":
            continue
        pod = obj["spec"]["template"]["spec"]
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            if "/inference:" in container["image"]:
                out.append((f"{obj['metadata']['name']}/{container['name']}", container))
    assert out, "no example runs the inference image"
    return out


def _effective_env(container: dict[str, Any]) -> dict[str, str]:
    """The image's ENV overlaid with the container's literal env values."""
    env = dict(INFERENCE.final.env())
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def test_every_command_the_operator_runs_in_the_inference_image_is_installed() -> None:
    for where, container in _inference_containers():
        command = container.get("command")
        if command is None:
            entrypoint = INFERENCE.final.last("ENTRYPOINT")
            assert entrypoint is not None
            command = entrypoint.exec_form()
        assert command[0] in SCRIPTS, f"{where}: {command[0]} is not a console script of the package"


def test_download_init_container_is_allowed_to_reach_the_hub() -> None:
    # The image is offline for the server; the container that downloads the model must switch that off, and
    # the hub cache (HF_HOME) must be on a writable volume because the root filesystem is read-only.
    downloads = [
        (where, c)
        for where, c in _inference_containers()
        if (c.get("command") or [""])[0] == "sentiment-fetch-model" and "--source" not in c.get("args", [])
    ]
    assert downloads, "examples/download.yaml renders a download init container"
    for where, container in downloads:
        env = _effective_env(container)
        for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            assert env.get(variable, "0") in {"0", "false", ""}, f"{where}: {variable}={env.get(variable)}"
        mounts = [m["mountPath"].rstrip("/") for m in container.get("volumeMounts", [])]
        assert any(env["HF_HOME"].startswith(m + "/") for m in mounts), f"{where}: HF_HOME not on a volume"


def test_server_reads_the_model_where_the_image_bakes_it_unless_mounted() -> None:
    for where, container in _inference_containers():
        if container.get("command") is not None:
            continue
        env = _effective_env(container)
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        model_path = env["SENTIMENT_MODEL_PATH"]
        assert model_path == MODEL_DIR or any(model_path.startswith(m) for m in mounts), where
        assert env["HF_HUB_OFFLINE"] == "1", f"{where}: the server must stay offline"
