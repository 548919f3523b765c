"""Bounded polling for the tests: wait for a condition instead of sleeping a fixed time.

``wait_until`` (blocking) and ``eventually`` (async; the check may also return an awaitable) poll ``check``
until it returns something truthy and return that; after ``within`` seconds they fail with what was awaited
and the last value seen.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


def _timed_out(within: float, what: str, last: Any) -> AssertionError:
    return AssertionError(f"timed out after {within}s waiting for {what}; last value: {last!r}")


def wait_until(check: Callable[[], Any], *, within: float = 30.0, interval: float = 0.2, what: str) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise _timed_out(within, what, last)


async def eventually(
    check: Callable[[], Any], *, within: float = 20.0, interval: float = 0.05, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise _timed_out(within, what, last)
