"""What the benchmarks share: the matmul peak that achieved FLOP/s are measured against."""

from __future__ import annotations

import time

import torch


def matmul_peak_flops(size: int = 1024, seconds: float = 2.0) -> float:
    """FLOP/s of back-to-back ``size`` x ``size`` float32 matmuls on the CPU for ``seconds`` (after one warm-up)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - started)
