"""The bare-model ceiling: texts/s of our server's backend alone, in-process, at a fixed batch size.

It uses the server's own backend module (tokenizer + forward pass, same threads and precision settings), fed
with the same sentences the load test sends, so the end-to-end numbers can be compared with what the model
could do with no HTTP, no queue and no cache. Run by bench/run.py in its own process before any server
starts, so nothing else competes for the CPU:

    python -m bench.ceiling --model DIR --precision int8 --batch 32 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).with_name("corpus.json")


def texts_like_the_load_test(count: int) -> list[str]:
    """Unique texts shaped like bench/k6/lib.js uniqueText(): a request id, then a corpus sentence."""
    sentences: list[str] = json.loads(CORPUS.read_text())["sentences"]
    return [f"review ceil0-{i % 10}-{i}-0: {sentences[i % len(sentences)]}" for i in range(count)]


def measure(
    model: str,
    precision: str,
    batch: int,
    seconds: float,
    threads: int = 0,
    others: tuple[int, ...] = (),
    workers: int = 0,
) -> dict[str, object]:
    """Load the model like the server does, warm up, then run full batches for about ``seconds``.

    ``workers`` threads (0 = the server's default) each run their own batches side by side, as the server's
    model workers do. ``others``: more batch sizes to time (half as long each), reported under
    ``by_batch_size`` so one can see where this CPU's per-text cost is lowest.
    """
    from sentiment_inference.backend import TorchBackend
    from sentiment_inference.settings import Settings

    settings = Settings(
        model_path=model,
        quantization=precision,  # type: ignore[arg-type]
        torch_threads=threads,
        model_workers=workers,
    )
    backend = TorchBackend(settings)
    backend.load()
    backend.warmup()
    n = settings.effective_model_workers
    result: dict[str, object] = {"precision": precision, **_run(backend, batch, seconds, n)}
    result["torch_threads"] = backend.info.torch_threads
    result["workers"] = n
    if others:
        result["by_batch_size"] = {str(b): _run(backend, b, seconds / 2, n)["texts_per_s"] for b in others}
    return result


def _run(backend: Any, batch: int, seconds: float, workers: int) -> dict[str, Any]:
    texts = texts_like_the_load_test(batch * 16)
    batches = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    backend.predict(backend.tokenize(batches[0]))
    counts: list[tuple[int, int]] = []  # (texts, tokens) per worker
    started = time.perf_counter()

    def work(offset: int) -> None:
        done = tokens = 0
        while True:
            # Tokenization is included: the server has to do it too, on the same CPU. Batches are not
            # sorted by length (consecutive corpus sentences), so they carry typical length variety.
            ids = backend.tokenize(batches[(offset + done // batch) % len(batches)])
            backend.predict(ids)
            done += batch
            tokens += sum(len(x) for x in ids)
            if time.perf_counter() - started >= seconds and done >= 2 * batch:
                break
        counts.append((done, tokens))

    threads = [threading.Thread(target=work, args=(i * 7,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    done = sum(d for d, _ in counts)
    return {
        "batch_size": batch,
        "texts_per_s": round(done / elapsed, 2),
        "ms_per_batch": round(1000 * elapsed * workers / (done / batch), 2),
        "mean_tokens_per_text": round(sum(t for _, t in counts) / done, 1),
        "seconds": round(elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Bare-model throughput through the server's backend.")
    parser.add_argument("--model", required=True)
    parser.add_argument("--precision", choices=["none", "int8"], default="none")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = the server's default)")
    parser.add_argument("--workers", type=int, default=0, help="model workers (0 = the server's default)")
    parser.add_argument("--also", default="", help="comma list of more batch sizes to time, e.g. 1,8")
    args = parser.parse_args()
    others = tuple(int(b) for b in args.also.split(",") if b.strip())
    result = measure(args.model, args.precision, args.batch, args.seconds, args.threads, others, args.workers)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
