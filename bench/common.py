"""What the benchmarks share: the matmul peak that achieved FLOP/s are measured against, and the six trials the sweep
benchmarks run as points to evaluate (``SIX_TRIALS``)."""

from __future__ import annotations

import json
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


SIX_TRIALS = tuple(
    json.dumps({"divergence": divergence, "beta": beta, "learning_rate": lr})
    for divergence, beta, lr in [
        ("reverse_kl", 0.1, 3e-4), ("forward_kl", 0.5, 5e-4), ("js_divergence", 1.0, 4e-4),
        ("reverse_kl", 1.5, 6e-4), ("forward_kl", 0.2, 2.5e-4), ("js_divergence", 0.3, 8e-4),
    ]
)  # fmt: skip
"""Six trials over three divergences, β and learning rates within tiny-imdb's KL budget, as points to evaluate: the
same trials in every search a benchmark compares."""
SIX_DIVERGENCES = ("reverse_kl", "forward_kl", "js_divergence")
"""The divergences of ``SIX_TRIALS``: a sweep searches only these, two trials each."""
