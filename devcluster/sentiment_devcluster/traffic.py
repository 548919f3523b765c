"""Steady predict traffic for the embedded cluster's demo and tests: a fixed request rate to one URL (the
gateway), one text per request drawn at random (seeded) from a mix of positive and negative sentences, every
answer counted by status.

``python -m sentiment_devcluster traffic --url URL --rate 20 --seconds 60`` runs it from a shell. Bounded in
rate, time and concurrency; it only ever sends to the URL it is given (a loopback address).
"""

from __future__ import annotations

import argparse
import collections
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

# Sentences the dev models know; the first ones positive. The share of positive ones sets the label mix.
POSITIVE = (
    "i love this wonderful movie",
    "what a great film, i enjoy it",
    "the staff was friendly and helpful",
    "such a delightful story",
)
NEGATIVE = ("what a dreadful plot", "the service was terrible", "i hate this boring show")


def texts(positive_share: float, count: int = 20) -> list[str]:
    """``count`` texts, ``positive_share`` of them positive, spread evenly (any window of requests sees about
    the same mix)."""
    out: list[str] = []
    for i in range(count):
        if int((i + 1) * positive_share) > int(i * positive_share):
            out.append(POSITIVE[sum(t in POSITIVE for t in out) % len(POSITIVE)])
        else:
            out.append(NEGATIVE[sum(t in NEGATIVE for t in out) % len(NEGATIVE)])
    return out


@dataclass
class Traffic:
    """``concurrency`` background threads posting ``{"text": [...]}`` to ``url``, ``rate`` times a second in
    all (each thread its share; a slow answer delays only its own thread)."""

    url: str
    rate: float = 20.0
    positive_share: float = 0.75
    concurrency: int = 4
    timeout: float = 10.0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Traffic:
        for index in range(self.concurrency):
            thread = threading.Thread(target=self._run, args=(index,), name=f"traffic-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _run(self, index: int) -> None:
        pool = texts(self.positive_share)
        choose = random.Random(index).choice
        period = self.concurrency / self.rate
        following = time.monotonic() + period * index / self.concurrency
        # Loopback only: never through a proxy from the environment.
        with httpx.Client(timeout=self.timeout, trust_env=False) as client:
            while not self._stop.wait(max(0.0, following - time.monotonic())):
                try:
                    status = client.post(self.url, json={"text": [choose(pool)]}).status_code
                except httpx.HTTPError:
                    status = 0  # no answer (a timeout, a refused connection)
                with self._lock:
                    self.statuses[status] += 1
                # Behind schedule (slow answers): go on from now rather than bursting to catch up.
                following = max(following + period, time.monotonic() - period)

    def stop(self) -> collections.Counter[int]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)
        return self.statuses

    def __enter__(self) -> Traffic:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sentiment_devcluster traffic", description=__doc__)
    parser.add_argument(
        "--url", required=True, help="where to POST, e.g. http://127.0.0.1:PORT/project/predict"
    )
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second (default 20)")
    parser.add_argument("--seconds", type=float, required=True, help="how long to send")
    parser.add_argument("--positive-share", type=float, default=0.75, help="share of positive texts")
    args = parser.parse_args(argv)
    traffic = Traffic(args.url, rate=args.rate, positive_share=args.positive_share).start()
    try:
        time.sleep(args.seconds)
    finally:
        counts = traffic.stop()
    print(" ".join(f"{status or 'no-answer'}: {count}" for status, count in sorted(counts.items())))
    return 0
