"""What every part of the benchmark shares: paths, progress logging, tools from the venv, loopback ports."""

from __future__ import annotations

import shutil
import socket
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
CACHE_DIR = ROOT / ".cache" / "bench"
BIN_DIR = Path(sys.executable).parent


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def tool(name: str) -> str:
    """A console script from this venv first, then PATH."""
    candidate = BIN_DIR / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"bench: {name} not found next to {sys.executable} or on PATH; run `make install`")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
