"""The transformers backend through the production loader: labels, truncation, int8, fingerprint, bad dirs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sentiment_inference.backend import ModelLoadError, TorchBackend
from sentiment_inference.cpus import usable_cpus
from sentiment_inference.devmodel import synthetic_dataset, write_devmodel
from sentiment_inference.settings import Settings


def _load(path: Path, **overrides: object) -> TorchBackend:
    backend = TorchBackend(Settings(model_path=str(path), **overrides))  # type: ignore[arg-type]
    backend.load()
    return backend


def test_loads_the_dev_model_with_its_labels_and_limits(tiny_model_dir: Path) -> None:
    backend = _load(tiny_model_dir, max_length=32, torch_threads=1, model_id="dev/tiny")
    info = backend.info
    assert info.labels == ("NEGATIVE", "POSITIVE")
    assert info.max_length == 32
    assert info.precision == "none"
    assert info.torch_threads == 1
    assert info.model_id == "dev/tiny"
    assert info.parameters > 100_000
    backend.warmup()
    ids = backend.tokenize(["hello world", "long " * 200])
    assert ids[0] == [101, 7592, 2088, 102]  # [CLS] hello world [SEP] from the real WordPiece vocabulary
    assert len(ids[1]) == 32
    assert ids[1][0] == 101
    assert ids[1][-1] == 102
    probs = backend.predict(ids)
    assert len(probs) == 2
    assert all(len(p) == 2 and sum(p) == pytest.approx(1.0, abs=1e-9) for p in probs)


def test_max_length_is_capped_by_the_models_positions(tiny_model_dir: Path) -> None:
    backend = _load(tiny_model_dir, max_length=4096)
    assert backend.info.max_length == 512
    assert len(backend.tokenize(["word " * 2000])[0]) == 512


def test_fingerprint_is_stable_and_follows_weights_and_precision(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    first = _load(tiny_model_dir).info.fingerprint
    assert _load(tiny_model_dir).info.fingerprint == first
    assert len(first) == 16
    int8 = _load(tiny_model_dir, quantization="int8").info.fingerprint
    assert int8 != first
    other = write_devmodel(tmp_path / "seed1", "tiny", seed=1)
    assert _load(other).info.fingerprint != first


def test_int8_agrees_with_fp32_on_the_trained_model(trained_model_dir: Path) -> None:
    fp32 = _load(trained_model_dir)
    int8 = _load(trained_model_dir, quantization="int8")
    assert int8.info.precision == "int8"
    held_out = synthetic_dataset(200, seed=4242)
    texts = [t for t, _ in held_out]
    a = fp32.predict(fp32.tokenize(texts))
    b = int8.predict(int8.tokenize(texts))
    top_a = [max(range(2), key=p.__getitem__) for p in a]
    top_b = [max(range(2), key=q.__getitem__) for q in b]
    agree = sum(x == y for x, y in zip(top_a, top_b, strict=True))
    assert agree / len(texts) >= 0.9
    correct = sum(x == y for x, (_, y) in zip(top_b, held_out, strict=True))
    assert correct / len(texts) >= 0.9


@pytest.mark.parametrize("runtime", ["auto", "transformers"])
def test_int8_frees_the_float_weights_it_replaced_at_once(tiny_model_dir: Path, runtime: str) -> None:
    """Not at the first full garbage collection, which may come under load (160 MB for DistilBERT)."""
    import weakref

    import torch
    from sentiment_inference import backend as backend_module

    float_weights: list[weakref.ref[torch.Tensor]] = []
    quantize = backend_module._quantize_int8

    def watching(model: torch.nn.Module) -> None:
        float_weights.extend(weakref.ref(m.weight) for m in model.modules() if type(m) is torch.nn.Linear)
        quantize(model)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backend_module, "_quantize_int8", watching)
        backend = _load(tiny_model_dir, quantization="int8", runtime=runtime)
    assert backend.info.precision == "int8"
    assert len(float_weights) >= 6
    assert [ref for ref in float_weights if ref() is not None] == []


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"nothere does not exist \(SENTIMENT_MODEL_PATH\)"):
        _load(tmp_path / "nothere")


def test_directory_without_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"has no config\.json"):
        _load(tmp_path)


def test_corrupt_weights_are_a_clear_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="cannot load the model from"):
        _load(broken)


def test_checkpoint_without_a_classifier_head_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import DistilBertConfig, DistilBertModel

    base = tmp_path / "base"
    config = DistilBertConfig.from_pretrained(tiny_model_dir)
    DistilBertModel(config).save_pretrained(base)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / name, base / name)
    with pytest.raises(ModelLoadError, match="weights missing or mismatched"):
        _load(base)


def test_config_without_labels_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    single = tmp_path / "single"
    shutil.copytree(tiny_model_dir, single)
    config = json.loads((single / "config.json").read_text())
    config["id2label"] = {"0": "ONLY"}
    config["label2id"] = {"ONLY": 0}
    (single / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError):
        _load(single)


def test_usable_cpus_is_at_least_one() -> None:
    assert usable_cpus() >= 1
