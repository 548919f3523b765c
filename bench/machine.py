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

# The vector extensions int8 and fp32 speed depend on: a name a reader knows -> the /proc/cpuinfo flag.
# fbgemm (int8 Linear) uses VNNI's dot products when present; AMX is what int8/bf16 matrix tiles need.
VECTOR_EXTENSIONS = (
    ("AVX2", "avx2"),
    ("FMA", "fma"),
    ("AVX-512", "avx512f"),
    ("AVX-512 VNNI", "avx512_vnni"),
    ("AVX-512 BF16", "avx512_bf16"),
    ("AVX-VNNI", "avx_vnni"),
    ("AMX-INT8", "amx_int8"),
    ("AMX-BF16", "amx_bf16"),
)


def vector_extensions(cpuinfo: str) -> dict[str, bool]:
    """Which of VECTOR_EXTENSIONS the first CPU's ``flags`` line in ``cpuinfo`` lists."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return {name: flag in flags for name, flag in VECTOR_EXTENSIONS}


def describe_vector_extensions(machine: dict[str, Any]) -> str:
    """One line for a reader: the extensions present, those absent, and torch's kernel level."""
    extensions: dict[str, bool] = machine.get("cpu_vector_extensions") or {}
    present = ", ".join(name for name, has in extensions.items() if has) or "none of them"
    absent = ", ".join(name for name, has in extensions.items() if not has) or "none"
    return (
        f"CPU vector extensions: {present} (absent: {absent}); "
        f"torch CPU kernels: {machine.get('torch_cpu_capability', 'unknown')}"
    )


def torch_cpu_capability() -> str:
    """The instruction set torch's own CPU kernels were dispatched to on this machine (e.g. AVX512)."""
    try:
        import torch

        return str(torch.backends.cpu.get_cpu_capability())
    except Exception as exc:  # reported, never fatal: the run still measures
        return f"unknown ({type(exc).__name__})"


def machine_info() -> dict[str, Any]:
    cpu_model = "unknown"
    cpuinfo = ""
    with contextlib.suppress(OSError):
        cpuinfo = Path("/proc/cpuinfo").read_text()
    for line in cpuinfo.splitlines():
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
        "cpu_vector_extensions": vector_extensions(cpuinfo),
        "torch_cpu_capability": torch_cpu_capability(),
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
