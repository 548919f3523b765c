"""The markdown report of a bench document: the machine's vector extensions and the capacity table."""

from __future__ import annotations

from typing import Any

from bench.report import render


def test_the_report_names_the_cpu_extensions_and_the_load_next_to_each_capacity() -> None:
    doc: dict[str, Any] = {
        "machine": {
            "cpu_model": "AMD EPYC",
            "nproc": 2,
            "mem_total_gib": 23.5,
            "kernel": "6.18",
            "versions": {"torch": "2.13.0+cpu", "k6": "v1.1.0", "redis_server": "7.0.15"},
            "load_average_at_start": [1.2, 1.0, 0.9],
            "load_average_at_end": [2.2, 1.5, 1.0],
            "cpu_vector_extensions": {"AVX2": True, "AVX-512": True, "AVX-512 VNNI": True, "AMX-INT8": False},
            "torch_cpu_capability": "AVX512",
        },
        "bench": {"command": "python -m bench.run", "duration_per_scenario_s": 30, "started_at": "now"},
        "model": {"preset": "full"},
        "scenarios": {},
        "capacity": {
            "uncached": {
                "slo": "uncached single texts, p99 <= 100 ms",
                "servers": {
                    "ours-int8": {
                        "capacity_rps": 150,
                        "ratio_vs_pipeline": 7.5,
                        "fraction_of_ceiling": 0.75,
                        "load_average_1m": [1.5, 2.5],
                    }
                },
            },
            "sla": {
                "slo": "10 req/s uncached, p99 < 2000 ms",
                "servers": {
                    "ours-int8": {
                        "p50_ms": 9.0,
                        "p99_ms": 20.0,
                        "errors": 0,
                        "dropped": 0,
                        "load_average_1m_before": 1.9,
                    }
                },
            },
        },
        "servers": {"ours-int8": {"start_to_ready_s": 3.5, "rss_peak_under_load_mb": 480.0}},
        "ceiling": {},
        "targets": [],
    }
    text = render(doc)
    assert (
        "CPU vector extensions: AVX2, AVX-512, AVX-512 VNNI (absent: AMX-INT8); torch CPU kernels: AVX512."
        in text
    )
    assert "| uncached single texts, p99 <= 100 ms | ours-int8 | 150 | 7.50 | 0.75 | 1.5-2.5 |" in text
    assert "| ours-int8 | p50 9.0 ms, p99 20.0 ms | errors 0 | dropped 0 | 1.9 |" in text
