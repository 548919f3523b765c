"""HTTP routes: predict, bulk-predict, health, ready, model, metrics.

The predict path: readiness -> capped body read -> JSON + schema validation -> limits -> the serving core
(``Predictor.predict``: cache, admission, tokenizer, batcher, model; abandoned when the client disconnects)
-> response. Routes only parse, call and format; errors are typed and mapped to answers in errors.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError
from starlette.responses import Response

from sentiment_inference.errors import (
    BodyTimeout,
    BodyTooLarge,
    InvalidInput,
    NotReady,
    TextTooLong,
    TooManyTexts,
    UnsupportedMediaType,
    from_validation_errors,
)
from sentiment_inference.state import ServerState


class PredictRequest(BaseModel):
    """One text or a list of texts to classify."""

    model_config = ConfigDict(extra="ignore")
    text: list[StrictStr] | StrictStr = Field(
        description="A text or a non-empty list of texts.", examples=[["I love it!", "This is awful."]]
    )


class LabelScore(BaseModel):
    label: str = Field(examples=["POSITIVE"])
    score: float = Field(examples=[0.97])


class PredictResponse(BaseModel):
    """One entry per input text, in input order; each lists every label, highest score first."""

    predictions: list[list[LabelScore]]


async def get_state(request: Request) -> ServerState:
    # async on purpose: FastAPI runs sync dependencies in its thread pool (a thread hop per request).
    state: ServerState = request.app.state.sentiment
    return state


StateDep = Annotated[ServerState, Depends(get_state)]


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


async def read_body(request: Request, limit: int, within: float) -> bytes:
    """Read the body, refusing more than ``limit`` bytes (by Content-Length first, then while streaming) and
    a body that takes longer than ``within`` seconds to arrive (the 408 answer closes the connection)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(
            f"request body is {int(declared)} bytes; the limit is SENTIMENT_MAX_BODY_BYTES={limit}",
            limit=limit,
            value=int(declared),
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(within):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(
                        f"request body exceeds {limit} bytes (SENTIMENT_MAX_BODY_BYTES={limit})",
                        limit=limit,
                        value=size,
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout(
            f"the request body did not arrive within {within:g} s ({size} bytes received); "
            "send it at once (SENTIMENT_BODY_READ_TIMEOUT_SECONDS)",
            limit=within,
            value=size,
        ) from None
    return b"".join(chunks)


def _check_content_type(request: Request) -> None:
    ctype = request.headers.get("content-type")
    if not ctype:
        return  # lenient: a body without a content type is tried as JSON
    media = ctype.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(
            f"content-type {media!r} is not supported; send application/json",
            field="content-type",
            value=media,
        )


def parse_texts(raw: bytes, state: ServerState) -> list[str]:
    """Validate the body and the per-request limits; raise a specific 413/422 naming limit and value."""
    s = state.settings
    try:
        req = PredictRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise from_validation_errors(list(exc.errors())) from None
    texts = [req.text] if isinstance(req.text, str) else req.text
    if not texts:
        raise InvalidInput("text: must contain at least one text", field="text", value=0)
    if len(texts) > s.max_texts_per_request:
        raise TooManyTexts(
            f"text has {len(texts)} items; "
            f"the limit is SENTIMENT_MAX_TEXTS_PER_REQUEST={s.max_texts_per_request}",
            field="text",
            limit=s.max_texts_per_request,
            value=len(texts),
        )
    for i, text in enumerate(texts):
        if len(text) > s.max_text_chars:
            field = "text" if isinstance(req.text, str) else f"text[{i}]"
            raise TextTooLong(
                f"{field} has {len(text)} characters; "
                f"the limit is SENTIMENT_MAX_TEXT_CHARS={s.max_text_chars}",
                field=field,
                limit=s.max_text_chars,
                value=len(text),
            )
    return texts


async def _until_disconnect(request: Request) -> None:
    """Resolves when the client hangs up (the body is read by then, so nothing else arrives)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def format_prediction(labels: Sequence[str], scores: Sequence[float]) -> list[dict[str, Any]]:
    pairs = sorted(zip(labels, scores, strict=True), key=lambda p: p[1], reverse=True)
    return [{"label": label, "score": score} for label, score in pairs]


# A proxy that mirrors a request (Istio's mirror, Envoy's request_mirror_policies) appends this to its
# Host/authority; the copy's answer is discarded.
MIRROR_HOST_SUFFIX = "-shadow"


def is_mirrored(request: Request) -> bool:
    """Whether the request is a mirrored copy: its Host (without the port) ends with ``-shadow``."""
    host = request.headers.get("host", "")
    return host.rsplit(":", 1)[0].endswith(MIRROR_HOST_SUFFIX) if host else False


def _require_model(state: ServerState) -> None:
    if not state.serving:
        raise NotReady(f"not ready: {state.reason}", reason=state.reason)


_PREDICT_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PredictRequest.model_json_schema()}},
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"description": "Body, text count or text length over its limit"},
    415: {"description": "Content type is not JSON"},
    422: {"description": "Malformed JSON or invalid body"},
    429: {"description": "Queue full; retry after Retry-After seconds"},
    503: {"description": "Model not loaded or warmed up yet"},
}


# The routes that classify texts (the load an autoscaler follows), by route name.
PREDICT_ROUTES = (("/predict", "predict"), ("/bulk-predict", "bulk_predict"))
PREDICT_ROUTE_NAMES = frozenset(name for _, name in PREDICT_ROUTES)


def build_router(prefix: str) -> APIRouter:
    router = APIRouter()

    async def predict(request: Request, state: StateDep) -> Response:
        _require_model(state)
        _check_content_type(request)
        raw = await read_body(
            request, state.settings.max_body_bytes, state.settings.body_read_timeout_seconds
        )
        texts = parse_texts(raw, state)
        predictor = state.predictor
        mirrored = is_mirrored(request)
        if mirrored:
            state.metrics.mirrored.inc()
        scores = await predictor.predict(
            texts, disconnected=lambda: _until_disconnect(request), store=not mirrored
        )
        labels = predictor.info.labels
        return _json({"predictions": [format_prediction(labels, s) for s in scores]})

    for path, name in PREDICT_ROUTES:
        router.add_api_route(
            prefix + path,
            predict,
            methods=["POST"],
            name=name,
            summary="Classify the sentiment of one or more texts",
            response_model=PredictResponse,
            responses=_ERRORS,
            openapi_extra=_PREDICT_DOC,
        )

    @router.get(prefix + "/health", summary="Liveness: 200 while the process runs")
    async def health() -> Response:
        return _json({"status": "healthy"})

    @router.get(prefix + "/ready", summary="Readiness: 200 once the model is loaded and warmed up")
    async def ready(state: StateDep) -> Response:
        if not state.ready:
            raise NotReady(f"not ready: {state.reason}", status="not ready", reason=state.reason)
        return _json({"status": "ready", "cache": state.predictor.cache_name})

    @router.get(
        prefix + "/model", summary="The loaded model: id, path, labels, max length, precision, fingerprint"
    )
    async def model(state: StateDep) -> Response:
        _require_model(state)
        info = state.predictor.info
        return _json(
            {
                "id": info.model_id,
                "path": info.path,
                "labels": list(info.labels),
                "max_length": info.max_length,
                "precision": info.precision,
                "fingerprint": info.fingerprint,
                "parameters": info.parameters,
                "torch_threads": info.torch_threads,
                "runtime": info.runtime,
            }
        )

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics(state: StateDep) -> Response:
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
