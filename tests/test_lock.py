"""The dependency locks (tools/lockfile.py): they pin the whole closure with hashes, agree with
pyproject.toml, and the check CI runs (``make lint``) fails, naming the fix, when one side changes alone."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import lockfile
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
# What `pip install --no-build-isolation` of the project itself needs, so every lock must carry it.
BUILD_PACKAGES = {
    canonicalize_name(Requirement(r).name) for r in lockfile.read_pyproject()["build-system"]["requires"]
}


@pytest.fixture
def pyproject() -> dict[str, Any]:
    return copy.deepcopy(lockfile.read_pyproject())


def _extra(pyproject: dict[str, Any], name: str) -> list[str]:
    extra: list[str] = pyproject["project"]["optional-dependencies"][name]
    return extra


@pytest.mark.parametrize("lock", lockfile.LOCKS, ids=lambda lock: lock.name)
def test_each_lock_agrees_with_pyproject(lock: lockfile.Lock, pyproject: dict[str, Any]) -> None:
    assert list(lockfile.problems_with_lock(lock, pyproject)) == []


def test_the_environment_is_exactly_the_dev_lock() -> None:
    assert list(lockfile.problems_with_environment()) == []


@pytest.mark.parametrize("lock", [*lockfile.LOCKS, None], ids=lambda lock: lock.name if lock else "data")
def test_every_pin_is_exact_and_hashed(lock: lockfile.Lock | None) -> None:
    path = lock.path if lock else lockfile.DATA_LOCK
    pins = lockfile.read_pins(path)
    hashes = lockfile.read_hashes(path)
    assert pins
    assert set(hashes) == set(pins)
    assert all(hashes.values()), [name for name, h in hashes.items() if not h]
    # Nothing but pins, hashes and comments: no index, find-links or path of this checkout.
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        assert not stripped.startswith("-") or stripped.startswith("--hash=sha256:"), line
        assert "file://" not in line
        assert str(ROOT) not in line


def test_torch_is_the_cpu_build_in_the_locks_that_ship_it() -> None:
    for lock in (lockfile.DEV, lockfile.INFERENCE):
        assert str(lockfile.read_pins(lock.path)["torch"]) == "2.13.0+cpu"
        assert len(lockfile.read_hashes(lock.path)["torch"]) == 1
    assert "torch" not in lockfile.read_pins(lockfile.OPERATOR.path)


def test_the_image_locks_are_subsets_of_the_tested_one() -> None:
    dev = lockfile.read_pins(lockfile.DEV.path)
    for lock in (lockfile.INFERENCE, lockfile.OPERATOR):
        pins = lockfile.read_pins(lock.path)
        assert {name: dev.get(name) for name in pins} == pins


def test_the_build_backend_is_locked_everywhere() -> None:
    for lock in lockfile.LOCKS:
        assert set(lockfile.read_pins(lock.path)) >= BUILD_PACKAGES


# ---------------------------------------------------------------------------- the check can fail


def test_a_new_dependency_without_relocking_is_reported(pyproject: dict[str, Any]) -> None:
    _extra(pyproject, "operator").append("left-pad-for-python>=1")
    (problem,) = [p for p in lockfile.problems_with_lock(lockfile.OPERATOR, pyproject) if "has no" in p]
    assert "left-pad-for-python" in problem
    assert "run `make lock`" in problem


def test_a_range_that_excludes_the_pin_is_reported(pyproject: dict[str, Any]) -> None:
    reqs = _extra(pyproject, "operator")
    reqs[:] = ["kopf<1.0" if r.startswith("kopf") else r for r in reqs]
    problems = list(lockfile.problems_with_lock(lockfile.OPERATOR, pyproject))
    assert any("kopf==" in p and "outside pyproject.toml's kopf<1.0" in p for p in problems), problems


def test_a_dropped_dependency_left_in_the_lock_is_reported(pyproject: dict[str, Any]) -> None:
    reqs = _extra(pyproject, "operator")
    reqs[:] = [r for r in reqs if not r.startswith("kopf")]
    problems = list(lockfile.problems_with_lock(lockfile.OPERATOR, pyproject))
    assert any("pins kopf, which nothing in pyproject.toml needs" in p for p in problems), problems


def _lock_without_hashes_of(name: str, *, drop_pin: bool) -> str:
    """The operator lock with ``name``'s hash lines removed (and its pin too when ``drop_pin``)."""
    lines = lockfile.OPERATOR.path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}=="))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("    --hash"))
    lines[start:end] = [] if drop_pin else [lines[start].removesuffix(" \\")]
    return "\n".join(lines) + "\n"


@pytest.fixture
def scratch_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of requirements/ that lockfile reads instead of the real one."""
    for lock in lockfile.LOCKS:
        (tmp_path / lock.path.name).write_text(lock.path.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(lockfile, "REQUIREMENTS", tmp_path)
    return tmp_path


def test_a_dependency_of_a_dependency_missing_from_the_lock_is_reported(
    scratch_locks: Path, pyproject: dict[str, Any]
) -> None:
    """The closure is walked through the installed metadata: a lock missing a transitive pin fails."""
    text = _lock_without_hashes_of("python-json-logger", drop_pin=True)
    (scratch_locks / "operator.txt").write_text(text, encoding="utf-8")
    problems = list(lockfile.problems_with_lock(lockfile.OPERATOR, pyproject))
    assert any("python-json-logger is needed (through pyproject.toml) but not pinned" in p for p in problems)


def test_a_pin_without_a_hash_is_reported(scratch_locks: Path, pyproject: dict[str, Any]) -> None:
    text = _lock_without_hashes_of("kopf", drop_pin=False)
    (scratch_locks / "operator.txt").write_text(text, encoding="utf-8")
    problems = list(lockfile.problems_with_lock(lockfile.OPERATOR, pyproject))
    assert any("kopf has no --hash" in p for p in problems), problems


def test_an_image_lock_that_drifts_from_the_dev_lock_is_reported(
    scratch_locks: Path, pyproject: dict[str, Any]
) -> None:
    version = lockfile.read_pins(lockfile.OPERATOR.path)["kopf"]
    dev = scratch_locks / "dev.txt"
    dev.write_text(
        dev.read_text(encoding="utf-8").replace(f"kopf=={version}", "kopf==1.0.0"), encoding="utf-8"
    )
    problems = list(lockfile.problems_with_lock(lockfile.OPERATOR, pyproject))
    assert any(f"kopf=={version} but the tested dev lock has 1.0.0" in p for p in problems), problems


def test_a_missing_lock_is_reported(scratch_locks: Path, pyproject: dict[str, Any]) -> None:
    (scratch_locks / "inference.txt").unlink()
    (problem,) = lockfile.problems_with_lock(lockfile.INFERENCE, pyproject)
    assert "inference.txt is missing: run `make lock`" in problem


def test_the_data_lock_names_the_package_devmodel_reads() -> None:
    from sentiment_inference import devmodel

    names = {canonicalize_name(name) for name in lockfile.read_pins(lockfile.DATA_LOCK)}
    assert canonicalize_name(devmodel._VOCAB_PACKAGE) in names


def _climbs_out(text: str, depth: int) -> list[str]:
    """Path arithmetic in ``text`` (a file ``depth`` levels below the root) that leaves the checkout."""
    found = [f"parents[{n}]" for n in re.findall(r"parents\[(\d+)\]", text) if int(n) >= depth]
    found += re.findall(r"\b(?:ROOT|REPO)\.parent\b", text)
    return found


def test_ci_and_the_tests_read_nothing_beside_the_checkout() -> None:
    """A clone from the forge has nothing beside it: no path may climb out of the checkout. From a test file
    ``depth`` levels down, ``parents[depth - 1]`` is the repository root and the highest allowed; the root is
    never climbed from; the CI script and the Makefile use no ``..`` paths."""
    # The check can fail (the examples are assembled so that this file does not contain them).
    climb, beside = "parents" + "[2]", "REPO" + ".parent"
    assert _climbs_out(f"Path(__file__).{climb}", depth=2) == [climb]
    assert _climbs_out(f"{beside} / 'x'", depth=2) == [beside]
    for path in sorted((ROOT / "tests").rglob("*.py")):
        rel = path.relative_to(ROOT)
        assert not _climbs_out(path.read_text(encoding="utf-8"), len(rel.parts)), rel
    for path in (ROOT / ".ci" / "run", ROOT / "Makefile"):
        assert "../" not in path.read_text(encoding="utf-8"), path.relative_to(ROOT)


def test_the_scanner_lock_must_pin_its_input_with_hashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert list(lockfile.problems_with_scanner_lock()) == []
    source, lock = tmp_path / "checkov.in", tmp_path / "checkov.txt"
    monkeypatch.setattr(lockfile, "SCANNER_IN", source)
    monkeypatch.setattr(lockfile, "SCANNER_LOCK", lock)
    source.write_text("# the scanner\ncheckov==3.3.30\n")
    lock.write_text("checkov==3.3.29 \\\n    --hash=sha256:" + "0" * 64 + "\nbc-detect-secrets==1.5.0\n")
    problems = list(lockfile.problems_with_scanner_lock())
    assert any("asks for checkov==3.3.30, the lock pins 3.3.29" in p for p in problems), problems
    assert any("bc-detect-secrets has no --hash" in p for p in problems), problems
