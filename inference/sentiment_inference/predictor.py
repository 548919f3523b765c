"""The serving core: scores for texts, through the cache, admission, tokenizer, batcher and model.

One call, ``Predictor.predict``: dedupe -> one cache MGET -> admission (only for what the cache did not
answer, so a request the cache answers whole is served even under overload) -> tokenize the misses -> the
batcher (abandoned if the caller's ``disconnected`` fires first) -> one pipelined cache write. The HTTP layer
parses and validates the request, calls this and maps the typed errors to status codes; it never sees the
batcher, the cache or the backend. The model worker threads are owned here: the model loads and warms up on
the same threads its batches later run on.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sentiment_inference.admission import Admission
from sentiment_inference.backend import Backend, ModelInfo
from sentiment_inference.batching import Batcher, BatchLimits
from sentiment_inference.cache import Cache, Scores, cache_key
from sentiment_inference.errors import ClientClosed
from sentiment_inference.metrics import Metrics

T = TypeVar("T")

# Texts shorter than this (in total) are tokenized on the event loop; longer requests go to a thread.
_INLINE_TOKENIZE_CHARS = 2048

# Resolves when the client has gone away (the HTTP layer passes one per request).
Disconnected = Callable[[], Awaitable[None]]


class Predictor:
    """Cache, admission, tokenizer, batcher and backend behind one ``predict`` call (one per app)."""

    def __init__(
        self, backend: Backend, cache: Cache, metrics: Metrics, limits: BatchLimits, max_queue: int
    ) -> None:
        self._backend = backend
        self._cache = cache
        self._metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="model-worker")
        self._batcher = Batcher(backend, limits, metrics, self._executor)
        self._admission = Admission(max_queue, metrics, queued=lambda: self._batcher.pending)

    @property
    def info(self) -> ModelInfo:
        """The loaded model's facts (valid once ``load`` returned)."""
        return self._backend.info

    @property
    def cache_name(self) -> str:
        return self._cache.name

    @property
    def queued(self) -> int:
        """Texts accepted for the model and not yet answered or dropped."""
        return self._batcher.pending

    def start(self) -> None:
        self._batcher.start()

    async def load(self) -> None:
        """Load the model on a model worker thread (blocking and slow, off the event loop)."""
        await self._in_worker(self._backend.load)
        # Every label's series exists from the start at 0, so the first answers of a label count in a rate.
        for label in self._backend.info.labels:
            self._metrics.predictions.labels(label)

    async def warm_up(self) -> None:
        await self._in_worker(self._backend.warmup)

    async def stop(self) -> None:
        """Fail what is queued, release the worker threads and close the cache."""
        await self._batcher.stop()
        # Not waiting: a model load still running on a worker thread must not block shutdown.
        self._executor.shutdown(wait=False, cancel_futures=True)
        await self._cache.close()

    async def predict(
        self, texts: Sequence[str], disconnected: Disconnected | None = None, *, store: bool = True
    ) -> list[Scores]:
        """Scores for each text (cache first, misses through the model), in input order.

        ``store=False`` leaves the computed scores out of the cache (a mirrored copy of a request, whose
        answer nobody sees, must not fill the cache the real traffic shares).

        Raises Overloaded when the misses do not fit the queue, ClientClosed when ``disconnected`` resolves
        before the model answered (the queued texts are then dropped), InferenceFailed when the model fails.
        """
        info = self._backend.info
        unique = list(dict.fromkeys(texts))
        keys = [cache_key(info.fingerprint, info.max_length, t) for t in unique]
        cached = await self._cache.get_many(keys, len(info.labels))
        found: dict[str, Scores] = {t: c for t, c in zip(unique, cached, strict=True) if c is not None}
        missing = [i for i, c in enumerate(cached) if c is None]
        if missing:
            miss_texts = [unique[i] for i in missing]
            with self._admission.admit(len(miss_texts)):
                if sum(len(t) for t in miss_texts) <= _INLINE_TOKENIZE_CHARS:
                    encoded = self._backend.tokenize(miss_texts)
                else:
                    encoded = await asyncio.to_thread(self._backend.tokenize, miss_texts)
                answer = self._batcher.enqueue(encoded)
            if disconnected is None:
                computed = await answer
            else:
                computed = await _unless(disconnected, answer)
            found.update(zip(miss_texts, computed, strict=True))
            if store:
                await self._cache.set_many([(keys[i], s) for i, s in zip(missing, computed, strict=True)])
        self._metrics.texts.inc(len(texts))
        answers = [found[t] for t in texts]
        for label, count in Counter(_top_label(info.labels, scores) for scores in answers).items():
            self._metrics.predictions.labels(label).inc(count)
        return answers

    async def _in_worker(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn)


def _top_label(labels: Sequence[str], scores: Scores) -> str:
    """The label with the highest score (the first one on a tie, as the sorted answer lists it)."""
    return labels[max(range(len(scores)), key=scores.__getitem__)]


async def _unless(disconnected: Disconnected, work: asyncio.Future[T]) -> T:
    """Await ``work``; if ``disconnected`` resolves first, cancel it and raise ClientClosed."""
    watcher: asyncio.Future[object] = asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait((work, watcher), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        work.cancel()
        raise
    finally:
        watcher.cancel()
    if work in done:
        return work.result()
    work.cancel()
    raise ClientClosed("client disconnected before the prediction was ready")
