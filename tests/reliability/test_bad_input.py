"""Case 7: a bad-input sweep over real HTTP, memory under repeated bad requests, and schemathesis.

Expected codes are the server's documented limits (Settings defaults): more than
SENTIMENT_MAX_BODY_BYTES (1 MiB) -> 413, more than SENTIMENT_MAX_TEXTS_PER_REQUEST (64) texts -> 413,
a text over SENTIMENT_MAX_TEXT_CHARS (5000 characters) -> 413, invalid JSON/body/types -> 422,
a non-JSON content type -> 415, wrong method -> 405. Nothing may ever answer 5xx.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from reliability_support import report
from serving import ServerProcess

MAX_BODY = 1_048_576
MAX_TEXTS = 64
MAX_CHARS = 5000
JSON = "application/json"


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes | None  # None: chunked upload of a too-large body
    expected: int
    content_type: str | None = JSON
    error: str | None = None  # expected "error" code in the JSON body
    method: str = "POST"


def j(value: object) -> bytes:
    return json.dumps(value).encode()


def cases() -> list[Case]:
    big = "a" * (MAX_BODY + 1000)
    return [
        # --- limits (413)
        Case("body over MAX_BODY_BYTES", j({"text": [big]}), 413, error="body_too_large"),
        Case("chunked body over MAX_BODY_BYTES", None, 413, error="body_too_large"),
        Case("65 texts", j({"text": ["x"] * (MAX_TEXTS + 1)}), 413, error="too_many_texts"),
        Case("64 texts (at the limit)", j({"text": [f"t{i}" for i in range(MAX_TEXTS)]}), 200),
        Case(
            "5001-char text in a list", j({"text": ["ok", "b" * (MAX_CHARS + 1)]}), 413, error="text_too_long"
        ),
        Case("5001-char single text", j({"text": "b" * (MAX_CHARS + 1)}), 413, error="text_too_long"),
        Case("5000-char text (at the limit)", j({"text": "b" * MAX_CHARS}), 200),
        # --- shape and types (422)
        Case("empty list", j({"text": []}), 422, error="invalid_input"),
        Case("text is a number", j({"text": 123}), 422, error="invalid_input"),
        Case("text is null", j({"text": None}), 422, error="invalid_input"),
        Case("text is a bool", j({"text": True}), 422, error="invalid_input"),
        Case("nested list", j({"text": [["a"]]}), 422, error="invalid_input"),
        Case("text is an object", j({"text": {"a": 1}}), 422, error="invalid_input"),
        Case("number inside the list", j({"text": ["a", 1]}), 422, error="invalid_input"),
        Case("null inside the list", j({"text": ["a", None]}), 422, error="invalid_input"),
        Case("missing text field", j({"texts": ["a"]}), 422, error="invalid_input"),
        Case("body is a list", j(["a"]), 422, error="invalid_input"),
        Case("body is a string", j("a"), 422, error="invalid_input"),
        Case("body is null", b"null", 422, error="invalid_input"),
        Case("number out of range", b'{"text": 1' + b"0" * 5000 + b"}", 422),
        Case("NaN", b'{"text": NaN}', 422),
        # --- malformed JSON (422)
        Case("truncated JSON", b'{"text": ', 422, error="malformed_json"),
        Case("empty body", b"", 422, error="malformed_json"),
        Case("trailing comma", b'{"text": ["a",]}', 422, error="malformed_json"),
        Case("deeply nested", b'{"text": ' + b"[" * 20000 + b"]" * 20000 + b"}", 422, error="malformed_json"),
        Case("UTF-16 body", '{"text": "ok"}'.encode("utf-16"), 422, error="malformed_json"),
        # --- content type (415)
        Case("text/plain", j({"text": "ok"}), 415, content_type="text/plain", error="unsupported_media_type"),
        Case("form", b"text=ok", 415, content_type="application/x-www-form-urlencoded"),
        Case("multipart", b"--x\r\n\r\nok\r\n--x--", 415, content_type="multipart/form-data; boundary=x"),
        Case("xml", b"<text>ok</text>", 415, content_type="application/xml"),
        Case("no content type, JSON body", j({"text": "ok"}), 200, content_type=None),
        # --- unicode, NUL, invalid bytes
        Case("5000 emoji (4-byte UTF-8)", j({"text": "\U0001f600" * MAX_CHARS}), 200),
        Case("5001 emoji", j({"text": "\U0001f600" * (MAX_CHARS + 1)}), 413, error="text_too_long"),
        Case("combining marks", j({"text": "e" + "\u0301" * (MAX_CHARS - 1)}), 200),
        Case(
            "RTL + bidi overrides",
            j({"text": "\u202e\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 " * 300}),
            200,
        ),
        Case("ZWJ emoji sequences", j({"text": ["\U0001f468\u200d\U0001f469\u200d\U0001f467" * 1000]}), 200),
        Case("CJK", j({"text": "\u4e2d\u6587" * 2500}), 200),
        Case("non-characters", j({"text": "\uffff\ufffe\U0010ffff"}), 200),
        Case("escaped NUL in text", j({"text": ["a\u0000b", "\u0000" * 100]}), 200),
        Case("raw NUL byte in string", b'{"text": ["a\x00b"]}', 422, error="malformed_json"),
        Case("only NUL bytes", b"\x00" * 64, 422, error="malformed_json"),
        Case("invalid UTF-8", b'{"text": ["\xff\xfe bad"]}', 422, error="malformed_json"),
        Case("overlong UTF-8", b'{"text": ["\xc0\xaf"]}', 422, error="malformed_json"),
        Case("lone surrogate escape", b'{"text": "\\ud800"}', 422, error="malformed_json"),
        Case("empty string", j({"text": ""}), 200),
        # --- method
        Case("GET", None, 405, method="GET"),
        Case("PUT", j({"text": "ok"}), 405, method="PUT"),
    ]


def expected_predictions(case: Case) -> int:
    text = json.loads(case.body or b"{}").get("text")
    return 1 if isinstance(text, str) else len(text or [])


async def chunked_too_large() -> AsyncIterator[bytes]:
    yield b'{"text": ["'
    for _ in range(20):
        yield b"a" * 65536
    yield b'"]}'


async def send(client: httpx.AsyncClient, path: str, case: Case) -> httpx.Response:
    headers = {"content-type": case.content_type} if case.content_type else {}
    if case.method != "POST":
        return await client.request(case.method, path, content=case.body, headers=headers)
    content = chunked_too_large() if case.body is None else case.body
    return await client.post(path, content=content, headers=headers)


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server (documented default limits) for the sweep, the memory check and schemathesis."""
    log = tmp_path_factory.mktemp("bad-input") / "server.log"
    process = ServerProcess(tiny_model_dir, log)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.mark.parametrize("path", ["/predict", "/bulk-predict"])
async def test_bad_input_sweep(server: ServerProcess, path: str) -> None:
    failures = []
    seen: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
        for case in cases():
            response = await send(client, path, case)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            if response.status_code != case.expected:
                failures.append(f"{case.name}: {response.status_code} {response.text[:200]}")
                continue
            body = response.json()
            if case.expected == 200:
                if len(body["predictions"]) != expected_predictions(case):
                    failures.append(f"{case.name}: {len(body['predictions'])} predictions")
            elif case.error is not None and body.get("error") != case.error:
                failures.append(f"{case.name}: error {body.get('error')!r}, expected {case.error!r}")
            elif response.status_code in (413, 422, 415) and not body.get("detail"):
                failures.append(f"{case.name}: no detail in {body}")
        health = await client.get("/health")
    assert not failures, "\n".join(failures)
    assert health.status_code == 200
    assert server.alive()
    assert "Traceback" not in server.log()
    report(
        f"case 7a: bad input sweep on {path}",
        f"{len(cases())} requests: " + "; ".join(c.name for c in cases()),
        "all got their documented status, never a 5xx: "
        + ", ".join(f"{k} x {v}" for k, v in sorted(seen.items())),
    )


async def test_memory_flat_under_bad_requests(server: ServerProcess) -> None:
    bad = [c for c in cases() if c.expected != 200]
    rounds = 300
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
        for case in bad:  # one warm-up pass: first-time allocations are not growth
            await send(client, "/predict", case)
        before = server.rss_bytes()
        statuses: dict[int, int] = {}
        for i in range(rounds):
            response = await send(client, "/predict", bad[i % len(bad)])
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        after = server.rss_bytes()
    growth = (after - before) / 2**20
    assert not [s for s in statuses if s >= 500], statuses
    assert growth < 50, f"RSS grew {growth:.1f} MiB over {rounds} bad requests"
    report(
        "case 7b: memory under repeated bad requests",
        f"{rounds} bad requests cycling through {len(bad)} kinds (incl. >1 MiB bodies, 20000-deep JSON)",
        f"statuses {dict(sorted(statuses.items()))}; RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB "
        f"({growth:+.1f} MiB)",
    )


def test_schemathesis_no_server_errors(server: ServerProcess, tmp_path: Path) -> None:
    """Property-based requests generated from /openapi.json (positive and negative): zero 5xx."""
    cli = Path(sys.executable).with_name("schemathesis")
    command = [
        str(cli),
        "run",
        f"{server.base_url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "100",
        "--seed",
        "42",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--report",
        "junit",
        "--report-junit-path",
        str(tmp_path / "schemathesis.xml"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    match = re.search(r"(\d+) generated, (\d+) passed", output)
    assert match, output[-2000:]
    generated, passed = int(match.group(1)), int(match.group(2))
    assert generated >= 100
    assert passed == generated
    assert server.alive()
    report(
        "case 7c: schemathesis against /openapi.json",
        "schemathesis run --checks not_a_server_error --max-examples 100 --seed 42 (examples, coverage, "
        "fuzzing phases; positive and negative data) on all operations",
        f"{generated} generated, {passed} passed, 0 server errors",
    )
