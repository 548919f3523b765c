"""The model backend: tokenizer + sequence-classification model, loaded once, shared by the model workers.

Tokenization and the forward pass are split so the batcher can form batches from exact token counts
(TEI style): ``tokenize`` turns texts into truncated id lists, ``predict`` runs one batch of unpadded id lists
and returns softmax probabilities in label-id order. ``predict`` may run on several worker threads at once
(the weights are read-only; the packed runtime's compiled graph runs a whole forward pass without the GIL).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sentiment_inference.cpus import usable_cpus
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
    runtime: str  # "packed" or "transformers"


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

    def release_memory(self) -> None:
        """Hand memory freed by earlier batches back to the OS (the batcher calls it between batches)."""
        ...


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


@dataclass(frozen=True)
class _Loaded:
    """What a loader hands the backend: the model, how to run it over unpadded id lists, and facts."""

    model: Any  # torch.nn.Module (quantized in place for int8)
    # The logits function (id lists -> logits tensor [batch, labels]) of the model in its final form, built
    # once int8 quantization has replaced its Linear layers (the packed runtime compiles that model).
    forward_of: Callable[[Any], Callable[[Sequence[Sequence[int]]], Any]]
    tokenizer: Any  # tokenizers.Tokenizer, private to this backend
    labels: tuple[str, ...]
    positions: int | None
    runtime: str


class TorchBackend:
    """A sequence classifier + the Rust fast tokenizer on CPU.

    DistilBERT checkpoints run on the packed runtime (``packed.py``: no padding, no transformers import); any
    other checkpoint, or ``SENTIMENT_RUNTIME=transformers``, runs on transformers'
    AutoModelForSequenceClassification.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._info: ModelInfo | None = None
        self._loaded: _Loaded | None = None
        self._forward: Callable[[Sequence[Sequence[int]]], Any] | None = None

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
            "Loaded model %s from %s in %.1fs (runtime=%s, precision=%s, max_length=%d, labels=%s, "
            "threads=%d, fingerprint=%s)",
            info.model_id,
            info.path,
            time.perf_counter() - started,
            info.runtime,
            info.precision,
            info.max_length,
            ",".join(info.labels),
            info.torch_threads,
            info.fingerprint,
        )

    def _load(self) -> None:
        import torch

        s = self._settings
        threads = s.torch_threads or max(1, usable_cpus() // s.effective_model_workers)
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
        loaded = _load_packed(model_dir) if local and s.runtime == "auto" else None
        if loaded is None:
            loaded = _load_transformers(s.model_path, local_files_only=local or not s.allow_download)
        # Counted before int8 turns the Linear weights into packed buffers.
        parameters = sum(p.numel() for p in loaded.model.parameters())

        precision = s.quantization
        if precision == "int8":
            _quantize_int8(loaded.model)

        max_length = min(s.max_length, loaded.positions or s.max_length)
        if max_length < s.max_length:
            log.warning(
                "SENTIMENT_MAX_LENGTH=%d exceeds the model's %d positions; using %d",
                s.max_length,
                loaded.positions,
                max_length,
            )
        loaded.tokenizer.no_padding()
        loaded.tokenizer.enable_truncation(max_length)

        # The quantization scheme is part of the answers, so of the cache namespace too.
        scheme = "int8-per-channel" if precision == "int8" else precision
        fingerprint = (
            fingerprint_files(model_dir, scheme) if local else fingerprint_state_dict(loaded.model, scheme)
        )
        self._forward = loaded.forward_of(loaded.model)
        self._loaded = loaded
        self._info = ModelInfo(
            model_id=s.model_id,
            path=s.model_path,
            labels=loaded.labels,
            max_length=max_length,
            precision=precision,
            fingerprint=fingerprint,
            parameters=parameters,
            torch_threads=threads,
            runtime=loaded.runtime,
        )

    def warmup(self) -> None:
        started = time.perf_counter()
        self.predict(self.tokenize([_WARMUP_TEXT]))
        self.predict(self.tokenize([_WARMUP_TEXT, *(" ".join([_WARMUP_TEXT] * n) for n in (2, 4, 8))]))
        _release_free_memory()  # loading and (for int8) quantizing leave freed heap pages mapped
        log.info("Warmed up the model in %.2fs", time.perf_counter() - started)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        if self._loaded is None:
            raise RuntimeError("model not loaded")
        return [enc.ids for enc in self._loaded.tokenizer.encode_batch(list(texts))]

    def predict(self, batch: Sequence[Sequence[int]]) -> list[list[float]]:
        import torch

        if self._forward is None:
            raise RuntimeError("model not loaded")
        if not batch:
            return []
        with torch.inference_mode():
            probs = torch.softmax(self._forward(batch).double(), dim=-1)
        result: list[list[float]] = probs.tolist()
        return result

    def release_memory(self) -> None:
        # glibc keeps freed batch activations in its heaps; malloc_trim walks them (a few ms).
        _release_free_memory()


def _load_packed(model_dir: Path) -> _Loaded | None:
    """The packed DistilBERT runtime, or None (reason logged) when the checkpoint needs transformers."""
    from tokenizers import Tokenizer

    from sentiment_inference import packed

    tokenizer_file = model_dir / "tokenizer.json"
    if not tokenizer_file.is_file():
        log.info("Runtime transformers for %s: no tokenizer.json", model_dir)
        return None
    result = packed.load(model_dir)
    if isinstance(result, str):
        log.info("Runtime transformers for %s: %s", model_dir, result)
        return None
    model, config = result
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    _check_vocabulary(tokenizer, str(model_dir))
    id2label = {int(k): str(v) for k, v in config["id2label"].items()}
    return _Loaded(
        model=model,
        forward_of=packed.compiled,
        tokenizer=tokenizer,
        labels=tuple(id2label[i] for i in range(len(id2label))),
        positions=int(config["max_position_embeddings"]),
        runtime="packed",
    )


def _load_transformers(model_path: str, *, local_files_only: bool) -> _Loaded:
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=local_files_only)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(f"{model_path}: no fast tokenizer (tokenizer.json) could be built")
    # A private copy of the Rust tokenizer: truncation set once, no padding, no Python-side overhead.
    fast = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    _check_vocabulary(fast, model_path)
    model, loading = AutoModelForSequenceClassification.from_pretrained(
        model_path, local_files_only=local_files_only, output_loading_info=True
    )
    missing = sorted(loading.get("missing_keys") or [])
    mismatched = sorted(str(k) for k in (loading.get("mismatched_keys") or []))
    if missing or mismatched:
        # A freshly initialized classifier head would serve random answers: refuse instead.
        raise ModelLoadError(
            f"{model_path}: weights missing or mismatched for {', '.join((missing + mismatched)[:5])}; "
            "is this a sequence-classification checkpoint?"
        )
    model.eval()
    id2label = dict(model.config.id2label or {})
    if len(id2label) < 2:
        raise ModelLoadError(f"{model_path}: config.json id2label must name at least 2 labels")
    pad_id = int(tokenizer.pad_token_id or 0)

    def forward_of(final: Any) -> Callable[[Sequence[Sequence[int]]], Any]:
        def forward(batch: Sequence[Sequence[int]]) -> Any:
            width = max(len(ids) for ids in batch)
            ids = torch.tensor([[*seq, *([pad_id] * (width - len(seq)))] for seq in batch], dtype=torch.long)
            mask = torch.tensor(
                [[1] * len(seq) + [0] * (width - len(seq)) for seq in batch], dtype=torch.long
            )
            return final(input_ids=ids, attention_mask=mask).logits

        return forward

    positions = getattr(model.config, "max_position_embeddings", None)
    return _Loaded(
        model=model,
        forward_of=forward_of,
        tokenizer=fast,
        labels=tuple(str(id2label[i]) for i in range(len(id2label))),
        positions=int(positions) if positions else None,
        runtime="transformers",
    )


def _check_vocabulary(tokenizer: Any, where: str) -> None:
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=False)
    specials = len(tokenizer.get_added_tokens_decoder())
    if vocab_size <= specials:
        # transformers builds an empty-vocabulary tokenizer when the files are missing: every word would
        # become [UNK] and every text would get the same (wrong) answer.
        raise ModelLoadError(
            f"{where}: the tokenizer has no vocabulary ({vocab_size} tokens, all special); "
            "are tokenizer.json / vocab.txt missing from the model directory?"
        )


def _quantize_int8(model: Any) -> None:
    """Dynamic int8 quantization of every Linear, in place (the float weights are freed, not copied).

    Per-output-channel scales: the packed runtime fuses Q, K and V into one matrix whose three parts have
    different ranges, and per-channel scales also keep the other layers closer to float32.
    """
    import torch

    with warnings.catch_warnings():
        # torch deprecates torch.ao.quantization in favour of torchao, which is not installed here.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        replaced = [m for m in model.modules() if type(m) is torch.nn.Linear]
        quantize_dynamic(  # type: ignore[no-untyped-call]
            model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True
        )
    # Each replaced float Linear keeps the qconfig torch gave it, whose observer factory closes over the
    # module: a reference cycle that held the float weights (160 MB for DistilBERT) until the first full
    # garbage collection, under load. Dropping it frees them now, without a full collection at start-up.
    for module in replaced:
        module.__dict__.pop("qconfig", None)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, looked up once; None off glibc."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def _release_free_memory() -> None:
    """Give freed heap pages back to the OS (glibc keeps them mapped); a no-op elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
