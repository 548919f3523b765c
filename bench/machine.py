"""The machine a run happened on, and what a server process tree uses while it runs (RSS, CPU from /proc)."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import tool

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_info() -> dict[str, Any]:
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    versions: dict[str, str] = {"python": platform.python_version()}
    for module in ("torch", "transformers", "tokenizers", "fastapi", "uvicorn"):
        with contextlib.suppress(Exception):
            versions[module] = __import__(module).__version__
    with contextlib.suppress(Exception):
        versions["k6"] = subprocess.run(
            [tool("k6"), "version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout.split()[1]
    with contextlib.suppress(Exception):
        versions["redis_server"] = subprocess.run(
            [tool("redis-server"), "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout.split()[2]
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "mem_total_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
    }


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_usage(root: int) -> tuple[int, float]:
    """(RSS bytes, CPU seconds) summed over ``root`` and its descendants."""
    rss, cpu = 0, 0.0
    for pid in process_tree(root):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
            rss += int(fields[21]) * PAGE_SIZE
    return rss, cpu


class Sampler(threading.Thread):
    """Samples the server's process-tree RSS every 0.25 s while a scenario runs."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_rss = 0
        self._stop_event = threading.Event()
        self._cpu_start = 0.0
        self._t_start = 0.0
        self.cpu_percent = 0.0

    def run(self) -> None:
        rss, self._cpu_start = tree_usage(self.pid)
        self._t_start = time.monotonic()
        self.peak_rss = rss
        while not self._stop_event.wait(0.25):
            self.peak_rss = max(self.peak_rss, tree_usage(self.pid)[0])

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        rss, cpu = tree_usage(self.pid)
        self.peak_rss = max(self.peak_rss, rss)
        elapsed = time.monotonic() - self._t_start
        self.cpu_percent = 100 * (cpu - self._cpu_start) / elapsed if elapsed > 0 else 0.0
