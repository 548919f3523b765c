"""The hand-written pipeline server this project replaces, kept only as the benchmark's point of comparison.

The design a sentiment service typically starts from: FastAPI, a transformers
``pipeline("text-classification")`` returning every label's score, one forward pass per text (the
pipeline's default batch size of 1), fp32, called directly inside an ``async def`` route (so it runs on the
event loop, one request at a time), and a Redis cache keyed on the whole request rather than per text. This
is bench code, not product code: it has none of our server's limits, batching or metrics, on purpose.

    python -m bench.pipeline_server --model DIR --port 8001 --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI, Request
from pydantic import BaseModel
from transformers import pipeline

CACHE_TTL_SECONDS = 3600


class SentimentRequest(BaseModel):
    text: list[str] | str


class Prediction(BaseModel):
    label: str
    score: float


class SentimentResponse(BaseModel):
    predictions: list[list[Prediction]]


def create_app(model_dir: str, redis_url: str, prefix: str = "") -> FastAPI:
    """Build the pipeline app: model loaded before the server starts, Redis opened in the lifespan."""
    # Such servers load the pipeline at import time; here it happens before uvicorn binds, which is the same.
    classifier = pipeline("text-classification", model=model_dir, tokenizer=model_dir, device=-1, top_k=None)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state["redis"] = aioredis.from_url(redis_url)
        yield
        await state["redis"].aclose()

    app = FastAPI(lifespan=lifespan)

    async def predict(request: Request, body: SentimentRequest) -> dict[str, Any]:
        # The cache key is a hash of the whole request, so any change in any text is a miss.
        raw = await request.body()
        key = "pipeline:" + hashlib.md5(raw).hexdigest()
        cache: aioredis.Redis = state["redis"]
        cached = await cache.get(key)
        if cached is not None:
            return json.loads(cached)  # type: ignore[no-any-return]
        texts = [body.text] if isinstance(body.text, str) else body.text
        predictions = classifier(texts)  # blocking, on the event loop, one text per forward pass
        result = {"predictions": predictions}
        await cache.set(key, json.dumps(result), ex=CACHE_TTL_SECONDS)
        return result

    app.post(f"{prefix}/predict", response_model=SentimentResponse)(predict)
    app.post(f"{prefix}/bulk-predict", response_model=SentimentResponse)(predict)

    @app.get(f"{prefix}/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model directory (save_pretrained layout)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--prefix", default="")
    args = parser.parse_args()
    app = create_app(args.model, args.redis_url, args.prefix)
    # A single uvicorn worker with default options, as such servers are usually deployed.
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
