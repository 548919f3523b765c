"""`sentiment-operator render`: the real command in a subprocess, its errors, and that it leaks no secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from builders_support import EXAMPLES, REPO
from sentiment_operator.cli import main


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sentiment_operator", *args],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def test_render_minimal_example_in_a_subprocess() -> None:
    result = run("render", "-f", "examples/minimal.yaml")
    assert result.returncode == 0, result.stderr
    objects = list(yaml.safe_load_all(result.stdout))
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("NetworkPolicy", "sentiment-redis"),
        ("NetworkPolicy", "sentiment"),
        ("Secret", "sentiment-redis-auth"),
        ("Service", "sentiment-redis"),
        ("Deployment", "sentiment-redis"),
        ("Service", "sentiment"),
        ("Deployment", "sentiment"),
        ("HorizontalPodAutoscaler", "sentiment"),
        ("ServiceMonitor", "sentiment"),
    ]
    assert "&id" not in result.stdout, "no YAML anchors for kubectl"
    assert "*id" not in result.stdout


def _autoscalers(*args: str) -> list[str]:
    result = run("render", *args)
    assert result.returncode == 0, result.stderr
    kinds = ("HorizontalPodAutoscaler", "ScaledObject")
    return [o["kind"] for o in yaml.safe_load_all(result.stdout) if o and o["kind"] in kinds]


def test_render_keda_turns_load_metrics_into_scaled_objects() -> None:
    assert _autoscalers("-f", "examples/queue-depth.yaml") == ["HorizontalPodAutoscaler"]
    assert _autoscalers("--keda", "-f", "examples/queue-depth.yaml") == ["ScaledObject"]
    assert _autoscalers("--keda", "-f", "examples/minimal.yaml") == ["HorizontalPodAutoscaler"]  # cpu
    # A model that cannot run without KEDA is rendered for KEDA without the flag.
    assert _autoscalers("-f", "examples/scale-to-zero.yaml") == ["ScaledObject"]


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("sentiment-operator")
    assert script.exists(), "pip install -e . should install the sentiment-operator console script"
    result = subprocess.run(
        [str(script), "render", "-f", str(EXAMPLES / "lab.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "kind: VirtualService" in result.stdout


def test_several_files_and_multi_document_input(tmp_path: Path) -> None:
    combined = tmp_path / "two.yaml"
    combined.write_text(
        (EXAMPLES / "project.yaml").read_text() + "\n---\n" + (EXAMPLES / "lab.yaml").read_text()
    )
    result = run("render", "-f", str(combined), "-f", "examples/canary.yaml")
    assert result.returncode == 0, result.stderr
    services = [
        o["metadata"]["name"] for o in yaml.safe_load_all(result.stdout) if o["kind"] == "VirtualService"
    ]
    assert services == ["project", "lab", "reviews"]


def test_stdin_and_default_namespace() -> None:
    doc = "apiVersion: serving.sentiment.dev/v1alpha1\nkind: SentimentModel\nmetadata: {name: x}\n"
    result = run("render", "-f", "-", "-n", "team-a", stdin=doc)
    assert result.returncode == 0, result.stderr
    assert {o["metadata"]["namespace"] for o in yaml.safe_load_all(result.stdout)} == {"team-a"}


def test_the_redis_secret_is_rendered_without_data() -> None:
    result = run("render", *[arg for p in sorted(EXAMPLES.glob("*.yaml")) for arg in ("-f", str(p))])
    assert result.returncode == 0, result.stderr
    secrets = [o for o in yaml.safe_load_all(result.stdout) if o["kind"] == "Secret"]
    assert secrets, "the examples include managed Redis"
    for secret in secrets:
        assert set(secret) == {"apiVersion", "kind", "metadata", "type"}
    lowered = result.stdout.lower()
    assert "requirepass" not in lowered, "the password reaches Redis in its mounted config file"
    assert "/etc/redis/redis.conf" in lowered
    assert "stringdata" not in lowered
    assert "\ndata:" not in lowered


def test_invalid_spec_exits_2_naming_file_object_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: serving.sentiment.dev/v1alpha1\nkind: SentimentModel\n"
        "metadata: {name: broken, namespace: ml}\nspec: {autoscaling: {minReplicas: 5, maxReplicas: 2}}\n"
    )
    result = run("render", "-f", str(bad))
    assert result.returncode == 2
    assert result.stdout == ""
    assert str(bad) in result.stderr
    assert "SentimentModel ml/broken" in result.stderr
    assert "spec.autoscaling.minReplicas" in result.stderr
    assert "Traceback" not in result.stderr


def test_other_kinds_are_rejected(tmp_path: Path) -> None:
    other = tmp_path / "cm.yaml"
    other.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    result = run("render", "-f", str(other))
    assert result.returncode == 2
    assert "ConfigMap (v1) is not a SentimentModel" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "expected a SentimentModel object"),
        (
            "apiVersion: serving.sentiment.dev/v1alpha1\nkind: SentimentModel\nmetadata: {}\n",
            "without metadata.name",
        ),
    ],
)
def test_malformed_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "in.yaml"
    path.write_text(content)
    assert main(["render", "-f", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert str(path) in err


def test_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", "/nonexistent/model.yaml"]) == 2
    assert "/nonexistent/model.yaml: cannot read" in capsys.readouterr().err


def test_render_needs_no_kopf_or_kubernetes_client() -> None:
    code = (
        "import sys; from sentiment_operator.cli import main; main(['render', '-f', 'examples/canary.yaml']);"
        "assert 'kopf' not in sys.modules and 'kubernetes' not in sys.modules, sorted(sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr


def test_run_subcommand_gets_the_runner_options() -> None:
    result = run("run", "--help")
    assert result.returncode == 0, result.stderr
    assert "--all-namespaces" in result.stdout
    assert "--namespace" in result.stdout
    top = run("--help")
    assert "render" in top.stdout
    assert "run" in top.stdout


def test_run_takes_the_cluster_domain_to_the_reconciler() -> None:
    import argparse

    from sentiment_operator import runner

    parser = argparse.ArgumentParser()
    runner.add_run_arguments(parser)
    assert runner.config_from(parser.parse_args(["--all-namespaces"])).cluster_domain == "cluster.local"
    config = runner.config_from(parser.parse_args(["--all-namespaces", "--cluster-domain", "corp.example"]))
    assert config.cluster_domain == "corp.example"
