"""The packed DistilBERT runtime answers what transformers answers, and steps aside when it cannot."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sentiment_inference import packed
from sentiment_inference.backend import TorchBackend
from sentiment_inference.devmodel import synthetic_dataset
from sentiment_inference.settings import Settings

# Lengths from 3 to hundreds of tokens, unicode, accents, emoji, truncation: one batch with lots of padding.
TEXTS = [
    "great",
    "I love you!",
    "I hate you!",
    "The film was an unmitigated disaster from start to finish, and I want my two hours back.",
    "Crème brûlée à la française, naïve café façade — déjà vu. 😀👍",
    "这部电影很好看",
    "not bad at all , actually quite good",
    "word " * 700,
    "",
    "   spaces   and\ttabs\nand newlines   ",
]


def _load(path: Path, **overrides: object) -> TorchBackend:
    backend = TorchBackend(Settings(model_path=str(path), **overrides))  # type: ignore[arg-type]
    backend.load()
    return backend


@pytest.mark.parametrize("max_length", [512, 16])
def test_packed_matches_transformers_on_a_padded_batch(tiny_model_dir: Path, max_length: int) -> None:
    ours = _load(tiny_model_dir, max_length=max_length)
    reference = _load(tiny_model_dir, max_length=max_length, runtime="transformers")
    assert (ours.info.runtime, reference.info.runtime) == ("packed", "transformers")
    assert ours.info.parameters == reference.info.parameters
    assert ours.info.fingerprint == reference.info.fingerprint  # same answers, so one cache namespace

    ids = ours.tokenize(TEXTS)
    assert ids == reference.tokenize(TEXTS)
    assert len({len(x) for x in ids}) >= 5  # the batch really mixes lengths
    assert max(len(x) for x in ids) == max_length

    got, want = ours.predict(ids), reference.predict(ids)
    for text, p, q in zip(TEXTS, got, want, strict=True):
        assert p == pytest.approx(q, abs=1e-5), text[:40]
    # One text alone (no padding at all, the mask-free attention path) gives the same answer as in a batch.
    for i in (1, 7):
        assert ours.predict([ids[i]])[0] == pytest.approx(got[i], abs=1e-5)


def test_packed_int8_matches_transformers_int8_on_the_trained_model(trained_model_dir: Path) -> None:
    held_out = [text for text, _ in synthetic_dataset(300, seed=777)]
    fp32 = _load(trained_model_dir)
    ours = _load(trained_model_dir, quantization="int8")
    reference = _load(trained_model_dir, quantization="int8", runtime="transformers")
    ids = ours.tokenize(held_out)
    a, b, f = ours.predict(ids), reference.predict(ids), fp32.predict(ids)

    def label(p: list[float]) -> int:
        return max(range(len(p)), key=p.__getitem__)

    assert [label(p) for p in a] == [label(q) for q in b]
    assert sum(label(p) == label(q) for p, q in zip(a, f, strict=True)) / len(held_out) >= 0.99
    # Dynamic quantization scales activations per tensor; packed rows and padded rows differ slightly.
    assert max(abs(p[1] - q[1]) for p, q in zip(a, b, strict=True)) < 0.05


@pytest.mark.parametrize("quantization", ["none", "int8"])
def test_the_compiled_graph_gives_the_modules_logits_bit_for_bit(
    tiny_model_dir: Path, quantization: str
) -> None:
    import torch

    backend = _load(tiny_model_dir, quantization=quantization)
    module = packed.load(tiny_model_dir)
    assert not isinstance(module, str)
    model = module[0]
    if quantization == "int8":
        from sentiment_inference.backend import _quantize_int8

        _quantize_int8(model)
    graph = packed.compiled(model)
    ids = backend.tokenize(TEXTS)
    with torch.inference_mode():
        for batch in (ids, ids[1:2], ids[:4]):  # padded, one text alone (no mask), short texts only
            assert torch.equal(graph(batch), model(*packed.as_tensors(batch)))


def test_a_forward_pass_runs_no_python_between_operations(tiny_model_dir: Path) -> None:
    """The served forward pass is one TorchScript call: no Python runs per layer or per operation, so the
    GIL is taken once to start it (TorchScript releases it while the graph runs) instead of around every one
    of its operations, and a model worker never queues behind the event loop's Python mid-pass."""
    import torch

    backend = _load(tiny_model_dir)
    ids = backend.tokenize(TEXTS[:3])
    module = packed.load(tiny_model_dir)
    assert not isinstance(module, str)

    def python_calls(run: Any) -> int:
        calls = 0

        def profile(frame: Any, event: str, arg: Any) -> None:
            nonlocal calls
            calls += event == "call"

        sys.setprofile(profile)
        try:
            run()
        finally:
            sys.setprofile(None)
        return calls

    served = python_calls(lambda: backend.predict(ids))
    with torch.inference_mode():
        plain = python_calls(lambda: module[0](*packed.as_tensors(ids)))
    # The plain module runs Python for every submodule and functional call; the served pass a fixed few
    # (tensor conversion, context managers), whatever the depth of the model.
    assert served <= 30, served
    assert plain >= 4 * served, (plain, served)


def test_runtime_falls_back_to_transformers_without_tokenizer_json(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json")).get_vocab()
    slow = tmp_path / "vocab-only"
    shutil.copytree(tiny_model_dir, slow)
    (slow / "tokenizer.json").unlink()
    # vocab.txt only, as older checkpoints ship it: transformers rebuilds the fast tokenizer from it.
    (slow / "vocab.txt").write_text("".join(f"{token}\n" for token in sorted(vocab, key=vocab.__getitem__)))
    backend = _load(slow)
    assert backend.info.runtime == "transformers"
    assert backend.tokenize(["hello world"]) == [[101, 7592, 2088, 102]]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"architectures": ["DistilBertForMaskedLM"]}, "is not DistilBertForSequenceClassification"),
        ({"model_type": "bert"}, "is not DistilBertForSequenceClassification"),
        ({"activation": "relu"}, "activation 'relu' is not gelu"),
        ({"sinusoidal_pos_embds": True}, "sinusoidal position embeddings"),
        ({"problem_type": "multi_label_classification"}, "problem_type 'multi_label_classification'"),
        ({"id2label": {"0": "ONLY"}}, "fewer than 2 labels"),
    ],
)
def test_unsupported_configs_name_the_reason(
    tiny_model_dir: Path, tmp_path: Path, change: dict[str, object], reason: str
) -> None:
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    config = json.loads((other / "config.json").read_text())
    config.update(change)
    (other / "config.json").write_text(json.dumps(config))
    result = packed.load(other)
    assert isinstance(result, str)
    assert reason in result


def test_checkpoints_that_do_not_map_exactly_are_left_to_transformers(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(tiny_model_dir / "model.safetensors")
    for name, edit in (
        ("missing", lambda w: w.pop("classifier.bias")),
        ("extra", lambda w: w.__setitem__("distilbert.surprise.weight", w["classifier.bias"].clone())),
    ):
        target = tmp_path / name
        shutil.copytree(tiny_model_dir, target)
        changed = dict(weights)
        edit(changed)
        save_file(changed, target / "model.safetensors")
        result = packed.load(target)
        assert isinstance(result, str)
        assert ("classifier.bias" if name == "missing" else "distilbert.surprise.weight") in result
    no_weights = tmp_path / "bin-only"
    shutil.copytree(tiny_model_dir, no_weights)
    (no_weights / "model.safetensors").unlink()
    assert packed.load(no_weights) == "no single model.safetensors file"


def test_serving_a_distilbert_checkpoint_never_imports_transformers(tiny_model_dir: Path) -> None:
    """The start-up saving is structural: the server's imports and a packed load leave transformers out."""
    script = textwrap.dedent(
        f"""
        import sys
        import sentiment_inference.cli, sentiment_inference.app
        from sentiment_inference.backend import TorchBackend
        from sentiment_inference.settings import Settings
        backend = TorchBackend(Settings(model_path={str(tiny_model_dir)!r}))
        backend.load()
        backend.warmup()
        print(backend.info.runtime, sorted(m for m in sys.modules if m.split(".")[0] == "transformers"))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "packed []"
