"""The model backend: tokenizer + sequence-classification model, loaded once, run by one worker thread.

Tokenization and the forward pass are split so the batcher can form batches from exact token counts
(TEI style): ``tokenize`` turns texts into truncated id lists, ``predict`` runs one padded batch and returns
softmax probabilities in label-id order.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sentiment_inference.settings import Settings

log = logging.getLogger(__name__)

# Files whose bytes decide what the server answers; their hash is the model fingerprint.
_FINGERPRINT_FILES = ("config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_WARMUP_TEXT = "Warming up the sentiment model."


class ModelLoadError(Exception):
    """The model or tokenizer cannot be loaded; ``reason`` says why and what to check."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ModelInfo:
    """What GET {prefix}/model reports; ``fingerprint`` also namespaces the prediction cache."""

    model_id: str
    path: str
    labels: tuple[str, ...]
    max_length: int
    precision: str
    fingerprint: str
    parameters: int
    torch_threads: int


class Backend(Protocol):
    """The interface the server needs from a model; tests plug in fakes with the same shape."""

    @property
    def info(self) -> ModelInfo:
        """Model facts; only valid after ``load``."""
        ...

    def load(self) -> None:
        """Load weights and tokenizer (blocking, slow); raise ModelLoadError on failure."""
        ...

    def warmup(self) -> None:
        """Run representative inferences so the first request does not pay one-off costs."""
        ...

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, with special tokens, truncated to ``info.max_length``."""
        ...

    def predict(self, batch: Sequence[Sequence[int]]) -> list[list[float]]:
        """Softmax probabilities in label-id order for each id list of one batch."""
        ...


def auto_torch_threads() -> int:
    """CPUs this process may really use: CPU affinity, capped by a cgroup v2/v1 CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def _cgroup_cpu_quota() -> float | None:
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        p = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if q > 0 and p > 0:
            return q / p
    except (OSError, ValueError):
        pass
    return None


def fingerprint_files(model_dir: Path, precision: str) -> str:
    """sha256 over the weight, config and tokenizer files (name + bytes) and the precision, 16 hex chars."""
    digest = hashlib.sha256()
    names = sorted(
        p.name
        for p in model_dir.iterdir()
        if p.is_file() and (p.suffix in _WEIGHT_SUFFIXES or p.name in _FINGERPRINT_FILES)
    )
    for name in names:
        digest.update(name.encode() + b"\0")
        with (model_dir / name).open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    digest.update(b"precision=" + precision.encode())
    return digest.hexdigest()[:16]


def fingerprint_state_dict(model: Any, precision: str) -> str:
    """Fallback fingerprint for a model without local files (hub download): hash of the tensors."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + b"\0")
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(b"precision=" + precision.encode())
    return digest.hexdigest()[:16]


class TransformersBackend:
    """A Hugging Face AutoModelForSequenceClassification + fast tokenizer on CPU."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._info: ModelInfo | None = None
        self._model: Any = None
        self._tokenizer: Any = None
        self._pad_id = 0

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            raise RuntimeError("model not loaded")
        return self._info

    def load(self) -> None:
        started = time.perf_counter()
        try:
            self._load()
        except ModelLoadError:
            raise
        except Exception as exc:  # transformers raises OSError/ValueError/KeyError/... for broken dirs
            raise ModelLoadError(
                f"cannot load the model from {self._settings.model_path}: {type(exc).__name__}: {exc}"
            ) from exc
        info = self.info
        log.info(
            "Loaded model %s from %s in %.1fs (precision=%s, max_length=%d, labels=%s, threads=%d, "
            "fingerprint=%s)",
            info.model_id,
            info.path,
            time.perf_counter() - started,
            info.precision,
            info.max_length,
            ",".join(info.labels),
            info.torch_threads,
            info.fingerprint,
        )

    def _load(self) -> None:
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        s = self._settings
        threads = s.torch_threads or auto_torch_threads()
        torch.set_num_threads(threads)

        model_dir = Path(s.model_path)
        local = model_dir.is_dir()
        if not local and not s.allow_download:
            raise ModelLoadError(
                f"model directory {s.model_path} does not exist (SENTIMENT_MODEL_PATH); "
                "bake the model into the image, mount it, or set SENTIMENT_ALLOW_DOWNLOAD=true for a hub id"
            )
        if local and not (model_dir / "config.json").is_file():
            raise ModelLoadError(
                f"model directory {s.model_path} has no config.json (not a save_pretrained dir)"
            )

        tokenizer = AutoTokenizer.from_pretrained(
            s.model_path, local_files_only=local or not s.allow_download
        )
        if not getattr(tokenizer, "is_fast", False):
            raise ModelLoadError(f"{s.model_path}: no fast tokenizer (tokenizer.json) could be built")
        vocab_size = len(tokenizer.get_vocab())
        if vocab_size <= len(tokenizer.all_special_tokens):
            # transformers builds an empty-vocabulary tokenizer when the files are missing: every word would
            # become [UNK] and every text would get the same (wrong) answer.
            raise ModelLoadError(
                f"{s.model_path}: the tokenizer has no vocabulary ({vocab_size} tokens, all special); "
                "are tokenizer.json / vocab.txt missing from the model directory?"
            )
        model, loading = AutoModelForSequenceClassification.from_pretrained(
            s.model_path,
            local_files_only=local or not s.allow_download,
            output_loading_info=True,
        )
        missing = sorted(loading.get("missing_keys") or [])
        mismatched = sorted(str(k) for k in (loading.get("mismatched_keys") or []))
        if missing or mismatched:
            # A freshly initialized classifier head would serve random answers: refuse instead.
            raise ModelLoadError(
                f"{s.model_path}: weights missing or mismatched for {', '.join((missing + mismatched)[:5])}; "
                "is this a sequence-classification checkpoint?"
            )
        model.eval()

        id2label = dict(model.config.id2label or {})
        if len(id2label) < 2:
            raise ModelLoadError(f"{s.model_path}: config.json id2label must name at least 2 labels")
        labels = tuple(str(id2label[i]) for i in range(len(id2label)))

        precision = s.quantization
        if precision == "int8":
            with warnings.catch_warnings():
                # torch deprecates torch.ao.quantization in favour of torchao, which is not installed here.
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", UserWarning)
                from torch.ao.quantization import quantize_dynamic

                model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)  # type: ignore[no-untyped-call]

        positions = getattr(model.config, "max_position_embeddings", None) or s.max_length
        max_length = min(s.max_length, int(positions))
        if max_length < s.max_length:
            log.warning(
                "SENTIMENT_MAX_LENGTH=%d exceeds the model's %d positions; using %d",
                s.max_length,
                positions,
                max_length,
            )

        # A private copy of the Rust tokenizer: truncation set once, no padding, no Python-side overhead.
        fast = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        fast.no_padding()
        fast.enable_truncation(max_length)
        pad_id = tokenizer.pad_token_id
        self._pad_id = int(pad_id) if pad_id is not None else 0

        fingerprint = (
            fingerprint_files(model_dir, precision) if local else fingerprint_state_dict(model, precision)
        )
        self._model = model
        self._tokenizer = fast
        self._info = ModelInfo(
            model_id=s.model_id,
            path=s.model_path,
            labels=labels,
            max_length=max_length,
            precision=precision,
            fingerprint=fingerprint,
            parameters=sum(p.numel() for p in model.parameters()),
            torch_threads=threads,
        )

    def warmup(self) -> None:
        started = time.perf_counter()
        short = self.tokenize([_WARMUP_TEXT])
        longest = self.tokenize([" ".join([_WARMUP_TEXT] * self.info.max_length)])
        self.predict(short)
        self.predict(short + longest)
        log.info("Warmed up the model in %.2fs", time.perf_counter() - started)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return [enc.ids for enc in self._tokenizer.encode_batch(list(texts))]

    def predict(self, batch: Sequence[Sequence[int]]) -> list[list[float]]:
        import torch

        if not batch:
            return []
        width = max(len(ids) for ids in batch)
        pad = self._pad_id
        input_ids = torch.tensor([[*ids, *([pad] * (width - len(ids)))] for ids in batch], dtype=torch.long)
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch], dtype=torch.long)
        with torch.inference_mode():
            logits = self._model(input_ids=input_ids, attention_mask=mask).logits
            probs = torch.softmax(logits.double(), dim=-1)
        result: list[list[float]] = probs.tolist()
        return result
