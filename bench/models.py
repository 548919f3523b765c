"""The models the benchmark runs, and the two in-process measurements of the bare model.

The benchmark model is generated locally (``sentiment-devmodel``) and cached under .cache/bench/; the bare
model's ceiling (bench/ceiling.py) and the int8 agreement (bench/agreement.py) each run in a process of their
own before any server starts, so nothing else competes for the CPU.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import CACHE_DIR, ROOT, log, tool


def ensure_model(preset: str, override: str | None, *, trained: bool = False) -> Path:
    """The generated benchmark model, built once with sentiment-devmodel and reused from .cache/bench/."""
    if override:
        path = Path(override).resolve()
        if not (path / "config.json").is_file():
            raise SystemExit(f"bench: --model {path} has no config.json")
        return path
    path = CACHE_DIR / f"model-{preset}{'-trained' if trained else ''}"
    if (path / "config.json").is_file() and (path / "tokenizer.json").is_file():
        return path
    log(f"Generating the {preset} benchmark model into {path} (sentiment-devmodel, once)")
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            tool("sentiment-devmodel"),
            "--out",
            str(path),
            "--preset",
            preset,
            *(["--train"] if trained else []),
        ],
        check=True,
        timeout=900,
    )
    return path


def _run_module(module: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run ``python -m module args`` in its own process; its last stdout line is a JSON object."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{module} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def run_ceiling(model: Path, precision: str, seconds: float) -> dict[str, Any]:
    args = ["--model", str(model), "--precision", precision, "--batch", "32", "--seconds", f"{seconds:g}"]
    return _run_module("bench.ceiling", [*args, "--also", "1,8"], timeout=2 * seconds + 300)


def run_agreement(model: Path, count: int) -> dict[str, Any]:
    return _run_module("bench.agreement", ["--model", str(model), "--count", str(count)], timeout=900)
