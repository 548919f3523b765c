"""Render a bench/run.py JSON document as markdown tables (the ones in bench/README.md).

python -m bench.report bench/results/bench.json > perf.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.machine import describe_vector_extensions


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render(doc: dict[str, Any]) -> str:
    lines: list[str] = []
    machine = doc["machine"]
    versions = machine.get("versions", {})
    lines.append(
        f"Machine: {machine['cpu_model']}, {machine['nproc']} CPUs, {machine['mem_total_gib']} GiB RAM, "
        f"Linux {machine['kernel']}; torch {versions.get('torch', '?')}, k6 {versions.get('k6', '?')}, "
        f"redis-server {versions.get('redis_server', '?')}. Load average at start "
        f"{machine['load_average_at_start'][0]}, at end {machine.get('load_average_at_end', ['?'])[0]}."
    )
    lines.append(describe_vector_extensions(machine) + ".")
    bench = doc["bench"]
    lines.append(
        f"Command: `{bench['command']}` ({bench['duration_per_scenario_s']:g} s per scenario, "
        f"started {bench['started_at']}); model: {doc['model']['preset']} DistilBERT shape, random weights, "
        "bert-base-uncased vocabulary. k6 runs on the same CPUs as the server."
    )
    lines.append("")
    lines.append("| scenario | server | req/s | texts/s | p50 ms | p95 ms | p99 ms | errors | x pipeline |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for scenario in doc["scenarios"].values():
        ratios = scenario.get("ratio_vs_pipeline", {})
        for label, result in scenario["results"].items():
            lines.append(
                f"| ({scenario.get('key', '?')}) {scenario['description']} | {label} | "
                f"{_num(result['requests_per_s'])} | "
                f"{_num(result['texts_per_s'])} | {_num(result['p50_ms'])} | {_num(result['p95_ms'])} | "
                f"{_num(result['p99_ms'])} | {result['errors']} | "
                f"{_num(ratios.get(label), 2) if label != 'pipeline' else '1.00'} |"
            )
    capacity = doc.get("capacity") or {}
    if capacity:
        lines.append("")
        lines.append(
            "| open loop (constant arrival rate) | server | capacity req/s | x pipeline | of ceiling "
            "| load average |"
        )
        lines.append("|---|---|---:|---:|---:|---:|")
        for key, entry in capacity.items():
            if key == "sla":
                continue
            for label, row in entry["servers"].items():
                load = row.get("load_average_1m")
                lines.append(
                    f"| {entry['slo']} | {label} | {row['capacity_rps']} | "
                    f"{_num(row.get('ratio_vs_pipeline'), 2)} | {_num(row.get('fraction_of_ceiling'), 2)} | "
                    f"{f'{load[0]:.1f}-{load[1]:.1f}' if load else 'n/a'} |"
                )
        sla = capacity.get("sla", {})
        for label, point in sla.get("servers", {}).items():
            lines.append(
                f"| {sla['slo']} | {label} | p50 {_num(point['p50_ms'])} ms, "
                f"p99 {_num(point['p99_ms'])} ms | errors {point['errors']} | dropped {point['dropped']} | "
                f"{_num(point.get('load_average_1m_before'))} |"
            )
    lines.append("")
    lines.append("| server | start to ready s | peak RSS under load MB |")
    lines.append("|---|---:|---:|")
    for label, server in doc["servers"].items():
        lines.append(
            f"| {label} | {_num(server['start_to_ready_s'], 2)} | {_num(server['rss_peak_under_load_mb'])} |"
        )
    if doc.get("ceiling"):
        lines.append("")
        lines.append(
            "| precision | workers x torch threads | bare-model texts/s at batch 32 | ms per batch "
            "| mean tokens/text | texts/s at batch 1 | texts/s at batch 8 |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for precision, ceiling in doc["ceiling"].items():
            other = ceiling.get("by_batch_size", {})
            lines.append(
                f"| {precision} | {ceiling.get('workers', 1)} x {ceiling.get('torch_threads', '?')} | "
                f"{_num(ceiling['texts_per_s'])} | {_num(ceiling['ms_per_batch'])} | "
                f"{_num(ceiling['mean_tokens_per_text'])} | {_num(other.get('1'))} | {_num(other.get('8'))} |"
            )
    if doc.get("targets"):
        lines.append("")
        lines.append("| target | measured | met |")
        lines.append("|---|---:|:---:|")
        for target in doc["targets"]:
            met = {True: "yes", False: "**no**", None: "n/a"}[target["met"]]
            note = f" ({target['note']})" if target.get("note") else ""
            lines.append(f"| {target['target']}{note} | {_num(target['value'], 2)} | {met} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="JSON written by python -m bench.run --out FILE")
    args = parser.parse_args()
    print(render(json.loads(args.file.read_text())), end="")


if __name__ == "__main__":
    main()
