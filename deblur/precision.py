"""Which reduced precision a device runs natively.

bf16 autocast on a CPU pays only where the CPU has native bf16 arithmetic (AVX512-BF16 or AMX):
oneDNN then runs convolutions in bf16 at about twice the fp32 rate (LBAG, 2 ResBlocks, a batch of
8 × 96² patches, forward + backward on this 2-core AMD EPYC: 0.76 s fp32, 0.34 s bf16). Elsewhere
it emulates bf16 and is slower than fp32, so it is never chosen there. (On an AVX2-only 2-core
AMD EPYC the same fp32 step took 2.23 s: CPUs differ more than precisions do.)
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["BF16_CPU_FLAGS", "cpu_bf16_flag"]

#: /proc/cpuinfo flags that mean native bf16 arithmetic.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_bf16_flag(cpuinfo: Path | str = "/proc/cpuinfo") -> str | None:
    """The CPU flag that gives native bf16 (``"amx_bf16"`` or ``"avx512_bf16"``), or ``None``
    when the CPU has neither, oneDNN is unavailable, or ``cpuinfo`` cannot be read (not Linux)."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
            break
    return next((flag for flag in BF16_CPU_FLAGS if flag in flags), None)
