"""`sentiment-fetch-model`: save a sequence-classification model and its tokenizer into a directory.

Used by Dockerfile.inference's model stage (bakes the model into the image so the server never reaches the
hub at run time) and by the operator's "download" model-source init container (fills an emptyDir).
The source is a hub id (``--model-id``, or ``--source`` to read from elsewhere) or a local directory.
``DIR/MODEL_ID`` is written last and marks a complete, verified copy; rerunning with the same id is a no-op.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("sentiment_inference.fetch")

MODEL_ID_FILE = "MODEL_ID"
# Present while files are being moved into the output directory: marks its contents as ours even when a
# previous run crashed before writing MODEL_ID, so a restarted init container can clean up and retry.
IN_PROGRESS_FILE = ".fetch-in-progress"
STAGING_DIR = ".fetch-staging"
VERIFY_TEXT = "The fetched model loads and answers."


class FetchError(Exception):
    """The model could not be fetched, saved or verified; the message says which and why."""


@dataclass(frozen=True)
class FetchResult:
    model_id: str
    out: Path
    labels: tuple[str, ...]
    skipped: bool


_TRUE = frozenset({"1", "true", "yes", "on"})


def offline_mode() -> bool:
    """Whether the environment forbids reaching the hub (as huggingface_hub and transformers read it)."""
    return any(
        os.environ.get(name, "").strip().lower() in _TRUE
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def read_model_id(directory: Path) -> str | None:
    """The id recorded by a completed fetch into ``directory``, or None."""
    marker = directory / MODEL_ID_FILE
    if not marker.is_file():
        return None
    return marker.read_text(encoding="utf-8").strip() or None


def verify_model_dir(directory: Path) -> tuple[str, ...]:
    """Load the tokenizer and model from ``directory`` (no network) and run one forward pass.

    Returns the model's labels in class-index order.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise FetchError(f"{directory} does not hold a loadable model and tokenizer: {exc}") from exc
    model.eval()
    encoded = tokenizer([VERIFY_TEXT], return_tensors="pt", truncation=True, max_length=32)
    with torch.inference_mode():
        logits = model(**encoded).logits
    num_labels = int(model.config.num_labels)
    if tuple(logits.shape) != (1, num_labels) or num_labels < 2:
        raise FetchError(
            f"{directory}: expected logits of shape (1, n>=2) from a sequence classifier, "
            f"got {tuple(logits.shape)}"
        )
    if not bool(torch.isfinite(logits).all()):
        raise FetchError(f"{directory}: the model produced non-finite logits")
    id2label: dict[int, str] = {int(k): str(v) for k, v in model.config.id2label.items()}
    labels = tuple(id2label.get(i, f"LABEL_{i}") for i in range(num_labels))
    if all(label.startswith("LABEL_") for label in labels):
        log.warning("Model in %s has generic labels %s; is it a fine-tuned classifier?", directory, labels)
    return labels


def _is_ours_or_empty(out: Path) -> bool:
    entries = [p for p in out.iterdir() if p.name != STAGING_DIR]
    if not entries:
        return True
    return (out / MODEL_ID_FILE).exists() or (out / IN_PROGRESS_FILE).exists()


def _make_world_readable(out: Path) -> None:
    # save_pretrained may write 0600 files; the image copies them from a root build stage and the server runs
    # as another (non-root) uid, and an init container may run as a different uid than the server container.
    for root, dirs, files in os.walk(out):
        for name in dirs:
            (Path(root) / name).chmod(0o755)
        for name in files:
            (Path(root) / name).chmod(0o644)
    # The mount root belongs to whoever made it: kubelet creates an emptyDir root-owned (mode 0777, fsGroup
    # sets only its group), and a non-root uid without capabilities may not chmod it (EPERM, a crash-looping
    # init container). What we create inside is ours; the root is changed only when it is ours too.
    if out.stat().st_uid == os.getuid():
        out.chmod(0o755)


def _clear(out: Path, keep: str) -> None:
    for entry in out.iterdir():
        if entry.name == keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def fetch_model(
    model_id: str,
    out: Path,
    *,
    source: str | None = None,
    revision: str | None = None,
    force: bool = False,
) -> FetchResult:
    """Save ``source`` (default: ``model_id`` on the hub) into ``out`` and verify it loads offline."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_id = model_id.strip()
    if not model_id or "\n" in model_id:
        raise FetchError(f"--model-id must be a non-empty single-line id, got {model_id!r}")
    out.mkdir(parents=True, exist_ok=True)

    if not force and read_model_id(out) == model_id:
        try:
            labels = verify_model_dir(out)
        except FetchError as exc:
            log.warning("Existing copy of %s in %s is unusable, fetching again: %s", model_id, out, exc)
        else:
            log.info("Model %s already present in %s; nothing to do", model_id, out)
            return FetchResult(model_id=model_id, out=out, labels=labels, skipped=True)

    if not force and not _is_ours_or_empty(out):
        raise FetchError(
            f"{out} is not empty and was not written by sentiment-fetch-model; "
            "choose an empty directory or pass --force to replace its contents"
        )

    src = source or model_id
    local = Path(src).is_dir()
    if not local and src.startswith(("/", ".", "~")):
        # A path, not a hub id: fail here rather than asking the hub for a nonsense id.
        raise FetchError(f"--source {src} is not a directory")
    if not local and offline_mode():
        # The inference image sets HF_HUB_OFFLINE=1 so the *server* never reaches the hub; a container that is
        # meant to download (the operator's download init container) must turn it off explicitly.
        raise FetchError(
            f"cannot download {src} from the hub: offline mode is on (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE); "
            "set HF_HUB_OFFLINE=0 and TRANSFORMERS_OFFLINE=0 for this command, or pass --source DIR"
        )
    log.info("Fetching model %s from %s%s into %s", model_id, "directory " if local else "hub id ", src, out)

    staging = out / STAGING_DIR
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        # A directory has no revisions; a hub id defaults to its main branch like from_pretrained does.
        hub_revision = revision if revision and not local else "main"
        try:
            tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=local, revision=hub_revision)
            model = AutoModelForSequenceClassification.from_pretrained(
                src, local_files_only=local, revision=hub_revision
            )
        except (OSError, ValueError, KeyError) as exc:
            raise FetchError(f"cannot load a model and tokenizer from {src}: {exc}") from exc
        tokenizer.save_pretrained(str(staging))
        model.save_pretrained(str(staging))
        labels = verify_model_dir(staging)

        (out / IN_PROGRESS_FILE).write_text(model_id + "\n", encoding="utf-8")
        _clear(out, keep=STAGING_DIR)
        (out / IN_PROGRESS_FILE).write_text(model_id + "\n", encoding="utf-8")
        for entry in staging.iterdir():
            os.replace(entry, out / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    _make_world_readable(out)
    tmp_marker = out / (MODEL_ID_FILE + ".tmp")
    tmp_marker.write_text(model_id + "\n", encoding="utf-8")
    os.replace(tmp_marker, out / MODEL_ID_FILE)
    (out / IN_PROGRESS_FILE).unlink(missing_ok=True)
    log.info("Saved model %s (labels %s) into %s", model_id, ", ".join(labels), out)
    return FetchResult(model_id=model_id, out=out, labels=labels, skipped=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sentiment-fetch-model",
        description="Save a sequence-classification model and tokenizer into DIR for offline serving.",
    )
    parser.add_argument("--model-id", required=True, help="id recorded in DIR/MODEL_ID (and the hub id)")
    parser.add_argument("--revision", default=None, help="hub revision (branch, tag or commit); hub only")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--source", default=None, help="local model directory or hub id to read from (default: --model-id)"
    )
    parser.add_argument("--force", action="store_true", help="fetch again and replace DIR's contents")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Progress bars garble container logs; the INFO lines above and below say what happens.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        result = fetch_model(
            args.model_id, args.out, source=args.source, revision=args.revision, force=args.force
        )
    except FetchError as exc:
        log.error("Fetching model %s failed: %s", args.model_id, exc)
        return 1
    print(f"{result.model_id} -> {result.out} ({', '.join(result.labels)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
