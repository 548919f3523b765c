"""Case 6: missing or corrupt model directories.

The real server must stay alive (liveness 200), report not-ready with a reason that names the problem, and
never answer /predict with predictions (no random classifier head, no half-loaded weights).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from reliability_support import report
from serving import ServerProcess

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def _copy(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.name not in skip:
            shutil.copy(f, dst / f.name)
    return dst


def broken_model_dirs(good: Path, root: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    """name -> (directory, substrings the not-ready reason must contain)."""
    cases: dict[str, tuple[Path, tuple[str, ...]]] = {}
    cases["missing directory"] = (root / "does-not-exist", ("does not exist",))

    (root / "empty").mkdir()
    cases["empty directory"] = (root / "empty", ("no config.json",))

    truncated = _copy(good, root / "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    cases["truncated safetensors"] = (truncated, ("cannot load the model",))

    garbage = _copy(good, root / "garbage")
    (garbage / "model.safetensors").write_bytes(os.urandom(64 * 1024))
    cases["garbage safetensors"] = (garbage, ("cannot load the model",))

    no_tokenizer = _copy(good, root / "no-tokenizer", skip=TOKENIZER_FILES)
    cases["config without tokenizer"] = (no_tokenizer, ("no vocabulary", "tokenizer.json"))

    bad_config = _copy(good, root / "bad-config")
    (bad_config / "config.json").write_text('{"model_type": "distilbert", "dim": ')
    cases["corrupt config.json"] = (bad_config, ("cannot load the model",))

    # Weights of a plain encoder (classifier head removed): loading would silently invent a random head.
    headless = _copy(good, root / "no-classifier-head")
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(good / "model.safetensors"))
    kept = {k: v for k, v in tensors.items() if "classifier" not in k}
    assert len(kept) < len(tensors)
    save_file(kept, str(headless / "model.safetensors"), metadata={"format": "pt"})
    cases["classifier head missing"] = (headless, ("classifier",))
    return cases


async def wait_not_ready(server: ServerProcess, time_limit: float = 150.0) -> str:
    """Poll /ready until it reports a failed load (or the process exits); return the reason text."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + time_limit
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as client:
        while loop.time() < deadline:
            if not server.alive():
                return f"exited {server.process.returncode}: {server.log()[-1500:]}"
            try:
                response = await client.get("/ready")
            except httpx.TransportError:
                await asyncio.sleep(0.2)
                continue
            assert response.status_code != 200, (
                f"{server.env['SENTIMENT_MODEL_PATH']}: ready with a broken model"
            )
            if "model load failed" in response.text:
                return response.text
            await asyncio.sleep(0.2)
    raise AssertionError(f"no load failure reported within {time_limit}s:\n{server.log()[-2000:]}")


async def check_not_serving(
    client: httpx.AsyncClient, name: str, path: Path, expected: tuple[str, ...]
) -> str:
    """/ready 503 naming path and problem, /health 200, /predict and /model 503 without predictions."""
    ready = await client.get("/ready")
    health = await client.get("/health")
    predict = await client.post("/predict", json={"text": ["is this served?"]})
    model = await client.get("/model")
    reason = ready.json().get("reason", "")
    assert ready.status_code == 503, f"{name}: /ready {ready.status_code}"
    assert ready.headers.get("retry-after") is not None
    assert reason.startswith("model load failed"), f"{name}: {reason}"
    assert str(path) in reason, f"{name}: the reason does not name the model path: {reason}"
    for fragment in expected:
        assert fragment in reason, f"{name}: {fragment!r} not in {reason}"
    assert health.status_code == 200  # alive: the orchestrator sees a not-ready pod, not a crash loop
    assert predict.status_code == 503, f"{name}: /predict answered {predict.status_code}"
    assert "predictions" not in predict.json()
    assert model.status_code == 503
    return f"{name}: /ready 503 {reason[:160]!r}; /predict {predict.status_code}"


async def test_broken_model_dirs_in_process(
    running_app: Callable[..., Any],
    make_settings: Callable[..., Any],
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    """Every variant through the production app factory and loader (ASGI in-process: fast)."""
    cases = broken_model_dirs(tiny_model_dir, tmp_path)
    lines = []
    for name, (path, expected) in cases.items():
        settings = make_settings(model_path=str(path), torch_threads=1)
        async with running_app(settings, wait_ready=False) as app:
            assert app.state.load_task is not None
            await asyncio.wait_for(asyncio.shield(app.state.load_task), 60)
            lines.append(await check_not_serving(app.client, name, path, expected))
    report(
        "case 6a: missing or corrupt model directory (app factory, in-process)",
        "; ".join(cases),
        "\n      " + "\n      ".join(lines),
    )


PROCESS_CASES = ("missing directory", "truncated safetensors", "config without tokenizer")


async def test_broken_model_dirs_real_process(
    serve: Callable[..., ServerProcess], tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The same through sentiment-serve processes: alive, not ready with the reason in /ready and the log."""
    cases = {k: v for k, v in broken_model_dirs(tiny_model_dir, tmp_path).items() if k in PROCESS_CASES}
    # All processes start at once: they spend their time importing torch/transformers.
    servers = {name: serve(path) for name, (path, _) in cases.items()}
    reasons = await asyncio.gather(*(wait_not_ready(s) for s in servers.values()))
    lines = []
    for (name, server), reason in zip(servers.items(), reasons, strict=True):
        path, expected = cases[name]
        assert server.alive(), f"{name}: {reason}"
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            lines.append(await check_not_serving(client, name, path, expected))
        assert "Model load failed" in server.log(), f"{name}: the failure is not in the log"
    report(
        "case 6b: missing or corrupt model directory (sentiment-serve processes)",
        "; ".join(cases),
        f"{len(servers)} processes alive (/health 200), /ready 503 with the reason (also logged), "
        "/predict and /model 503:\n      " + "\n      ".join(lines),
    )
