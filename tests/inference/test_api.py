"""The HTTP contract: routes, exact response bytes, order, limits and their status codes, readiness."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
import pytest
from sentiment_fakes import FakeBackend
from sentiment_inference.settings import Settings

RunningAppFactory = Callable[..., AbstractAsyncContextManager[Any]]


async def test_predict_response_is_the_contract_byte_for_byte(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings]
) -> None:
    backend = FakeBackend(scores={"I love it": [0.03, 0.97], "meh": [0.75, 0.25]})
    async with running_app(make_settings(api_prefix="/project"), backend=backend) as ra:
        for route in ("/project/predict", "/project/bulk-predict"):
            response = await ra.client.post(route, json={"text": ["I love it", "meh"]})
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
            assert response.content == (
                b'{"predictions":[[{"label":"POSITIVE","score":0.97},{"label":"NEGATIVE","score":0.03}],'
                b'[{"label":"NEGATIVE","score":0.75},{"label":"POSITIVE","score":0.25}]]}'
            )


async def test_single_string_is_one_prediction(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings]
) -> None:
    backend = FakeBackend(scores={"great": [0.1, 0.9]})
    async with running_app(make_settings(), backend=backend) as ra:
        response = await ra.client.post("/predict", json={"text": "great"})
        assert response.json() == {
            "predictions": [[{"label": "POSITIVE", "score": 0.9}, {"label": "NEGATIVE", "score": 0.1}]]
        }


async def test_order_is_preserved_across_batches_and_duplicates(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings]
) -> None:
    texts = [f"text number {i} " + "x" * (i * 7 % 23) for i in range(40)]
    texts[5] = texts[30]  # a duplicate inside the request
    scores = {t: [i / 100, 1 - i / 100] for i, t in enumerate(texts)}
    scores[texts[5]] = [0.3, 0.7]
    backend = FakeBackend(scores=scores)
    # Small batches force the request to be split, sorted by length and reassembled.
    async with running_app(make_settings(max_batch_size=4), backend=backend) as ra:
        response = await ra.client.post("/predict", json={"text": texts})
        assert response.status_code == 200
        predictions = response.json()["predictions"]
        assert len(predictions) == len(texts)
        for text, prediction in zip(texts, predictions, strict=True):
            by_label = {p["label"]: p["score"] for p in prediction}
            assert by_label == {"NEGATIVE": scores[text][0], "POSITIVE": scores[text][1]}
        assert max(len(b) for b in backend.batches) <= 4
        assert len(backend.texts_seen()) == len(set(texts))  # the duplicate was computed once


async def test_real_model_scores_are_sorted_probabilities(running_app: RunningAppFactory) -> None:
    async with running_app() as ra:
        # The long text (over the inline limit) is tokenized off the event loop and truncated to 512 tokens.
        texts = ["a fine day", "", "ünïcödé ✓ 🙂", "long words " * 400]
        response = await ra.client.post("/predict", json={"text": texts})
        assert response.status_code == 200
        for prediction in response.json()["predictions"]:
            assert {p["label"] for p in prediction} == {"NEGATIVE", "POSITIVE"}
            scores = [p["score"] for p in prediction]
            assert scores == sorted(scores, reverse=True)
            assert sum(scores) == pytest.approx(1.0, abs=1e-9)


async def test_trained_model_gives_meaningful_labels(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings], trained_model_dir: Any
) -> None:
    async with running_app(make_settings(model_path=str(trained_model_dir))) as ra:
        response = await ra.client.post(
            "/predict", json={"text": ["i love this wonderful movie", "the service was terrible and rude"]}
        )
        top = [p[0] for p in response.json()["predictions"]]
        assert [t["label"] for t in top] == ["POSITIVE", "NEGATIVE"]
        assert all(t["score"] > 0.9 for t in top)


async def test_health_model_docs_openapi(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings]
) -> None:
    async with running_app(make_settings(api_prefix="project/", model_id="my/model")) as ra:
        assert ra.prefix == "/project"
        health = await ra.client.get("/project/health")
        assert (health.status_code, health.json()) == (200, {"status": "healthy"})
        model = (await ra.client.get("/project/model")).json()
        assert model["id"] == "my/model"
        assert model["labels"] == ["NEGATIVE", "POSITIVE"]
        assert model["max_length"] == 512
        assert model["precision"] == "none"
        assert len(model["fingerprint"]) == 16
        assert (await ra.client.get("/docs")).status_code == 200
        spec = (await ra.client.get("/openapi.json")).json()
        assert {"/project/predict", "/project/bulk-predict", "/project/health", "/project/ready"} <= set(
            spec["paths"]
        )
        body = spec["paths"]["/project/predict"]["post"]["requestBody"]["content"]["application/json"]
        assert "text" in body["schema"]["properties"]
        assert (await ra.client.post("/predict", json={"text": "x"})).status_code == 404


# ------------------------------------------------------------------------------------------------ limits


@pytest.mark.parametrize(
    ("body", "status", "error", "detail_part"),
    [
        ({"text": []}, 422, "invalid_input", "at least one text"),
        ({"text": ["ok", 3]}, 422, "invalid_input", "text[1]"),
        ({"text": None}, 422, "invalid_input", "text"),
        ({"texts": ["a"]}, 422, "invalid_input", "text: Field required"),
        (["a", "b"], 422, "invalid_input", "body"),
        ({"text": ["a"] * 5}, 413, "too_many_texts", "SENTIMENT_MAX_TEXTS_PER_REQUEST=4"),
        ({"text": ["ok", "y" * 101]}, 413, "text_too_long", "text[1] has 101 characters"),
        ({"text": "y" * 101}, 413, "text_too_long", "SENTIMENT_MAX_TEXT_CHARS=100"),
    ],
)
async def test_invalid_bodies_get_their_exact_status(
    running_app: RunningAppFactory,
    make_settings: Callable[..., Settings],
    body: Any,
    status: int,
    error: str,
    detail_part: str,
) -> None:
    settings = make_settings(max_texts_per_request=4, max_text_chars=100)
    async with running_app(settings, backend=FakeBackend()) as ra:
        response = await ra.client.post("/predict", json=body)
        assert response.status_code == status, response.text
        payload = response.json()
        assert payload["error"] == error
        assert detail_part in payload["detail"]


async def test_limit_errors_name_limit_and_value(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(max_texts_per_request=4, max_text_chars=100)
    async with running_app(settings, backend=FakeBackend()) as ra:
        too_many = (await ra.client.post("/predict", json={"text": ["a"] * 9})).json()
        assert (too_many["limit"], too_many["value"], too_many["field"]) == (4, 9, "text")
        too_long = (await ra.client.post("/predict", json={"text": ["a", "b" * 150]})).json()
        assert (too_long["limit"], too_long["value"], too_long["field"]) == (100, 150, "text[1]")


async def test_malformed_json_and_content_types(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings]
) -> None:
    async with running_app(make_settings(), backend=FakeBackend()) as ra:
        bad = await ra.client.post(
            "/predict", content=b'{"text": [', headers={"content-type": "application/json"}
        )
        assert bad.status_code == 422
        assert bad.json()["error"] == "malformed_json"
        form = await ra.client.post("/predict", data={"text": "hello"})
        assert form.status_code == 415
        assert form.json()["error"] == "unsupported_media_type"
        plain = await ra.client.post(
            "/predict", content=b'{"text": "a"}', headers={"content-type": "text/plain"}
        )
        assert plain.status_code == 415
        charset = await ra.client.post(
            "/predict", content=b'{"text": "a"}', headers={"content-type": "application/json; charset=utf-8"}
        )
        assert charset.status_code == 200
        no_type = await ra.client.post("/predict", content=b'{"text": "a"}')
        assert "content-type" not in no_type.request.headers
        assert no_type.status_code == 200
        empty = await ra.client.post("/predict", content=b"", headers={"content-type": "application/json"})
        assert empty.status_code == 422
        binary = await ra.client.post(
            "/predict", content=b"\xff\xfe\x00", headers={"content-type": "application/json"}
        )
        assert binary.status_code == 422


async def test_body_limit_by_content_length_and_by_stream(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings]
) -> None:
    async with running_app(make_settings(max_body_bytes=1000), backend=FakeBackend()) as ra:
        big = orjson.dumps({"text": ["z" * 600, "z" * 600]})
        declared = await ra.client.post("/predict", content=big, headers={"content-type": "application/json"})
        assert declared.status_code == 413
        assert declared.json() == {
            "error": "body_too_large",
            "detail": f"request body is {len(big)} bytes; the limit is SENTIMENT_MAX_BODY_BYTES=1000",
            "limit": 1000,
            "value": len(big),
        }

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the streaming cap must catch it
            for i in range(0, len(big), 100):
                yield big[i : i + 100]

        streamed = await ra.client.post(
            "/predict", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        assert streamed.json()["limit"] == 1000
        small = await ra.client.post("/predict", json={"text": "z" * 100})
        assert small.status_code == 200


# ------------------------------------------------------------------------------------------------ readiness


async def test_readiness_before_and_after_warmup(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings]
) -> None:
    gate = threading.Event()
    backend = FakeBackend(load_gate=gate)
    async with running_app(make_settings(), backend=backend, wait_ready=False) as ra:
        assert (await ra.client.get("/health")).status_code == 200
        ready = await ra.client.get("/ready")
        assert ready.status_code == 503
        assert ready.headers["retry-after"] == "1"
        assert ready.json()["reason"].startswith("loading model from")
        predict = await ra.client.post("/predict", json={"text": "x"})
        assert predict.status_code == 503
        assert predict.json()["error"] == "not_ready"
        assert (await ra.client.get("/model")).status_code == 503
        assert await ra.metric("sentiment_ready") == 0
        gate.set()
        await ra.wait_ready(within=10)
        assert backend.warmed
        assert (await ra.client.post("/predict", json={"text": "x"})).status_code == 200
        assert await ra.metric("sentiment_ready") == 1


async def test_what_loading_created_is_out_of_the_collectors_sight_while_serving(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings]
) -> None:
    """A full garbage collection under load would otherwise walk every object the model load created,
    holding the GIL for 100+ ms with every request stopped; the freeze ends with the app."""
    import gc

    gate = threading.Event()
    async with running_app(make_settings(), backend=FakeBackend(load_gate=gate), wait_ready=False) as ra:
        assert gc.get_freeze_count() == 0
        gate.set()
        await ra.wait_ready(within=10)
        assert gc.get_freeze_count() > 1000  # the test process's modules, the app, the backend ...
    assert gc.get_freeze_count() == 0


async def test_failed_load_keeps_readiness_503_with_the_reason(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings]
) -> None:
    backend = FakeBackend(fail_load="model directory /x does not exist")
    async with running_app(make_settings(), backend=backend, wait_ready=False) as ra:
        for _ in range(200):
            if ra.state.load_error:
                break
            await asyncio.sleep(0.01)
        ready = await ra.client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["reason"] == "model load failed: model directory /x does not exist"
        assert (await ra.client.post("/predict", json={"text": "x"})).status_code == 503
        assert (await ra.client.get("/health")).status_code == 200


async def test_missing_model_dir_is_a_clear_not_ready(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings], tmp_path: Any
) -> None:
    async with running_app(make_settings(model_path=str(tmp_path / "absent")), wait_ready=False) as ra:
        for _ in range(500):
            if ra.state.load_error:
                break
            await asyncio.sleep(0.01)
        reason = (await ra.client.get("/ready")).json()["reason"]
        assert "absent does not exist" in reason
        assert "SENTIMENT_MODEL_PATH" in reason


async def test_shutdown_turns_readiness_off(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings]
) -> None:
    async with running_app(make_settings(), backend=FakeBackend()) as ra:
        ra.state.begin_shutdown()
        response = await ra.client.get("/ready")
        assert response.status_code == 503
        assert response.json()["reason"] == "shutting down"
        assert await ra.metric("sentiment_ready") == 0
        assert (await ra.client.post("/predict", json={"text": "in flight"})).status_code == 200


async def test_shutdown_during_the_load_is_never_undone_by_it(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings]
) -> None:
    gate = threading.Event()
    backend = FakeBackend(load_gate=gate)
    async with running_app(make_settings(), backend=backend, wait_ready=False) as ra:
        ra.state.begin_shutdown()
        gate.set()
        for _ in range(500):
            if ra.state.serving:
                break
            await asyncio.sleep(0.01)
        assert backend.warmed
        response = await ra.client.get("/ready")
        assert response.status_code == 503
        assert response.json()["reason"] == "shutting down"
        assert await ra.metric("sentiment_ready") == 0
        assert (await ra.client.post("/predict", json={"text": "in flight"})).status_code == 200


async def test_metrics_cover_requests_latency_cache_batches_queue_and_model(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings]
) -> None:
    from sentiment_inference.metrics import METRIC_NAMES

    async with running_app(make_settings(api_prefix="/p")) as ra:
        await ra.client.post("/p/predict", json={"text": ["one", "two"]})
        await ra.client.post("/p/predict", json={"text": ["one"]})
        await ra.client.post("/p/predict", json={"text": []})
        await ra.client.get("/p/nope")
        text = (await ra.client.get("/metrics")).text
        for name in METRIC_NAMES:
            assert f"# TYPE {name} " in text, name
        assert await ra.metric("sentiment_requests_total", {"route": "/p/predict", "status": "200"}) == 2
        assert await ra.metric("sentiment_requests_total", {"route": "/p/predict", "status": "422"}) == 1
        assert await ra.metric("sentiment_requests_total", {"route": "other", "status": "404"}) == 1
        assert await ra.metric("sentiment_request_duration_seconds_count", {"route": "/p/predict"}) == 3
        assert await ra.metric("sentiment_cache_hits_total", {"backend": "local"}) == 1
        assert await ra.metric("sentiment_cache_misses_total", {"backend": "local"}) == 2
        assert await ra.metric("sentiment_texts_total") == 3
        assert await ra.metric("sentiment_batch_size_sum") == 2  # warm-up bypasses the batcher
        assert await ra.metric("sentiment_model_seconds_count") >= 1
        assert await ra.metric("sentiment_queue_depth") == 0
        info = ra.state.predictor.info
        labels = {"model_id": info.model_id, "precision": "none", "fingerprint": info.fingerprint}
        assert await ra.metric("sentiment_model_info", labels) == 1


async def test_in_flight_gauge_counts_predict_requests_until_they_are_answered(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings]
) -> None:
    """sentiment_requests_in_flight (an autoscaling signal) counts predict requests from arrival to answer;
    probes and scrapes are not load and never count."""
    gate = threading.Event()
    async with running_app(make_settings(api_prefix="/p"), backend=FakeBackend(batch_gate=gate)) as ra:
        held = [
            asyncio.create_task(ra.client.post(path, json={"text": [f"held {i}"]}))
            for i, path in enumerate(("/p/predict", "/p/bulk-predict", "/p/predict"))
        ]
        for _ in range(500):
            if await ra.metric("sentiment_requests_in_flight") == 3:
                break
            await asyncio.sleep(0.01)
        assert await ra.metric("sentiment_requests_in_flight") == 3
        assert (await ra.client.get("/p/ready")).status_code == 200
        assert (await ra.client.get("/p/health")).status_code == 200
        assert await ra.metric("sentiment_requests_in_flight") == 3  # probes and scrapes are not load
        gate.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200, 200]
        assert await ra.metric("sentiment_requests_in_flight") == 0
        assert (await ra.client.post("/p/predict", json={"text": []})).status_code == 422
        assert await ra.metric("sentiment_requests_in_flight") == 0  # refused requests leave it too


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b'{"text": "\\ud800"}', 422),  # lone surrogate: not valid Unicode text
        (b"[" * 100_000, 422),  # nesting bomb
        (b'{"text": ' + b"[" * 5000 + b"]" * 5000 + b"}", 422),
        (b'{"text": 1e999}', 422),
        (b'{"text": {"a": 1}}', 422),
        (b"null", 422),
        (b'{"text": "a"} trailing', 422),
        (b'{"text": ["a\\u0000b", "\\u65e5\\u672c\\u8a9e"]}', 200),
    ],
)
async def test_hostile_bodies_never_get_a_500(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings], raw: bytes, status: int
) -> None:
    async with running_app(make_settings()) as ra:
        response = await ra.client.post("/predict", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == status, response.text


async def test_int8_server_answers_and_reports_its_precision(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings], trained_model_dir: Any
) -> None:
    settings = make_settings(model_path=str(trained_model_dir), quantization="int8")
    async with running_app(settings) as ra:
        model = (await ra.client.get("/model")).json()
        assert model["precision"] == "int8"
        response = await ra.client.post("/predict", json={"text": ["I love you!", "I hate you!"]})
        assert [p[0]["label"] for p in response.json()["predictions"]] == ["POSITIVE", "NEGATIVE"]


async def test_predictions_are_counted_by_top_label_cached_or_computed(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings]
) -> None:
    scores = {"good": [0.1, 0.9], "bad": [0.8, 0.2], "tie": [0.5, 0.5]}
    async with running_app(make_settings(), backend=FakeBackend(scores=scores)) as ra:
        # Both series exist before the first answer (a rate then counts the first ones too).
        text = (await ra.client.get("/metrics")).text
        assert 'sentiment_predictions_total{label="NEGATIVE"} 0.0' in text
        assert 'sentiment_predictions_total{label="POSITIVE"} 0.0' in text
        await ra.client.post("/predict", json={"text": ["good", "bad", "good", "tie"]})
        await ra.client.post("/predict", json={"text": ["good"]})  # from the cache: still an answer
        assert await ra.metric("sentiment_predictions_total", {"label": "POSITIVE"}) == 3
        # A tie goes to the label listed first, as the sorted answer shows it.
        assert await ra.metric("sentiment_predictions_total", {"label": "NEGATIVE"}) == 2
        assert await ra.metric("sentiment_cache_hits_total", {"backend": "local"}) == 1


async def test_a_mirrored_copy_is_answered_but_never_written_to_the_cache(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings]
) -> None:
    backend = FakeBackend(scores={"seen by a mirror": [0.1, 0.9]})
    async with running_app(make_settings(), backend=backend) as ra:
        body = {"text": ["seen by a mirror"]}
        shadow = {"host": "project.sentiment.svc.cluster.local-shadow:8000"}
        for _ in range(2):
            response = await ra.client.post("/predict", json=body, headers=shadow)
            assert response.status_code == 200
            assert response.json()["predictions"][0][0] == {"label": "POSITIVE", "score": 0.9}
        assert len(backend.batches) == 2  # computed twice: the first copy's answer was not cached
        assert await ra.metric("sentiment_mirrored_requests_total") == 2
        assert await ra.metric("sentiment_predictions_total", {"label": "POSITIVE"}) == 2
        # The same text from a real client is computed once and cached from then on.
        for _ in range(2):
            assert (await ra.client.post("/predict", json=body)).status_code == 200
        assert len(backend.batches) == 3
        assert await ra.metric("sentiment_mirrored_requests_total") == 2
        # A host that merely contains the suffix elsewhere is not a mirror.
        await ra.client.post("/predict", json={"text": ["x"]}, headers={"host": "a-shadow.example:1"})
        await ra.client.post("/predict", json={"text": ["x"]}, headers={"host": "shadowed"})
        assert await ra.metric("sentiment_mirrored_requests_total") == 2
