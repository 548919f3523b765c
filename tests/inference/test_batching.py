"""The micro-batcher: batch formation, order, bounded queue, dropped cancellations, batched == unbatched."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from sentiment_fakes import FakeBackend
from sentiment_inference.backend import TorchBackend
from sentiment_inference.batching import Batcher, BatchLimits, _Item, plan_batches
from sentiment_inference.metrics import Metrics
from sentiment_inference.settings import Settings

RunningAppFactory = Callable[..., AbstractAsyncContextManager[Any]]

_threads: list[ThreadPoolExecutor] = []


def model_threads(workers: int = 2) -> ThreadPoolExecutor:
    """Worker threads for a Batcher under test (the serving core owns them in the server); shut down after."""
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="test-model-worker")
    _threads.append(executor)
    return executor


@pytest.fixture(autouse=True)
def _shut_down_model_threads() -> Iterator[None]:
    yield
    while _threads:
        _threads.pop().shutdown(wait=False, cancel_futures=True)


def _items(lengths: list[int]) -> list[_Item]:
    loop = asyncio.new_event_loop()
    try:
        return [_Item(list(range(n)), loop.create_future()) for n in lengths]
    finally:
        loop.close()


def test_plan_batches_sorts_and_caps_by_count_and_tokens() -> None:
    items = _items([5, 1, 9, 3, 7, 2, 8])
    by_count = plan_batches(items, max_size=3, max_tokens=10_000)
    assert [[len(i.ids) for i in b] for b in by_count] == [[1, 2, 3], [5, 7, 8], [9]]
    by_tokens = plan_batches(items, max_size=100, max_tokens=16)
    # padded size = count * longest <= 16
    assert [[len(i.ids) for i in b] for b in by_tokens] == [[1, 2, 3], [5, 7], [8], [9]]
    assert all(len(b) * max(len(i.ids) for i in b) <= 16 for b in by_tokens)
    oversized = plan_batches(_items([40, 2]), max_size=8, max_tokens=16)
    assert [[len(i.ids) for i in b] for b in oversized] == [[2], [40]]


async def _until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` every 10 ms, for at most 5 seconds."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_two_workers_run_two_batches_side_by_side_and_no_more() -> None:
    gate = threading.Event()
    backend = FakeBackend(batch_gate=gate)
    batcher = Batcher(
        backend, BatchLimits(max_batch_size=32, max_wait_ms=0, workers=2), Metrics(), model_threads()
    )
    batcher.start()
    try:
        first = asyncio.create_task(batcher.submit(backend.tokenize(["one"])))
        await _until(lambda: len(backend.batches) == 1)
        # The first batch is still blocked in the model, yet the second worker takes the next request.
        second = asyncio.create_task(batcher.submit(backend.tokenize(["two"])))
        await _until(lambda: len(backend.batches) == 2)
        # Both workers busy: the third request waits in the queue.
        third = asyncio.create_task(batcher.submit(backend.tokenize(["three", "four"])))
        await asyncio.sleep(0.1)
        assert len(backend.batches) == 2
        assert batcher.pending == 4
        gate.set()
        results = await asyncio.gather(first, second, third)
        assert [len(r) for r in results] == [1, 1, 2]
        assert backend.batches == [["one"], ["two"], ["four", "three"]]
        assert batcher.pending == 0
    finally:
        gate.set()
        await batcher.stop()


async def test_concurrent_requests_share_a_batch_when_the_model_frees_up() -> None:
    gate = threading.Event()
    backend = FakeBackend(batch_gate=gate)
    metrics = Metrics()
    batcher = Batcher(backend, BatchLimits(max_batch_size=32, max_wait_ms=0), metrics, model_threads())
    batcher.start()
    try:
        first = asyncio.create_task(batcher.submit(backend.tokenize(["first"])))
        await asyncio.to_thread(backend.batch_started.wait, 5)
        # While the model is busy, three requests queue up ...
        rest = [
            asyncio.create_task(batcher.submit(backend.tokenize([f"r{i}a", f"r{i}bb"]))) for i in range(3)
        ]
        await asyncio.sleep(0.05)
        assert batcher.pending == 7
        gate.set()  # ... and run together as soon as it is free.
        await asyncio.gather(first, *rest)
        assert backend.batches[0] == ["first"]
        assert sorted(backend.batches[1]) == sorted(["r0a", "r0bb", "r1a", "r1bb", "r2a", "r2bb"])
        assert len(backend.batches) == 2
        assert batcher.pending == 0
    finally:
        await batcher.stop()


async def test_freed_memory_is_released_after_the_answers_at_most_once_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sentiment_inference import batching

    backend = FakeBackend()
    backend.release_gate = threading.Event()  # a release that never ends unless the test lets it
    batcher = Batcher(backend, BatchLimits(max_wait_ms=0, workers=2), Metrics(), model_threads())
    batcher.start()
    try:
        # Within a second of the warm-up's release: none.
        assert await batcher.submit(backend.tokenize(["first"])) == [[0.5, 0.5]]
        assert backend.released == []
        monkeypatch.setattr(batching, "_RELEASE_INTERVAL_S", 0.0)
        # Due now: the answer does not wait for the release, which runs on the worker after it ...
        assert await asyncio.wait_for(batcher.submit(backend.tokenize(["second"])), 5) == [[0.5, 0.5]]
        await _until(lambda: backend.released == [2])
        # ... and the other worker keeps serving while that one is still releasing.
        assert await asyncio.wait_for(batcher.submit(backend.tokenize(["third"])), 5) == [[0.5, 0.5]]
        backend.release_gate.set()
        await _until(lambda: backend.released == [2, 3])
    finally:
        backend.release_gate.set()
        await batcher.stop()


async def test_results_return_in_each_requests_order() -> None:
    texts = ["ccc", "a", "bb", "dddd", "a"]
    backend = FakeBackend(scores={t: [len(t) / 10, 1 - len(t) / 10] for t in texts})
    batcher = Batcher(backend, BatchLimits(max_batch_size=2), Metrics(), model_threads())
    batcher.start()
    try:
        out = await batcher.submit(backend.tokenize(texts))
        assert out == [[len(t) / 10, 1 - len(t) / 10] for t in texts]
    finally:
        await batcher.stop()


async def test_cancelled_requests_are_dropped_before_compute() -> None:
    gate = threading.Event()
    backend = FakeBackend(batch_gate=gate)
    metrics = Metrics()
    batcher = Batcher(backend, BatchLimits(max_wait_ms=0), metrics, model_threads())
    batcher.start()
    try:
        busy = asyncio.create_task(batcher.submit(backend.tokenize(["busy"])))
        await asyncio.to_thread(backend.batch_started.wait, 5)
        gone = asyncio.create_task(batcher.submit(backend.tokenize(["gone1", "gone2"])))
        kept = asyncio.create_task(batcher.submit(backend.tokenize(["kept"])))
        await asyncio.sleep(0.02)
        gone.cancel()
        gate.set()
        await asyncio.gather(busy, kept)
        assert "gone1" not in backend.texts_seen()
        assert "gone2" not in backend.texts_seen()
        assert "kept" in backend.texts_seen()
        assert metrics.dropped._value.get() == 2
        assert batcher.pending == 0
    finally:
        await batcher.stop()


async def test_client_disconnect_drops_the_queued_texts(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings]
) -> None:
    gate = threading.Event()
    backend = FakeBackend(batch_gate=gate)
    async with running_app(make_settings(), backend=backend) as ra:
        busy = asyncio.create_task(ra.client.post("/predict", json={"text": "busy"}))
        await asyncio.to_thread(backend.batch_started.wait, 5)

        # A raw ASGI call whose client hangs up while its text waits in the queue.
        disconnect = asyncio.Event()
        body_sent = False
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": b'{"text": ["abandoned"]}', "more_body": False}
            await disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/predict",
            "raw_path": b"/predict",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"host", b"testserver")],
            "client": ("127.0.0.1", 1234),
            "server": ("testserver", 80),
        }
        call = asyncio.create_task(ra.app(scope, receive, send))
        for _ in range(200):
            if ra.state.predictor.queued == 2:
                break
            await asyncio.sleep(0.01)
        assert ra.state.predictor.queued == 2
        disconnect.set()
        await asyncio.wait_for(call, 5)
        gate.set()
        assert (await busy).status_code == 200
        assert "abandoned" not in backend.texts_seen()
        assert await ra.metric("sentiment_dropped_texts_total") == 1
        assert sent[0]["status"] == 499
        assert await ra.metric("sentiment_requests_total", {"route": "/predict", "status": "499"}) == 1


async def test_overload_answers_429_with_retry_after(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings]
) -> None:
    backend = FakeBackend(delay=0.3)
    settings = make_settings(max_queue=4, max_texts_per_request=2, retry_after_seconds=2)
    async with running_app(settings, backend=backend) as ra:
        requests = [ra.client.post("/predict", json={"text": [f"t{i}a", f"t{i}b"]}) for i in range(6)]
        responses = await asyncio.gather(*requests)
        statuses = sorted(r.status_code for r in responses)
        assert 200 in statuses
        assert 429 in statuses
        assert set(statuses) <= {200, 429}
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.headers["retry-after"] == "2"
        assert refused.json()["error"] == "overloaded"
        assert refused.json()["limit"] == 4
        assert await ra.metric("sentiment_overloaded_total") == statuses.count(429)


async def test_model_failure_is_a_clear_500_not_a_crash(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings]
) -> None:
    class Broken(FakeBackend):
        def predict(self, batch: Any) -> list[list[float]]:
            raise RuntimeError("boom")

    async with running_app(make_settings(), backend=Broken()) as ra:
        response = await ra.client.post("/predict", json={"text": "x"})
        assert response.status_code == 500
        assert response.json() == {
            "error": "inference_failed",
            "detail": "model inference failed: RuntimeError",
        }
        assert (await ra.client.get("/health")).status_code == 200


def test_batched_equals_unbatched_on_the_real_model(tiny_model_dir: Path) -> None:
    backend = TorchBackend(Settings(model_path=str(tiny_model_dir), max_length=64))
    backend.load()
    texts = [
        "short",
        "a somewhat longer sentence about a film that was fine",
        "",
        "word " * 100,  # truncated at 64 tokens
        "ünïcödé ✓ 🙂 text",
    ]
    encoded = backend.tokenize(texts)
    assert max(len(e) for e in encoded) == 64
    alone = [backend.predict([e])[0] for e in encoded]
    together = backend.predict(encoded)
    reversed_batch = backend.predict(encoded[::-1])[::-1]
    for a, b, c in zip(alone, together, reversed_batch, strict=True):
        assert a == pytest.approx(b, abs=1e-4)
        assert a == pytest.approx(c, abs=1e-4)


async def test_batched_equals_unbatched_through_the_server(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings]
) -> None:
    texts = [f"review {i}: " + "good " * (i % 9) + "bad " * (i % 4) for i in range(24)]
    async with running_app(make_settings(max_wait_ms=5, local_cache_size=0)) as ra:
        alone = []
        for text in texts:
            response = await ra.client.post("/predict", json={"text": text})
            alone.append(response.json()["predictions"][0])
        batches_before = await ra.metric("sentiment_batch_size_count")
        responses = await asyncio.gather(*(ra.client.post("/predict", json={"text": t}) for t in texts))
        concurrent_batches = await ra.metric("sentiment_batch_size_count") - batches_before
        assert concurrent_batches < len(texts)  # the concurrent requests really shared batches
        bulk = (await ra.client.post("/bulk-predict", json={"text": texts})).json()["predictions"]
        for i, text in enumerate(texts):
            together = responses[i].json()["predictions"][0]
            for variant in (together, bulk[i]):
                assert [p["label"] for p in variant] == [p["label"] for p in alone[i]], text
                for x, y in zip(alone[i], variant, strict=True):
                    assert x["score"] == pytest.approx(y["score"], abs=1e-4)
