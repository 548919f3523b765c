"""The machine facts the benchmark prints: the vector extensions the CPU has (int8 depends on them)."""

from __future__ import annotations

from bench.machine import VECTOR_EXTENSIONS, describe_vector_extensions, machine_info, vector_extensions

AVX2_ONLY = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx fma avx2 bmi2\n"
AVX512_VNNI = (
    "processor\t: 0\nflags\t\t: fpu avx2 fma avx512f avx512bw avx512_vnni avx512_bf16\n"
    "processor\t: 1\nflags\t\t: fpu avx2\n"
)


def test_an_avx2_only_cpu_has_no_avx512_vnni_or_amx() -> None:
    found = vector_extensions(AVX2_ONLY)
    assert [name for name, has in found.items() if has] == ["AVX2", "FMA"]
    assert set(found) == {name for name, _ in VECTOR_EXTENSIONS}


def test_the_first_cpu_flags_line_decides() -> None:
    found = vector_extensions(AVX512_VNNI)
    assert found["AVX-512"]
    assert found["AVX-512 VNNI"]
    assert found["AVX-512 BF16"]
    assert not found["AMX-INT8"]
    assert not found["AVX-VNNI"]


def test_no_flags_line_reports_every_extension_absent() -> None:
    assert not any(vector_extensions("processor\t: 0\n").values())


def test_the_summary_names_what_is_present_and_what_is_absent() -> None:
    machine = {"cpu_vector_extensions": vector_extensions(AVX2_ONLY), "torch_cpu_capability": "AVX2"}
    line = describe_vector_extensions(machine)
    assert line.startswith("CPU vector extensions: AVX2, FMA (absent: AVX-512, AVX-512 VNNI")
    assert line.endswith("AMX-BF16); torch CPU kernels: AVX2")


def test_this_machine_reports_its_extensions_and_torch_kernel_level() -> None:
    machine = machine_info()
    assert set(machine["cpu_vector_extensions"]) == {name for name, _ in VECTOR_EXTENSIONS}
    # torch always dispatches to some level (DEFAULT, AVX2, AVX512, ...), never unknown on a working install.
    assert machine["torch_cpu_capability"]
    assert "unknown" not in machine["torch_cpu_capability"]
