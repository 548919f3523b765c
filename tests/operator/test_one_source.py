"""Names, labels and reasons have one home each: a check fails on their literals anywhere else in the
operator package (string constants and f-string parts, docstrings excepted)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from sentiment_operator import names, status

PACKAGE = Path(names.__file__).parent
# Our condition types and reasons (Autoscaling passes on the HPA's own reasons; those are Kubernetes').
OUR_WORDS = {str(r) for r in status.Reason} | {str(c) for c in status.Condition}
CHILD_SUFFIX = re.compile(r"^-(canary|redis|redis-auth)$|\}-(canary|redis|redis-auth)\b")
LABEL = re.compile(r"app\.kubernetes\.io/|serving\.sentiment\.dev/")
# Kubernetes' own vocabulary status reads from the children (Deployment and HPA condition types).
KUBERNETES_WORDS = {"Available", "Progressing"}
# Same spelling, other meaning: the HPA behavior's selectPolicy value, the rollout strategy's name.
ALLOWED = {("spec/scaling.py", "Disabled"), ("spec/rollout.py", "Immediate")}


def literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string constant and f-string part that is not a docstring."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    parts = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    found = []
    for node in ast.walk(tree):
        if id(node) in parts:
            continue
        if isinstance(node, ast.JoinedStr):
            text = "".join(
                v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "{}"
                for v in node.values
            )
            found.append((node.lineno, text))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.append((node.lineno, node.value))
    return sorted(found)


def offences(module: str, source: str) -> list[str]:
    out = []
    for line, text in literals(source):
        if (module, text) in ALLOWED:
            continue
        if module != "names.py" and (LABEL.search(text) or CHILD_SUFFIX.search(text)):
            out.append(f"{module}:{line}: {text!r} (a name: use sentiment_operator.names)")
        if module != "status.py" and text in OUR_WORDS - KUBERNETES_WORDS:
            out.append(f"{module}:{line}: {text!r} (a condition or reason: use status.Condition/Reason)")
        if module not in ("status.py", "names.py") and text in OUR_WORDS & KUBERNETES_WORDS:
            out.append(f"{module}:{line}: {text!r} (a condition: use status.Condition)")
    return out


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_names_labels_and_reasons_are_written_in_their_module_only(path: Path) -> None:
    assert offences(str(path.relative_to(PACKAGE)), path.read_text()) == []


def test_the_scan_covers_the_subpackages() -> None:
    scanned = {str(p.relative_to(PACKAGE)) for p in MODULES}
    assert {"builders/inference.py", "spec/cache.py", "names.py", "status.py"} <= scanned


def test_the_check_catches_each_kind_of_literal() -> None:
    source = '''
def f(name):
    """Docstrings may say app.kubernetes.io/instance and InvalidSpec."""
    a = {"app.kubernetes.io/instance": name}
    b = f"{name}-redis"
    c = "ChildNotOwned"
    return a, b, c
'''
    found = offences("reconciler.py", source)
    assert [f.split(": ", 1)[1].split(" (")[0] for f in found] == [
        "'app.kubernetes.io/instance'",
        "'{}-redis'",
        "'ChildNotOwned'",
    ], found
