"""Preference losses on f-DPO margins Δ = f′(u_w) − f′(u_l), one value per pair.

``sigmoid``: −log σ(βΔ), DPO's logistic loss. ``hinge``: relu(1 − βΔ), the RSO / TRL form; SLiC-HF instead uses
max(0, δ − Δ) with a margin δ on the raw log-ratio difference plus a cross-entropy term on the chosen text, which
alignray leaves out (β = 1/δ gives the same hinge up to scale). ``ipo``: (Δ̄ − 1/(2β))² with
Δ̄ = g(u_w)/L_w − g(u_l)/L_l, g = f′ − f′(1) averaged per completion token (L tokens) as TRL does when lengths are
given. f′ is shifted so that f′(1) = 0 before the division: a constant such as reverse KL's +1 cancels in
f′(u_w) − f′(u_l) but not in 1/L_w − 1/L_l, and TRL's f′ are the shifted ones.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from alignray.divergences import Divergence
from alignray.registry import unknown_name

__all__ = ["LOSS_TYPES", "check_loss_type", "preference_loss"]


def _sigmoid(delta: Tensor, beta: float) -> Tensor:
    return -F.logsigmoid(beta * delta)


def _hinge(delta: Tensor, beta: float) -> Tensor:
    return torch.relu(1.0 - beta * delta)


def _ipo(delta: Tensor, beta: float) -> Tensor:
    return (delta - 1.0 / (2.0 * beta)) ** 2


_LOSSES: dict[str, Callable[[Tensor, float], Tensor]] = {"sigmoid": _sigmoid, "hinge": _hinge, "ipo": _ipo}
LOSS_TYPES: tuple[str, ...] = tuple(_LOSSES)
"""The loss shapes, by name."""


def check_loss_type(loss_type: str) -> None:
    """Raise ValueError naming ``loss_type`` when it is not one of ``LOSS_TYPES``."""
    if loss_type not in _LOSSES:
        raise unknown_name("loss_type", loss_type, LOSS_TYPES)


def preference_loss(
    chosen_logratios: Tensor,
    rejected_logratios: Tensor,
    divergence: Divergence,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
) -> Tensor:
    """Per-pair f-DPO loss, shape (B,), from summed completion log-ratios log π − log π_ref of shape (B,).

    ``chosen_lengths``/``rejected_lengths`` (completion tokens, shape (B,)) are used by ``ipo`` only, to average
    f′ − f′(1) per token; without them ``ipo`` works on the sums.
    """
    check_loss_type(loss_type)
    if not beta > 0:
        raise ValueError(f"beta={beta!r} must be > 0")
    at_one = divergence.f_prime(torch.zeros((), dtype=chosen_logratios.dtype, device=chosen_logratios.device))
    chosen_scores = divergence.f_prime(chosen_logratios) - at_one
    rejected_scores = divergence.f_prime(rejected_logratios) - at_one
    if loss_type == "ipo" and chosen_lengths is not None and rejected_lengths is not None:
        chosen_scores = chosen_scores / chosen_lengths.clamp(min=1)
        rejected_scores = rejected_scores / rejected_lengths.clamp(min=1)
    return _LOSSES[loss_type](chosen_scores - rejected_scores, beta)
