"""A fake at our own Backend interface: deterministic scores, controllable load and compute time."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence

from sentiment_inference.backend import ModelInfo


class FakeBackend:
    """Tokenizes one id per character; scores come from ``scores`` by text (default: an even split).

    ``load_gate`` blocks load() until set (readiness tests); ``delay`` slows every batch (overload tests);
    ``batch_gate`` blocks predict() until set, ``release_gate`` release_memory(). Every batch the model saw
    is kept in ``batches``, every list of texts tokenized in ``tokenized``; ``tokenize_started`` is set once
    tokenize() has begun; ``released`` counts the batches seen at each release_memory() call.
    """

    def __init__(
        self,
        *,
        labels: Sequence[str] = ("NEGATIVE", "POSITIVE"),
        scores: Mapping[str, Sequence[float]] | None = None,
        delay: float = 0.0,
        load_gate: threading.Event | None = None,
        batch_gate: threading.Event | None = None,
        fingerprint: str = "fake0000fake0000",
        max_length: int = 512,
        fail_load: str | None = None,
    ) -> None:
        self.labels = tuple(labels)
        self.scores = dict(scores or {})
        self.delay = delay
        self.load_gate = load_gate
        self.batch_gate = batch_gate
        self.fingerprint = fingerprint
        self.max_length = max_length
        self.fail_load = fail_load
        self.batches: list[list[str]] = []
        self.tokenized: list[list[str]] = []
        self.tokenize_gate: threading.Event | None = None
        self.tokenize_started = threading.Event()
        self.loaded = False
        self.warmed = False
        self.batch_started = threading.Event()
        self.released: list[int] = []
        self.release_gate: threading.Event | None = None

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            model_id="fake/model",
            path="/nowhere",
            labels=self.labels,
            max_length=self.max_length,
            precision="none",
            fingerprint=self.fingerprint,
            parameters=0,
            torch_threads=1,
            runtime="fake",
        )

    def load(self) -> None:
        if self.load_gate is not None:
            self.load_gate.wait(timeout=60)
        if self.fail_load is not None:
            from sentiment_inference.backend import ModelLoadError

            raise ModelLoadError(self.fail_load)
        self.loaded = True

    def warmup(self) -> None:
        self.warmed = True

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        self.tokenized.append(list(texts))
        self.tokenize_started.set()
        if self.tokenize_gate is not None:
            self.tokenize_gate.wait(timeout=60)
        return [[ord(c) for c in text][: self.max_length] or [0] for text in texts]

    def predict(self, batch: Sequence[Sequence[int]]) -> list[list[float]]:
        texts = ["".join(chr(i) for i in ids if i) for ids in batch]
        self.batches.append(texts)
        self.batch_started.set()
        if self.batch_gate is not None:
            self.batch_gate.wait(timeout=60)
        if self.delay:
            time.sleep(self.delay)
        even = [1.0 / len(self.labels)] * len(self.labels)
        return [list(self.scores.get(t, even)) for t in texts]

    def release_memory(self) -> None:
        self.released.append(len(self.batches))
        if self.release_gate is not None:
            self.release_gate.wait(timeout=60)

    def texts_seen(self) -> list[str]:
        return [t for batch in self.batches for t in batch]
