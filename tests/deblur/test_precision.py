"""deblur.precision: which CPUs count as having native bf16."""

from __future__ import annotations

import pytest
import torch

from deblur.precision import cpu_bf16_flag

FLAGS = "fpu vme de pse tsc msr sse sse2 avx2 avx512f avx512bw"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [("", None), (" avx512_bf16", "avx512_bf16"), (" amx_bf16 avx512_bf16", "amx_bf16")],
)
def test_flag_read_from_cpuinfo(tmp_path, extra, expected):
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch build has no oneDNN, so no CPU counts as native bf16")
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {FLAGS}{extra}\n\n"
                    f"processor\t: 1\nflags\t\t: {FLAGS}{extra}\n")
    assert cpu_bf16_flag(info) == expected


def test_unreadable_cpuinfo_means_no_bf16(tmp_path):
    assert cpu_bf16_flag(tmp_path / "missing") is None
