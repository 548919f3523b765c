"""Micro-batching: one asyncio task forms batches for the model worker threads (TEI style).

Requests put their tokenized texts in the queue and await one future per text. The batcher task waits until a
model worker is free, drains everything queued (after at most ``max_wait_ms`` for more to arrive when less
than a batch is waiting), drops texts whose request was cancelled, sorts by length to limit padding, cuts
batches capped by count and by padded tokens, and hands each to the next free worker thread (several run side
by side), so the event loop never blocks. The queue's bound is enforced before texts get here (admission.py);
the worker threads belong to the caller (the serving core loads the model on the same threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

from sentiment_inference.backend import Backend
from sentiment_inference.errors import InferenceFailed
from sentiment_inference.metrics import Metrics

log = logging.getLogger(__name__)

# How often the backend may hand freed memory back to the OS (Backend.release_memory, a few ms of one worker).
_RELEASE_INTERVAL_S = 1.0


@dataclass(frozen=True)
class BatchLimits:
    max_batch_size: int = 32
    max_batch_tokens: int = 512
    max_wait_ms: float = 2.0
    workers: int = 1  # batches running side by side, one per model worker thread


@dataclass(eq=False)
class _Item:
    ids: Sequence[int]
    future: asyncio.Future[list[float]]


def plan_batches(items: Sequence[_Item], max_size: int, max_tokens: int) -> list[list[_Item]]:
    """Sort by length and cut into batches of at most ``max_size`` texts and ``max_tokens`` padded tokens.

    A single text longer than the token budget still forms a batch of its own.
    """
    ordered = sorted(items, key=lambda it: len(it.ids))
    batches: list[list[_Item]] = []
    current: list[_Item] = []
    for item in ordered:
        # Sorted ascending, so this item is the longest; padded size = count * its length.
        if current and (len(current) >= max_size or (len(current) + 1) * len(item.ids) > max_tokens):
            batches.append(current)
            current = []
        current.append(item)
    if current:
        batches.append(current)
    return batches


class Batcher:
    """The queue, owned by one task, in front of ``limits.workers`` model worker threads of ``executor``.

    A batch is formed whenever a worker is free (drain-when-free, with an optional short wait), from
    everything queued; with several workers, batches run side by side, each on its own thread.
    """

    def __init__(self, backend: Backend, limits: BatchLimits, metrics: Metrics, executor: Executor) -> None:
        self._backend = backend
        self._limits = limits
        self._metrics = metrics
        self._queue: deque[_Item] = deque()
        self._pending = 0  # texts accepted and not yet answered or dropped
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._executor = executor
        self._free = asyncio.Semaphore(limits.workers)
        self._running: set[asyncio.Task[None]] = set()
        self._released_at = time.perf_counter()  # the model's warm-up has just released memory

    @property
    def pending(self) -> int:
        return self._pending

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sentiment-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._running):
            task.cancel()
        for item in self._queue:
            if not item.future.done():
                item.future.set_exception(InferenceFailed("server is shutting down"))
        self._queue.clear()

    def enqueue(self, encoded: Sequence[Sequence[int]]) -> asyncio.Future[list[list[float]]]:
        """Queue one request's texts now; the future gives their probabilities in the same order.

        Cancelling the future drops the texts still queued (the batcher skips them before compute).
        """
        loop = asyncio.get_running_loop()
        items = [_Item(ids, loop.create_future()) for ids in encoded]
        if items:
            self._queue.extend(items)
            self._pending += len(items)
            self._metrics.queue_depth.set(self._pending)
            self._wakeup.set()
        return asyncio.gather(*(it.future for it in items))

    async def submit(self, encoded: Sequence[Sequence[int]]) -> list[list[float]]:
        """``enqueue`` and wait: cancelling the caller drops its texts."""
        return list(await self.enqueue(encoded))

    def _take(self) -> list[_Item]:
        live: list[_Item] = []
        dropped = 0
        while self._queue:
            item = self._queue.popleft()
            if item.future.done():  # cancelled: the client went away
                dropped += 1
            else:
                live.append(item)
        if dropped:
            self._drop(dropped)
        return live

    def _drop(self, n: int) -> None:
        self._pending -= n
        self._metrics.dropped.inc(n)
        self._metrics.queue_depth.set(self._pending)

    async def _run(self) -> None:
        limits = self._limits
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._queue:
                continue
            await self._free.acquire()  # a worker is free: form a batch from what is queued now
            if limits.max_wait_ms > 0 and len(self._queue) < limits.max_batch_size:
                await asyncio.sleep(limits.max_wait_ms / 1000)
                self._wakeup.clear()
            holding = True
            for batch in plan_batches(self._take(), limits.max_batch_size, limits.max_batch_tokens):
                live = [it for it in batch if not it.future.done()]
                if len(live) < len(batch):
                    self._drop(len(batch) - len(live))
                if not live:
                    continue
                if not holding:
                    await self._free.acquire()
                holding = False
                task = asyncio.create_task(self._run_batch(loop, live), name="sentiment-batch")
                self._running.add(task)
                task.add_done_callback(self._finished)
            if holding:
                self._free.release()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._free.release()

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Item]) -> None:
        ids = [it.ids for it in batch]
        started = time.perf_counter()
        try:
            probs = await loop.run_in_executor(self._executor, self._backend.predict, ids)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("Model batch of %d texts failed", len(batch))
            for it in batch:
                if not it.future.done():
                    it.future.set_exception(InferenceFailed(f"model inference failed: {type(exc).__name__}"))
            probs = None
        finally:
            self._pending -= len(batch)
            self._metrics.queue_depth.set(self._pending)
        elapsed = time.perf_counter() - started
        self._metrics.model_seconds.observe(elapsed)
        self._metrics.batch_size.observe(len(batch))
        self._metrics.batch_tokens.observe(len(batch) * max(len(i) for i in ids))
        if probs is None:
            return
        for it, p in zip(batch, probs, strict=True):
            if not it.future.done():
                it.future.set_result(p)
        if started - self._released_at >= _RELEASE_INTERVAL_S:
            # On this worker, after the answers are out: the pause (3-5 ms of CPU, more on a busy machine)
            # delays no answer, only the next batch this worker would take while the others are busy.
            self._released_at = started
            try:
                await loop.run_in_executor(self._executor, self._backend.release_memory)
            except Exception:
                log.exception("Releasing freed memory failed")
