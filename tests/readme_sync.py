"""Keeps README.md's reference tables generated from the code, so they cannot drift.

``python tests/readme_sync.py`` rewrites the blocks between ``<!-- BEGIN GENERATED: X -->`` and
``<!-- END GENERATED: X -->``; ``tests/test_readme.py`` fails when a block differs from what this produces.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def env_table() -> str:
    from sentiment_inference.settings import ENV_PREFIX, Settings

    rows = ["| Variable | Default | Description |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "(unset)" if default is None else f"`{default}`" if default != "" else '`""`'
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | {_cell(shown)} | {_cell(field.description or '')} |")
    return "\n".join(rows)


def spec_table() -> str:
    from sentiment_operator.crd import reference

    return reference().strip()


def status_table() -> str:
    from sentiment_operator.crd import status_reference

    return status_reference().strip()


def metrics_table() -> str:
    from sentiment_inference.metrics import Metrics

    rows = ["| Metric | Type | Labels | Meaning |", "| --- | --- | --- | --- |"]
    metrics = Metrics()
    for family in metrics.registry.collect():
        suffix = "_total" if family.type == "counter" else ""
        collector = next(c for c in vars(metrics).values() if getattr(c, "_name", None) == family.name)
        labels = ", ".join(f"`{label}`" for label in getattr(collector, "_labelnames", ()))
        rows.append(f"| `{family.name}{suffix}` | {family.type} | {labels} | {_cell(family.documentation)} |")
    return "\n".join(rows)


BLOCKS: dict[str, Callable[[], str]] = {
    "env": env_table,
    "spec": spec_table,
    "status": status_table,
    "metrics": metrics_table,
}


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- BEGIN GENERATED: {name} -->\n)(.*?)(<!-- END GENERATED: {name} -->)", re.DOTALL
    )


def current(text: str, name: str) -> str | None:
    match = _pattern(name).search(text)
    return None if match is None else match.group(2).strip()


def sync(text: str) -> str:
    for name, make in BLOCKS.items():
        pattern = _pattern(name)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- BEGIN GENERATED: {name} --> block")
        start, end = pattern.search(text).span(2)  # type: ignore[union-attr]
        text = f"{text[:start]}{make()}\n{text[end:]}"
    return text


if __name__ == "__main__":
    README.write_text(sync(README.read_text()))
    print(f"updated {README}", file=sys.stderr)
