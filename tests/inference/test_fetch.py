"""`sentiment-fetch-model` against a local source directory (never the hub).

This is the step Dockerfile.inference's model stage and the operator's download init container run.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sentiment_inference import fetch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

MODEL_ID = "example/tiny-sst2"
TEXTS = ["i love you !", "i hate the model"]


def _make_source(directory: Path) -> Path:
    """A tiny DistilBERT sequence classifier with a WordPiece tokenizer, written with save_pretrained."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertTokenizer

    directory.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "i", "love", "hate", "you", "!", "the", "model"]
    vocab_file = directory / "vocab-src.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    config = DistilBertConfig(  # type: ignore[call-arg]  # num_labels etc. are PretrainedConfig kwargs
        vocab_size=len(vocab),
        dim=16,
        n_layers=1,
        n_heads=2,
        hidden_dim=32,
        max_position_embeddings=64,
        num_labels=2,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
    )
    DistilBertTokenizer(vocab_file=str(vocab_file)).save_pretrained(str(directory))
    DistilBertForSequenceClassification(config).save_pretrained(str(directory))
    vocab_file.unlink()
    return directory


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_source(tmp_path_factory.mktemp("fetch") / "source")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # A test must never reach the hub; a local source needs no network at all.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def _logits(directory: Path) -> torch.Tensor:
    tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(str(directory), local_files_only=True).eval()
    with torch.inference_mode():
        logits: torch.Tensor = model(**tokenizer(TEXTS, return_tensors="pt", padding=True)).logits
    return logits


def test_fetch_from_local_dir_saves_an_identical_loadable_model(source_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = fetch.fetch_model(MODEL_ID, out, source=str(source_dir))

    assert result.skipped is False
    assert result.labels == ("NEGATIVE", "POSITIVE")
    assert (out / "MODEL_ID").read_text(encoding="utf-8") == MODEL_ID + "\n"
    assert fetch.read_model_id(out) == MODEL_ID
    assert (out / "config.json").is_file()
    assert (out / "tokenizer_config.json").is_file()
    assert any(p.suffix == ".safetensors" for p in out.iterdir())
    # No bookkeeping left behind.
    assert not (out / fetch.STAGING_DIR).exists()
    assert not (out / fetch.IN_PROGRESS_FILE).exists()
    torch.testing.assert_close(_logits(out), _logits(source_dir))


def test_fetched_files_are_readable_by_other_users(source_dir: Path, tmp_path: Path) -> None:
    # The image copies the model out of a root build stage and serves it as uid 10001.
    out = tmp_path / "model"
    fetch.fetch_model(MODEL_ID, out, source=str(source_dir))
    for path in [out, *out.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & stat.S_IROTH, f"{path} is not world-readable ({oct(mode)})"
        if path.is_dir():
            assert mode & stat.S_IXOTH, f"{path} is not world-traversable ({oct(mode)})"


def test_fetch_into_a_mount_root_owned_by_another_uid(
    source_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real-cluster correctness #5: the download init container (uid 10001, no capabilities) fetches into an
    emptyDir whose root kubelet created root-owned; chmod of that root is EPERM and must not be tried."""
    out = tmp_path / "model"
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    real_chmod = Path.chmod

    def chmod(self: Path, mode: int, *, follow_symlinks: bool = True) -> None:
        if self == out:
            raise PermissionError(1, "Operation not permitted", str(self))
        real_chmod(self, mode, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(Path, "chmod", chmod)
    monkeypatch.setattr(fetch.os, "getuid", lambda: out.stat().st_uid + 10001)
    result = fetch.fetch_model(MODEL_ID, out, source=str(source_dir))
    assert result.labels == ("NEGATIVE", "POSITIVE")
    assert stat.S_IMODE(out.stat().st_mode) == 0o777
    for path in out.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) & stat.S_IROTH, path


def test_second_fetch_with_same_id_is_a_no_op(source_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    fetch.fetch_model(MODEL_ID, out, source=str(source_dir))
    weights = next(p for p in out.iterdir() if p.suffix == ".safetensors")
    before = weights.stat().st_mtime_ns

    again = fetch.fetch_model(MODEL_ID, out, source=str(source_dir))

    assert again.skipped is True
    assert again.labels == ("NEGATIVE", "POSITIVE")
    assert weights.stat().st_mtime_ns == before


def test_different_id_replaces_a_previous_fetch(source_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    fetch.fetch_model(MODEL_ID, out, source=str(source_dir))
    (out / "stale-shard.safetensors").write_bytes(b"left over from the previous model")

    result = fetch.fetch_model("example/other", out, source=str(source_dir))

    assert result.skipped is False
    assert fetch.read_model_id(out) == "example/other"
    assert not (out / "stale-shard.safetensors").exists()


def test_refuses_to_overwrite_a_foreign_non_empty_directory(source_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("not a model", encoding="utf-8")

    with pytest.raises(fetch.FetchError, match="not empty and was not written by sentiment-fetch-model"):
        fetch.fetch_model(MODEL_ID, out, source=str(source_dir))
    assert (out / "notes.txt").read_text(encoding="utf-8") == "not a model"

    fetch.fetch_model(MODEL_ID, out, source=str(source_dir), force=True)
    assert not (out / "notes.txt").exists()
    assert fetch.read_model_id(out) == MODEL_ID


def test_recovers_from_a_run_that_crashed_while_moving_files(source_dir: Path, tmp_path: Path) -> None:
    # emptyDir contents survive an init container restart; the retry must clean up and succeed.
    out = tmp_path / "model"
    out.mkdir()
    (out / fetch.IN_PROGRESS_FILE).write_text(MODEL_ID + "\n", encoding="utf-8")
    (out / "config.json").write_text("{truncated", encoding="utf-8")
    (out / fetch.STAGING_DIR).mkdir()
    (out / fetch.STAGING_DIR / "half.bin").write_bytes(b"\0")

    result = fetch.fetch_model(MODEL_ID, out, source=str(source_dir))

    assert result.skipped is False
    assert fetch.read_model_id(out) == MODEL_ID
    assert not (out / fetch.IN_PROGRESS_FILE).exists()
    torch.testing.assert_close(_logits(out), _logits(source_dir))


def test_corrupt_existing_copy_is_fetched_again(source_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    fetch.fetch_model(MODEL_ID, out, source=str(source_dir))
    (out / "config.json").write_text("{not json", encoding="utf-8")

    result = fetch.fetch_model(MODEL_ID, out, source=str(source_dir))

    assert result.skipped is False
    torch.testing.assert_close(_logits(out), _logits(source_dir))


def test_source_directory_without_a_model_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(fetch.FetchError, match=r"cannot load a model and tokenizer from .*empty"):
        fetch.fetch_model(MODEL_ID, tmp_path / "out", source=str(empty))
    assert fetch.read_model_id(tmp_path / "out") is None


@pytest.mark.parametrize("bad_id", ["", "  ", "two\nlines"])
def test_rejects_bad_model_ids(bad_id: str, source_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(fetch.FetchError, match="--model-id"):
        fetch.fetch_model(bad_id, tmp_path / "out", source=str(source_dir))


def test_cli_missing_source_exits_1(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    code = fetch.main(["--model-id", MODEL_ID, "--out", str(tmp_path / "out"), "--source", "./no-such-dir"])
    assert code == 1
    assert "--source ./no-such-dir is not a directory" in caplog.text


def test_console_script_as_run_by_the_image_build(source_dir: Path, tmp_path: Path) -> None:
    # The installed entry point (the same command Dockerfile.inference's model stage runs), in a subprocess.
    script = Path(sys.executable).parent / "sentiment-fetch-model"
    assert script.is_file(), "sentiment-fetch-model is not installed; pip install -e '.[dev]'"
    out = tmp_path / "opt-sentiment-model"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [str(script), "--model-id", MODEL_ID, "--out", str(out), "--source", str(source_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{MODEL_ID} -> {out} (NEGATIVE, POSITIVE)"
    assert f"Saved model {MODEL_ID}" in proc.stderr
    assert fetch.read_model_id(out) == MODEL_ID


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_hub_download_in_offline_mode_is_a_clear_error(
    variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The inference image sets offline mode for the server; a download container must switch it off.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.setenv(variable, "1")
    with pytest.raises(fetch.FetchError, match=r"offline mode is on.*set HF_HUB_OFFLINE=0"):
        fetch.fetch_model("distilbert-base-uncased-finetuned-sst-2-english", tmp_path / "out")
    assert fetch.read_model_id(tmp_path / "out") is None


def test_offline_mode_reads_the_variables_like_huggingface_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    assert fetch.offline_mode() is False
    monkeypatch.setenv("HF_HUB_OFFLINE", "true")
    assert fetch.offline_mode() is True
