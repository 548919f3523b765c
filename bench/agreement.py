"""int8 vs fp32: label agreement on held-out texts, through the server's own backend.

The benchmark model has random weights, so its labels mean nothing; agreement is measured on a model trained
enough to give confident answers (``sentiment-devmodel --train``: a small DistilBERT with the real vocabulary,
trained for a few seconds on synthetic sentences). Two held-out sets: synthetic sentences drawn with a random
seed the training never used, and the review-like sentences the load test sends (outside the training
distribution, so closer calls). Run by bench/run.py in its own process:

    python -m bench.agreement --model DIR --count 2000
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bench.ceiling import texts_like_the_load_test

HELD_OUT_SEED = 20261121  # the training data comes from random seed 0


def _top(probs: list[list[float]]) -> list[int]:
    return [max(range(len(p)), key=p.__getitem__) for p in probs]


def measure(model: str, count: int) -> dict[str, Any]:
    from sentiment_inference.backend import TorchBackend
    from sentiment_inference.devmodel import synthetic_dataset
    from sentiment_inference.settings import Settings

    backends = {}
    for precision in ("none", "int8"):
        backend = TorchBackend(Settings(model_path=model, quantization=precision))
        backend.load()
        backends[precision] = backend
    synthetic = synthetic_dataset(count, seed=HELD_OUT_SEED)
    sets = {
        "synthetic_held_out": [t for t, _ in synthetic],
        "load_test_sentences": texts_like_the_load_test(count),
    }
    out: dict[str, Any] = {"model": model, "runtime": backends["none"].info.runtime, "sets": {}}
    for name, texts in sets.items():
        labels = {}
        confidence = 0.0
        for precision, backend in backends.items():
            probs: list[list[float]] = []
            for start in range(0, len(texts), 32):
                probs += backend.predict(backend.tokenize(texts[start : start + 32]))
            labels[precision] = _top(probs)
            if precision == "none":
                confidence = sum(max(p) for p in probs) / len(probs)
        agree = sum(a == b for a, b in zip(labels["none"], labels["int8"], strict=True))
        entry: dict[str, Any] = {
            "texts": len(texts),
            "agreement": round(agree / len(texts), 4),
            "fp32_mean_confidence": round(confidence, 4),
        }
        if name == "synthetic_held_out":
            truth = [y for _, y in synthetic]
            for precision in ("none", "int8"):
                hits = sum(a == b for a, b in zip(labels[precision], truth, strict=True))
                entry[f"accuracy_{precision}"] = round(hits / len(texts), 4)
        out["sets"][name] = entry
    out["agreement"] = min(s["agreement"] for s in out["sets"].values())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="int8 vs fp32 label agreement through the server's backend.")
    parser.add_argument(
        "--model", required=True, help="a trained model directory (sentiment-devmodel --train)"
    )
    parser.add_argument("--count", type=int, default=2000, help="texts per held-out set")
    args = parser.parse_args()
    print(json.dumps(measure(args.model, args.count)))


if __name__ == "__main__":
    main()
