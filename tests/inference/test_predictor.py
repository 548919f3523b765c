"""The serving core: cache first, admission before tokenization, a bounded queue, 429s with Retry-After."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sentiment_fakes import FakeBackend
from sentiment_inference.batching import BatchLimits
from sentiment_inference.cache import LocalCache
from sentiment_inference.errors import ANSWERS, ApiError, Overloaded, error_response
from sentiment_inference.metrics import Metrics
from sentiment_inference.predictor import Predictor


@asynccontextmanager
async def running(backend: FakeBackend, metrics: Metrics, max_queue: int) -> AsyncIterator[Predictor]:
    predictor = Predictor(backend, LocalCache(1000, metrics), metrics, BatchLimits(max_wait_ms=0), max_queue)
    predictor.start()
    await predictor.load()
    try:
        yield predictor
    finally:
        if backend.batch_gate is not None:
            backend.batch_gate.set()
        if backend.tokenize_gate is not None:
            backend.tokenize_gate.set()
        await predictor.stop()


async def test_full_queue_raises_overloaded_at_once() -> None:
    gate = threading.Event()
    backend = FakeBackend(batch_gate=gate)
    metrics = Metrics()
    async with running(backend, metrics, max_queue=4) as predictor:
        busy = asyncio.create_task(predictor.predict(["a", "b", "c"]))
        await asyncio.to_thread(backend.batch_started.wait, 5)
        assert predictor.queued == 3
        with pytest.raises(Overloaded) as err:
            await predictor.predict(["d", "e"])
        assert "SENTIMENT_MAX_QUEUE=4" in err.value.detail
        assert (err.value.extra["limit"], err.value.extra["value"]) == (4, 5)
        refused = error_response(err.value, retry_after_seconds=3)
        assert (refused.status_code, refused.headers["retry-after"]) == (429, "3")
        fits = asyncio.create_task(predictor.predict(["d"]))
        gate.set()
        results = await asyncio.gather(busy, fits)
        assert [len(r) for r in results] == [3, 1]
        assert metrics.overloaded._value.get() == 1
        assert predictor.queued == 0


async def test_refused_texts_are_never_tokenized() -> None:
    gate = threading.Event()
    backend = FakeBackend(batch_gate=gate)
    async with running(backend, Metrics(), max_queue=2) as predictor:
        busy = asyncio.create_task(predictor.predict(["a", "b"]))
        await asyncio.to_thread(backend.batch_started.wait, 5)
        with pytest.raises(Overloaded):
            await predictor.predict(["refused"])
        assert ["refused"] not in backend.tokenized
        gate.set()
        await busy


async def test_a_request_the_cache_answers_whole_is_served_under_overload() -> None:
    gate = threading.Event()
    backend = FakeBackend(scores={"known": [0.2, 0.8]})
    metrics = Metrics()
    async with running(backend, metrics, max_queue=2) as predictor:
        assert await predictor.predict(["known"]) == [[0.2, 0.8]]  # now cached
        backend.batch_gate = gate
        busy = asyncio.create_task(predictor.predict(["x", "y"]))
        await asyncio.to_thread(backend.batch_started.wait, 5)
        assert predictor.queued == 2  # the queue is full
        assert await predictor.predict(["known", "known"]) == [[0.2, 0.8], [0.2, 0.8]]
        with pytest.raises(Overloaded):
            await predictor.predict(["known", "new"])  # one miss is one text too many
        gate.set()
        await busy
        assert metrics.overloaded._value.get() == 1


async def test_requests_still_tokenizing_count_against_the_queue() -> None:
    backend = FakeBackend()
    backend.tokenize_gate = threading.Event()
    long_texts = [f"{i} " + "long " * 500 for i in range(3)]  # over the inline limit: tokenized on a thread
    async with running(backend, Metrics(), max_queue=4) as predictor:
        first = asyncio.create_task(predictor.predict(long_texts))
        await asyncio.to_thread(backend.tokenize_started.wait, 5)
        assert predictor.queued == 0  # nothing queued yet: the three texts are only reserved
        with pytest.raises(Overloaded):
            await predictor.predict(["a", "b"])
        backend.tokenize_gate.set()
        assert len(await first) == 3
        assert len(await predictor.predict(["a", "b"])) == 2


async def test_disconnected_caller_drops_its_queued_texts() -> None:
    gate = threading.Event()
    backend = FakeBackend(batch_gate=gate)
    metrics = Metrics()
    hung_up = asyncio.Event()

    async def disconnected() -> None:
        await hung_up.wait()

    async with running(backend, metrics, max_queue=10) as predictor:
        busy = asyncio.create_task(predictor.predict(["busy"]))
        await asyncio.to_thread(backend.batch_started.wait, 5)
        gone = asyncio.create_task(predictor.predict(["gone"], disconnected=disconnected))
        await asyncio.sleep(0.02)
        assert predictor.queued == 2
        hung_up.set()
        with pytest.raises(ApiError) as err:
            await gone
        assert err.value.code == "client_closed_request"
        gate.set()
        await busy
        for _ in range(500):  # the batcher drops the abandoned text when it next forms a batch
            if predictor.queued == 0:
                break
            await asyncio.sleep(0.01)
        assert predictor.queued == 0
        assert "gone" not in backend.texts_seen()
        assert metrics.dropped._value.get() == 1


def test_only_overload_and_not_ready_carry_retry_after() -> None:
    retried = {cls.__name__ for cls, answer in ANSWERS.items() if answer.retry_after}
    assert retried == {"Overloaded", "NotReady"}
    for cls, answer in ANSWERS.items():
        response = error_response(cls("detail"), retry_after_seconds=7)
        assert response.status_code == answer.status
        assert response.headers.get("retry-after") == ("7" if answer.retry_after else None), cls
