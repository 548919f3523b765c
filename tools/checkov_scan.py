"""A second opinion on security: checkov's Kubernetes checks over everything this project deploys.

Scans, offline:
- every object the operator renders for each ``examples/*.yaml`` (``sentiment-operator render``; models
  without a namespace are rendered into ``RENDER_NAMESPACE``, as the operator puts children beside their
  SentimentModel and never in ``default`` on its own);
- both deploy overlays (``kubectl kustomize deploy/overlays/{dev,prod}``), whose own skips sit inline as
  ``checkov.io/skipN`` annotations with their reasons.

Checks that do not apply to what the operator renders are listed in ``RENDERED_SKIPS`` with their reasons and
added to each rendered object as the same inline annotations, so they apply to those objects only. Any other
failed check fails the scan. First, a deliberately insecure pod must fail the checks named in
``MUST_CATCH``: proof that the scanner runs and is strict (a scan that passes everything proves nothing).

    python tools/checkov_scan.py --checkov .venv-checkov/bin/checkov   (what `make checkov` runs)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RENDER_NAMESPACE = "sentiment-demo"
OVERLAYS = ("dev", "prod")

RENDERED_SKIPS: dict[str, str] = {
    "CKV_K8S_43": "the image is spec.image (a user's choice, pinned by digest if they write one); "
    "the defaults are release tags",
    "CKV_K8S_15": "the pull policy is spec.imagePullPolicy (IfNotPresent by default: release tags are "
    "immutable and a pod start should not depend on the registry)",
}

MUST_CATCH = {
    "CKV_K8S_16": "privileged container",
    "CKV_K8S_20": "allowPrivilegeEscalation",
    "CKV_K8S_19": "hostNetwork",
    "CKV_K8S_28": "NET_RAW not dropped",
}

INSECURE_POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "insecure", "namespace": RENDER_NAMESPACE},
    "spec": {
        "hostNetwork": True,
        "containers": [
            {
                "name": "root",
                "image": "busybox",
                "securityContext": {"privileged": True, "allowPrivilegeEscalation": True},
            }
        ],
    },
}


def _run(args: Sequence[str]) -> str:
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def _with_skips(obj: dict[str, Any]) -> dict[str, Any]:
    annotations = obj.setdefault("metadata", {}).setdefault("annotations", {})
    for number, (check, reason) in enumerate(sorted(RENDERED_SKIPS.items()), start=1):
        annotations[f"checkov.io/skip{number}"] = f"{check}={reason}"
    return obj


def write_inputs(directory: Path, python: str, kubectl: str) -> list[Path]:
    """The rendered examples and the kustomized overlays as YAML files in ``directory``."""
    written: list[Path] = []
    for example in sorted((ROOT / "examples").glob("*.yaml")):
        rendered = _run(
            [python, "-m", "sentiment_operator", "render", "-f", str(example), "-n", RENDER_NAMESPACE]
        )
        objects = [_with_skips(obj) for obj in yaml.safe_load_all(rendered) if obj]
        if not objects:
            raise SystemExit(f"{example.name}: rendered nothing")
        path = directory / f"rendered-{example.stem}.yaml"
        path.write_text(yaml.safe_dump_all(objects, sort_keys=False), encoding="utf-8")
        written.append(path)
    for overlay in OVERLAYS:
        path = directory / f"deploy-{overlay}.yaml"
        path.write_text(_run([kubectl, "kustomize", f"deploy/overlays/{overlay}"]), encoding="utf-8")
        written.append(path)
    return written


def scan(checkov: str, directory: Path) -> list[dict[str, Any]]:
    """checkov's Kubernetes reports for every file in ``directory`` (offline: no platform, no downloads)."""
    result = subprocess.run(
        [checkov, "--directory", str(directory), "--framework", "kubernetes", "--output", "json", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode not in (0, 1) or not result.stdout.strip():
        raise SystemExit(f"checkov did not run ({result.returncode}):\n{result.stderr[-4000:]}")
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


def failures(reports: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [check for report in reports for check in report.get("results", {}).get("failed_checks", [])]


def self_test(checkov: str, scratch: Path) -> None:
    """A deliberately insecure pod must fail every check in MUST_CATCH."""
    directory = scratch / "insecure"
    directory.mkdir()
    (directory / "insecure.yaml").write_text(yaml.safe_dump(INSECURE_POD), encoding="utf-8")
    caught = {check["check_id"] for check in failures(scan(checkov, directory))}
    missing = sorted(set(MUST_CATCH) - caught)
    if missing:
        raise SystemExit(f"checkov let an insecure pod pass {missing}: the scan cannot be trusted")
    print(f"checkov: the insecure pod fails {', '.join(sorted(MUST_CATCH))} as it must")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkov", required=True, help="the checkov executable (its own environment)")
    parser.add_argument("--kubectl", default=str(Path(sys.executable).with_name("kubectl")))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="checkov-") as tmp:
        scratch = Path(tmp)
        self_test(args.checkov, scratch)
        inputs = scratch / "inputs"
        inputs.mkdir()
        files = write_inputs(inputs, sys.executable, args.kubectl)
        reports = scan(args.checkov, inputs)
    summary = [report.get("summary", {}) for report in reports]
    passed = sum(s.get("passed", 0) for s in summary)
    skipped = sum(s.get("skipped", 0) for s in summary)
    failed = failures(reports)
    for check in failed:
        print(f"FAILED {check['check_id']} {check['check_name']}: {check['resource']} ({check['file_path']})")
    print(
        f"checkov: {len(files)} files, {passed} passed, {len(failed)} failed, "
        f"{skipped} skipped with a stated reason"
    )
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    raise SystemExit(main())
