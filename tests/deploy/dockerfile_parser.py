"""A small Dockerfile reader for the image invariant tests (no Docker engine runs here).

Handles what our Dockerfiles use: comments, parser directives, backslash continuations, global and per-stage
ARG defaults with ``${VAR}`` substitution in FROM, exec-form (JSON) ENTRYPOINT/CMD.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form ENTRYPOINT/CMD/RUN; a shell-form instruction is an error."""
        value = json.loads(self.args)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"line {self.line}: {self.keyword} is not an exec-form string array")
        return value


@dataclass
class Stage:
    index: int
    base: str  # FROM image with global ARGs substituted
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        """ENV key=value pairs set in this stage (later wins)."""
        out: dict[str, str] = {}
        for inst in self.all("ENV"):
            for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', inst.args):
                out[key] = value.strip('"')
        return out

    def arg_defaults(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for inst in self.all("ARG"):
            name, _, default = inst.args.partition("=")
            out[name.strip()] = default.strip().strip('"')
        return out


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"{self.path.name}: no stage named {name!r}")


def substitute(text: str, values: dict[str, str]) -> str:
    def repl(match: re.Match[str]) -> str:
        key = match.group(1) or match.group(2)
        if key not in values:
            raise KeyError(f"undefined variable ${key} in {text!r}")
        return values[key]

    return _VAR.sub(repl, text)


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, joined text) per instruction; comments and blank lines dropped."""
    out: list[tuple[int, str]] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1].strip())
            continue
        buffer.append(stripped)
        out.append((start, " ".join(part for part in buffer if part)))
        buffer = []
    if buffer:
        raise ValueError(f"line {start}: instruction ends with a dangling backslash")
    return out


def parse(path: Path) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            parts = args.split()
            if parts and parts[0].startswith("--platform"):
                parts = parts[1:]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(index=len(stages), base=substitute(parts[0], global_args), name=name))
        elif not stages:
            if keyword != "ARG":
                raise ValueError(f"{path.name}:{number}: only ARG may precede the first FROM, got {keyword}")
            name, _, default = args.partition("=")
            global_args[name.strip()] = default.strip().strip('"')
        else:
            stages[-1].instructions.append(Instruction(keyword, args, number))
    if not stages:
        raise ValueError(f"{path.name}: no FROM")
    return Dockerfile(path=path, global_args=global_args, stages=stages)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether Docker's build context leaves ``path`` out: the last matching pattern wins, ``!`` re-includes,
    and a pattern that matches a parent directory matches everything below it (moby's patternmatcher).
    """
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded
